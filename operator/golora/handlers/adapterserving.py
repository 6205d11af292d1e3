"""AdapterServing handlers: thin kopf glue around :func:`reconcile`; the decisions live in
``golora.builders.serving`` (pure) and ``golora.vllm``.

One reconcile computes everything from the world as it is (the AdapterServing, its
LoraTraining, the Deployments of the namespace) and writes the status through the API,
under a per-object lock, whatever triggered it:

- the AdapterServing itself (create / update / resume): ``validate`` (sets ``Accepted``);
- a targeted Deployment's events (it appeared, it rolled out, someone rewrote its args);
- the referenced LoraTraining's events (it succeeded, its adapter changed);
- a slow timer while rolled out but not yet seen in ``GET /v1/models``;
- deletion (finalizer): the adapter's entry is removed from every Deployment.

Settings (environment of the operator):

- ``GOLORA_CLAIMS_ROOT``: a directory where the operator can read PVC contents as
  ``<root>/<namespace>/<claimName>/`` (local development: the store on the operator's own disk): an explicit
  ``adapterPath`` is then checked in-process. Unset (in a cluster), a small validation Job
  checks the files on the store and reports ``status.adapterCheck``.
- ``GOLORA_MODELS_URL``: base URL template of the ``/v1/models`` probe, default
  ``http://{pod_ip}:{port}`` over the ready pods. A template without ``{pod_ip}`` is asked
  once per Deployment (``{namespace}``, ``{deployment}``, ``{port}`` are filled in).
- ``GOLORA_SERVING_RECHECK_SECONDS`` (default 30): the timer's interval.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import kopf
import kubernetes
from pydantic import ValidationError

from .. import conditions as c
from .. import kube, naming, vllm
from ..api import GROUP, VERSION
from ..api.adapterserving import KIND, AdapterServingSpec
from ..api.loratraining import KIND as TRAINING_KIND
from ..api.loratraining import REASON_QUALITY_GATE_FAILED
from ..builders import adapter_check as ac
from ..builders import serving as sv
from ..builders import status as st
from ..settings import current as current_settings
from .common import accept

log = logging.getLogger("golora.adapterserving")

# Phases of an AdapterServing (besides Pending, Failed, Invalid).
ROLLING_OUT = "RollingOut"
ROLLED_OUT = "RolledOut"
SERVING = "Serving"

CLAIMS_ROOT_ENV = "GOLORA_CLAIMS_ROOT"
MODELS_URL_ENV = "GOLORA_MODELS_URL"
RECHECK_ENV = "GOLORA_SERVING_RECHECK_SECONDS"
DEFAULT_MODELS_URL = "http://{pod_ip}:{port}"
PROBE_TIMEOUT = 3.0
RECHECK_SECONDS = float(os.environ.get(RECHECK_ENV) or 30)
APPLY_ATTEMPTS = 5
# The model server exited at start with the adapter in --lora-modules (Restart mode).
SERVER_REJECTED_ADAPTER = "ServerRejectedAdapter"


def apps() -> kubernetes.client.AppsV1Api:
    return kubernetes.client.AppsV1Api(kube.client())


def _to_dict(obj: Any) -> dict[str, Any]:
    return kube.client().sanitize_for_serialization(obj)


# --- Locks: one reconcile per AdapterServing, one writer per Deployment at a time ----------------

_locks: dict[tuple[str, ...], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(*key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


# --- The adapter's facts -----------------------------------------------------------------------

@dataclass(frozen=True)
class Facts:
    path: str
    rank: int
    base_model: str | None
    claim: str
    source: str
    verified: str
    reason: str


@dataclass(frozen=True)
class Hold:
    """The adapter cannot be served (yet): AdapterValidated ``status`` with reason/message."""

    status: str
    reason: str
    message: str
    phase: str


def _relative_path_problem(path: str) -> str | None:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or not path.strip("/"):
        return f"adapter path {path!r} is not a directory relative to the store"
    return None


def resolve_adapter(ns: str, spec: AdapterServingSpec, name: str | None = None) -> Facts | Hold:
    """What is known about the adapter, and whether it may be served."""
    if spec.training_ref is not None:
        return _from_training(ns, spec, spec.training_ref.name)
    return _from_files(ns, spec, spec.adapter_path or "", name)


def _from_training(ns: str, spec: AdapterServingSpec, name: str) -> Facts | Hold:
    lt = kube.get_cr(TRAINING_KIND.plural, ns, name)
    if lt is None:
        return Hold(c.UNKNOWN, "TrainingNotFound", f"LoraTraining {name} not found in namespace {ns}; waiting for it",
                    c.PENDING)
    status = lt.get("status") or {}
    phase = status.get("phase")
    result = status.get("result") or {}
    gate = c.get_condition(status.get("conditions"), c.QUALITY_GATE_PASSED)
    gate_ok = bool(gate and gate.get("status") == c.TRUE)
    gate_failed = bool(gate and gate.get("status") == c.FALSE) or \
        (result.get("failure") or {}).get("reason") == REASON_QUALITY_GATE_FAILED
    if phase == c.FAILED and not gate_failed:
        return Hold(c.FALSE, "TrainingFailed", f"LoraTraining {name} failed: {status.get('message') or 'no message'}",
                    c.FAILED)
    if phase not in (c.SUCCEEDED, c.FAILED):
        return Hold(c.UNKNOWN, "TrainingNotReady",
                    f"waiting for LoraTraining {name} to succeed (phase {phase or 'not set'})", c.PENDING)
    if spec.require_quality_gate and not gate_ok:
        gate_result = result.get("qualityGate") or {}
        detail = (gate or {}).get("message") or gate_result.get("message") or "no QualityGatePassed=True condition"
        reason = (gate or {}).get("reason") or gate_result.get("reason")
        detail = f"{reason}: {detail}" if reason and not detail.startswith(reason) else detail
        return Hold(c.FALSE, "QualityGateNotPassed",
                    f"LoraTraining {name} did not pass its quality gate ({detail}); golora serves only adapters "
                    f"that passed (requireQualityGate: false serves it anyway)", c.FAILED)
    path = result.get("adapterPath")
    if not path:
        return Hold(c.FALSE, "NoAdapter", f"LoraTraining {name} succeeded but reports no result.adapterPath", c.FAILED)
    problem = _relative_path_problem(path)
    if problem:
        return Hold(c.FALSE, "InvalidAdapter", f"LoraTraining {name}: {problem}", c.FAILED)
    lt_spec = lt.get("spec") or {}
    rank = result.get("rank") or (lt_spec.get("lora") or {}).get("r") or 16
    base_ref = lt_spec.get("baseModel") or {}
    base = result.get("baseModel") or base_ref.get("name") or base_ref.get("path")
    claim = (lt_spec.get("storage") or {}).get("claimName") or "golora-store"
    if claim != spec.storage.claim_name:
        return Hold(c.FALSE, "StorageMismatch",
                    f"LoraTraining {name} wrote its adapter to claim {claim!r}, but spec.storage.claimName is "
                    f"{spec.storage.claim_name!r}", c.FAILED)
    verified = ("the trainer validated the adapter files for vLLM (rank, modules_to_save, DoRA, bias, "
                "safetensors present) when it saved them; the operator did not re-read them")
    if not gate_ok:
        verified += "; the quality gate did NOT pass (served because requireQualityGate is false)"
    rank_source = "result.rank" if result.get("rank") else "spec.lora.r"
    return Facts(path, int(rank), base, claim, f"LoraTraining {name} status.result ({rank_source})", verified,
                 "TrainingSucceeded")


def _from_files(ns: str, spec: AdapterServingSpec, path: str, name: str | None) -> Facts | Hold:
    claim = spec.storage.claim_name
    problem = _relative_path_problem(path)
    if problem:
        return Hold(c.FALSE, "InvalidAdapter", problem, c.FAILED)
    root = os.environ.get(CLAIMS_ROOT_ENV)
    if not root:
        if name is None:
            return Hold(c.FALSE, "AdapterUnverifiable", f"adapterPath {path} on claim {claim} can only be "
                        "verified by a validation Job of a named AdapterServing", c.FAILED)
        return _from_check_job(ns, name, path, claim)
    check = vllm.validate_adapter_dir(Path(root) / ns / claim / path)
    if not check.ok or check.rank is None:
        return Hold(c.FALSE, "InvalidAdapter", f"adapterPath {path}: {check.message}", c.FAILED)
    return Facts(path, check.rank, check.base_model, claim, f"files at {path} on claim {claim}",
                 "the operator read adapter_config.json (rank, modules_to_save, DoRA, bias, base model) and checked "
                 "adapter_model.safetensors exists; tensor names were not inspected", "FilesValidated")


def _from_check_job(ns: str, name: str, path: str, claim: str) -> Facts | Hold:
    """The operator cannot read a namespace's PVC: a validation Job reads the files with the
    trainer's own validator and reports ``status.adapterCheck``; until then, wait."""
    obj = kube.get_cr(KIND.plural, ns, name)
    if obj is None:
        return Hold(c.UNKNOWN, "ValidatingAdapter", "AdapterServing not found", c.PENDING)
    generation = obj["metadata"]["generation"]
    check = (obj.get("status") or {}).get("adapterCheck") or {}
    job = ac.build_adapter_check_job(namespace=ns, name=name, uid=obj["metadata"]["uid"], generation=generation,
                                     path=path, claim=claim, settings=current_settings())
    job_name = job["metadata"]["name"]
    if (check.get("path"), check.get("claim"), check.get("generation")) == (path, claim, generation):
        if not check.get("ok") or not check.get("rank"):
            problems = "; ".join(check.get("problems") or []) or "no rank in adapter_config.json"
            return Hold(c.FALSE, "InvalidAdapter", f"adapterPath {path} on claim {claim}: {problems}", c.FAILED)
        return Facts(path, int(check["rank"]), check.get("baseModel"), claim,
                     f"validation Job {job_name} (files at {path} on claim {claim})",
                     "a validation Job ran the trainer's vLLM validator on the files (rank, modules_to_save, DoRA, "
                     "bias, base model, safetensors present)", "FilesValidated")
    kube.ensure_worker_identity(ns)
    existing, _ = kube.create_or_adopt(job)
    state = st.job_state(existing if isinstance(existing, dict) else kube.client().sanitize_for_serialization(existing))
    if state.phase == c.FAILED:
        return Hold(c.FALSE, "ValidationFailed", f"validation Job {job_name} failed without a result: {state.message}",
                    c.FAILED)
    return Hold(c.UNKNOWN, "ValidatingAdapter",
                f"validation Job {job_name} is checking adapterPath {path} on claim {claim}", c.PENDING)


