"""LoraTraining handlers: kopf wiring around one level-based ``reconcile()``.

Triggers: the CR's own create/update, its GoDataset's phase changing, its Jobs changing,
and its training pods' scheduling. Each reads the current state and writes the status patch
``golora.builders.training_status`` computes (nothing when nothing changed); the Job and the
retry decision come from ``golora.builders.training``.
"""

from __future__ import annotations

from typing import Any

import kopf
import kubernetes

from .. import conditions as cond
from .. import kube, metrics, naming
from ..api import GROUP, VERSION
from ..api import godataset as gds_api
from ..api.loratraining import KIND, LoraTrainingSpec
from ..api.worker import REASON_JOB_DELETED
from ..builders import training, training_status
from ..builders.status import JOB_NAME_LABELS, Condition, job_state, last_termination
from ..settings import current as current_settings
from .common import accept

LABELS = {naming.LABEL_KIND: KIND.kind}


@kopf.on.create(GROUP, VERSION, KIND.plural)
@kopf.on.update(GROUP, VERSION, KIND.plural, field="spec")
def validate(spec: kopf.Spec, body: kopf.Body, **_: Any) -> None:
    """Validate the spec (``Accepted``, written first), then reconcile."""
    if accept(KIND.plural, LoraTrainingSpec, spec, body).spec is not None:
        reconcile(body["metadata"]["namespace"], body["metadata"]["name"])


@kopf.index(GROUP, VERSION, KIND.plural)
def waiting_for_dataset(namespace: str, name: str, spec: kopf.Spec, status: kopf.Status, **_: Any) -> Any:
    """(namespace, GoDataset) -> LoraTrainings waiting for it: lets a dataset's phase change
    wake exactly those, with no API call for the rest."""
    ref = (spec.get("datasetRef") or {}).get("name")
    if ref and not cond.is_true(status.get("conditions"), cond.DATASET_READY):
        return {(namespace, ref): name}
    return None


