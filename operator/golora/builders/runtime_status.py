"""Runtime loading (``spec.loading: Runtime``): the AdapterServing's status as pure functions,
per target (prepared? rolled out? what its pods answered) and as a whole (phase, message,
conditions). The handler (``golora.handlers.runtime``) reads, writes and asks the pods; the
pod-side decisions are :mod:`golora.builders.runtime_load`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import conditions as cond
from ..api.adapterserving import AdapterServingSpec
from . import runtime, serving
from .runtime_load import PodResult
from .serving import outcome
from .serving.outcome import Condition, Outcome
from .serving.plan import resolver_cache_dir, runtime_gaps
from .status import JobState

# Serving reasons in Runtime mode.
LOADED = "Loaded"
LOAD_REFUSED = "RuntimeLoadRefused"
PREPARING = "PreparingDeployment"
PREPARING_RESOLVER = "PreparingResolverDirectory"
RESOLVER_FAILED = "ResolverDirectoryFailed"
PREPARED = "Prepared"


def adapter_version(spec: AdapterServingSpec, path: str, generation: int | None,
                    training: dict[str, Any] | None) -> str:
    """A new id for a retrained adapter (the LoraTraining's generation, attempt, finish time;
    ``training``: the LoraTraining as read, None if absent); for an explicit adapterPath, the
    AdapterServing's generation."""
    if spec.training_ref is not None:
        lt = training or {}
        result = (lt.get("status") or {}).get("result") or {}
        return runtime.version_of(path, (lt.get("metadata") or {}).get("generation"), result.get("attempt"),
                             result.get("finishedAt"))
    return runtime.version_of(path, generation)