@kopf.on.event("batch", "v1", "jobs", labels={naming.LABEL_KIND: KIND.kind})
def follow_check_job(body: kopf.Body, **_: Any) -> None:
    """The validation Job moved: reconcile its AdapterServing (which reads the reported check)."""
    name = body["metadata"].get("labels", {}).get(naming.LABEL_NAME)
    if name and st.job_state(dict(body)).phase in (c.SUCCEEDED, c.FAILED):
        _reconcile_quietly(body["metadata"]["namespace"], name)


# --- Deployments -------------------------------------------------------------------------------

def _list_deployments(ns: str) -> list[dict[str, Any]]:
    return [_to_dict(d) for d in apps().list_namespaced_deployment(ns).items]


def _confirm_live(ns: str, owners: set[str], live: set[str]) -> set[str]:
    """``live`` plus those of ``owners`` that exist now (created after ``live`` was listed)."""
    out = set(live)
    for owner in owners - live:
        obj = kube.get_cr(KIND.plural, ns, owner)
        if obj is not None and not obj["metadata"].get("deletionTimestamp"):
            out.add(owner)
    return out


class Refused(Exception):
    """A check failed on the Deployment as it is now (e.g. another AdapterServing took the
    name between golora's read and its write)."""

    def __init__(self, problems: list[sv.Problem]):
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def update_deployment(deployment: dict[str, Any], owner: str, entry: sv.AdapterEntry | None,
                      live: set[str]) -> tuple[dict[str, Any], sv.Plan, bool]:
    """Make ``deployment`` serve ``entry`` for ``owner`` (None: remove owner's adapter).
    Server-side apply as ``golora`` with the read resourceVersion as a precondition; on a
    conflict, read again, check again and recompute. Returns (deployment now, plan, written)."""
    meta = deployment["metadata"]
    ns, name = meta["namespace"], meta["name"]
    with _lock("deployment", ns, name):
        for _ in range(APPLY_ATTEMPTS):
            record = sv.read_record(deployment)
            live = _confirm_live(ns, record.owners() - {owner}, live)
            if entry is not None:
                problems = sv.check_target(deployment, entry, live)
                if problems:
                    raise Refused(problems)
            plan = sv.plan_deployment(deployment, sv.entries_for(record, owner, entry, live))
            if not plan.changed:
                return deployment, plan, False
            try:
                resp = apps().patch_namespaced_deployment(
                    name, ns, plan.body, field_manager=naming.FIELD_MANAGER, force=True,
                    _content_type="application/apply-patch+yaml")
            except kubernetes.client.ApiException as exc:
                if exc.status == 404:
                    raise kopf.TemporaryError(f"Deployment {name} disappeared", delay=2) from exc
                if exc.status != 409:
                    raise
                deployment = _to_dict(apps().read_namespaced_deployment(name, ns))
                continue
            log.info("patched Deployment %s/%s (generation %s): %s", ns, name, resp.metadata.generation,
                     ", ".join(a.name for a in plan.record.adapters) or "golora's part removed")
            return _to_dict(resp), plan, True
    raise kopf.TemporaryError(f"Deployment {name} kept changing while golora patched it", delay=2)


