"""Which Deployments an AdapterServing targets (named ones, or those its selector matches),
which it no longer targets, and who else has an adapter on them."""

from __future__ import annotations

from typing import Any

from ...api.adapterserving import AdapterServingSpec
from .record import read_record


def selector_matches(match_labels: dict[str, str], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in match_labels.items())


def label_selector(match_labels: dict[str, str]) -> str:
    """``matchLabels`` as a label-selector string (``a=1,b=2``, sorted)."""
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


def pod_selector(deployment: dict[str, Any]) -> str:
    """The label selector of a Deployment's pods ('' when it has no matchLabels: list none)."""
    return label_selector(((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})


def select_targets(spec: AdapterServingSpec, deployments: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The targeted Deployments, and what is missing ('' if nothing)."""
    by_name = {d["metadata"]["name"]: d for d in deployments}
    if spec.targets.deployments:
        wanted = list(dict.fromkeys(spec.targets.deployments))
        missing = [n for n in wanted if n not in by_name]
        found = [by_name[n] for n in wanted if n in by_name]
        if missing:
            return found, f"Deployment{'s' if len(missing) > 1 else ''} {', '.join(missing)} not found"
        return found, ""
    labels = spec.targets.selector.match_labels if spec.targets.selector else {}
    found = sorted((d for d in deployments if selector_matches(labels, d["metadata"].get("labels"))),
                   key=lambda d: d["metadata"]["name"])
    if not found:
        return [], f"no Deployment matches the selector {label_selector(labels)}"
    return found, ""


def other_owners(targets: list[dict[str, Any]], owner: str) -> set[str]:
    """The other AdapterServings with an entry on a target (the handler confirms they exist)."""
    return set().union(*(read_record(d).owners() for d in targets)) - {owner}


def carrying(deployments: list[dict[str, Any]], owner: str) -> list[dict[str, Any]]:
    """The Deployments with an entry of ``owner``'s."""
    return [d for d in deployments if owner in read_record(d).owners()]


def untargeted(deployments: list[dict[str, Any]], targets: list[dict[str, Any]], owner: str) -> list[dict[str, Any]]:
    """Deployments that carry ``owner``'s adapter but are no longer its targets: it is removed there."""
    names = {d["metadata"]["name"] for d in targets}
    return [d for d in carrying(deployments, owner) if d["metadata"]["name"] not in names]
