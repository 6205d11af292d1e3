"""AdapterServing handlers: kopf wiring, API reads and writes, locks. Every decision is a pure
function in ``golora.builders.serving`` (what the adapter is, whether to patch, the patch, the
status, which AdapterServings an event concerns); this module gathers the facts those functions
need and carries out what they say. Writing Deployments and asking their pods is
``golora.handlers.deployments``; ``loading: Runtime`` is ``golora.handlers.runtime``.

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

import logging
from pathlib import Path
from typing import Any

import kopf
import kubernetes
from pydantic import ValidationError

from .. import kube, naming, vllm
from ..api import GROUP, VERSION
from ..api.adapterserving import KIND, AdapterServingSpec
from ..api.loratraining import KIND as TRAINING_KIND
from ..builders import serving
from ..builders.adapter_check import build_adapter_check_job
from ..builders.serving import events, outcome, targets
from ..builders.serving import facts as adapter_facts
from ..builders.status import job_state
from ..settings import current as current_settings
from . import deployments as dep_io
from . import runtime
from .common import accept

log = logging.getLogger("golora.adapterserving")

RECHECK_SECONDS = current_settings().serving_recheck_seconds


# --- The adapter's facts: read what the builders decide on ---------------------------------------

def resolve_adapter(ns: str, spec: AdapterServingSpec, name: str | None = None) -> serving.Facts | serving.Hold:
    """What is known about the adapter, and whether it may be served."""
    if spec.training_ref is not None:
        ref = spec.training_ref.name
        return adapter_facts.from_training(ns, spec, ref, kube.get_cr(TRAINING_KIND.plural, ns, ref))
    path, claim = spec.adapter_path or "", spec.storage.claim_name
    invalid = adapter_facts.invalid_path(path)
    if invalid is not None:
        return invalid
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
        return adapter_facts.serving_gone()
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
    return adapter_facts.checking(job_name, path, claim, job_state(dep_io.to_dict(existing)))


@kopf.on.event("batch", "v1", "jobs", labels={naming.LABEL_KIND: KIND.kind})
def follow_check_job(body: kopf.Body, **_: Any) -> None:
    """The validation Job moved: reconcile its AdapterServing (which reads the reported check)."""
    name = events.finished_check_job_owner(dict(body))
    if name:
        _reconcile_quietly(body["metadata"]["namespace"], name)


# --- Reconcile ---------------------------------------------------------------------------------------

def compute(ns: str, name: str, spec: AdapterServingSpec, status: dict[str, Any] | None = None,
            generation: int | None = None) -> outcome.Outcome:
    """Gather the facts, patch what the builders say must be patched, and return how things stand."""
    status = status or {}
    deployments = dep_io.list_deployments(ns)
    chosen, missing = serving.select_targets(spec, deployments)
    # Other AdapterServings with an entry on a target: only those that still exist count
    # (a GET each, usually none; entries of deleted ones are dropped on the next write).
    live = dep_io.confirm_live(ns, targets.other_owners(chosen, name), {name})
    for dep in targets.untargeted(deployments, chosen, name):  # no longer targeted: its adapter goes
        dep_io.update_deployment(dep, name, None, live)

    facts = resolve_adapter(ns, spec, name)
    entry = outcome.decide(ns, name, spec, chosen, missing, facts, status, generation)
    if isinstance(entry, outcome.Outcome):
        return entry
    assert isinstance(facts, serving.Facts)
    problems = [p for d in chosen for p in serving.check_target(d, entry, live)]
    if problems:
        return outcome.check_failed(spec, name, chosen, facts, problems)
    if entry.runtime:
        return runtime.compute(ns, name, spec, status, generation, chosen, live, entry, facts)

    # Every check passed on every target: patch them all.
    written: list[dict[str, Any]] = []
    for dep in chosen:
        try:
            dep, _plan, _written = dep_io.update_deployment(dep, name, entry, live)
        except dep_io.Refused as exc:  # lost a race: another writer changed the Deployment meanwhile
            return outcome.lost_race(spec, name, chosen, facts, exc.problems, [d["metadata"]["name"] for d in written])
        written.append(dep)
    state = outcome.patched(written, spec.container_name)
    if state.rolled_out:
        probes = [dep_io.probe_serving(ns, dep, spec.container_name, spec.served_name) for dep in written]
        return outcome.rolled_out(spec, chosen, facts, state.rows, state.rollouts, probes, state.risks)
    for dep in written:
        crash = serving.engine_crash(dep, dep_io.pods(ns, dep), spec.container_name)
        if crash is not None:
            return _roll_back(ns, name, spec, chosen, live, crash, state.rows, facts, generation)
    return outcome.rolling_out(spec, chosen, facts, state.rows, state.rollouts, state.risks)


def _roll_back(ns: str, name: str, spec: AdapterServingSpec, chosen: list[dict[str, Any]], live: set[str],
               crash: serving.EngineCrash, rows: list[dict[str, Any]], facts: serving.Facts,
               generation: int | None) -> outcome.Outcome:
    """The patched server does not start: take golora's entry for this adapter out of every
    target again, so the Deployments roll back to the base model and the other adapters."""
    line = dep_io.server_log_line(ns, crash, spec.container_name)
    for dep in chosen:
        now = dep_io.to_dict(dep_io.apps().read_namespaced_deployment(dep["metadata"]["name"], ns))
        dep_io.update_deployment(now, name, None, live)
    return outcome.rejected(spec, chosen, facts, outcome.rejection(facts, generation, crash, line), rows)


def reconcile(ns: str, name: str) -> None:
    """Bring one AdapterServing and its Deployments in line; write its status if it changed."""
    with dep_io.lock("adapterserving", ns, name):
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
        kube.write_status(KIND.plural, obj, outcome.status_update(status, result, generation))


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
    return {namespace: events.ref(name, dict(spec))}


def _deployment_relevant(body: kopf.Body, adapterserving_refs: Any = None, **_: Any) -> bool:
    return events.deployment_relevant(dict(body), adapterserving_refs)


@kopf.on.event("apps", "v1", "deployments", when=_deployment_relevant)
def follow_deployment(body: kopf.Body, adapterserving_refs: Any, **_: Any) -> None:
    """A targeted Deployment appeared, changed, rolled out or went away."""
    for name in events.for_deployment(dict(body), adapterserving_refs):
        _reconcile_quietly(body["metadata"]["namespace"], name)


_training_seen: dict[tuple[str, str], tuple[Any, ...]] = {}


def _training_referenced(body: kopf.Body, adapterserving_refs: Any = None, **_: Any) -> bool:
    return bool(events.for_training(dict(body), adapterserving_refs))


@kopf.on.event(GROUP, VERSION, TRAINING_KIND.plural, when=_training_referenced)
def follow_training(body: kopf.Body, type: str | None, adapterserving_refs: Any, **_: Any) -> None:
    """The referenced LoraTraining finished, failed, or produced a new adapter."""
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    fingerprint = events.training_fingerprint(dict(body), type)
    if _training_seen.get(key) == fingerprint:
        return  # progress only
    for name in events.for_training(dict(body), adapterserving_refs):
        _reconcile_quietly(key[0], name)
    _training_seen[key] = fingerprint


def _needs_recheck(status: kopf.Status, **_: Any) -> bool:
    return events.needs_recheck(status.get("phase"))


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
    with dep_io.lock("adapterserving", ns, name):
        live: set[str] = set()  # update_deployment confirms the other owners it meets
        deployments = dep_io.list_deployments(ns)
        runtime.unload_everywhere(ns, name, deployments)
        for dep in targets.carrying(deployments, name):
            dep_io.update_deployment(dep, name, None, live)
