"""GoDataset handlers: kopf wiring. The Job and every status patch come from
``builders.dataset``; what a Job's status means comes from ``builders.status``."""

from __future__ import annotations

from typing import Any

import kopf

from .. import conditions as cond
from .. import kube, naming
from ..api import GROUP, VERSION
from ..api.godataset import KIND, GoDatasetSpec
from ..builders import dataset
from ..builders.status import job_state, last_termination
from ..settings import current as current_settings
from .common import accept


@kopf.on.create(GROUP, VERSION, KIND.plural)
@kopf.on.update(GROUP, VERSION, KIND.plural, field="spec")
def validate(spec: kopf.Spec, body: kopf.Body, **_: Any) -> None:
    """Validate, then start extraction for this generation (one Job per generation).

    Status is written through the API *before* the Job exists, so the Job follower's
    later writes (Running, Succeeded) can never be overwritten by this handler's."""
    accepted = accept(KIND.plural, GoDatasetSpec, spec, body, write=False)
    meta = body["metadata"]
    if accepted.spec is None:
        kube.write_status(KIND.plural, dict(body), accepted.patch(body.get("status"), meta.get("generation")))
        return
    ns, name, generation = meta["namespace"], meta["name"], meta["generation"]
    # A new generation makes a new dataset: Jobs of older generations are stale.
    if generation > 1:
        for job in kube.list_jobs(ns, {naming.LABEL_KIND: KIND.kind, naming.LABEL_NAME: name}):
            if job.metadata.labels.get(naming.LABEL_GENERATION) != str(generation):
                kube.delete_job(ns, job.metadata.name)
    kube.ensure_worker_identity(ns)
    job = dataset.build_dataset_job(namespace=ns, name=name, uid=meta["uid"], generation=generation,
                                    spec=accepted.spec, settings=current_settings())
    kube.write_status(KIND.plural, dict(body),
                      dataset.job_created(accepted, body.get("status") or {}, generation, job["metadata"]["name"]))
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
    state = job_state(dict(body))
    if type == "DELETED" or body["metadata"].get("deletionTimestamp"):
        if state.phase in (cond.SUCCEEDED, cond.FAILED) or cr["metadata"].get("deletionTimestamp"):
            return  # finished Jobs may be cleaned up; the dataset stays
        state = dataset.job_deleted(body["metadata"]["name"])
    elif state.phase == cond.FAILED and not (status.get("result") or {}).get("failure"):
        state = dataset.with_termination(state, last_termination(kube.job_pods(ns, body["metadata"]["name"]),
                                                                 dataset.CONTAINER_NAME))
    kube.write_status(KIND.plural, cr, dataset.dataset_status(status, state, cr["metadata"]["generation"]))


# Deleting a GoDataset deletes its Jobs (and their Pods) through the garbage collector:
# every Job has an ownerReference to it. The dataset files on the store are kept.
