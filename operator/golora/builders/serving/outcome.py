"""An AdapterServing's phase, message and conditions from the facts one reconcile gathered:
the adapter's facts, the targets, the checks, the rollouts and the ``/v1/models`` answers.

Pure: the handler does the reads, writes and probes, and asks these functions what to say
(and, before patching, whether to patch at all: :func:`decide`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ... import conditions as cond
from ... import vllm
from ...api.adapterserving import AdapterServingSpec
from ...vllm import parse_invocation
from ..status import serving_ready, status_patch
from .checks import Problem, find_container
from .facts import Facts, Hold
from .probe import Probe
from .record import AdapterEntry, read_record
from .rollout import EngineCrash, Rollout, rollout_state, surge_risk

# Phases of an AdapterServing (besides Pending, Failed, Invalid).
ROLLING_OUT = "RollingOut"
ROLLED_OUT = "RolledOut"
SERVING = "Serving"
# The model server exited at start with the adapter in --lora-modules (Restart mode).
SERVER_REJECTED_ADAPTER = "ServerRejectedAdapter"

Condition = tuple[str, str, str, str]  # type, status, reason, message


@dataclass
class Outcome:
    phase: str
    message: str
    conditions: list[Condition]
    targets: list[dict[str, Any]] = field(default_factory=list)
    target_names: str | None = None
    adapter: dict[str, Any] | None = None
    rejected: dict[str, Any] | None = None


def target_names(spec: AdapterServingSpec, targets: list[dict[str, Any]]) -> str:
    if spec.targets.deployments:
        return ",".join(dict.fromkeys(spec.targets.deployments))
    return ",".join(d["metadata"]["name"] for d in targets)


def _name_rows(targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": d["metadata"]["name"]} for d in targets]


def validated(facts: Facts) -> Condition:
    return (cond.ADAPTER_VALIDATED, cond.TRUE, facts.reason,
            f"rank {facts.rank}, base {facts.base_model or 'unknown'}, from {facts.source}; {facts.verified}")


def not_patched(spec: AdapterServingSpec, targets: list[dict[str, Any]], *, validated: Condition,
                patched: tuple[str, str], phase: str, message: str, adapter: dict[str, Any] | None,
                owner: str = "") -> Outcome:
    """Nothing is written to any Deployment: say why (and what an earlier patch left serving)."""
    kept = sorted({f"{d['metadata']['name']} ({a.path})" for d in targets
                   for a in read_record(d).adapters if a.owner == owner})
    if kept:
        message += f"; the adapter patched earlier stays in place on {', '.join(kept)}"
    return Outcome(phase, message, [
        validated,
        (cond.PATCHED, patched[0], patched[1], message),
        (cond.ROLLED_OUT, cond.UNKNOWN, "NotPatched", "nothing was patched"),
        (cond.SERVING, cond.UNKNOWN, "NotPatched", "nothing was patched"),
    ], _name_rows(targets), target_names(spec, targets), adapter)


def held(spec: AdapterServingSpec, owner: str, targets: list[dict[str, Any]], hold: Hold) -> Outcome:
    """The adapter is not (yet) servable: AdapterValidated says why."""
    return not_patched(spec, targets, validated=(cond.ADAPTER_VALIDATED, hold.status, hold.reason, hold.message),
                       patched=(cond.UNKNOWN if hold.status == cond.UNKNOWN else cond.FALSE, "AdapterNotValidated"),
                       phase=hold.phase, message=hold.message, adapter=None, owner=owner)


def refused(spec: AdapterServingSpec, owner: str, targets: list[dict[str, Any]], facts: Facts, reason: str,
            message: str, phase: str = cond.FAILED) -> Outcome:
    """A valid adapter golora will not patch in (Patched=False with ``reason``)."""
    return not_patched(spec, targets, validated=validated(facts), patched=(cond.FALSE, reason), phase=phase,
                       message=message, adapter=facts.status(), owner=owner)


def rejected(spec: AdapterServingSpec, targets: list[dict[str, Any]], facts: Facts, record: dict[str, Any],
             rows: list[dict[str, Any]] | None = None) -> Outcome:
    """Failed: the server refused the adapter, and golora took it out again. It stays out
    until the adapter (path, training) or the spec changes."""
    line = record.get("message") or ""
    message = (f"vLLM refused to start with adapter {record.get('path')} (pod {record.get('pod')}): {line}; "
               "golora took the adapter out again, the server rolls back to the base model and the other "
               "adapters; it is patched in again only when the adapter or this spec changes")
    return Outcome(cond.FAILED, message, [
        validated(facts),
        (cond.PATCHED, cond.FALSE, SERVER_REJECTED_ADAPTER, message),
        (cond.ROLLED_OUT, cond.FALSE, SERVER_REJECTED_ADAPTER, "rolled back: the adapter's entry was removed"),
        (cond.SERVING, cond.FALSE, SERVER_REJECTED_ADAPTER, line),
    ], rows if rows is not None else _name_rows(targets), target_names(spec, targets), facts.status(), record)


def rejection(facts: Facts, generation: int | None, crash: EngineCrash, line: str) -> dict[str, Any]:
    """``status.rejected``: which adapter the server refused, so it is not patched in again."""
    return {"path": facts.path, "source": facts.source, "generation": generation, "pod": crash.pod,
            "message": line[:1000]}


def decide(ns: str, owner: str, spec: AdapterServingSpec, targets: list[dict[str, Any]], missing: str,
           facts: Facts | Hold, status: dict[str, Any], generation: int | None) -> Outcome | AdapterEntry:
    """Before any patch: the entry to put on the targets, or the Outcome that says why not."""
    if isinstance(facts, Hold):
        return held(spec, owner, targets, facts)
    before = status.get("rejected") or {}
    if before and (before.get("path"), before.get("source"), before.get("generation")) == \
            (facts.path, facts.source, generation):
        return rejected(spec, targets, facts, before)
    top = vllm.ALLOWED_MAX_LORA_RANKS[-1]
    if facts.rank > top:
        message = f"adapter rank {facts.rank} exceeds vLLM's maximum --max-lora-rank {top}"
        return not_patched(spec, targets, validated=(cond.ADAPTER_VALIDATED, cond.FALSE, "RankTooHigh", message),
                           patched=(cond.FALSE, "AdapterNotValidated"), phase=cond.FAILED, message=message,
                           adapter=facts.status(), owner=owner)
    explicit_rank = spec.vllm.max_lora_rank if isinstance(spec.vllm.max_lora_rank, int) else None
    if explicit_rank is not None and explicit_rank < facts.rank:
        return refused(spec, owner, targets, facts, "RankAboveMaxLoraRank",
                       f"adapter rank {facts.rank} is above spec.vllm.maxLoraRank {explicit_rank}: vLLM would "
                       f"refuse to start; raise maxLoraRank or set it to auto")
    if missing:
        return refused(spec, owner, targets, facts, "TargetNotFound",
                       f"{missing} in namespace {ns}; patched as soon as it appears", cond.PENDING)
    return AdapterEntry(
        name=spec.served_name, owner=owner, path=facts.path, rank=facts.rank, base_model=facts.base_model,
        claim=facts.claim, container=spec.container_name, max_lora_rank=explicit_rank,
        max_loras=spec.vllm.max_loras if isinstance(spec.vllm.max_loras, int) else None,
        max_cpu_loras=spec.vllm.max_cpu_loras if isinstance(spec.vllm.max_cpu_loras, int) else None,
        loading=spec.loading)


def check_failed(spec: AdapterServingSpec, owner: str, targets: list[dict[str, Any]], facts: Facts,
                 problems: list[Problem]) -> Outcome:
    """A target failed a check before anything was patched."""
    return refused(spec, owner, targets, facts, problems[0].reason,
                   "; ".join(p.message for p in problems) + " (nothing was patched)")


def lost_race(spec: AdapterServingSpec, owner: str, targets: list[dict[str, Any]], facts: Facts,
              problems: list[Problem], patched: list[str]) -> Outcome:
    """A check failed on a target as it was at write time (another writer got there first)."""
    message = "; ".join(p.message for p in problems)
    message += f" (patched so far: {', '.join(patched)})" if patched else " (nothing was patched)"
    return refused(spec, owner, targets, facts, problems[0].reason, message)


def target_row(deployment: dict[str, Any], container_name: str) -> dict[str, Any]:
    """``status.targets[]`` for one patched Deployment (``served`` is filled in once probed)."""
    container, _ = find_container(deployment, container_name)
    inv = parse_invocation((container or {}).get("command"), (container or {}).get("args"))
    ro = rollout_state(deployment)
    return {
        "name": deployment["metadata"]["name"], "container": container_name,
        "servedModel": (inv.served_model_names or [None])[0],
        "patchedGeneration": deployment["metadata"].get("generation"),
        "observedGeneration": ro.observed_generation, "replicas": ro.replicas,
        "updatedReplicas": ro.updated_replicas, "availableReplicas": ro.available_replicas,
        "rolledOut": ro.done, "served": None, "maxLoraRank": inv.int_value(vllm.FLAG_MAX_LORA_RANK),
        "adapters": sorted(a.name for a in read_record(deployment).adapters), "message": ro.message,
    }


@dataclass(frozen=True)
class Patched:
    """The targets as golora's writes left them: their status rows, rollouts, surge risks."""

    rows: list[dict[str, Any]]
    rollouts: list[Rollout]
    risks: list[str]

    @property
    def rolled_out(self) -> bool:
        """Every target rolled out: ask GET /v1/models (else look for a crashing engine)."""
        return all(r.done for r in self.rollouts)


