"""The node agent: the STAND-IN for the kubelet, and the only stand-in in the local cluster.

No container runtime can run the model-server images on these machines, so this agent
does, with local processes, what a kubelet does for the Pods that the real
kube-scheduler bound to its nodes:

- registers Nodes (capacity and labels from ``NodeSpec``; GPUs are capacity only), keeps
  their ``Ready`` condition and ``kube-node-lease`` Leases fresh, so the real node-lifecycle
  controller never taints them;
- runs each Pod (``pod.PodWorker``): own IP, volumes, init and sidecar containers, env,
  probes, restarts, status as a kubelet reports it, deletion with the grace period;
- serves container logs on each node's kubelet port, so ``kubectl logs`` works;
- stands in for cluster DNS for Pods in a subdomain (an Indexed Job's pods behind a headless
  Service), with a per-Pod hosts file (``hosts.py``).

Job and Deployment status come from the real controllers reading those Pods. Nothing in
golora's product code may depend on anything only this agent does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes

from golora.timestamps import now_rfc3339

from ..certs import TinyCA
from ..cluster import ControlPlane
from . import hosts as hostsmod
from .logserver import LogServer
from .pod import PodWorker
from .spec import ImageSpec, NodeSpec

log = logging.getLogger("golora.nodeagent")

LEASE_SECONDS = 40
LEASE_RENEW = 10.0
STATUS_EVERY = 60.0
KUBELET_VERSION = "v1.36.3"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
COMPLETION_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"

__all__ = ["ImageSpec", "NodeAgent", "NodeSpec"]


class NodeAgent:
    """``with NodeAgent(plane, workdir, nodes, images) as agent: ...`` (see module docstring)."""

    def __init__(self, plane: ControlPlane, workdir: Path, nodes: list[NodeSpec] | None = None,
                 images: list[ImageSpec] | None = None, extra_env: dict[str, str] | None = None):
        self.plane = plane
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.nodes = nodes or [NodeSpec()]
        self.images = images or []
        # Test-only fault injection into every container started (not something a kubelet does).
        self.extra_env: dict[str, str] = dict(extra_env or {})
        assert plane.network is not None, "the control plane owns the pod network"
        self.network = plane.network
        self.ca_pem = plane.ca_pem
        self.api = kubernetes.config.new_client_from_config(config_file=str(plane.kubeconfig))
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.coordination = kubernetes.client.CoordinationV1Api(self.api)
        self.stopping = threading.Event()
        self.workers: dict[str, PodWorker] = {}
        self._lock = threading.Lock()
        self._hosts_lock = threading.Lock()  # one hosts refresh at a time: no stale write lands last
        self._threads: list[threading.Thread] = []
        self.log_server: LogServer | None = None

    @property
    def apiserver_host_port(self) -> tuple[str, str]:
        host, port = self.plane.apiserver_url.removeprefix("https://").rsplit(":", 1)
        return host, port

    def node(self, name: str) -> NodeSpec:
        return next(n for n in self.nodes if n.name == name)

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> NodeAgent:
        certs = self.workdir / "kubelet-certs"
        certs.mkdir(exist_ok=True)
        crt, key = TinyCA("golora-kubelet-ca").serving(self.network.gateway).write(certs, "kubelet")
        self.log_server = LogServer(self.network.gateway, crt, key, self._log_file).start()
        for spec in self.nodes:
            self._register(spec)
        for target, name in ((self._heartbeat_loop, "node-heartbeat"), (self._watch_loop, "node-pods")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            workers = list(self.workers.values())
        for worker in workers:
            for c in worker.inits + worker.mains:
                c.signal(signal.SIGKILL)
        for worker in workers:
            worker.join(5)
        for thread in self._threads:
            thread.join(10)
        if self.log_server:
            self.log_server.stop()

    def __enter__(self) -> NodeAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- nodes ---------------------------------------------------------------------------------
    def _register(self, spec: NodeSpec) -> None:
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": spec.name, "labels": {"kubernetes.io/hostname": spec.name, "kubernetes.io/os": "linux",
                                          "kubernetes.io/arch": "amd64", **spec.labels}},
            "spec": {"taints": spec.taints} if spec.taints else {}}
        try:
            self.core.create_node(body)
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
            self.core.patch_node(spec.name, {"metadata": {"labels": body["metadata"]["labels"]}})
        self._post_node_status(spec)
        self._renew_lease(spec)

    def _post_node_status(self, spec: NodeSpec) -> None:
        now = now_rfc3339()
        conds = [("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                 ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                 ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                 ("Ready", "True", "KubeletReady", "golora node agent (kubelet stand-in) is posting ready status")]
        assert self.log_server is not None
        status = {
            "capacity": spec.capacity(), "allocatable": spec.capacity(),
            "addresses": [{"type": "InternalIP", "address": self.network.gateway}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_server.port}},
            "conditions": [{"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": now,
                            "lastTransitionTime": now} for t, s, r, m in conds],
            "nodeInfo": {"kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "local-process://golora",
                         "osImage": "golora node agent", "kernelVersion": os.uname().release,
                         "machineID": "", "systemUUID": "", "bootID": ""},
        }
        self.core.patch_node_status(spec.name, {"status": status}, _content_type="application/merge-patch+json")

    def _renew_lease(self, spec: NodeSpec) -> None:
        body = {"metadata": {"name": spec.name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": spec.name, "leaseDurationSeconds": LEASE_SECONDS,
                         "renewTime": now_rfc3339(micro=True)}}
        try:
            self.coordination.patch_namespaced_lease(spec.name, "kube-node-lease", {"spec": body["spec"]})
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
            self.coordination.create_namespaced_lease("kube-node-lease", body)

    def _heartbeat_loop(self) -> None:
        last_status = time.monotonic()
        while not self.stopping.wait(LEASE_RENEW):
            try:
                for spec in self.nodes:
                    self._renew_lease(spec)
                if time.monotonic() - last_status >= STATUS_EVERY:
                    for spec in self.nodes:
                        self._post_node_status(spec)
                    last_status = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - the apiserver may be restarting
                log.debug("heartbeat: %s", exc)

    # ---- pods ----------------------------------------------------------------------------------
    def _watch_loop(self) -> None:
        names = {n.name for n in self.nodes}
        selector = "spec.nodeName!="
        while not self.stopping.is_set():
            try:
                resp = self.core.list_pod_for_all_namespaces(field_selector=selector, _preload_content=False)
                listed = json.loads(resp.data)
                for pod in listed["items"]:
                    if pod["spec"].get("nodeName") in names:
                        self._dispatch("ADDED", pod)
                watch = kubernetes.watch.Watch()
                for event in watch.stream(self.core.list_pod_for_all_namespaces, field_selector=selector,
                                          resource_version=listed["metadata"]["resourceVersion"],
                                          timeout_seconds=30, allow_watch_bookmarks=False):
                    if self.stopping.is_set():
                        watch.stop()
                        break
                    pod = event["raw_object"]
                    if pod.get("kind") == "Pod" and pod["spec"].get("nodeName") in names:
                        self._dispatch(event["type"], pod)
            except Exception as exc:  # noqa: BLE001 - keep the node alive across apiserver restarts
                if not self.stopping.is_set():
                    log.debug("pod watch restarting: %s", exc)
                    time.sleep(0.5)

    def _dispatch(self, kind: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            worker = self.workers.get(uid)
            if worker is not None:
                if kind == "DELETED":
                    worker.delete_requested.set()
                else:
                    worker.observe(pod)
                return
            if kind == "DELETED":
                return
            terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            if terminal or pod["metadata"].get("deletionTimestamp"):
                if pod["metadata"].get("deletionTimestamp"):
                    threading.Thread(target=self.remove_pod, args=(pod,), daemon=True).start()
                return
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
        worker.start()

    def refresh_hosts(self, namespace: str, subdomain: str) -> None:
        """Rewrite the hosts file of every running Pod in ``namespace``'s ``subdomain``: the
        stand-in's cluster DNS for it (hosts.py)."""
        # Serialized: two Pods attaching at once each compute the group; without the lock the
        # refresh that saw only itself could write after the one that saw both, and a rank
        # would never resolve its peer (seen once: RendezvousTimeout on a two-node attempt).
        with self._hosts_lock:
            with self._lock:
                group = [w for w in self.workers.values() if w.uses_hosts and w.ns == namespace
                         and w.subdomain == subdomain and w.pod_ip]
            members = [m for w in group if (m := w.hosts_member()) is not None]
            for w in group:
                own = w.hosts_member()
                if own is not None:
                    hostsmod.write(self.network.netns(w.uid), hostsmod.render(own, members))

    def forget(self, uid: str) -> None:
        with self._lock:
            self.workers.pop(uid, None)

    def remove_pod(self, pod: dict[str, Any]) -> None:
        """The kubelet's last word: delete now, but only this incarnation (UID precondition)."""
        meta = pod["metadata"]
        with contextlib.suppress(kubernetes.client.ApiException, OSError):
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body={
                "gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}})

    def event(self, pod: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        now = now_rfc3339()
        body = {"metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"],
                                   "namespace": meta["namespace"], "uid": meta["uid"]},
                "type": type_, "reason": reason, "message": message[:1024], "count": 1,
                "firstTimestamp": now, "lastTimestamp": now,
                "source": {"component": "kubelet", "host": pod["spec"].get("nodeName", "")},
                "reportingComponent": "kubelet", "reportingInstance": pod["spec"].get("nodeName", "")}
        with contextlib.suppress(kubernetes.client.ApiException, OSError):
            self.core.create_namespaced_event(meta["namespace"], body)

    def _log_file(self, ns: str, name: str, container: str, previous: bool) -> Any:
        with self._lock:
            worker = next((w for w in self.workers.values() if w.ns == ns and w.pod_name == name), None)
        if worker is None:
            logs = sorted(self.workdir.glob(f"pods/{ns}_{name}_*/logs/{container}.*.log"))
            return (logs[-1], lambda: False) if logs else None
        c = worker.container(container)
        if c is None:
            return None
        if previous:
            if not c.restart_count:
                return None
            return worker.scratch / "logs" / f"{container}.{c.restart_count - 1}.log", lambda: False
        return c.log_path, lambda: c.running() and not worker.delete_requested.is_set()

    # ---- helpers for tests and the demo ---------------------------------------------------------
    def volume(self, namespace: str, claim: str, path: Path | None = None, read_only: bool = False) -> Path:
        """A hostPath PersistentVolume reserved for the claim ``namespace/claim`` (static
        provisioning: the real PV controller binds the claim when it appears). Idempotent."""
        path = Path(path or self.workdir / "claims" / namespace / claim)
        path.mkdir(parents=True, exist_ok=True)
        pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {
              "name": f"{namespace}-{claim}"[:253], "labels": {"golora.dev/local-claim": "true"}},
              "spec": {"capacity": {"storage": "100Gi"}, "accessModes": ["ReadOnlyMany" if read_only else "ReadWriteMany"],
                       "hostPath": {"path": str(path)}, "persistentVolumeReclaimPolicy": "Retain",
                       "storageClassName": "", "claimRef": {"namespace": namespace, "name": claim}}}
        try:
            self.core.create_persistent_volume(pv)
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
        return path

    def claim(self, namespace: str, claim: str, path: Path | None = None, read_only: bool = False) -> Path:
        """The volume and its PersistentVolumeClaim; returns the directory. Idempotent."""
        path = self.volume(namespace, claim, path, read_only)
        pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": namespace},
               "spec": {"accessModes": ["ReadOnlyMany" if read_only else "ReadWriteMany"],
                        "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "",
                        "volumeName": f"{namespace}-{claim}"[:253]}}
        try:
            self.core.create_namespaced_persistent_volume_claim(namespace, pvc)
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
        return path

    claim_dir = claim

    @contextlib.contextmanager
    def env(self, **values: str):
        """Extra environment for the containers started inside the block (fault injection)."""
        saved = dict(self.extra_env)
        self.extra_env.update(values)
        try:
            yield self
        finally:
            self.extra_env.clear()
            self.extra_env.update(saved)

    def pods_of_job(self, namespace: str, job: str) -> list[PodWorker]:
        with self._lock:
            return [w for w in self.workers.values() if w.ns == namespace
                    and (w.pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL) == job]

    def kill(self, namespace: str, job: str, sig: int = signal.SIGKILL, index: int | None = None) -> int:
        """Signal the running containers of a Job's pods (a node losing the process: the
        trainer gets no chance to checkpoint); ``index``: only that pod of an Indexed Job.
        Returns how many were signalled."""
        count = 0
        for worker in self.pods_of_job(namespace, job):
            labels = worker.pod["metadata"].get("labels") or {}
            if index is not None and labels.get(COMPLETION_INDEX_LABEL) != str(index):
                continue
            for c in worker.mains:
                if c.running():
                    c.signal(sig)
                    count += 1
        return count
