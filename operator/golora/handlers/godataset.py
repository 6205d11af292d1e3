"""GoDataset handlers: thin kopf glue. The Job comes from ``builders.dataset``; what its
status means comes from ``builders.status``."""

from __future__ import annotations

from typing import Any

import kopf

from .. import conditions as c
from .. import kube, naming
from ..api import GROUP, VERSION
from ..api.godataset import KIND, GoDatasetSpec
from ..builders import status as st
from ..builders.dataset import CONTAINER_NAME, build_dataset_job
from ..settings import current as current_settings
from .common import accept, set_condition, set_phase


@kopf.on.create(GROUP, VERSION, KIND.plural)
@kopf.on.update(GROUP, VERSION, KIND.plural, field="spec")
def validate(spec: kopf.Spec, body: kopf.Body, **_: Any) -> None:
    """Validate, then start extraction for this generation (one Job per generation).

    Status is written through the API *before* the Job exists, so the Job follower's
    later writes (Running, Succeeded) can never be overwritten by this handler's."""
    patch = kopf.Patch()
    parsed = accept(GoDatasetSpec, spec, body, patch)
    meta = body["metadata"]
    if parsed is None:
        kube.patch_cr_status(KIND.plural, meta["namespace"], meta["name"], dict(patch.status))
        return
    ns, name, generation = meta["namespace"], meta["name"], meta["generation"]
    # A new generation makes a new dataset: Jobs of older generations are stale.
    if generation > 1:
        for job in kube.list_jobs(ns, {naming.LABEL_KIND: KIND.kind, naming.LABEL_NAME: name}):
            if job.metadata.labels.get(naming.LABEL_GENERATION) != str(generation):
                kube.delete_job(ns, job.metadata.name)
    kube.ensure_worker_identity(ns)
    job = build_dataset_job(namespace=ns, name=name, uid=meta["uid"], generation=generation,
                            spec=parsed, settings=current_settings())
    job_name = job["metadata"]["name"]
    if (body.get("status") or {}).get("jobName") != job_name:  # else: a restart adopting its own Job
        patch.status["jobName"] = job_name
        patch.status["progress"] = None
        patch.status["result"] = None
        set_condition(patch, body, c.EXTRACTED, c.UNKNOWN, "JobCreated", f"extraction Job {job_name} created")
        set_condition(patch, body, c.READY, c.FALSE, "Extracting", "dataset is being built")
        set_phase(patch, body, c.PENDING, f"waiting for extraction Job {job_name} to start")
    kube.patch_cr_status(KIND.plural, ns, name, dict(patch.status))
    kube.create_or_adopt(job)


@kopf.on.event("batch", "v1", "jobs", labels={naming.LABEL_KIND: KIND.kind})
def follow_job(body: kopf.Body, type: str | None, **_: Any) -> None:
    """Reflect the extraction Job (and the worker's result) in the GoDataset's status."""
    labels = body["metadata"].get("labels", {})
    ns, name = body["metadata"]["namespace"], labels.get(naming.LABEL_NAME)
    cr = kube.get_cr(KIND.plural, ns, name) if name else None
    if cr is None or str(cr["metadata"]["generation"]) != labels.get(naming.LABEL_GENERATION):
        return  # a Job of an older generation, or its GoDataset is gone
    status = cr.get("status") or {}
    state = st.job_state(dict(body))
    if type == "DELETED" or body["metadata"].get("deletionTimestamp"):
        if state.phase in (c.SUCCEEDED, c.FAILED) or cr["metadata"].get("deletionTimestamp"):
            return  # finished Jobs may be cleaned up; the dataset stays
        state = st.JobState(c.FAILED, "JobDeleted", f"extraction Job {body['metadata']['name']} was deleted "
                            "before it finished; change the spec (or re-create the GoDataset) to run it again")
    elif state.phase == c.FAILED and not (status.get("result") or {}).get("failure"):
        # No result from the worker: say how its container ended (the Pod's status).
        term = st.last_termination(kube.job_pods(ns, body["metadata"]["name"]), CONTAINER_NAME)
        if term is not None:
            how = f"signal {term.signal}" if term.signal else f"exit code {term.exit_code}"
            state = st.JobState(c.FAILED, term.reason if term.reason == "OOMKilled" else state.reason,
                                f"{state.message}: container {CONTAINER_NAME} ended with {how} ({term.reason})"
                                + (f": {term.message}" if term.message else ""))
    update = dataset_status(status, state, cr["metadata"]["generation"])
    if update:
        kube.patch_cr_status(KIND.plural, ns, name, update)
        if "phase" in update:
            kopf.event(cr, type="Warning" if update["phase"] == c.FAILED else "Normal",
                       reason=update["phase"], message=update.get("message", ""))


def dataset_status(status: dict[str, Any], job: st.JobState, generation: int) -> dict[str, Any] | None:
    """The GoDataset status patch for a Job state plus what the worker reported."""
    result = status.get("result") or {}
    failure = result.get("failure")
    if job.phase == c.RUNNING:
        return st.status_patch(status, phase=c.RUNNING, message="extracting", generation=generation,
                               conditions=[(c.EXTRACTED, c.UNKNOWN, "Extracting", "extraction Job is running")])
    if job.phase == c.SUCCEEDED and result.get("pairsKept") and not failure:
        msg = (f"{result['pairsKept']} pairs ({result.get('pairsTrain', 0)} train / {result.get('pairsEval', 0)} eval) "
               f"from {result.get('filesParsed', 0)} files")
        return st.status_patch(status, phase=c.SUCCEEDED, message=msg, generation=generation, conditions=[
            (c.EXTRACTED, c.TRUE, "Extracted", msg), (c.READY, c.TRUE, "DatasetReady", msg)])
    if job.phase in (c.SUCCEEDED, c.FAILED):
        if failure:
            reason = c.as_reason(failure.get("reason"), "ExtractionFailed")
            msg = failure.get("message") or job.message
        elif job.phase == c.SUCCEEDED:
            reason, msg = "NoResult", "the extraction Job finished without reporting a result"
        else:
            reason, msg = c.as_reason(job.reason, "JobFailed"), job.message
        return st.status_patch(status, phase=c.FAILED, message=msg, generation=generation, conditions=[
            (c.EXTRACTED, c.FALSE, reason, msg), (c.READY, c.FALSE, reason, msg)])
    return None


# Deleting a GoDataset deletes its Jobs (and their Pods) through the garbage collector:
# every Job has an ownerReference to it. The dataset files on the store are kept.