def patched(deployments: list[dict[str, Any]], container_name: str) -> Patched:
    return Patched([target_row(d, container_name) for d in deployments], [rollout_state(d) for d in deployments],
                   [risk for risk in (surge_risk(d) for d in deployments) if risk])


def surge_condition(risks: list[str]) -> Condition:
    if risks:
        return (cond.GPU_SURGE_RISK, cond.TRUE, "RollingUpdateWithSurge", "; ".join(risks))
    return (cond.GPU_SURGE_RISK, cond.FALSE, "NoSurgeRisk",
            "Recreate, maxSurge 0, or no GPU requested: a rollout cannot wait for a busy GPU")


def _patched(spec: AdapterServingSpec, facts: Facts, rows: list[dict[str, Any]]) -> list[Condition]:
    return [validated(facts), (cond.PATCHED, cond.TRUE, "Patched",
                               f"{spec.served_name} is in --lora-modules of {', '.join(r['name'] for r in rows)}")]


def rolling_out(spec: AdapterServingSpec, targets: list[dict[str, Any]], facts: Facts, rows: list[dict[str, Any]],
                rollouts: list[Rollout], risks: list[str]) -> Outcome:
    """Patched; some target has not rolled out yet."""
    pending = [r.message for r in rollouts if not r.done]
    conditions = [*_patched(spec, facts, rows),
                  (cond.ROLLED_OUT, cond.FALSE, "RollingOut", "; ".join(pending)),
                  (cond.SERVING, cond.UNKNOWN, "WaitingForRollout", "GET /v1/models is asked once rolled out"),
                  surge_condition(risks)]
    return Outcome(ROLLING_OUT, "patched; rolling out: " + "; ".join(pending), conditions, rows,
                   target_names(spec, targets), facts.status())