@kopf.on.event(GROUP, VERSION, gds_api.KIND.plural)
def dataset_event(body: kopf.Body, waiting_for_dataset: kopf.Index, **_: Any) -> None:
    """A GoDataset reached a final phase: reconcile the trainings waiting on it."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    if (body.get("status") or {}).get("phase") not in (cond.SUCCEEDED, cond.FAILED):
        return
    for waiting in set(waiting_for_dataset.get((ns, name), [])):
        reconcile(ns, waiting)


@kopf.on.event("batch", "v1", "jobs", labels=LABELS)
def follow_job(body: kopf.Body, type: str | None, **_: Any) -> None:
    labels = body["metadata"].get("labels", {})
    if not labels.get(naming.LABEL_NAME):
        return
    if type == "DELETED" or body["metadata"].get("deletionTimestamp"):
        if job_state(dict(body)).phase in (cond.SUCCEEDED, cond.FAILED):
            return  # a finished Job cleaned up: nothing to do
        reconcile(body["metadata"]["namespace"], labels[naming.LABEL_NAME], deleted_job=body["metadata"]["name"])
    else:
        reconcile(body["metadata"]["namespace"], labels[naming.LABEL_NAME])


@kopf.on.event("", "v1", "pods", labels=LABELS)
def follow_pod(body: kopf.Body, type: str | None, **_: Any) -> None:
    """Surface an unschedulable training pod (e.g. the T4 is busy serving prefill)."""
    if type == "DELETED":
        return
    labels = body["metadata"].get("labels", {})
    ns, name = body["metadata"]["namespace"], labels.get(naming.LABEL_NAME)
    cr = kube.get_cr(KIND.plural, ns, name) if name else None
    if cr is None or str(cr["metadata"]["generation"]) != labels.get(naming.LABEL_GENERATION):
        return
    scheduled = next((x for x in (body.get("status") or {}).get("conditions") or [] if x.get("type") == "PodScheduled"),
                     None)
    if scheduled is None:
        return
    status, gen = cr.get("status") or {}, cr["metadata"]["generation"]
    nodes = ((cr.get("spec") or {}).get("placement") or {}).get("nodes") or 1
    job = next((labels[k] for k in JOB_NAME_LABELS if labels.get(k)), None)
    if nodes > 1 and job:
        if labels.get(naming.LABEL_ATTEMPT) != str(status.get("attempt")):
            return  # an earlier attempt's pods
        # all-or-nothing: Scheduled only when every rank's pod is placed
        summary = training.scheduling_summary(kube.job_pods(ns, job), nodes)
        if summary is not None:
            kube.write_status(KIND.plural, cr, training_status.ranks_scheduling(status, gen, *summary))
        return
    kube.write_status(KIND.plural, cr, training_status.pod_scheduling(status, gen, body["metadata"]["name"],
                                                                      scheduled))


# Deleting a LoraTraining deletes its Jobs (and Pods) through the garbage collector (ownerReferences).
# The adapter on the store is kept.


# ---- the reconcile ----------------------------------------------------------------------

def _node_labels(spec: LoraTrainingSpec) -> list[dict[str, str]]:
    selector = training.node_selector(spec)
    if not selector or spec.placement.gpus == 0:
        return []
    try:
        nodes = kube.core().list_node(label_selector=",".join(f"{k}={v}" for k, v in selector.items())).items
    except kubernetes.client.ApiException:
        return []
    return [n.metadata.labels or {} for n in nodes]


def reconcile(ns: str, name: str, deleted_job: str | None = None) -> None:
    cr = kube.get_cr(KIND.plural, ns, name)
    if cr is None or cr["metadata"].get("deletionTimestamp"):
        return
    status = cr.get("status") or {}
    gen = cr["metadata"]["generation"]
    if not cond.is_true(status.get("conditions"), cond.ACCEPTED) or \
            cond.get_condition(status.get("conditions"), cond.ACCEPTED).get("observedGeneration") != gen:
        return  # the validate handler has not accepted this generation (yet)
    spec = LoraTrainingSpec.model_validate(cr["spec"])

    # 1. The dataset must be ready.
    dataset_status = None
    if spec.dataset_ref:
        ds = kube.get_cr(gds_api.KIND.plural, ns, spec.dataset_ref.name)
        dataset_status = (ds or {}).get("status") or {}
        if ds is None or dataset_status.get("phase") != cond.SUCCEEDED:
            kube.write_status(KIND.plural, cr, training_status.waiting_for_dataset(
                status, gen, spec.dataset_ref.name, ds, training.expected_precision(spec, _node_labels(spec))))
            return
    files = training.dataset_files(ns, spec, dataset_status)
    ready = training_status.dataset_ready(files)

    # 2. The current attempt's Job.
    jobs = {j.metadata.name: j for j in kube.list_jobs(ns, {**LABELS, naming.LABEL_NAME: name})
            if not j.metadata.deletion_timestamp}
    for jname, job in jobs.items():  # Jobs of older generations are stale
        if job.metadata.labels.get(naming.LABEL_GENERATION) != str(gen):
            kube.delete_job(ns, jname)
    attempts = [a for a in status.get("attempts") or [] if f"-g{gen}-" in a.get("jobName", "")]
    attempt = attempts[-1]["attempt"] if attempts else 1
    override = attempts[-1].get("microBatchSize") if attempts else None
    job_name = naming.job_name(training.JOB_KIND_SHORT, name, gen, attempt)
    if job_name not in jobs:
        if deleted_job == job_name and attempts and attempts[-1].get("outcome") in ("Pending", "Running"):
            # Someone deleted the unfinished Job: a failed attempt, retried within retry.maxAttempts.
            _fail_or_retry(ns, name, cr, spec, files, gen, attempt, REASON_JOB_DELETED,
                           f"training Job {job_name} was deleted before it finished", override, attempts, ready, {})
        elif not attempts or attempts[-1].get("outcome") in ("Pending", "Running"):
            # Not created yet (or the operator stopped between writing status and creating it).
            _start_attempt(ns, name, cr, spec, files, gen, attempt, override, attempts, ready)
        return
    state = job_state(kube.client().sanitize_for_serialization(jobs[job_name]))
    result = status.get("result") or {}
    if result.get("attempt") not in (None, attempt):
        result = {}  # written by an earlier attempt

    if state.phase in (cond.PENDING, cond.RUNNING):
        kube.write_status(KIND.plural, cr, training_status.running(status, gen, state, attempt, attempts, ready,
                                                                   nodes=spec.placement.nodes))
        return
    if state.phase == cond.SUCCEEDED and not result.get("failure"):
        kube.write_status(KIND.plural, cr, training_status.succeeded(status, gen, result, attempt, attempts, ready))
        return
    # Failed. How its container ended matters only when the trainer reported nothing.
    term = None
    if not (result.get("failure") or {}).get("reason"):
        pods = kube.job_pods(ns, job_name)
        term = (last_termination(pods, training.CONTAINER_NAME) if spec.placement.nodes == 1
                else training.attempt_termination(pods))
    reason, message = training_status.failure(result, term, state)
    reason, message = training_status.unschedulable_ranks(spec, status, reason, message)
    used = training_status.used_micro_batch(spec, status, result, override)
    _fail_or_retry(ns, name, cr, spec, files, gen, attempt, reason, message, used, attempts, ready,
                   result.get("qualityGate") or {})


def _fail_or_retry(ns: str, name: str, cr: dict[str, Any], spec: LoraTrainingSpec, files: training.DatasetFiles,
                   gen: int, attempt: int, reason: str, message: str, used: int | None,
                   attempts: list[dict[str, Any]], ready: Condition, gate: dict[str, Any]) -> None:
    retry = training.next_attempt(spec, attempt, reason, used)
    attempts = training_status.mark(attempts, attempt, reason)
    if retry:
        metrics.record_retry(KIND.kind, reason)
        _start_attempt(ns, name, cr, spec, files, gen, retry.attempt, retry.micro_batch_size, attempts, ready,
                       note=training_status.retry_note(attempt, reason, retry.micro_batch_size))
        return
    kube.write_status(KIND.plural, cr, training_status.failed(cr.get("status") or {}, gen, reason, message, gate,
                                                              attempts, ready))


def _start_attempt(ns: str, name: str, cr: dict[str, Any], spec: LoraTrainingSpec, files: training.DatasetFiles,
                   gen: int, attempt: int, micro_batch: int | None, attempts: list[dict[str, Any]],
                   ready: Condition, note: str = "") -> None:
    job = training.build_training_job(namespace=ns, name=name, uid=cr["metadata"]["uid"], generation=gen,
                                      attempt=attempt, spec=spec, files=files, micro_batch_size=micro_batch,
                                      settings=current_settings())
    update = training_status.started(cr.get("status") or {}, gen, job_name=job["metadata"]["name"], attempt=attempt,
                                     micro_batch=micro_batch, attempts=attempts, ready=ready, note=note,
                                     expected_precision=training.expected_precision(spec, _node_labels(spec)))
    kube.ensure_worker_identity(ns)
    kube.write_status(KIND.plural, cr, update)  # status first, so the Job's own updates always land after it
    if spec.placement.nodes > 1:  # the pods' DNS names (torchrun's rendezvous address)
        kube.create_or_adopt(training.build_rendezvous_service(namespace=ns, name=name, uid=cr["metadata"]["uid"],
                                                               generation=gen))
    kube.create_or_adopt(job)
