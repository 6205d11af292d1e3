"""GoDataset -> the extraction Job and the JSON config ``golora-extract run`` reads, and the
GoDataset's status from its Job and the worker's report (pure; the handler writes it)."""

from __future__ import annotations

import json
import posixpath
from typing import Any

from .. import conditions as cond
from ..api import GROUP, VERSION
from ..api.godataset import KIND, GoDatasetSpec
from ..api.worker import CONFIG_ENV, TERMINATION_LOG, TERMINATION_LOG_ENV
from ..naming import job_name
from ..settings import Settings
from .common import (
    CLAIMS_MOUNT,
    SCRATCH_MOUNT,
    SECRETS_MOUNT,
    WORKER_STORE_MOUNT,
    claim_volume,
    container_security,
    job,
    secret_volume,
    volume_name,
)
from .status import Acceptance, JobState, Termination, status_patch

JOB_KIND_SHORT = "gds"
CONTAINER_NAME = "extract"


def dataset_path(namespace: str, name: str) -> str:
    """Store-relative directory of a dataset (DESIGN.md store layout)."""
    return f"datasets/{namespace}/{name}"


def extractor_config(namespace: str, name: str, spec: GoDatasetSpec) -> dict[str, Any]:
    """The one JSON document the extractor reads (mirrors extractor/config)."""
    sources = []
    for src in spec.sources:
        item: dict[str, Any] = {"name": src.name}
        if src.pvc:
            item["pvc"] = {"claimName": src.pvc.claim_name, "path": src.pvc.path}
            item["dir"] = posixpath.join(CLAIMS_MOUNT, src.pvc.claim_name, src.pvc.path).rstrip("/")
        elif src.git:
            item["git"] = {"url": src.git.url, "revision": src.git.revision}
            if src.git.credentials_secret:
                item["git"]["credentialsFile"] = posixpath.join(SECRETS_MOUNT, src.name, "token")
        elif src.module:
            item["module"] = {"path": src.module.path, "version": src.module.version}
        sources.append(item)
    filters = spec.filters.model_dump(by_alias=True)
    out = dataset_path(namespace, name)
    return {
        "storeRoot": WORKER_STORE_MOUNT,
        "outputPath": out,
        "workPath": f".work/{out}",
        "sources": sources,
        "filters": filters,
        "template": spec.template,
        "split": spec.split.model_dump(by_alias=True),
        "maxPairs": spec.max_pairs,
        "statusTarget": {"group": GROUP, "version": VERSION, "plural": KIND.plural,
                         "namespace": namespace, "name": name},
    }


