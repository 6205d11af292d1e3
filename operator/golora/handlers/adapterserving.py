"""AdapterServing handlers: kopf wiring, API reads and writes, locks. Every decision is a pure
function in ``golora.builders.serving`` (what the adapter is, whether to patch, the patch, the
status); this module gathers the facts those functions need and carries out what they say.

One reconcile computes everything from the world as it is (the AdapterServing, its
LoraTraining, the Deployments of the namespace) and writes the status through the API,
under a per-object lock, whatever triggered it:

- the AdapterServing itself (create / update / resume): ``validate`` (sets ``Accepted``);
- a targeted Deployment's events (it appeared, it rolled out, someone rewrote its args);
- the referenced LoraTraining's events (it succeeded, its adapter changed);
- a slow timer while rolled out but not yet seen in ``GET /v1/models``;
- deletion (finalizer): the adapter's entry is removed from every Deployment.

Settings (``golora.settings``): ``GOLORA_CLAIMS_ROOT`` (read adapter files in-process instead of
by a validation Job), ``GOLORA_MODELS_URL`` (the probe's URL template),
``GOLORA_SERVING_RECHECK_SECONDS`` (the timer's interval, read at import: kopf's decorator needs it).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kopf
import kubernetes
from pydantic import ValidationError

from .. import conditions as cond
from .. import kube, naming, vllm
from ..api import GROUP, VERSION
from ..api.adapterserving import KIND, AdapterServingSpec
from ..api.loratraining import KIND as TRAINING_KIND
from ..builders import serving
from ..builders.adapter_check import build_adapter_check_job
from ..builders.serving import facts as adapter_facts
from ..builders.serving import outcome, probe
from ..builders.status import job_state, serving_ready, status_patch
from ..settings import current as current_settings
from .common import accept

log = logging.getLogger("golora.adapterserving")

# Phases of an AdapterServing (besides Pending, Failed, Invalid): ``golora.builders.serving.outcome``.
ROLLING_OUT, ROLLED_OUT, SERVING = outcome.ROLLING_OUT, outcome.ROLLED_OUT, outcome.SERVING

PROBE_TIMEOUT = 3.0
RECHECK_SECONDS = current_settings().serving_recheck_seconds
APPLY_ATTEMPTS = 5


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


# --- The adapter's facts: read what the builders decide on ---------------------------------------

def resolve_adapter(ns: str, spec: AdapterServingSpec, name: str | None = None) -> serving.Facts | serving.Hold:
    """What is known about the adapter, and whether it may be served."""
    if spec.training_ref is not None:
        ref = spec.training_ref.name
        return adapter_facts.from_training(ns, spec, ref, kube.get_cr(TRAINING_KIND.plural, ns, ref))
    path, claim = spec.adapter_path or "", spec.storage.claim_name
    problem = adapter_facts.relative_path_problem(path)
    if problem:
        return serving.Hold(cond.FALSE, "InvalidAdapter", problem, cond.FAILED)
    root = current_settings().claims_root
    if root:
        return adapter_facts.from_files(path, claim, vllm.validate_adapter_dir(Path(root) / ns / claim / path))
    if name is None:
        return adapter_facts.unverifiable(path, claim)
    return _from_check_job(ns, name, path, claim)


def _from_check_job(ns: str, name: str, path: str, claim: str) -> serving.Facts | serving.Hold:
    """The operator cannot read a namespace's PVC: a validation Job reads the files with the
    trainer's own validator and reports ``status.adapterCheck``; until then, wait."""
    obj = kube.get_cr(KIND.plural, ns, name)
    if obj is None:
        return serving.Hold(cond.UNKNOWN, "ValidatingAdapter", "AdapterServing not found", cond.PENDING)
    generation = obj["metadata"]["generation"]
    job = build_adapter_check_job(namespace=ns, name=name, uid=obj["metadata"]["uid"], generation=generation,
                                  path=path, claim=claim, settings=current_settings())
    job_name = job["metadata"]["name"]
    reported = adapter_facts.from_check_report((obj.get("status") or {}).get("adapterCheck") or {}, path, claim,
                                               generation, job_name)
    if reported is not None:
        return reported
    kube.ensure_worker_identity(ns)
    existing, _ = kube.create_or_adopt(job)
    return adapter_facts.checking(job_name, path, claim,
                                  job_state(existing if isinstance(existing, dict) else _to_dict(existing)))


