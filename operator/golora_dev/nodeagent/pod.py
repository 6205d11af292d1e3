"""One Pod bound to one of the agent's nodes, run as the kubelet runs it.

Sequence: the Pod's own network (``podnet``), volumes, init containers one by one (a
sidecar init container, ``restartPolicy: Always``, keeps running), then every container;
probes; restarts under the Pod's ``restartPolicy`` with the crash-loop back-off; the
phase from the containers' outcomes. Deletion: SIGTERM, the grace period, SIGKILL, then
the Pod object is removed (``gracePeriodSeconds: 0`` with a UID precondition), as a
kubelet does. Status goes to the status subresource only when it changed.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kubernetes

from golora.timestamps import now_rfc3339

from . import env as envmod
from . import hosts as hostsmod
from . import mountns
from .container import Container
from .probes import check_once
from .spec import PASS_THROUGH_ENV, find_image
from .volumes import VolumeNotReady, VolumeSetup, scratch_dir

if TYPE_CHECKING:
    from . import NodeAgent

log = logging.getLogger("golora.nodeagent")

TICK = 0.25
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
OWNED_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


class PodWorker(threading.Thread):
    def __init__(self, agent: NodeAgent, pod: dict[str, Any]):
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent, self.pod = agent, pod
        self.uid, self.ns, self.pod_name = meta["uid"], meta["namespace"], meta["name"]
        self.spec = pod["spec"]
        self.host_network = bool(self.spec.get("hostNetwork"))
        self.node = agent.node(self.spec["nodeName"])
        self.pod_ip = ""
        self.phase = "Pending"
        self.start_time = ""
        self.scratch = scratch_dir(agent.workdir / "pods", pod)
        self.inits = [Container(c, self.scratch / "logs", init=True) for c in self.spec.get("initContainers") or []]
        self.mains = [Container(c, self.scratch / "logs") for c in self.spec["containers"]]
        self.mounts: dict[str, dict[str, str]] = {}
        self.volumes: dict[str, Path] = {}
        self.delete_requested = threading.Event()
        self.initialized = False
        self._posted: dict[str, Any] | None = None
        self._network_ready = False
        # Pods in a subdomain get the stand-in's hosts file in place of cluster DNS (hosts.py)
        self.subdomain = self.spec.get("subdomain") or ""
        self.hostname = self.spec.get("hostname") or self.pod_name

    # ---- entry points from the agent's watch -----------------------------------------------
    def observe(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.delete_requested.set()

    def container(self, name: str) -> Container | None:
        return next((c for c in self.inits + self.mains if c.name == name), None)

    # ---- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - one broken pod must not stop the node
            if not self.agent.stopping.is_set():
                log.exception("pod %s/%s", self.ns, self.pod_name)
                self.agent.event(self.pod, "Warning", "FailedCreatePodSandBox", f"node agent: {exc}")
        finally:
            for c in self.inits + self.mains:
                c.kill(0)
            self.agent.network.detach(self.uid)
            self.agent.forget(self.uid)
            if self.uses_hosts:
                self.agent.refresh_hosts(self.ns, self.subdomain)

    def _run(self) -> None:
        self.start_time = now_rfc3339()
        self.pod_ip = self.node_ip if self.host_network else self.agent.network.attach(self.uid)
        if self.uses_hosts:
            self.agent.refresh_hosts(self.ns, self.subdomain)
        self._network_ready = True
        if not self._images_runnable() or not self._setup_volumes():
            self._wait_for_deletion()
            return
        self.initialized = not self.inits
        while not self.delete_requested.is_set():
            now = time.monotonic()
            if not self.initialized:
                self._step_init(now)
            if self.initialized:
                for c in self.mains:
                    self._step(c, now)
                for c in self.inits:
                    if c.sidecar:
                        self._step(c, now)
            self._post()
            if self.phase in ("Succeeded", "Failed"):
                for c in self.inits:
                    c.kill(self._grace())  # sidecars end with the pod
                self._post()
                self._wait_for_deletion()
                return
            time.sleep(TICK)
        self._terminate()

    @property
    def uses_hosts(self) -> bool:
        return bool(self.subdomain) and not self.host_network and self.agent.network.namespaced

    def hosts_member(self) -> hostsmod.Member | None:
        return hostsmod.Member(self.pod_ip, self.hostname, self.subdomain, self.ns) if self.pod_ip else None

    @property
    def node_ip(self) -> str:
        return self.agent.network.gateway

    def _grace(self) -> float:
        meta_grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        return float(meta_grace if meta_grace is not None else self.spec.get("terminationGracePeriodSeconds", 30))

    def _terminate(self) -> None:
        grace = self._grace()
        for c in self.mains:
            if c.running():
                self.agent.event(self.pod, "Normal", "Killing", f"Stopping container {c.name}")
        threads = [threading.Thread(target=c.kill, args=(grace,)) for c in self.mains]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in reversed(self.inits):
            c.kill(grace)
        for c in self.inits + self.mains:
            c.reap()
        self._post()
        self.agent.remove_pod(self.pod)

    def _wait_for_deletion(self) -> None:
        while not self.delete_requested.wait(1.0):
            if self.agent.stopping.is_set():
                return
        self.agent.remove_pod(self.pod)

    # ---- setup -------------------------------------------------------------------------------
    def _images_runnable(self) -> bool:
        missing = [c for c in self.inits + self.mains if find_image(self.agent.images, c.spec.get("image", "")) is None]
        for c in missing:
            msg = (f"image {c.spec.get('image')!r} has no local mapping on node {self.node.name}: the node agent "
                   "runs containers as local processes and knows only the images in its image map")
            c.waiting("ImageNotRunnableLocally", msg)
            self.agent.event(self.pod, "Warning", "Failed", f"Failed to run image: {msg}")
        self._post()
        return not missing

    def _setup_volumes(self) -> bool:
        last = ""
        while not self.delete_requested.is_set():
            try:
                self.volumes = VolumeSetup(self.agent.core, self.pod, self.scratch, self.agent.ca_pem).all()
                break
            except VolumeNotReady as exc:
                if str(exc) != last:
                    last = str(exc)
                    self.agent.event(self.pod, "Warning", "FailedMount", f"MountVolume.SetUp failed: {exc}")
                time.sleep(1.0)
        else:
            return False
        for c in self.inits + self.mains:
            mounts = {m["mountPath"]: str(self.volumes[m["name"]] / (m.get("subPath") or "")).rstrip("/")
                      for m in c.spec.get("volumeMounts") or [] if m["name"] in self.volumes}
            c.termination_log = self.scratch / f"termination-{c.name}"
            mounts[c.spec.get("terminationMessagePath") or "/dev/termination-log"] = str(c.termination_log)
            self.mounts[c.name] = mounts
        return True

    # ---- containers --------------------------------------------------------------------------
    def _base_env(self, c: Container) -> dict[str, str]:
        import os

        image = find_image(self.agent.images, c.spec.get("image", ""))
        assert image is not None
        host, port = self.agent.apiserver_host_port
        path = os.pathsep.join([*image.path, os.environ.get("PATH", "/usr/bin:/bin")])
        home = self.scratch / "home"
        home.mkdir(exist_ok=True)
        base = {k: v for k, v in os.environ.items() if k.startswith(PASS_THROUGH_ENV)}
        base.update({"PATH": path, "HOME": str(home), "HOSTNAME": self.pod_name,
                     "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
                     "KUBERNETES_SERVICE_PORT_HTTPS": port, **image.env})
        return base

    def _lookup(self, kind: str, name: str, key: str) -> Any:
        try:
            if kind == "secret":
                data = envmod.decode_secret(self.agent.core.read_namespaced_secret(name, self.ns).data)
                values = {k: v.decode(errors="replace") for k, v in data.items()}
            else:
                values = self.agent.core.read_namespaced_config_map(name, self.ns).data or {}
        except kubernetes.client.ApiException:
            return None
        return values if key == "*" else values.get(key)

    def _command(self, c: Container) -> tuple[list[str], dict[str, str], Path]:
        image = find_image(self.agent.images, c.spec.get("image", ""))
        assert image is not None
        pod = {**self.pod, "status": {**(self.pod.get("status") or {}), "podIP": self.pod_ip, "hostIP": self.node_ip}}
        base = self._base_env(c)
        env = envmod.container_env(pod, c.spec, self._lookup, base, self.node.capacity())
        mounts = self.mounts[c.name]
        command = c.spec.get("command") or image.entrypoint[:1]
        args = c.spec.get("args") if c.spec.get("command") else image.entrypoint[1:] + (c.spec.get("args") or [])
        argv = [envmod.rewrite_env_value(envmod.expand(a, env), mounts) for a in list(command) + list(args or [])]
        if not argv:
            raise RuntimeError(f"image {c.spec.get('image')!r} has no entrypoint in the image map and the "
                               "container sets no command")
        # Only what the Pod spec sets is mapped onto volumes: the image's own environment (and
        # the host paths the agent passes through) is already local (e.g. PYTHONPATH under /tmp,
        # where the scratch volume is mounted).
        env = {k: v if base.get(k) == v else envmod.rewrite_env_value(v, mounts) for k, v in env.items()}
        env.update(self.agent.extra_env)
        if SA_MOUNT in mounts:  # in-cluster clients read the standard path: point golora's at the mapped one
            env["GOLORA_SERVICEACCOUNT_DIR"] = mounts[SA_MOUNT]
        argv[0] = image.executables.get(argv[0]) or shutil.which(argv[0], path=env["PATH"]) or argv[0]
        workdir = c.spec.get("workingDir")
        cwd = Path(envmod.rewrite(workdir, mounts)) if workdir else self.scratch
        cwd.mkdir(parents=True, exist_ok=True)
        prefix = self.agent.network.enter(None if self.host_network else self.uid, hosts=self.uses_hosts)
        own = []
        if image.own_mounts:
            own = mountns.wrap([(str(self.volumes[m["name"]] / (m.get("subPath") or "")).rstrip("/"), m["mountPath"])
                                for m in c.spec.get("volumeMounts") or [] if m.get("name") in self.volumes])
        return [*prefix, *own, *argv], env, cwd

    def _start(self, c: Container) -> None:
        try:
            argv, env, cwd = self._command(c)
            c.start(argv, env, cwd)
            self.agent.event(self.pod, "Normal", "Started", f"Started container {c.name}")
        except (OSError, RuntimeError, LookupError, ValueError) as exc:
            c.waiting("CreateContainerError", str(exc))
            c.backoff_until = time.monotonic() + 10
            self.agent.event(self.pod, "Warning", "Failed", f"Error: {exc}")

    def _restart_allowed(self, c: Container, exit_code: int) -> bool:
        if c.sidecar:
            return True
        policy = self.spec.get("restartPolicy", "Always")
        if c.init:
            return policy != "Never" and exit_code != 0
        return policy == "Always" or (policy == "OnFailure" and exit_code != 0)

    def _step_init(self, now: float) -> None:
        for c in self.inits:
            if c.sidecar:
                if not c.running() and "terminated" not in c.state and now >= c.backoff_until:
                    self._start(c)
                self._step(c, now)
                if not c.started:
                    return
                continue
            if "terminated" in c.state and c.state["terminated"]["exitCode"] == 0:
                continue
            self._step(c, now)
            return
        self.initialized = True

    def _step(self, c: Container, now: float) -> None:
        if c.proc is None:
            if "terminated" in c.state or now < c.backoff_until:
                return
            self._start(c)
            return
        terminated = c.reap()
        if terminated is not None:
            if self._restart_allowed(c, terminated["exitCode"]):
                c.schedule_restart()
                self.agent.event(self.pod, "Warning", "BackOff", f"Back-off restarting failed container {c.name}")
            return
        self._probe(c, now)

    def _run_exec(self, c: Container) -> Any:
        def run(command: list[str], timeout: float) -> int:
            _, env, cwd = self._command(c)
            mounts = self.mounts[c.name]
            argv = [envmod.rewrite(a, mounts) for a in command]
            argv[0] = shutil.which(argv[0], path=env["PATH"]) or argv[0]
            prefix = self.agent.network.enter(None if self.host_network else self.uid, hosts=self.uses_hosts)
            return subprocess.run([*prefix, *argv], env=env, cwd=cwd, capture_output=True,
                                  timeout=timeout).returncode
        return run

    def _probe(self, c: Container, now: float) -> None:
        for kind, state in c.probes.items():
            if kind != "startupProbe" and not c.started:
                continue
            if kind == "startupProbe" and c.started:
                continue
            if not state.due(now):
                continue
            ok, error = check_once(state.probe, c.spec, self.pod_ip, self._run_exec(c))
            state.record(ok, error, time.monotonic())
            if not ok:
                self.agent.event(self.pod, "Warning", "Unhealthy",
                                 f"{kind.removesuffix('Probe').capitalize()} probe failed: {error}")
            if kind == "startupProbe" and state.result is not None:
                c.started = state.result
            elif kind == "readinessProbe":
                c.ready = bool(state.result) if state.result is not None else c.ready
                if state.result is False:
                    state.result = None  # keeps probing; ready again after successThreshold
            if state.result is False and kind in ("startupProbe", "livenessProbe"):
                self.agent.event(self.pod, "Normal", "Killing",
                                 f"Container {c.name} failed {kind.removesuffix('Probe')} probe, will be restarted")
                c.kill(float(self.spec.get("terminationGracePeriodSeconds", 30)), why=kind)
                return
        if "readinessProbe" not in c.probes and c.started:
            c.ready = True

    # ---- status ------------------------------------------------------------------------------
    def _phase(self) -> str:
        if not self.initialized:
            failed_init = any("terminated" in c.state and c.state["terminated"]["exitCode"] != 0
                              and not self._restart_allowed(c, c.state["terminated"]["exitCode"]) for c in self.inits)
            return "Failed" if failed_init else "Pending"
        states = [c.state for c in self.mains]
        if all("terminated" in s for s in states):
            return "Succeeded" if all(s["terminated"]["exitCode"] == 0 for s in states) else "Failed"
        if any("running" in s or "terminated" in s or c.restart_count for s, c in zip(states, self.mains, strict=True)):
            return "Running"
        return "Pending"

    def status(self) -> dict[str, Any]:
        self.phase = self._phase()
        ready = self.initialized and all(c.ready for c in self.mains) and self.phase == "Running"
        ts = now_rfc3339()
        ours = {"PodReadyToStartContainers": self._network_ready, "Initialized": self.initialized,
                "ContainersReady": ready, "Ready": ready}
        old = {x["type"]: x for x in (self.pod.get("status") or {}).get("conditions") or []}
        conditions = [x for t, x in old.items() if t not in OWNED_CONDITIONS]
        for type_, value in ours.items():
            status = "True" if value else "False"
            prev = old.get(type_)
            since = prev["lastTransitionTime"] if prev and prev.get("status") == status else ts
            cond = {"type": type_, "status": status, "lastTransitionTime": since, "lastProbeTime": None}
            if not value and type_ in ("ContainersReady", "Ready") and self.phase not in ("Succeeded", "Failed"):
                waiting = [c.name for c in self.mains if not c.ready]
                cond.update(reason="ContainersNotReady", message=f"containers with unready status: [{' '.join(waiting)}]")
            if self.phase in ("Succeeded", "Failed") and type_ in ("ContainersReady", "Ready"):
                cond.update(reason="PodCompleted")
            conditions.append(cond)
        status: dict[str, Any] = {
            "phase": self.phase, "conditions": conditions, "hostIP": self.node_ip,
            "hostIPs": [{"ip": self.node_ip}], "startTime": self.start_time,
            "containerStatuses": [c.status(c.spec.get("image", "")) for c in self.mains],
        }
        if self.pod_ip:
            status.update(podIP=self.pod_ip, podIPs=[{"ip": self.pod_ip}])
        if self.inits:
            status["initContainerStatuses"] = [c.status(c.spec.get("image", "")) for c in self.inits]
        return status

    def _post(self) -> None:
        status = self.status()
        comparable = {k: v for k, v in status.items() if k != "conditions"}
        comparable["conditions"] = [(x["type"], x["status"], x.get("reason")) for x in status["conditions"]]
        if comparable == self._posted:
            return
        try:
            self.agent.core.patch_namespaced_pod_status(self.pod_name, self.ns, {"status": status},
                                                        _content_type="application/merge-patch+json")
            self._posted = comparable
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                self.delete_requested.set()
            else:
                log.warning("pod %s/%s status: %s", self.ns, self.pod_name, exc.reason)
