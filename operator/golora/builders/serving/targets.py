"""Which Deployments an AdapterServing targets: named ones, or those its selector matches."""

from __future__ import annotations

from typing import Any

from ...api.adapterserving import AdapterServingSpec


def selector_matches(match_labels: dict[str, str], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in match_labels.items())


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
        sel = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return [], f"no Deployment matches the selector {sel}"
    return found, ""
