"""AdapterServing with ``spec.loading: Runtime``: the I/O around ``golora.builders.runtime_load``.

One reconcile (called from ``golora.handlers.adapterserving.compute`` once every check passed):

1. the resolver-directory Job writes this version's snapshot for every target (store-side);
2. each target is prepared once by golora's server-side apply (nothing is written to the pod
   template when it already is; the status says a restart is coming before it happens);
3. on every ready pod: ``GET /v1/models``; not listed -> ``POST /v1/load_lora_adapter``;
   listed from another snapshot (a retrained adapter) -> the same with ``load_inplace``.

Pods that become ready later come through ``golora.handlers.runtime_pods``; deletion unloads
the adapter from every pod (:func:`unload_everywhere`) and removes its resolver entry.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
import kubernetes

from .. import conditions as c
from .. import kube, vllm, vllm_api
from ..api.adapterserving import KIND, AdapterServingSpec
from ..api.loratraining import KIND as TRAINING_KIND
from ..builders import runtime as rt
from ..builders import runtime_load as rl
from ..builders import serving as sv
from ..builders import status as st
from ..builders.serving import outcome
from ..settings import current as current_settings
from . import adapterserving as asv

log = logging.getLogger("golora.adapterserving.runtime")

_resolver_done: set[tuple[str, str]] = set()  # (namespace, Job name) seen Complete


def version(ns: str, spec: AdapterServingSpec, facts: sv.Facts, generation: int | None) -> str:
    """A new id for a retrained adapter (the LoraTraining's generation, attempt, finish time)."""
    if spec.training_ref is not None:
        lt = kube.get_cr(TRAINING_KIND.plural, ns, spec.training_ref.name) or {}
        result = (lt.get("status") or {}).get("result") or {}
        return rt.version_of(facts.path, (lt.get("metadata") or {}).get("generation"), result.get("attempt"),
                             result.get("finishedAt"))
    return rt.version_of(facts.path, generation)


def _resolver_job(ns: str, name: str, generation: int | None, claim: str, path: str, wants: list[rl.Want],
                  remove: bool = False) -> st.JobState:
    obj = kube.get_cr(KIND.plural, ns, name) if not remove else None
    uid = (obj or {}).get("metadata", {}).get("uid", "")
    job = rl.build_resolver_job(namespace=ns, name=name, uid=uid, generation=generation or 1, claim=claim,
                                adapter_path=path, wants=wants, settings=current_settings(), remove=remove)
    key = (ns, job["metadata"]["name"])
    if not remove and key in _resolver_done:
        return st.JobState(c.SUCCEEDED, "JobComplete", "done")
    kube.ensure_worker_identity(ns)
    existing, _ = kube.create_or_adopt(job)
    state = st.job_state(existing if isinstance(existing, dict) else kube.client().sanitize_for_serialization(existing))
    if state.phase == c.SUCCEEDED:
        _resolver_done.add(key)
    return state


def _announce(ns: str, name: str, generation: int | None, status: dict[str, Any], message: str) -> None:
    """Say that the pods are about to restart, before golora's write makes them."""
    conds = c.set_condition(status.get("conditions"), c.PATCHED, c.UNKNOWN, rl.PREPARING, message, generation)
    kube.patch_cr_status(KIND.plural, ns, name, {"phase": asv.ROLLING_OUT, "message": message,
                                                 "conditions": conds, "observedGeneration": generation})
    status["conditions"] = conds
    obj = kube.get_cr(KIND.plural, ns, name)
    if obj is not None:
        kopf.event(obj, type="Normal", reason=rl.PREPARING, message=message)


def _base_url(ns: str, dep: dict[str, Any], container: dict[str, Any], pod: dict[str, Any]) -> str:
    template = current_settings().models_url
    return template.format(pod_ip=pod["status"]["podIP"], port=sv.container_port(container), namespace=ns,
                           deployment=dep["metadata"]["name"])


def load_on_pods(ns: str, dep: dict[str, Any], container: dict[str, Any], want: rl.Want,
                 old_rows: dict[str, dict[str, Any]]) -> list[rl.PodResult]:
    """Make every ready pod of ``dep`` serve ``want``; what each one answered."""
    golora_names = {a.name for a in sv.read_record(dep).adapters}
    out = []
    for pod in asv.ready_pods(ns, dep):
        meta = pod["metadata"]
        res = rl.PodResult(meta["name"], meta.get("uid", ""), pod["status"]["podIP"])
        old = old_rows.get(res.uid)
        url = _base_url(ns, dep, container, pod)
        listing = vllm_api.models(url)
        if not listing.ok:
            res.unreachable = f"GET {url}{vllm_api.MODELS}: {listing.code or 'no answer'} {listing.message}"[:500]
            out.append(res)
            continue
        cards = vllm_api.adapter_cards(listing.body)
        action = rl.pod_action(cards, want)
        if action == rl.NOTHING:
            res.loaded, res.path = True, want.load_path
            res.loaded_at = (old or {}).get("loadedAt") if (old or {}).get("path") == want.load_path else None
            res.loaded_at = res.loaded_at or c.now_rfc3339()
        elif rl.refused_before(old, want):
            res.error = old.get("lastError") if old else None
        else:
            answer = vllm_api.load(url, want.served, want.load_path, inplace=action == rl.INPLACE)
            if not answer.ok and action == rl.LOAD and vllm_api.ALREADY_LOADED in answer.message:
                # the resolver loaded it meanwhile (a request named it): replace with the snapshot
                answer = vllm_api.load(url, want.served, want.load_path, inplace=True)
            if answer.ok:
                res.loaded, res.path, res.loaded_at = True, want.load_path, c.now_rfc3339()
                log.info("loaded %s (%s) on pod %s/%s%s", want.served, want.load_path, ns, res.name,
                         " in place" if action == rl.INPLACE else "")
                cards[want.served] = {"id": want.served}
            else:
                res.error = {"adapter": want.served, "code": answer.code, "message": answer.message[:2000],
                             "at": c.now_rfc3339(), "path": want.load_path}
                log.warning("vLLM refused %s on pod %s/%s: %s %s", want.served, ns, res.name, answer.code,
                            answer.message)
        res.listed = sorted(n for n in cards if n in golora_names | {want.served})
        out.append(res)
    return out


def compute(ns: str, name: str, spec: AdapterServingSpec, status: dict[str, Any], generation: int | None,
            targets: list[dict[str, Any]], live: set[str], entry: sv.AdapterEntry, facts: sv.Facts,
            validated: tuple[str, str, str, str], adapter: dict[str, Any]) -> outcome.Outcome:
    ver = version(ns, spec, facts, generation)
    wants = [rl.want_for(ns, d, spec.container_name, spec.served_name, ver) for d in targets]
    names = outcome.target_names(spec, targets)
    bare = [{"name": d["metadata"]["name"], "loading": rt.RUNTIME} for d in targets]
    if any(w is None for w in wants):
        return outcome.not_patched(spec, targets, validated=validated, patched=(c.FALSE, sv.SERVED_MODEL_UNKNOWN),
                                   phase=c.FAILED, message="no model found in a target's command line",
                                   adapter=adapter, owner=name)
    job = _resolver_job(ns, name, generation, facts.claim, facts.path, [w for w in wants if w])
    if job.phase == c.FAILED:
        message = f"the resolver-directory Job failed: {job.message}"
        return outcome.Outcome(c.FAILED, message,
                               [validated, (c.PATCHED, c.FALSE, "ResolverDirectoryFailed", message)],
                               bare, names, adapter)
    if job.phase != c.SUCCEEDED:
        message = f"writing the adapter's snapshot for vLLM's resolver ({job.message})"
        return outcome.Outcome(c.PENDING, message,
                               [validated, (c.PATCHED, c.UNKNOWN, rl.PREPARING_RESOLVER, message)],
                               bare, names, adapter)

    results, rows, risks = [], [], []
    old_targets = {t.get("name"): t for t in status.get("targets") or []}
    for dep, want in zip(targets, wants, strict=True):
        assert want is not None
        dname = dep["metadata"]["name"]
        container, _ = sv.find_container(dep, spec.container_name)
        assert container is not None
        cache_dir = f"{sv.STORE_MOUNT}/{rt.resolver_dir(ns, dname)}"
        inv = vllm.parse_invocation(container.get("command"), container.get("args"))
        missing = rt.missing_for_runtime(container, cache_dir, lora_enabled=inv.lora_enabled,
                                         store_mount=sv.STORE_MOUNT)
        plan = sv.plan_deployment(dep, sv.entries_for(sv.read_record(dep), name, entry, live))
        if plan.changed and (missing or plan.args.get(spec.container_name) != (container.get("args") or [])):
            _announce(ns, name, generation, status,
                      f"Deployment {dname} is being prepared for runtime loading ({', '.join(missing) or 'new args'}):"
                      f" its pods restart once now; later adapter changes load without a restart")
        try:
            dep, plan, _written = asv.update_deployment(dep, name, entry, live)
        except asv.Refused as exc:
            return outcome.not_patched(spec, targets, validated=validated, patched=(c.FALSE, exc.problems[0].reason),
                                       phase=c.FAILED, message=str(exc), adapter=adapter, owner=name)
        container, _ = sv.find_container(dep, spec.container_name)
        assert container is not None
        inv = vllm.parse_invocation(container.get("command"), container.get("args"))
        prepared = not rt.missing_for_runtime(container, cache_dir, lora_enabled=inv.lora_enabled,
                                              store_mount=sv.STORE_MOUNT)
        ro = sv.rollout_state(dep)
        risk = sv.surge_risk(dep)
        if risk:
            risks.append(risk)
        result = rl.TargetResult(dname, prepared, ro.done, ro.message)
        if prepared and ro.done:
            old_rows = {p.get("uid"): p for p in (old_targets.get(dname) or {}).get("pods") or []}
            result.pods = load_on_pods(ns, dep, container, want, old_rows)
        results.append(result)
        rows.append({
            **outcome.target_row(dep, spec.container_name),
            "served": all(p.loaded for p in result.pods) if result.pods else None,
            "loading": rt.RUNTIME, "prepared": prepared, "pods": [p.row() for p in result.pods],
        })
    phase, message, conds = rl.conditions_for(spec.served_name, results)
    patched = (c.PATCHED, c.TRUE, "Prepared",
               f"{names}: prepared for runtime loading ({sv.STORE_MOUNT} mounted, runtime LoRA API and filesystem "
               f"resolver on); adding, updating or removing adapters does not restart the pods")
    return outcome.Outcome(phase, message, [validated, patched, *conds, outcome.surge_condition(risks)], rows, names,
                           adapter)


def unload_everywhere(ns: str, name: str, deployments: list[dict[str, Any]]) -> None:
    """Deleting a Runtime AdapterServing: unload its adapter from every ready pod of every
    Deployment that has it, and remove its resolver entries (a Job: the store is not the
    operator's to write)."""
    wants: list[rl.Want] = []
    path = None
    claim = None
    for dep in deployments:
        entry = next((a for a in sv.read_record(dep).adapters if a.owner == name and a.runtime), None)
        if entry is None:
            continue
        container, _ = sv.find_container(dep, entry.container)
        if container is None:
            continue
        for pod in asv.ready_pods(ns, dep):
            answer = vllm_api.unload(_base_url(ns, dep, container, pod), entry.name)
            if not answer.ok and vllm_api.NOT_FOUND not in answer.message:
                log.warning("unload of %s on pod %s/%s: %s %s", entry.name, ns, pod["metadata"]["name"],
                            answer.code, answer.message)
        want = rl.want_for(ns, dep, entry.container, entry.name, "x")
        if want is not None:
            wants.append(want)
        path, claim = entry.path, entry.claim
    if wants and path and claim:
        try:
            _resolver_job(ns, name, 1, claim, path, wants, remove=True)
        except kubernetes.client.ApiException as exc:
            log.warning("could not start the resolver-entry removal Job for %s/%s: %s", ns, name, exc)