@kopf.on.event("batch", "v1", "jobs", labels={naming.LABEL_KIND: KIND.kind})
def follow_check_job(body: kopf.Body, **_: Any) -> None:
    """The validation Job moved: reconcile its AdapterServing (which reads the reported check)."""
    name = body["metadata"].get("labels", {}).get(naming.LABEL_NAME)
    if name and job_state(dict(body)).phase in (cond.SUCCEEDED, cond.FAILED):
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

    def __init__(self, problems: list[serving.Problem]):
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def update_deployment(deployment: dict[str, Any], owner: str, entry: serving.AdapterEntry | None,
                      live: set[str]) -> tuple[dict[str, Any], serving.Plan, bool]:
    """Make ``deployment`` serve ``entry`` for ``owner`` (None: remove owner's adapter).
    Server-side apply as ``golora`` with the read resourceVersion as a precondition; on a
    conflict, read again, check again and recompute. Returns (deployment now, plan, written)."""
    meta = deployment["metadata"]
    ns, name = meta["namespace"], meta["name"]
    with _lock("deployment", ns, name):
        for _ in range(APPLY_ATTEMPTS):
            record = serving.read_record(deployment)
            live = _confirm_live(ns, record.owners() - {owner}, live)
            if entry is not None:
                problems = serving.check_target(deployment, entry, live)
                if problems:
                    raise Refused(problems)
            plan = serving.plan_deployment(deployment, serving.entries_for(record, owner, entry, live))
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