def rolled_out(spec: AdapterServingSpec, targets: list[dict[str, Any]], facts: Facts, rows: list[dict[str, Any]],
               rollouts: list[Rollout], probes: list[Probe], risks: list[str]) -> Outcome:
    """Every target rolled out: Serving from what each one's ``GET /v1/models`` said."""
    rows = [{**row, "served": p.served, "message": p.message} for row, p in zip(rows, probes, strict=True)]
    msgs = [p.message for p in probes]
    conditions = [*_patched(spec, facts, rows),
                  (cond.ROLLED_OUT, cond.TRUE, "RolledOut", "; ".join(r.message for r in rollouts))]
    served_all: bool | None = True
    for p in probes:
        if p.served is None:
            served_all = None if served_all is not False else False
        elif not p.served:
            served_all = False
    if served_all:
        conditions.append((cond.SERVING, cond.TRUE, "Listed", "; ".join(msgs)))
        phase, message = SERVING, f"{spec.served_name} is served by {', '.join(r['name'] for r in rows)}"
    elif served_all is False:
        conditions.append((cond.SERVING, cond.FALSE, "NotListed", "; ".join(msgs)))
        phase, message = ROLLED_OUT, "rolled out, but GET /v1/models does not list the adapter yet"
    else:
        reason = "NoReadyPods" if all("no ready pods" in m for m in msgs if m) else "ProbeFailed"
        conditions.append((cond.SERVING, cond.UNKNOWN, reason, "; ".join(msgs)))
        phase, message = ROLLED_OUT, "rolled out; serving not confirmed: " + "; ".join(msgs)
    conditions.append(surge_condition(risks))
    return Outcome(phase, message, conditions, rows, target_names(spec, targets), facts.status())


def with_accepted(outcome: Outcome) -> list[Condition]:
    """Every condition a reconcile writes: the spec was accepted, then the outcome's."""
    return [(cond.ACCEPTED, cond.TRUE, "Valid", "spec is valid"), *outcome.conditions]



def status_update(status: dict[str, Any], outcome: Outcome, generation: int | None) -> dict[str, Any]:
    """The status patch one reconcile writes: the outcome, Accepted, Ready, and the rows."""
    extra = {"observedGeneration": generation, "targets": outcome.targets, "targetNames": outcome.target_names,
             "adapter": outcome.adapter, "rejected": outcome.rejected}
    return status_patch(status, phase=outcome.phase, message=outcome.message, generation=generation,
                        conditions=with_accepted(outcome), extra=extra, ready=serving_ready)