def _bare_rows(targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": d["metadata"]["name"], "loading": runtime.RUNTIME} for d in targets]


def no_model(spec: AdapterServingSpec, owner: str, targets: list[dict[str, Any]], validated: Condition,
             adapter: dict[str, Any]) -> Outcome:
    """A target's engine names no model: there is no base model for the snapshot's config."""
    return outcome.not_patched(spec, targets, validated=validated, patched=(cond.FALSE, serving.SERVED_MODEL_UNKNOWN),
                               phase=cond.FAILED, message="no model found in a target's command line",
                               adapter=adapter, owner=owner)


def resolver_wait(job: JobState, spec: AdapterServingSpec, targets: list[dict[str, Any]], validated: Condition,
                  adapter: dict[str, Any]) -> Outcome | None:
    """While the resolver-directory Job has not succeeded: Failed or Pending; None once the
    snapshots are written."""
    names = outcome.target_names(spec, targets)
    if job.phase == cond.FAILED:
        message = f"the resolver-directory Job failed: {job.message}"
        return Outcome(cond.FAILED, message, [validated, (cond.PATCHED, cond.FALSE, RESOLVER_FAILED, message)],
                       _bare_rows(targets), names, adapter)
    if job.phase != cond.SUCCEEDED:
        message = f"writing the adapter's snapshot for vLLM's resolver ({job.message})"
        return Outcome(cond.PENDING, message, [validated, (cond.PATCHED, cond.UNKNOWN, PREPARING_RESOLVER, message)],
                       _bare_rows(targets), names, adapter)
    return None


def restart_notice(namespace: str, deployment: dict[str, Any], owner: str, entry: serving.AdapterEntry,
                   live: set[str], container_name: str) -> str | None:
    """What to announce before golora's write restarts the pods (the template changes: the
    container is not prepared yet, or its args change), or None: no restart."""
    dname = deployment["metadata"]["name"]
    container, _ = serving.find_container(deployment, container_name)
    container = container or {}
    missing = runtime_gaps(container, resolver_cache_dir(namespace, dname))
    plan = serving.plan_deployment(deployment, serving.entries_for(serving.read_record(deployment), owner, entry, live))
    if plan.changed and (missing or plan.args.get(container_name) != (container.get("args") or [])):
        return (f"Deployment {dname} is being prepared for runtime loading ({', '.join(missing) or 'new args'}):"
                f" its pods restart once now; later adapter changes load without a restart")
    return None


def announce_patch(status: dict[str, Any], generation: int | None, message: str) -> dict[str, Any]:
    """The status patch that says the pods are about to restart, before golora's write makes them."""
    conds = cond.set_condition(status.get("conditions"), cond.PATCHED, cond.UNKNOWN, PREPARING, message, generation)
    return {"phase": serving.ROLLING_OUT, "message": message, "conditions": conds, "observedGeneration": generation}


def refused_on_write(spec: AdapterServingSpec, owner: str, targets: list[dict[str, Any]], validated: Condition,
                     adapter: dict[str, Any], problems: list[serving.Problem]) -> Outcome:
    """A check failed on a target as it was at write time."""
    return outcome.not_patched(spec, targets, validated=validated, patched=(cond.FALSE, problems[0].reason),
                               phase=cond.FAILED, message="; ".join(p.message for p in problems), adapter=adapter,
                               owner=owner)


@dataclass
class TargetResult:
    deployment: str
    prepared: bool
    rolled_out: bool
    message: str
    pods: list[PodResult] = field(default_factory=list)

    @property
    def ready_to_load(self) -> bool:
        """The pods run the prepared template: load into them."""
        return self.prepared and self.rolled_out


def target_result(namespace: str, deployment: dict[str, Any], container_name: str) -> TargetResult:
    """A target after golora's write: prepared for runtime loading, rolled out."""
    dname = deployment["metadata"]["name"]
    container, _ = serving.find_container(deployment, container_name)
    prepared = not runtime_gaps(container or {}, resolver_cache_dir(namespace, dname))
    ro = serving.rollout_state(deployment)
    return TargetResult(dname, prepared, ro.done, ro.message)


def target_row(deployment: dict[str, Any], container_name: str, result: TargetResult) -> dict[str, Any]:
    """``status.targets[]`` for one target, with its pods' rows."""
    return {
        **outcome.target_row(deployment, container_name),
        "served": all(p.loaded for p in result.pods) if result.pods else None,
        "loading": runtime.RUNTIME, "prepared": result.prepared, "pods": [p.row() for p in result.pods],
    }


def conditions_for(served: str, results: list[TargetResult]) -> tuple[str, str, list[Condition]]:
    """(phase, message, [RolledOut, Serving]) from what every target's pods answered."""
    names = ", ".join(r.deployment for r in results)
    if not all(r.ready_to_load for r in results):
        pending = "; ".join(r.message for r in results if not r.ready_to_load)
        return serving.ROLLING_OUT, f"preparing for runtime loading: {pending}", [
            (cond.ROLLED_OUT, cond.FALSE, "RollingOut", pending),
            (cond.SERVING, cond.UNKNOWN, "WaitingForRollout", "adapters are loaded once the pods run the prepared template")]
    rolled = (cond.ROLLED_OUT, cond.TRUE, "RolledOut", "; ".join(r.message for r in results))
    pods = [(r.deployment, p) for r in results for p in r.pods]
    refused = [(d, p) for d, p in pods if p.error and not p.loaded]
    if refused:
        detail = "; ".join(f"{d}/{p.name}: HTTP {p.error.get('code')}: {p.error.get('message')}" for d, p in refused)
        message = (f"vLLM refused to load {served} at run time ({detail}); the server keeps serving the base model "
                   "and its other adapters")
        return cond.FAILED, message, [rolled, (cond.SERVING, cond.FALSE, LOAD_REFUSED, message)]
    if not pods or any(not r.pods for r in results):
        empty = ", ".join(r.deployment for r in results if not r.pods)
        return serving.ROLLED_OUT, f"no ready pods to load {served} into on {empty}", [
            rolled, (cond.SERVING, cond.UNKNOWN, "NoReadyPods", f"{empty}: no ready pods")]
    unreachable = [(d, p) for d, p in pods if p.unreachable]
    if unreachable:
        detail = "; ".join(f"{d}/{p.name}: {p.unreachable}" for d, p in unreachable)
        return serving.ROLLED_OUT, f"serving not confirmed: {detail}", [
            rolled, (cond.SERVING, cond.UNKNOWN, "ProbeFailed", detail)]
    if all(p.loaded for _, p in pods):
        message = f"{served} is loaded on {len(pods)} pod(s) of {names} (GET /v1/models lists it from golora's snapshot)"
        return serving.SERVING, message, [rolled, (cond.SERVING, cond.TRUE, LOADED, message)]
    missing = ", ".join(f"{d}/{p.name}" for d, p in pods if not p.loaded)
    return serving.ROLLED_OUT, f"{served} not loaded yet on {missing}", [
        rolled, (cond.SERVING, cond.FALSE, "NotLoaded", f"not listed on {missing}")]


def prepared(spec: AdapterServingSpec, targets: list[dict[str, Any]], written: list[dict[str, Any]],
             validated: Condition, adapter: dict[str, Any], results: list[TargetResult]) -> Outcome:
    """Every target prepared by golora's write (``written``: the Deployments as it left them):
    the status from what their pods answered."""
    names = outcome.target_names(spec, targets)
    phase, message, conds = conditions_for(spec.served_name, results)
    patched = (cond.PATCHED, cond.TRUE, PREPARED,
               f"{names}: prepared for runtime loading ({serving.STORE_MOUNT} mounted, runtime LoRA API and filesystem "
               f"resolver on); adding, updating or removing adapters does not restart the pods")
    rows = [target_row(d, spec.container_name, r) for d, r in zip(written, results, strict=True)]
    risks = [risk for risk in (serving.surge_risk(d) for d in written) if risk]
    return Outcome(phase, message, [validated, patched, *conds, outcome.surge_condition(risks)], rows, names, adapter)