def _pods(ns: str, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not labels:
        return []
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return [_to_dict(p) for p in kube.core().list_namespaced_pod(ns, label_selector=selector).items]


def ready_pods(ns: str, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    """The Deployment's pods that can answer (Ready, with an IP, not being deleted)."""
    return probe.ready_pods(_pods(ns, deployment))


def _server_log_line(ns: str, crash: serving.EngineCrash, container: str) -> str:
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


def _get_models(url: str) -> list[str]:
    with urllib.request.urlopen(url.rstrip("/") + "/v1/models", timeout=PROBE_TIMEOUT) as resp:  # noqa: S310
        return vllm.listed_model_ids(json.loads(resp.read().decode()))


def probe_serving(ns: str, deployment: dict[str, Any], container_name: str, served_name: str) -> serving.Probe:
    """Whether every ready pod lists ``served_name`` in GET /v1/models (None: nobody to ask)."""
    name = deployment["metadata"]["name"]
    container, _ = serving.find_container(deployment, container_name)
    port = serving.container_port(container or {})
    template = current_settings().models_url
    pods = ready_pods(ns, deployment) if probe.per_pod(template) else []
    urls = probe.urls(template, ns, name, port, pods)
    if not urls:
        return probe.no_ready_pods(name)
    listed: dict[str, list[str]] = {}
    for url in urls:
        try:
            listed[url] = _get_models(url)
        except (OSError, ValueError, urllib.error.URLError) as exc:
            return probe.unreachable(name, url, exc)
    return probe.verdict(name, served_name, listed)


# --- Reconcile ---------------------------------------------------------------------------------------

def compute(ns: str, name: str, spec: AdapterServingSpec, status: dict[str, Any] | None = None,
            generation: int | None = None) -> outcome.Outcome:
    """Gather the facts, patch what the builders say must be patched, and return how things stand."""
    status = status or {}
    deployments = _list_deployments(ns)
    targets, missing = serving.select_targets(spec, deployments)
    # Other AdapterServings with an entry on a target: only those that still exist count
    # (a GET each, usually none; entries of deleted ones are dropped on the next write).
    others = set().union(*(serving.read_record(d).owners() for d in targets)) - {name}
    live = _confirm_live(ns, others, {name})
    target_names = {d["metadata"]["name"] for d in targets}
    # Deployments this AdapterServing no longer targets lose its adapter.
    for dep in deployments:
        if dep["metadata"]["name"] not in target_names and name in serving.read_record(dep).owners():
            update_deployment(dep, name, None, live)

    facts = resolve_adapter(ns, spec, name)
    entry = outcome.decide(ns, name, spec, targets, missing, facts, status, generation)
    if isinstance(entry, outcome.Outcome):
        return entry
    assert isinstance(facts, serving.Facts)
    problems = [p for d in targets for p in serving.check_target(d, entry, live)]
    if problems:
        return outcome.check_failed(spec, name, targets, facts, problems)
    if entry.runtime:
        from . import runtime  # imports this module: loaded once both are

        return runtime.compute(ns, name, spec, status, generation, targets, live, entry, facts,
                               outcome.validated(facts), facts.status())

    # Every check passed on every target: patch them all.
    patched: list[dict[str, Any]] = []
    for dep in targets:
        try:
            dep, _plan, _written = update_deployment(dep, name, entry, live)
        except Refused as exc:  # lost a race: another writer changed the Deployment meanwhile
            return outcome.lost_race(spec, name, targets, facts, exc.problems,
                                     [d["metadata"]["name"] for d in patched])
        patched.append(dep)
    rows = [outcome.target_row(dep, spec.container_name) for dep in patched]
    rollouts = [serving.rollout_state(dep) for dep in patched]
    risks = [risk for risk in (serving.surge_risk(dep) for dep in patched) if risk]
    if all(r.done for r in rollouts):
        probes = [probe_serving(ns, dep, spec.container_name, spec.served_name) for dep in patched]
        return outcome.rolled_out(spec, targets, facts, rows, rollouts, probes, risks)
    for dep in patched:
        crash = serving.engine_crash(dep, _pods(ns, dep), spec.container_name)
        if crash is not None:
            return _roll_back(ns, name, spec, targets, live, crash, rows, facts, generation)
    return outcome.rolling_out(spec, targets, facts, rows, rollouts, risks)


def _roll_back(ns: str, name: str, spec: AdapterServingSpec, targets: list[dict[str, Any]], live: set[str],
               crash: serving.EngineCrash, rows: list[dict[str, Any]], facts: serving.Facts,
               generation: int | None) -> outcome.Outcome:
    """The patched server does not start: take golora's entry for this adapter out of every
    target again, so the Deployments roll back to the base model and the other adapters."""
    line = _server_log_line(ns, crash, spec.container_name)
    for dep in targets:
        update_deployment(_to_dict(apps().read_namespaced_deployment(dep["metadata"]["name"], ns)), name, None, live)
    return outcome.rejected(spec, targets, facts, outcome.rejection(facts, generation, crash, line), rows)


def reconcile(ns: str, name: str) -> None:
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
        result = compute(ns, name, spec, status, generation)
        extra = {"observedGeneration": generation, "targets": result.targets, "targetNames": result.target_names,
                 "adapter": result.adapter, "rejected": result.rejected}
        kube.write_status(KIND.plural, obj, status_patch(
            status, phase=result.phase, message=result.message, generation=generation,
            conditions=outcome.with_accepted(result), extra=extra, ready=serving_ready))


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
        if dname in ref["deployments"] or (ref["selector"] and serving.selector_matches(ref["selector"], labels)):
            names.add(ref["name"])
    return names


def _deployment_relevant(body: kopf.Body, adapterserving_refs: Any = None, **_: Any) -> bool:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return serving.ANNOTATION in annotations or bool(_servings_targeting(body, adapterserving_refs))


@kopf.on.event("apps", "v1", "deployments", when=_deployment_relevant)
def follow_deployment(body: kopf.Body, adapterserving_refs: Any, **_: Any) -> None:
    """A targeted Deployment appeared, changed, rolled out or went away."""
    ns = body["metadata"]["namespace"]
    names = _servings_targeting(body, adapterserving_refs) | serving.read_record(dict(body)).owners()
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
    gate = cond.get_condition(status.get("conditions"), cond.QUALITY_GATE_PASSED) or {}
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
def validate(spec: kopf.Spec, body: kopf.Body, **_: Any) -> None:
    """Validate the spec (``Accepted``), then reconcile (which writes Accepted=True with the rest)."""
    meta = body["metadata"]
    accepted = accept(KIND.plural, AdapterServingSpec, spec, body, write=False)
    if accepted.spec is None:  # Invalid: say so, patch nothing
        kube.write_status(KIND.plural, dict(body), accepted.patch(body.get("status"), meta.get("generation")))
        return
    reconcile(meta["namespace"], meta["name"])


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
            if name in serving.read_record(dep).owners():
                update_deployment(dep, name, None, live)