def build_dataset_job(
    *, namespace: str, name: str, uid: str, generation: int, spec: GoDatasetSpec, settings: Settings,
) -> dict[str, Any]:
    """The extraction Job for one generation of a GoDataset: command and args are lists,
    the config is one JSON document in an env var, nothing is built into a shell string."""
    config = extractor_config(namespace, name, spec)
    volumes: list[dict[str, Any]] = [claim_volume(spec.storage.claim_name),
                                     {"name": "scratch", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [
        {"name": volume_name("claim", spec.storage.claim_name), "mountPath": WORKER_STORE_MOUNT},
        {"name": "scratch", "mountPath": SCRATCH_MOUNT},
    ]
    seen_claims = {spec.storage.claim_name}
    for src in spec.sources:
        if src.pvc and src.pvc.claim_name not in seen_claims:
            seen_claims.add(src.pvc.claim_name)
            volumes.append(claim_volume(src.pvc.claim_name, read_only=True))
        if src.pvc:
            mounts.append({"name": volume_name("claim", src.pvc.claim_name),
                           "mountPath": posixpath.join(CLAIMS_MOUNT, src.pvc.claim_name),
                           "readOnly": src.pvc.claim_name != spec.storage.claim_name})
        if src.git and src.git.credentials_secret:
            ref = src.git.credentials_secret
            volumes.append(secret_volume(ref.name, ref.key, "token") | {"name": volume_name("git", src.name)})
            mounts.append({"name": volume_name("git", src.name),
                           "mountPath": posixpath.join(SECRETS_MOUNT, src.name), "readOnly": True})
    # Sources on the store claim itself are read through the store mount (one mount per claim).
    mounts = _dedupe_mounts(mounts)
    resources = spec.resources.model_dump(by_alias=True) if spec.resources else {
        "requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    container = {
        "name": CONTAINER_NAME,
        "image": settings.extractor_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["golora-extract", "run"],
        "env": [
            {"name": CONFIG_ENV, "value": json.dumps(config, sort_keys=True, separators=(",", ":"))},
            {"name": "HOME", "value": SCRATCH_MOUNT},
            {"name": TERMINATION_LOG_ENV, "value": TERMINATION_LOG},
        ],
        "volumeMounts": mounts,
        "resources": resources,
        "securityContext": container_security(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return job(
        name=job_name(JOB_KIND_SHORT, name, generation),
        namespace=namespace,
        kind=KIND.kind,
        owner_name=name,
        owner_uid=uid,
        generation=generation,
        attempt=1,
        container=container,
        volumes=volumes,
        deadline_seconds=settings.dataset_deadline_seconds or None,
    )


def _dedupe_mounts(mounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for m in mounts:
        key = (m["name"], m["mountPath"])
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out


# --- Status -----------------------------------------------------------------------------------

def job_created(accepted: Acceptance, status: dict[str, Any], generation: int, job_name: str) -> dict[str, Any] | None:
    """Accepted, and this generation's Job is about to be created (nothing new when the status
    already names it: a restarted operator adopting its own Job)."""
    if status.get("jobName") == job_name:
        return accepted.patch(status, generation)
    return accepted.patch(status, generation, phase=cond.PENDING,
                          message=f"waiting for extraction Job {job_name} to start",
                          conditions=[(cond.EXTRACTED, cond.UNKNOWN, "JobCreated", f"extraction Job {job_name} created"),
                                      (cond.READY, cond.FALSE, "Extracting", "dataset is being built")],
                          extra={"jobName": job_name, "progress": None, "result": None})


def job_deleted(job_name: str) -> JobState:
    return JobState(cond.FAILED, "JobDeleted", f"extraction Job {job_name} was deleted before it finished; change "
                    "the spec (or re-create the GoDataset) to run it again")


def with_termination(job: JobState, term: Termination | None) -> JobState:
    """A failed Job without a report from the worker: say how its container ended."""
    if term is None:
        return job
    how = f"signal {term.signal}" if term.signal else f"exit code {term.exit_code}"
    return JobState(cond.FAILED, term.reason if term.reason == "OOMKilled" else job.reason,
                    f"{job.message}: container {CONTAINER_NAME} ended with {how} ({term.reason})"
                    + (f": {term.message}" if term.message else ""))


def dataset_status(status: dict[str, Any], job: JobState, generation: int) -> dict[str, Any] | None:
    """The GoDataset status patch for a Job state plus what the worker reported."""
    result = status.get("result") or {}
    failure = result.get("failure")
    if job.phase == cond.RUNNING:
        return status_patch(status, phase=cond.RUNNING, message="extracting", generation=generation,
                            conditions=[(cond.EXTRACTED, cond.UNKNOWN, "Extracting", "extraction Job is running")])
    if job.phase == cond.SUCCEEDED and result.get("pairsKept") and not failure:
        msg = (f"{result['pairsKept']} pairs ({result.get('pairsTrain', 0)} train / {result.get('pairsEval', 0)} eval) "
               f"from {result.get('filesParsed', 0)} files")
        return status_patch(status, phase=cond.SUCCEEDED, message=msg, generation=generation, conditions=[
            (cond.EXTRACTED, cond.TRUE, "Extracted", msg), (cond.READY, cond.TRUE, "DatasetReady", msg)])
    if job.phase in (cond.SUCCEEDED, cond.FAILED):
        if failure:
            reason = cond.as_reason(failure.get("reason"), "ExtractionFailed")
            msg = failure.get("message") or job.message
        elif job.phase == cond.SUCCEEDED:
            reason, msg = "NoResult", "the extraction Job finished without reporting a result"
        else:
            reason, msg = cond.as_reason(job.reason, "JobFailed"), job.message
        return status_patch(status, phase=cond.FAILED, message=msg, generation=generation, conditions=[
            (cond.EXTRACTED, cond.FALSE, reason, msg), (cond.READY, cond.FALSE, reason, msg)])
    return None
