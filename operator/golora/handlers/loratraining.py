"""LoraTraining handlers: thin kopf glue around one level-based ``reconcile()``.

Triggers: the CR's own create/update, its GoDataset's phase changing, its Jobs changing,
and its training pods' scheduling. Each reads the current state and writes status only
when something changed; the decisions live in ``golora.builders.training``.
"""

from __future__ import annotations

from typing import Any

import kopf
import kubernetes

from .. import conditions as c
from .. import kube, metrics, naming
from ..api import GROUP, VERSION
from ..api import godataset as gds_api
from ..api.loratraining import (
    GATE_DISABLED,
    KIND,
    REASON_JOB_DELETED,
    REASON_QUALITY_GATE_FAILED,
    REASON_RENDEZVOUS_TIMEOUT,
    REASON_TRAINING_FAILED,
    REASON_UNSCHEDULABLE,
    LoraTrainingSpec,
)
from ..builders import status as st
from ..builders import training as tb
from ..settings import current as current_settings
from .common import accept

LABELS = {naming.LABEL_KIND: KIND.kind}
# Ready: the adapter is written and its quality gate passed (or is disabled).
READY = st.training_ready(GATE_DISABLED)


def _status_patch(current: dict[str, Any] | None, **kwargs: Any) -> dict[str, Any] | None:
    return st.status_patch(current, ready=READY, **kwargs)


@kopf.on.create(GROUP, VERSION, KIND.plural)
@kopf.on.update(GROUP, VERSION, KIND.plural, field="spec")
def validate(spec: kopf.Spec, body: kopf.Body, **_: Any) -> None:
    patch = kopf.Patch()
    parsed = accept(LoraTrainingSpec, spec, body, patch)
    meta = body["metadata"]
    kube.patch_cr_status(KIND.plural, meta["namespace"], meta["name"], dict(patch.status))
    if parsed is not None:
        reconcile(meta["namespace"], meta["name"])


@kopf.index(GROUP, VERSION, KIND.plural)
def waiting_for_dataset(namespace: str, name: str, spec: kopf.Spec, status: kopf.Status, **_: Any) -> Any:
    """(namespace, GoDataset) -> LoraTrainings waiting for it: lets a dataset's phase change
    wake exactly those, with no API call for the rest."""
    ref = (spec.get("datasetRef") or {}).get("name")
    if ref and not c.is_true(status.get("conditions"), c.DATASET_READY):
        return {(namespace, ref): name}
    return None