def _select_targets(spec: AdapterServingSpec, deployments: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
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
    found = sorted((d for d in deployments if sv.selector_matches(labels, d["metadata"].get("labels"))),
                   key=lambda d: d["metadata"]["name"])
    if not found:
        sel = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return [], f"no Deployment matches the selector {sel}"
    return found, ""


# --- The /v1/models probe ------------------------------------------------------------------------

def _pods(ns: str, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not labels:
        return []
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return [_to_dict(p) for p in kube.core().list_namespaced_pod(ns, label_selector=selector).items]


def _server_log_line(ns: str, crash: sv.EngineCrash, container: str) -> str:
    """Why vLLM stopped, from the failed container's log (the previous run if it restarted)."""
    for previous in (True, False):
        try:
            text = kube.core().read_namespaced_pod_log(crash.pod, ns, container=container, previous=previous,
                                                       tail_lines=200)
        except kubernetes.client.ApiException:
            continue
        line = vllm.last_meaningful_line(text or "")
        if line:
            return line
    return crash.message or f"exit code {crash.exit_code} ({crash.reason})"


def _ready_pods(ns: str, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    pods = _pods(ns, deployment)
    ready = []
    for pod in pods:
        status = pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp") or not status.get("podIP"):
            continue
        if c.is_true(status.get("conditions"), "Ready"):
            ready.append(pod)
    return ready


def _get_models(url: str) -> list[str]:
    with urllib.request.urlopen(url.rstrip("/") + "/v1/models", timeout=PROBE_TIMEOUT) as resp:  # noqa: S310
        return vllm.listed_model_ids(json.loads(resp.read().decode()))


def probe_serving(ns: str, deployment: dict[str, Any], container: dict[str, Any], served_name: str
                  ) -> tuple[bool | None, str]:
    """Whether every ready pod lists ``served_name`` in GET /v1/models (None: nobody to ask)."""
    name = deployment["metadata"]["name"]
    port = sv.container_port(container)
    template = os.environ.get(MODELS_URL_ENV) or DEFAULT_MODELS_URL
    if "{pod_ip}" in template:
        pods = _ready_pods(ns, deployment)
        if not pods:
            return None, f"{name}: no ready pods to ask GET /v1/models"
        urls = [template.format(pod_ip=p["status"]["podIP"], port=port, namespace=ns, deployment=name) for p in pods]
    else:
        urls = [template.format(port=port, namespace=ns, deployment=name)]
    missing = []
    for url in urls:
        try:
            ids = _get_models(url)
        except (OSError, ValueError, urllib.error.URLError) as exc:
            return None, f"{name}: GET {url}/v1/models failed: {exc}"
        if served_name not in ids:
            missing.append(url)
    if missing:
        return False, f"{name}: {served_name} not listed by GET /v1/models at {', '.join(missing)}"
    return True, f"{name}: {served_name} listed by GET /v1/models on {len(urls)} endpoint(s)"


# --- Reconcile -----------------------------------------------------------------------------------

@dataclass
class Outcome:
    phase: str
    message: str
    conditions: list[tuple[str, str, str, str]]
    targets: list[dict[str, Any]] = field(default_factory=list)
    target_names: str | None = None
    adapter: dict[str, Any] | None = None
    rejected: dict[str, Any] | None = None


def _target_names(spec: AdapterServingSpec, targets: list[dict[str, Any]]) -> str:
    if spec.targets.deployments:
        return ",".join(dict.fromkeys(spec.targets.deployments))
    return ",".join(d["metadata"]["name"] for d in targets)


def _adapter_status(facts: Facts) -> dict[str, Any]:
    return {"path": facts.path, "rank": facts.rank, "baseModel": facts.base_model, "source": facts.source,
            "verified": facts.verified, "loraModule": f"{sv.STORE_MOUNT}/{facts.path.strip('/')}"}


def _not_patched(spec: AdapterServingSpec, targets: list[dict[str, Any]], *, validated: tuple[str, str, str, str],
                 patched: tuple[str, str], phase: str, message: str, adapter: dict[str, Any] | None,
                 owner: str = "") -> Outcome:
    """Nothing is written to any Deployment: say why (and what an earlier patch left serving)."""
    kept = sorted({f"{d['metadata']['name']} ({a.path})" for d in targets
                   for a in sv.read_record(d).adapters if a.owner == owner})
    if kept:
        message += f"; the adapter patched earlier stays in place on {', '.join(kept)}"
    return Outcome(phase, message, [
        validated,
        (c.PATCHED, patched[0], patched[1], message),
        (c.ROLLED_OUT, c.UNKNOWN, "NotPatched", "nothing was patched"),
        (c.SERVING, c.UNKNOWN, "NotPatched", "nothing was patched"),
    ], [{"name": d["metadata"]["name"]} for d in targets], _target_names(spec, targets), adapter)


def compute(ns: str, name: str, spec: AdapterServingSpec, status: dict[str, Any] | None = None,
            generation: int | None = None) -> Outcome:
    """Validate, patch what must be patched, and say how things stand."""
    status = status or {}
    deployments = _list_deployments(ns)
    targets, missing = _select_targets(spec, deployments)
    # Other AdapterServings with an entry on a target: only those that still exist count
    # (a GET each, usually none; entries of deleted ones are dropped on the next write).
    others = set().union(*(sv.read_record(d).owners() for d in targets)) - {name}
    live = _confirm_live(ns, others, {name})
    target_names = {d["metadata"]["name"] for d in targets}
    # Deployments this AdapterServing no longer targets lose its adapter.
    for dep in deployments:
        if dep["metadata"]["name"] not in target_names and name in sv.read_record(dep).owners():
            update_deployment(dep, name, None, live)

    facts = resolve_adapter(ns, spec, name)
    if isinstance(facts, Hold):
        return _not_patched(spec, targets, validated=(c.ADAPTER_VALIDATED, facts.status, facts.reason, facts.message),
                            patched=(c.UNKNOWN if facts.status == c.UNKNOWN else c.FALSE, "AdapterNotValidated"),
                            phase=facts.phase, message=facts.message, adapter=None, owner=name)
    adapter = _adapter_status(facts)
    validated = (c.ADAPTER_VALIDATED, c.TRUE, facts.reason,
                 f"rank {facts.rank}, base {facts.base_model or 'unknown'}, from {facts.source}; {facts.verified}")
    rejected = status.get("rejected") or {}
    if rejected and (rejected.get("path"), rejected.get("source"), rejected.get("generation")) == \
            (facts.path, facts.source, generation):
        return _rejected(spec, targets, validated, adapter, rejected, [{"name": d["metadata"]["name"]} for d in targets])

    def refuse(reason: str, message: str, phase: str = c.FAILED) -> Outcome:
        return _not_patched(spec, targets, validated=validated, patched=(c.FALSE, reason), phase=phase,
                            message=message, adapter=adapter, owner=name)

    top = vllm.ALLOWED_MAX_LORA_RANKS[-1]
    if facts.rank > top:
        return _not_patched(spec, targets, validated=(c.ADAPTER_VALIDATED, c.FALSE, "RankTooHigh",
                                                      f"adapter rank {facts.rank} exceeds vLLM's maximum "
                                                      f"--max-lora-rank {top}"),
                            patched=(c.FALSE, "AdapterNotValidated"), phase=c.FAILED,
                            message=f"adapter rank {facts.rank} exceeds vLLM's maximum --max-lora-rank {top}",
                            adapter=adapter, owner=name)
    explicit_rank = spec.vllm.max_lora_rank if isinstance(spec.vllm.max_lora_rank, int) else None
    if explicit_rank is not None and explicit_rank < facts.rank:
        return refuse("RankAboveMaxLoraRank", f"adapter rank {facts.rank} is above spec.vllm.maxLoraRank "
                      f"{explicit_rank}: vLLM would refuse to start; raise maxLoraRank or set it to auto")
    if missing:
        return refuse("TargetNotFound", f"{missing} in namespace {ns}; patched as soon as it appears", c.PENDING)

    entry = sv.AdapterEntry(
        name=spec.served_name, owner=name, path=facts.path, rank=facts.rank, base_model=facts.base_model,
        claim=facts.claim, container=spec.container_name, max_lora_rank=explicit_rank,
        max_loras=spec.vllm.max_loras if isinstance(spec.vllm.max_loras, int) else None,
        max_cpu_loras=spec.vllm.max_cpu_loras if isinstance(spec.vllm.max_cpu_loras, int) else None,
        loading=spec.loading)
    problems = [p for d in targets for p in sv.check_target(d, entry, live)]
    if problems:
        return refuse(problems[0].reason, "; ".join(p.message for p in problems) + " (nothing was patched)")
    if entry.runtime:
        from . import runtime  # imports this module: loaded once both are

        return runtime.compute(ns, name, spec, status, generation, targets, live, entry, facts, validated, adapter)

    # Every check passed on every target: patch them all.
    rows: list[dict[str, Any]] = []
    rollouts, risks, probes = [], [], []
    for dep in targets:
        try:
            dep, plan, written = update_deployment(dep, name, entry, live)
        except Refused as exc:  # lost a race: another writer changed the Deployment meanwhile
            return refuse(exc.problems[0].reason, str(exc) + (" (patched so far: " + ", ".join(
                r["name"] for r in rows) + ")" if rows else " (nothing was patched)"))
        container, _ = sv.find_container(dep, spec.container_name)
        assert container is not None
        inv = sv.parse_invocation(container.get("command"), container.get("args"))
        ro = sv.rollout_state(dep)
        rollouts.append(ro)
        risk = sv.surge_risk(dep)
        if risk:
            risks.append(risk)
        rows.append({
            "name": dep["metadata"]["name"], "container": spec.container_name,
            "servedModel": (inv.served_model_names or [None])[0], "patchedGeneration": dep["metadata"].get("generation"),
            "observedGeneration": ro.observed_generation, "replicas": ro.replicas,
            "updatedReplicas": ro.updated_replicas, "availableReplicas": ro.available_replicas,
            "rolledOut": ro.done, "served": None, "maxLoraRank": inv.int_value(vllm.FLAG_MAX_LORA_RANK),
            "adapters": sorted(a.name for a in sv.read_record(dep).adapters), "message": ro.message,
        })
        probes.append((dep, container))
    conditions = [validated, (c.PATCHED, c.TRUE, "Patched",
                              f"{spec.served_name} is in --lora-modules of {', '.join(r['name'] for r in rows)}")]
    if all(r.done for r in rollouts):
        conditions.append((c.ROLLED_OUT, c.TRUE, "RolledOut", "; ".join(r.message for r in rollouts)))
        served_all: bool | None = True
        msgs = []
        for row, (dep, container) in zip(rows, probes, strict=True):
            served, msg = probe_serving(ns, dep, container, spec.served_name)
            row["served"] = served
            row["message"] = msg
            msgs.append(msg)
            if served is None:
                served_all = None if served_all is not False else False
            elif not served:
                served_all = False
        if served_all:
            conditions.append((c.SERVING, c.TRUE, "Listed", "; ".join(msgs)))
            phase, message = SERVING, f"{spec.served_name} is served by {', '.join(r['name'] for r in rows)}"
        elif served_all is False:
            conditions.append((c.SERVING, c.FALSE, "NotListed", "; ".join(msgs)))
            phase, message = ROLLED_OUT, "rolled out, but GET /v1/models does not list the adapter yet"
        else:
            reason = "NoReadyPods" if all("no ready pods" in m for m in msgs if m) else "ProbeFailed"
            conditions.append((c.SERVING, c.UNKNOWN, reason, "; ".join(msgs)))
            phase, message = ROLLED_OUT, "rolled out; serving not confirmed: " + "; ".join(msgs)
    else:
        for dep, _container in probes:
            crash = sv.engine_crash(dep, _pods(ns, dep), spec.container_name)
            if crash is not None:
                return _roll_back(ns, name, spec, targets, live, crash, validated, rows, adapter, facts, generation)
        pending = [r.message for r in rollouts if not r.done]
        conditions.append((c.ROLLED_OUT, c.FALSE, "RollingOut", "; ".join(pending)))
        conditions.append((c.SERVING, c.UNKNOWN, "WaitingForRollout", "GET /v1/models is asked once rolled out"))
        phase, message = ROLLING_OUT, "patched; rolling out: " + "; ".join(pending)
    if risks:
        conditions.append((c.GPU_SURGE_RISK, c.TRUE, "RollingUpdateWithSurge", "; ".join(risks)))
    else:
        conditions.append((c.GPU_SURGE_RISK, c.FALSE, "NoSurgeRisk",
                           "Recreate, maxSurge 0, or no GPU requested: a rollout cannot wait for a busy GPU"))
    return Outcome(phase, message, conditions, rows, _target_names(spec, targets), adapter)


def _roll_back(ns: str, name: str, spec: AdapterServingSpec, targets: list[dict[str, Any]], live: set[str],
               crash: sv.EngineCrash, validated: tuple[str, str, str, str], rows: list[dict[str, Any]],
               adapter: dict[str, Any], facts: Facts, generation: int | None) -> Outcome:
    """The patched server does not start: take golora's entry for this adapter out of every
    target again, so the Deployments roll back to the base model and the other adapters."""
    line = _server_log_line(ns, crash, spec.container_name)
    for dep in targets:
        update_deployment(_to_dict(apps().read_namespaced_deployment(dep["metadata"]["name"], ns)), name, None, live)
    rejected = {"path": facts.path, "source": facts.source, "generation": generation, "pod": crash.pod,
                "message": line[:1000]}
    return _rejected(spec, targets, validated, adapter, rejected, rows)


def _rejected(spec: AdapterServingSpec, targets: list[dict[str, Any]], validated: tuple[str, str, str, str],
              adapter: dict[str, Any], rejected: dict[str, Any], rows: list[dict[str, Any]]) -> Outcome:
    """Failed: the server refused the adapter, and golora took it out again. It stays out
    until the adapter (path, training) or the spec changes."""
    line = rejected.get("message") or ""
    message = (f"vLLM refused to start with adapter {rejected.get('path')} (pod {rejected.get('pod')}): {line}; "
               "golora took the adapter out again, the server rolls back to the base model and the other "
               "adapters; it is patched in again only when the adapter or this spec changes")
    return Outcome(c.FAILED, message, [
        validated,
        (c.PATCHED, c.FALSE, SERVER_REJECTED_ADAPTER, message),
        (c.ROLLED_OUT, c.FALSE, SERVER_REJECTED_ADAPTER, "rolled back: the adapter's entry was removed"),
        (c.SERVING, c.FALSE, SERVER_REJECTED_ADAPTER, line),
    ], rows, _target_names(spec, targets), adapter, rejected)


def reconcile(ns: str, name: str, *, announced_phase: str | None = None) -> None:
    """Bring one AdapterServing and its Deployments in line; write its status if it changed."""
    with _lock("adapterserving", ns, name):
        obj = kube.get_cr(KIND.plural, ns, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        try:
            spec = AdapterServingSpec.model_validate(obj.get("spec") or {})
        except ValidationError:
            return  # Accepted=False was recorded by ``validate``; nothing is patched
        generation = obj["metadata"].get("generation")
        status = obj.get("status") or {}
        outcome = compute(ns, name, spec, status, generation)
        conditions = [(c.ACCEPTED, c.TRUE, "Valid", "spec is valid"), *outcome.conditions]
        extra = {"observedGeneration": generation, "targets": outcome.targets, "targetNames": outcome.target_names,
                 "adapter": outcome.adapter, "rejected": outcome.rejected}
        patch = st.status_patch(status, phase=outcome.phase, message=outcome.message, generation=generation,
                                conditions=conditions, extra=extra, ready=st.serving_ready)
        if patch:
            kube.patch_cr_status(KIND.plural, ns, name, patch)
        old_phase = announced_phase or status.get("phase")
        if outcome.phase != old_phase:
            warning = outcome.phase in (c.FAILED, c.INVALID)
            kopf.event(obj, type="Warning" if warning else "Normal", reason=outcome.phase, message=outcome.message)


def _reconcile_quietly(ns: str, name: str) -> None:
    """For event-driven triggers (kopf does not retry event handlers): log and move on; the
    next event or the timer tries again."""
    try:
        reconcile(ns, name)
    except (kopf.TemporaryError, kubernetes.client.ApiException) as exc:
        log.warning("reconcile of AdapterServing %s/%s failed, will retry on the next event: %s", ns, name, exc)


# --- kopf handlers ---------------------------------------------------------------------------------

@kopf.index(GROUP, VERSION, KIND.plural)
def adapterserving_refs(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[str, dict[str, Any]]:
    """Per namespace: each AdapterServing's targets and training (to route other events)."""
    targets = spec.get("targets") or {}
    return {namespace: {
        "name": name,
        "deployments": tuple(targets.get("deployments") or ()),
        "selector": dict((targets.get("selector") or {}).get("matchLabels") or {}),
        "training": (spec.get("trainingRef") or {}).get("name"),
    }}


def _servings_targeting(body: kopf.Body, refs: Any) -> set[str]:
    meta = body.get("metadata") or {}
    ns, dname, labels = meta.get("namespace"), meta.get("name"), meta.get("labels") or {}
    names = set()
    for ref in list(refs.get(ns, [])) if refs is not None else []:
        if dname in ref["deployments"] or (ref["selector"] and sv.selector_matches(ref["selector"], labels)):
            names.add(ref["name"])
    return names


def _deployment_relevant(body: kopf.Body, adapterserving_refs: Any = None, **_: Any) -> bool:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return sv.ANNOTATION in annotations or bool(_servings_targeting(body, adapterserving_refs))


@kopf.on.event("apps", "v1", "deployments", when=_deployment_relevant)
def follow_deployment(body: kopf.Body, adapterserving_refs: Any, **_: Any) -> None:
    """A targeted Deployment appeared, changed, rolled out or went away."""
    ns = body["metadata"]["namespace"]
    names = _servings_targeting(body, adapterserving_refs) | sv.read_record(dict(body)).owners()
    for name in sorted(names):
        _reconcile_quietly(ns, name)


_training_seen: dict[tuple[str, str], tuple[Any, ...]] = {}


def _training_referenced(body: kopf.Body, adapterserving_refs: Any = None, **_: Any) -> bool:
    meta = body.get("metadata") or {}
    refs = adapterserving_refs.get(meta.get("namespace"), []) if adapterserving_refs is not None else []
    return any(ref["training"] == meta.get("name") for ref in refs)


@kopf.on.event(GROUP, VERSION, TRAINING_KIND.plural, when=_training_referenced)
def follow_training(body: kopf.Body, type: str | None, adapterserving_refs: Any, **_: Any) -> None:
    """The referenced LoraTraining finished, failed, or produced a new adapter."""
    meta, status = body["metadata"], body.get("status") or {}
    ns, tname = meta["namespace"], meta["name"]
    gate = c.get_condition(status.get("conditions"), c.QUALITY_GATE_PASSED) or {}
    result = status.get("result") or {}
    fingerprint = (type == "DELETED", meta.get("generation"), status.get("phase"), gate.get("status"),
                   result.get("adapterPath"), result.get("rank"), result.get("baseModel"),
                   result.get("attempt"), result.get("finishedAt"))  # a retrain: same path, new files
    key = (ns, tname)
    if _training_seen.get(key) == fingerprint:
        return  # progress only
    # A snapshot: kopf updates the index while the reconciles below run.
    for ref in list(adapterserving_refs.get(ns, [])):
        if ref["training"] == tname:
            _reconcile_quietly(ns, ref["name"])
    _training_seen[key] = fingerprint


def _needs_recheck(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") in (ROLLING_OUT, ROLLED_OUT)  # RollingOut: also to catch a crash-looping server


@kopf.timer(GROUP, VERSION, KIND.plural, interval=RECHECK_SECONDS, initial_delay=RECHECK_SECONDS,
            when=_needs_recheck)
def recheck(namespace: str, name: str, **_: Any) -> None:
    """Rolled out but not yet listed by GET /v1/models: ask again now and then."""
    reconcile(namespace, name)


@kopf.on.resume(GROUP, VERSION, KIND.plural)
@kopf.on.create(GROUP, VERSION, KIND.plural)
@kopf.on.update(GROUP, VERSION, KIND.plural)
def validate(spec: kopf.Spec, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Validate the spec (``Accepted``), then reconcile."""
    scratch = kopf.Patch()
    parsed = accept(KIND.spec, spec, body, scratch)
    if parsed is None:
        for key, value in scratch.status.items():
            patch.status[key] = value
        return
    meta = body["metadata"]
    reconcile(meta["namespace"], meta["name"], announced_phase=scratch.status.get("phase"))


@kopf.on.delete(GROUP, VERSION, KIND.plural)
def remove(body: kopf.Body, **_: Any) -> None:
    """Remove exactly this adapter from every Deployment that serves it (rank and
    max-loras are recomputed from the adapters that remain)."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    with _lock("adapterserving", ns, name):
        live: set[str] = set()  # update_deployment confirms the other owners it meets
        deployments = _list_deployments(ns)
        from . import runtime

        runtime.unload_everywhere(ns, name, deployments)
        for dep in deployments:
            if name in sv.read_record(dep).owners():
                update_deployment(dep, name, None, live)
