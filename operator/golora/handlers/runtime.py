"""AdapterServing with ``spec.loading: Runtime``: the I/O around ``golora.builders.runtime_load``
(what to do on each pod) and ``golora.builders.runtime_status`` (what it all means).

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

from .. import conditions as cond
from .. import kube, vllm
from ..api.adapterserving import KIND, AdapterServingSpec
from ..api.loratraining import KIND as TRAINING_KIND
from ..builders import runtime_load, runtime_status, serving
from ..builders import status as job_status
from ..builders.serving import outcome, probe
from ..settings import current as current_settings
from ..vllm import http as vllm_http
from . import deployments as dep_io

log = logging.getLogger("golora.adapterserving.runtime")

_resolver_done: set[tuple[str, str]] = set()  # (namespace, Job name) seen Complete


def _resolver_job(ns: str, name: str, generation: int | None, claim: str, path: str, wants: list[runtime_load.Want],
                  remove: bool = False) -> job_status.JobState:
    obj = kube.get_cr(KIND.plural, ns, name) if not remove else None
    uid = (obj or {}).get("metadata", {}).get("uid", "")
    job = runtime_load.build_resolver_job(namespace=ns, name=name, uid=uid, generation=generation or 1, claim=claim,
                                adapter_path=path, wants=wants, settings=current_settings(), remove=remove)
    key = (ns, job["metadata"]["name"])
    if not remove and key in _resolver_done:
        return job_status.JobState(cond.SUCCEEDED, "JobComplete", "done")
    kube.ensure_worker_identity(ns)
    existing, _ = kube.create_or_adopt(job)
    state = job_status.job_state(dep_io.to_dict(existing))
    if state.phase == cond.SUCCEEDED:
        _resolver_done.add(key)
    return state


def _announce(ns: str, name: str, generation: int | None, status: dict[str, Any], message: str) -> None:
    """Say that the pods are about to restart, before golora's write makes them."""
    patch = runtime_status.announce_patch(status, generation, message)
    kube.patch_cr_status(KIND.plural, ns, name, patch)
    status["conditions"] = patch["conditions"]
    obj = kube.get_cr(KIND.plural, ns, name)
    if obj is not None:
        kopf.event(obj, type="Normal", reason=runtime_status.PREPARING, message=message)


def _pod_urls(ns: str, dep: dict[str, Any], container: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Every ready pod of ``dep`` with its base URL."""
    template, port = current_settings().models_url, serving.container_port(container)
    return [(pod, probe.pod_url(template, ns, dep["metadata"]["name"], port, pod)) for pod in dep_io.ready_pods(ns, dep)]


def load_on_pods(ns: str, dep: dict[str, Any], container: dict[str, Any], want: runtime_load.Want,
                 old_rows: dict[str, dict[str, Any]]) -> list[runtime_load.PodResult]:
    """Make every ready pod of ``dep`` serve ``want``; what each one answered."""
    golora_names = {a.name for a in serving.read_record(dep).adapters}
    out = []
    for pod, url in _pod_urls(ns, dep, container):
        res = runtime_load.pod_result(pod)
        listing = vllm_http.models(url)
        if not listing.ok:
            out.append(runtime_load.unreachable(res, url, listing.code, listing.message))
            continue
        cards = vllm.adapter_cards(listing.body)
        res, action = runtime_load.settle(res, cards, want, old_rows.get(res.uid), cond.now_rfc3339())
        if action is not None:
            answer = vllm_http.load(url, want.served, want.load_path, inplace=action == runtime_load.INPLACE)
            if runtime_load.retry_in_place(action, answer.ok, answer.message):
                answer = vllm_http.load(url, want.served, want.load_path, inplace=True)
            res = runtime_load.load_answered(res, want, answer.ok, answer.code, answer.message, cond.now_rfc3339())
            if answer.ok:
                log.info("loaded %s (%s) on pod %s/%s%s", want.served, want.load_path, ns, res.name,
                         " in place" if action == runtime_load.INPLACE else "")
            else:
                log.warning("vLLM refused %s on pod %s/%s: %s %s", want.served, ns, res.name, answer.code,
                            answer.message)
        out.append(runtime_load.with_listed(res, cards, golora_names, want))
    return out


def compute(ns: str, name: str, spec: AdapterServingSpec, status: dict[str, Any], generation: int | None,
            targets: list[dict[str, Any]], live: set[str], entry: serving.AdapterEntry, facts: serving.Facts) -> outcome.Outcome:
    validated, adapter = outcome.validated(facts), facts.status()
    training = kube.get_cr(TRAINING_KIND.plural, ns, spec.training_ref.name) if spec.training_ref else None
    ver = runtime_status.adapter_version(spec, facts.path, generation, training)
    wants = [runtime_load.want_for(ns, d, spec.container_name, spec.served_name, ver) for d in targets]
    if any(w is None for w in wants):
        return runtime_status.no_model(spec, name, targets, validated, adapter)
    job = _resolver_job(ns, name, generation, facts.claim, facts.path, [w for w in wants if w])
    waiting = runtime_status.resolver_wait(job, spec, targets, validated, adapter)
    if waiting is not None:
        return waiting

    results, written = [], []
    for dep, want in zip(targets, wants, strict=True):
        assert want is not None
        notice = runtime_status.restart_notice(ns, dep, name, entry, live, spec.container_name)
        if notice:
            _announce(ns, name, generation, status, notice)
        try:
            dep, _plan, _written = dep_io.update_deployment(dep, name, entry, live)
        except dep_io.Refused as exc:
            return runtime_status.refused_on_write(spec, name, targets, validated, adapter, exc.problems)
        result = runtime_status.target_result(ns, dep, spec.container_name)
        if result.ready_to_load:
            container, _ = serving.find_container(dep, spec.container_name)
            assert container is not None
            result.pods = load_on_pods(ns, dep, container, want, runtime_load.old_pod_rows(status, result.deployment))
        results.append(result)
        written.append(dep)
    return runtime_status.prepared(spec, targets, written, validated, adapter, results)


def unload_everywhere(ns: str, name: str, deployments: list[dict[str, Any]]) -> None:
    """Deleting a Runtime AdapterServing: unload its adapter from every ready pod of every
    Deployment that has it, and remove its resolver entries (a Job: the store is not the
    operator's to write)."""
    placements = runtime_load.runtime_placements(deployments, name)
    for dep, entry, container in placements:
        for pod, url in _pod_urls(ns, dep, container):
            answer = vllm_http.unload(url, entry.name)
            if runtime_load.unload_failed(answer.ok, answer.message):
                log.warning("unload of %s on pod %s/%s: %s %s", entry.name, ns, pod["metadata"]["name"],
                            answer.code, answer.message)
    wants, path, claim = runtime_load.removal(ns, placements)
    if wants and path and claim:
        try:
            _resolver_job(ns, name, 1, claim, path, wants, remove=True)
        except kubernetes.client.ApiException as exc:
            log.warning("could not start the resolver-entry removal Job for %s/%s: %s", ns, name, exc)