@kopf.on.event(GROUP, VERSION, gds_api.KIND.plural)
def dataset_event(body: kopf.Body, waiting_for_dataset: kopf.Index, **_: Any) -> None:
    """A GoDataset reached a final phase: reconcile the trainings waiting on it."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    if (body.get("status") or {}).get("phase") not in (c.SUCCEEDED, c.FAILED):
        return
    for training in set(waiting_for_dataset.get((ns, name), [])):
        reconcile(ns, training)


@kopf.on.event("batch", "v1", "jobs", labels=LABELS)
def follow_job(body: kopf.Body, type: str | None, **_: Any) -> None:
    labels = body["metadata"].get("labels", {})
    if not labels.get(naming.LABEL_NAME):
        return
    if type == "DELETED" or body["metadata"].get("deletionTimestamp"):
        if st.job_state(dict(body)).phase in (c.SUCCEEDED, c.FAILED):
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
    gen = cr["metadata"]["generation"]
    nodes = ((cr.get("spec") or {}).get("placement") or {}).get("nodes") or 1
    job = next((labels[k] for k in st.JOB_NAME_LABELS if labels.get(k)), None)
    if nodes > 1 and job:
        if labels.get(naming.LABEL_ATTEMPT) != str((cr.get("status") or {}).get("attempt")):
            return  # an earlier attempt's pods
        # all-or-nothing: Scheduled only when every rank's pod is placed
        summary = tb.scheduling_summary(kube.job_pods(ns, job), nodes)
        if summary is None:
            return
        placed, msg = summary
        phase = cr["status"].get("phase", c.PENDING)
        update = _status_patch(cr.get("status"), phase=phase, message=cr["status"].get("message", "") if placed
                               else f"unschedulable: {msg}", generation=gen,
                               conditions=[(c.SCHEDULED, c.TRUE if placed else c.FALSE,
                                            "Scheduled" if placed else "Unschedulable", msg)])
    elif scheduled.get("status") == "True":
        update = _status_patch(cr.get("status"), phase=cr["status"].get("phase", c.PENDING),
                                 message=cr["status"].get("message", ""), generation=gen,
                                 conditions=[(c.SCHEDULED, c.TRUE, "Scheduled",
                                              f"pod {body['metadata']['name']} scheduled")])
    else:
        msg = scheduled.get("message") or "the training pod cannot be scheduled"
        update = _status_patch(cr.get("status"), phase=c.PENDING, message=f"unschedulable: {msg}",
                                 generation=gen, conditions=[(c.SCHEDULED, c.FALSE,
                                                              c.as_reason(scheduled.get("reason"), "Unschedulable"),
                                                              msg)])
    if update:
        kube.patch_cr_status(KIND.plural, ns, name, update)


# Deleting a LoraTraining deletes its Jobs (and Pods) through the garbage collector (ownerReferences).
# The adapter on the store is kept.


# ---- the reconcile ----------------------------------------------------------------------

def _write(ns: str, name: str, cr: dict[str, Any], update: dict[str, Any] | None) -> None:
    if not update:
        return
    kube.patch_cr_status(KIND.plural, ns, name, update)
    if "phase" in update:
        failed = update["phase"] in (c.FAILED, c.INVALID)
        kopf.event(cr, type="Warning" if failed else "Normal", reason=update["phase"],
                   message=update.get("message", ""))


def _node_labels(spec: LoraTrainingSpec) -> list[dict[str, str]]:
    selector = tb.node_selector(spec)
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
    if not c.is_true(status.get("conditions"), c.ACCEPTED) or \
            c.get_condition(status.get("conditions"), c.ACCEPTED).get("observedGeneration") != gen:
        return  # the validate handler has not accepted this generation (yet)
    spec = LoraTrainingSpec.model_validate(cr["spec"])

    # 1. The dataset must be ready.
    dataset_status = None
    if spec.dataset_ref:
        ds = kube.get_cr(gds_api.KIND.plural, ns, spec.dataset_ref.name)
        dataset_status = (ds or {}).get("status") or {}
        if ds is None or dataset_status.get("phase") != c.SUCCEEDED:
            why = (f"GoDataset {spec.dataset_ref.name} not found" if ds is None else
                   f"GoDataset {spec.dataset_ref.name} is {dataset_status.get('phase') or 'not ready'}"
                   + (f": {dataset_status['message']}" if dataset_status.get("message") else ""))
            reason = "DatasetNotFound" if ds is None else "DatasetNotReady"
            phase = c.FAILED if dataset_status.get("phase") == c.FAILED else c.PENDING
            # The precision `auto` will use is known from the nodes already: say it while waiting.
            extra = {"expectedPrecision": tb.expected_precision(spec, _node_labels(spec))}
            _write(ns, name, cr, _status_patch(status, phase=phase, message=f"waiting: {why}", generation=gen,
                                                 conditions=[(c.DATASET_READY, c.FALSE, reason, why)], extra=extra))
            return
    files = tb.dataset_files(ns, spec, dataset_status)
    ready = (c.DATASET_READY, c.TRUE, "DatasetReady",
             f"training on {files.train_path}" + (f" (eval {files.eval_path})" if files.eval_path else ""))

    # 2. The current attempt's Job.
    jobs = {j.metadata.name: j for j in kube.list_jobs(ns, {**LABELS, naming.LABEL_NAME: name})
            if not j.metadata.deletion_timestamp}
    for jname, job in jobs.items():  # Jobs of older generations are stale
        if job.metadata.labels.get(naming.LABEL_GENERATION) != str(gen):
            kube.delete_job(ns, jname)
    attempts = [a for a in status.get("attempts") or [] if f"-g{gen}-" in a.get("jobName", "")]
    attempt = attempts[-1]["attempt"] if attempts else 1
    override = attempts[-1].get("microBatchSize") if attempts else None
    job_name = naming.job_name(tb.JOB_KIND_SHORT, name, gen, attempt)
    if job_name not in jobs:
        if deleted_job == job_name and attempts and attempts[-1].get("outcome") in ("Pending", "Running"):
            # Someone deleted the unfinished Job: a failed attempt, retried within retry.maxAttempts.
            _fail_or_retry(ns, name, cr, spec, files, gen, attempt, REASON_JOB_DELETED,
                           f"training Job {job_name} was deleted before it finished", override, attempts, ready, {})
        elif not attempts or attempts[-1].get("outcome") in ("Pending", "Running"):
            # Not created yet (or the operator stopped between writing status and creating it).
            _start_attempt(ns, name, cr, spec, files, gen, attempt, override, attempts, ready)
        return
    job = jobs[job_name]
    state = st.job_state(kube.client().sanitize_for_serialization(job))
    result = status.get("result") or {}
    if result.get("attempt") not in (None, attempt):
        result = {}  # written by an earlier attempt

    if state.phase in (c.PENDING, c.RUNNING):
        progress = status.get("progress") or {}
        msg = "training" + (f": step {progress['step']}/{progress['totalSteps']}" if progress.get("totalSteps") else "")
        phase = c.RUNNING if state.phase == c.RUNNING else c.PENDING
        conds = [ready]
        if state.phase == c.RUNNING:
            # several nodes: one running pod does not mean all are placed (follow_pod says)
            if spec.placement.nodes == 1:
                conds.append((c.SCHEDULED, c.TRUE, "Scheduled", "training pod is running"))
            conds.append((c.TRAINING, c.TRUE, "Training", f"attempt {attempt} running"))
        _write(ns, name, cr, _status_patch(status, phase=phase, message=msg if phase == c.RUNNING else
                                             status.get("message", ""), generation=gen, conditions=conds,
                                             extra={"attempts": _mark(attempts, attempt, "Running")}))
        return

    gate = result.get("qualityGate") or {}
    if state.phase == c.SUCCEEDED and not result.get("failure"):
        gate_reason = c.as_reason(gate.get("reason"), GATE_DISABLED)
        gate_cond = (c.QUALITY_GATE_PASSED, c.TRUE if gate.get("passed") else c.UNKNOWN, gate_reason,
                     gate.get("message") or ("quality gate disabled" if gate_reason == GATE_DISABLED else ""))
        msg = (f"adapter {result.get('adapterPath')}: eval loss {_f(result.get('evalLoss'))} "
               f"(base {_f(result.get('baseEvalLoss'))}), gate {gate_reason}")
        _write(ns, name, cr, _status_patch(status, phase=c.SUCCEEDED, message=msg, generation=gen, conditions=[
            ready, (c.TRAINING, c.FALSE, "Completed", f"attempt {attempt} completed"),
            (c.SUCCEEDED_CONDITION, c.TRUE, "AdapterReady", msg), gate_cond],
            extra={"attempts": _mark(attempts, attempt, "Succeeded")}))
        return

    # Failed: a reason from the trainer, else from how its container ended (the Pod's
    # status: exit code, OOMKilled, signal), else the Job's.
    failure = result.get("failure") or {}
    term = None
    if not failure.get("reason"):
        pods = kube.job_pods(ns, job_name)
        term = (st.last_termination(pods, tb.CONTAINER_NAME) if spec.placement.nodes == 1
                else tb.attempt_termination(pods))
    reason = c.as_reason(failure.get("reason") or tb.reason_from_termination(term) or state.reason,
                         REASON_TRAINING_FAILED)
    message = failure.get("message") or (_describe(term) if term else state.message)
    sched = c.get_condition(status.get("conditions"), c.SCHEDULED) or {}
    if reason == REASON_RENDEZVOUS_TIMEOUT and sched.get("status") == c.FALSE:
        # the peers never came because the scheduler could not place them: say so, in its words
        reason = REASON_UNSCHEDULABLE
        message = (f"not all {spec.placement.nodes} training pods could be scheduled within "
                   f"{spec.placement.scheduling_timeout_seconds}s, so none trained and the placed ones were "
                   f"released: {sched.get('message')}")
    # The micro-batch this attempt ran with: as reported, else as asked (killed before it reported).
    asked = spec.training.micro_batch_size if isinstance(spec.training.micro_batch_size, int) else None
    used = result.get("microBatchSize") or (status.get("progress") or {}).get("microBatchSize") or override or asked
    _fail_or_retry(ns, name, cr, spec, files, gen, attempt, reason, message, used, attempts, ready, gate)


def _fail_or_retry(ns: str, name: str, cr: dict[str, Any], spec: LoraTrainingSpec, files: tb.DatasetFiles,
                   gen: int, attempt: int, reason: str, message: str, used: int | None,
                   attempts: list[dict[str, Any]], ready: tuple[str, str, str, str], gate: dict[str, Any]) -> None:
    status = cr.get("status") or {}
    retry = tb.next_attempt(spec, attempt, reason, used)
    attempts = _mark(attempts, attempt, reason)
    if retry:
        metrics.record_retry(KIND.kind, reason)
        _start_attempt(ns, name, cr, spec, files, gen, retry.attempt, retry.micro_batch_size, attempts, ready,
                       note=f"attempt {attempt} failed ({reason}); retrying"
                            + (f" with micro-batch {retry.micro_batch_size}" if retry.micro_batch_size else ""))
        return
    conds = [ready, (c.TRAINING, c.FALSE, reason, message), (c.SUCCEEDED_CONDITION, c.FALSE, reason, message)]
    if reason == REASON_QUALITY_GATE_FAILED or gate.get("passed") is False:
        conds.append((c.QUALITY_GATE_PASSED, c.FALSE, c.as_reason(gate.get("reason"), reason),
                      gate.get("message") or message))
    _write(ns, name, cr, _status_patch(status, phase=c.FAILED, message=f"{reason}: {message}"[:1000],
                                         generation=gen, conditions=conds, extra={"attempts": attempts}))


def _start_attempt(ns: str, name: str, cr: dict[str, Any], spec: LoraTrainingSpec, files: tb.DatasetFiles,
                   gen: int, attempt: int, micro_batch: int | None, attempts: list[dict[str, Any]],
                   ready: tuple[str, str, str, str], note: str = "") -> None:
    status = cr.get("status") or {}
    job = tb.build_training_job(namespace=ns, name=name, uid=cr["metadata"]["uid"], generation=gen,
                                attempt=attempt, spec=spec, files=files, micro_batch_size=micro_batch,
                                settings=current_settings())
    job_name = job["metadata"]["name"]
    record = {"attempt": attempt, "jobName": job_name, "outcome": "Pending"}
    if micro_batch:
        record["microBatchSize"] = micro_batch
    attempts = [a for a in attempts if a.get("attempt") != attempt] + [record]
    msg = note or f"waiting for training Job {job_name} to start"
    extra = {"attempt": attempt, "attempts": attempts, "jobName": job_name,
             "expectedPrecision": tb.expected_precision(spec, _node_labels(spec))}
    update = _status_patch(status, phase=c.PENDING, message=msg, generation=gen, extra=extra, conditions=[
        ready, (c.SCHEDULED, c.UNKNOWN, "JobCreated", f"Job {job_name} created"),
        (c.TRAINING, c.FALSE, "Waiting", msg)])
    if attempt == 1 and status.get("jobName") != job_name:
        update = {**(update or {}), "progress": None, "result": None}
    kube.ensure_worker_identity(ns)
    _write(ns, name, cr, update)  # status first, so the Job's own updates always land after it
    if spec.placement.nodes > 1:  # the pods' DNS names (torchrun's rendezvous address)
        kube.create_or_adopt(tb.build_rendezvous_service(namespace=ns, name=name, uid=cr["metadata"]["uid"],
                                                         generation=gen))
    kube.create_or_adopt(job)


def _mark(attempts: list[dict[str, Any]], attempt: int, outcome: str) -> list[dict[str, Any]]:
    return [{**a, "outcome": outcome} if a.get("attempt") == attempt else a for a in attempts]


def _describe(term: st.Termination) -> str:
    how = f"signal {term.signal}" if term.signal else f"exit code {term.exit_code}"
    text = f"container {tb.CONTAINER_NAME} of pod {term.pod} ended with {how} ({term.reason or 'Error'})"
    return text + (f": {term.message}" if term.message else "")


def _f(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, int | float) else "n/a"
