"""The local Job runner: a STAND-IN for the kubelet and the Job controller, and nothing else.

The local control plane has no kubelet, so a Job never runs. This runner watches golora's
Jobs on the real apiserver and runs each Job's container command as a local process:
volumes are mapped to directories (a PVC to a directory per claim, emptyDir and Secrets to
temp dirs), mount paths in the command, args and env (JSON values included) are rewritten
to those directories, and the worker gets a real service-account token (TokenRequest) for
the Job's ServiceAccount, so its status patches go through the apiserver's RBAC exactly as
in a cluster. When the process ends, the runner writes the Job's status (Complete or
Failed, with the termination message) the way the Job controller would.

Like the scheduler on a node without GPUs, it does not run a Job whose container asks for
more ``nvidia.com/gpu`` than ``gpus``: it records a Pod with ``PodScheduled=False``
(``Insufficient nvidia.com/gpu``) instead, which is what a user sees when the T4 is busy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes

from .. import naming
from .cluster import ControlPlane

log = logging.getLogger("golora.jobrunner")

TERMINATION_LOG = "/dev/termination-log"


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def rewrite(value: Any, mounts: dict[str, str]) -> Any:
    """Map container paths to local ones in a string, or in every string of a JSON value."""
    if isinstance(value, dict):
        return {k: rewrite(v, mounts) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite(v, mounts) for v in value]
    if not isinstance(value, str):
        return value
    for container_path in sorted(mounts, key=len, reverse=True):
        if value == container_path or value.startswith(container_path.rstrip("/") + "/"):
            return mounts[container_path] + value[len(container_path):]
    return value


def rewrite_env_value(value: str, mounts: dict[str, str]) -> str:
    """Env values may hold a JSON document (the worker config): rewrite inside it."""
    stripped = value.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return json.dumps(rewrite(json.loads(value), mounts))
        except ValueError:
            pass
    return rewrite(value, mounts)


@dataclass
class RunRecord:
    namespace: str
    name: str
    returncode: int | None = None
    log_path: Path | None = None
    started: float = 0.0
    finished: float = 0.0


@dataclass
class LocalJobRunner:
    """Runs golora's Jobs as local processes (see module docstring). start()/stop()."""

    plane: ControlPlane
    workdir: Path
    claim_dirs: dict[str, Path] = field(default_factory=dict)
    executables: dict[str, str] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    max_parallel: int = 2
    gpus: int = 0
    # While paused, Jobs are left waiting (as on a node that has no room yet).
    paused: bool = False
    label_selector: str = f"{naming.LABEL_MANAGED_BY}={naming.MANAGED_BY}"

    records: dict[str, RunRecord] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set)
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _pool: ThreadPoolExecutor | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.api = kubernetes.config.new_client_from_config(config_file=str(self.plane.kubeconfig))
        self.batch = kubernetes.client.BatchV1Api(self.api)
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.workdir.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def env(self, **values: str):
        """Extra environment for the workers started inside the block (fault injection, faster
        progress), restored after it."""
        saved = {k: self.extra_env[k] for k in values if k in self.extra_env}
        self.extra_env.update(values)
        try:
            yield self
        finally:
            for k in values:
                self.extra_env.pop(k, None)
            self.extra_env.update(saved)

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> LocalJobRunner:
        self._pool = ThreadPoolExecutor(self.max_parallel, thread_name_prefix="jobrunner")
        self._thread = threading.Thread(target=self._watch_loop, name="jobrunner-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        if self._pool:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> LocalJobRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def claim_dir(self, namespace: str, claim: str) -> Path:
        path = self.claim_dirs.get(claim) or self.workdir / "claims" / namespace / claim
        path.mkdir(parents=True, exist_ok=True)
        return path

    def kill(self, namespace: str, name: str) -> None:
        """Kill a running Job's process (as if its node died)."""
        with self._lock:
            proc = self._procs.get(f"{namespace}/{name}")
        if proc and proc.poll() is None:
            proc.kill()

    # ---- watching --------------------------------------------------------------------
    def _watch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                listed = self.batch.list_job_for_all_namespaces(label_selector=self.label_selector)
                for job in listed.items:
                    self._consider(job)
                watch = kubernetes.watch.Watch()
                for event in watch.stream(self.batch.list_job_for_all_namespaces,
                                          label_selector=self.label_selector,
                                          resource_version=listed.metadata.resource_version,
                                          timeout_seconds=5):
                    if self._stop.is_set():
                        watch.stop()
                        break
                    if event["type"] == "DELETED" or event["object"].metadata.deletion_timestamp:
                        meta = event["object"].metadata
                        self.kill(meta.namespace, meta.name)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        self._consider(event["object"])
            except Exception as exc:  # noqa: BLE001 - keep the stand-in alive across apiserver restarts
                if not self._stop.is_set():
                    log.debug("job watch restarting: %s", exc)
                    time.sleep(0.5)

    def _consider(self, job: Any) -> None:
        uid = job.metadata.uid
        status = job.status
        if uid in self._seen or (status and (status.start_time or status.succeeded or status.failed)):
            return
        if job.spec.suspend or self.paused or job.metadata.deletion_timestamp:
            return
        self._seen.add(uid)
        limits = (job.spec.template.spec.containers[0].resources or kubernetes.client.V1ResourceRequirements()).limits
        wanted = int((limits or {}).get("nvidia.com/gpu", 0))
        if wanted > self.gpus:
            self._unschedulable(job, f"0/1 nodes are available: 1 Insufficient nvidia.com/gpu "
                                     f"(the Job asks for {wanted}, the local node has {self.gpus}).")
            return
        assert self._pool is not None
        self._pool.submit(self._run_safely, job)

    def _unschedulable(self, job: Any, message: str) -> None:
        """Record the Job's pod as the scheduler would leave it: Pending, not scheduled."""
        ns = job.metadata.namespace
        template = self.api.sanitize_for_serialization(job.spec.template)
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": f"{job.metadata.name}-", "namespace": ns,
                         "labels": {**(template["metadata"].get("labels") or {}), "job-name": job.metadata.name}},
            "spec": template["spec"],
        }
        try:
            created = self.core.create_namespaced_pod(ns, pod)
            self.core.patch_namespaced_pod_status(created.metadata.name, ns, {"status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                "message": message, "lastTransitionTime": _now()}]}})
        except kubernetes.client.ApiException as exc:
            log.warning("could not record unschedulable pod for %s/%s: %s", ns, job.metadata.name, exc.reason)

    def _run_safely(self, job: Any) -> None:
        try:
            self._run(job)
        except Exception:  # noqa: BLE001
            log.exception("local job runner failed on %s/%s", job.metadata.namespace, job.metadata.name)

    # ---- running one Job -------------------------------------------------------------
    def _patch_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.batch.patch_namespaced_job_status(name, ns, {"status": status})
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise

    def _token_dir(self, ns: str, service_account: str, into: Path) -> Path:
        sa_dir = into / "serviceaccount"
        sa_dir.mkdir(parents=True)
        token = self.core.create_namespaced_service_account_token(
            service_account, ns, {"spec": {"expirationSeconds": 3600}}).status.token
        (sa_dir / "token").write_text(token)
        (sa_dir / "ca.crt").write_bytes(self.plane.ca_pem)
        (sa_dir / "namespace").write_text(ns)
        return sa_dir

    def _volumes(self, ns: str, pod: Any, scratch: Path) -> dict[str, Path]:
        dirs: dict[str, Path] = {}
        for vol in pod.volumes or []:
            if vol.persistent_volume_claim:
                dirs[vol.name] = self.claim_dir(ns, vol.persistent_volume_claim.claim_name)
            elif vol.empty_dir is not None:
                dirs[vol.name] = Path(tempfile.mkdtemp(prefix=f"{vol.name}-", dir=scratch))
            elif vol.secret:
                target = Path(tempfile.mkdtemp(prefix=f"{vol.name}-", dir=scratch))
                secret = self.core.read_namespaced_secret(vol.secret.secret_name, ns)
                import base64

                data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
                items = vol.secret.items or [kubernetes.client.V1KeyToPath(key=k, path=k) for k in data]
                for item in items:
                    (target / item.path).parent.mkdir(parents=True, exist_ok=True)
                    (target / item.path).write_bytes(data[item.key])
                dirs[vol.name] = target
        return dirs

    def _run(self, job: Any) -> None:
        ns, name = job.metadata.namespace, job.metadata.name
        key = f"{ns}/{name}"
        record = RunRecord(ns, name, started=time.monotonic())
        self.records[key] = record
        self._patch_status(ns, name, {"startTime": _now(), "active": 1})
        pod = job.spec.template.spec
        container = pod.containers[0]
        scratch = Path(tempfile.mkdtemp(prefix=f"{ns}-{name}-", dir=self.workdir))
        returncode, message, reason = 1, "", "BackoffLimitExceeded"
        try:
            volumes = self._volumes(ns, pod, scratch)
            mounts = {m.mount_path: str(volumes[m.name] / (m.sub_path or "")).rstrip("/")
                      for m in container.volume_mounts or [] if m.name in volumes}
            termination_log = scratch / "termination-log"
            termination_log.touch()
            mounts[TERMINATION_LOG] = str(termination_log)
            sa_dir = self._token_dir(ns, pod.service_account_name or "default", scratch)
            host, port = self.plane.apiserver_url.removeprefix("https://").rsplit(":", 1)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(scratch),
                "KUBERNETES_SERVICE_HOST": host,
                "KUBERNETES_SERVICE_PORT": port,
                "GOLORA_SERVICEACCOUNT_DIR": str(sa_dir),
                "GOLORA_TERMINATION_LOG": str(termination_log),
                **{k: v for k, v in os.environ.items() if k.startswith(("GO", "HF_", "TRANSFORMERS_", "OMP_"))
                   and k not in ("GOLORA_CONFIG",)},
                **self.extra_env,
            }
            for var in container.env or []:
                if var.value is not None:
                    env[var.name] = rewrite_env_value(var.value, mounts)
            env["GOLORA_TERMINATION_LOG"] = str(termination_log)
            argv = [rewrite(a, mounts) for a in (container.command or []) + (container.args or [])]
            argv[0] = self.executables.get(argv[0]) or shutil.which(argv[0], path=env["PATH"]) or argv[0]
            log_path = self.workdir / "logs" / ns / f"{name}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            record.log_path = log_path
            with open(log_path, "wb") as out:
                proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=str(scratch))
                with self._lock:
                    self._procs[key] = proc
                try:
                    returncode = proc.wait(timeout=job.spec.active_deadline_seconds)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    returncode = proc.wait()
                    reason, message = "DeadlineExceeded", "Job was active longer than specified deadline"
            message = message or termination_log.read_text(errors="replace").strip()
            if not message and returncode != 0:
                message = log_path.read_text(errors="replace")[-2000:].strip()
        except Exception as exc:  # noqa: BLE001 - a runner error is a failed Job, as a kubelet error would be
            message = f"local job runner could not start the container: {exc}"
            log.exception("starting %s", key)
        finally:
            with self._lock:
                self._procs.pop(key, None)
            shutil.rmtree(scratch, ignore_errors=True)
        record.returncode, record.finished = returncode, time.monotonic()
        now = _now()
        if returncode == 0:
            self._patch_status(ns, name, {
                "active": 0, "succeeded": 1, "completionTime": now, "ready": 0,
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                     "message": "Reached expected number of succeeded pods", "lastTransitionTime": now,
                     "lastProbeTime": now},
                    {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                     "message": "Reached expected number of succeeded pods", "lastTransitionTime": now,
                     "lastProbeTime": now},
                ]})
        else:
            detail = f"exit code {returncode}" + (f": {message}" if message else "")
            self._patch_status(ns, name, {
                "active": 0, "failed": 1, "ready": 0,
                "conditions": [
                    {"type": "FailureTarget", "status": "True", "reason": reason, "message": detail[:4000],
                     "lastTransitionTime": now, "lastProbeTime": now},
                    {"type": "Failed", "status": "True", "reason": reason, "message": detail[:4000],
                     "lastTransitionTime": now, "lastProbeTime": now},
                ]})
