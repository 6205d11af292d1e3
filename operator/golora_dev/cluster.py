"""A real local control plane: etcd, kube-apiserver, kube-scheduler and
kube-controller-manager as local processes, all built from the pinned Go modules.

Started the way controller-runtime's envtest does it (generated certificates, RBAC,
random free ports, /readyz), with an explicit ``--advertise-address`` so it starts on a
machine without a default route. The scheduler and the controller manager (Job,
Deployment/ReplicaSet, garbage collector, namespace, service-account, token, node
lifecycle, PV binding, ... controllers) run with their own identities and leader election
off. The only thing missing is a kubelet: ``nodeagent`` is the stand-in for it.

The apiserver listens on the pod network's gateway (``podnet``), so Pods reach it at the
address their node has; etcd and the components' own endpoints stay on 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import binaries
from .certs import TinyCA, signing_key_pair
from .podnet import PodNetwork

START_TIMEOUT = float(os.environ.get("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT", "60").rstrip("s"))
STOP_TIMEOUT = float(os.environ.get("KUBEBUILDER_CONTROLPLANE_STOP_TIMEOUT", "20").rstrip("s"))
HOST = "127.0.0.1"
ADMIN_USER = "golora-admin"
SCHEDULER_USER = "system:kube-scheduler"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """preexec_fn: ask Linux to SIGKILL the child when its owner dies (no orphans).

    SIGKILL, not SIGTERM: a kube-apiserver whose etcd vanished at the same moment never
    finishes its graceful shutdown, and the data here is throwaway anyway.
    """
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    os.setpgrp()


def spawn(args: list[str], log: Path, *, detach: bool, **popen: object) -> subprocess.Popen:
    """Start a local component with its output appended to ``log``: in its own session when
    it must outlive us (``devcluster up``), otherwise killed with its owner."""
    fh = open(log, "ab")  # noqa: SIM115 - handed to the child
    kwargs: dict = {"stdout": fh, "stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL, **popen}
    if detach:
        kwargs["start_new_session"] = True
    else:
        kwargs["preexec_fn"] = _die_with_parent
    try:
        return subprocess.Popen(args, **kwargs)
    finally:
        fh.close()


def _insecure_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    ctx = _insecure_context() if url.startswith("https") else None
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} while starting:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s ({last}); see {log}")


def _stop(proc: subprocess.Popen | None, timeout: float = STOP_TIMEOUT) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class KubectlError(RuntimeError):
    """kubectl failed; ``stderr`` holds what a user would have seen."""

    def __init__(self, result: subprocess.CompletedProcess):
        self.result = result
        self.stderr = result.stderr
        super().__init__(f"kubectl {' '.join(result.args[2:])} failed ({result.returncode}): {result.stderr.strip()}")


@dataclass
class ControlPlane:
    """etcd + kube-apiserver in a temp dir. Use as a context manager, or start()/stop().

    ``detach=True`` (the CLI's ``up``) lets the processes outlive this Python process;
    otherwise they are tied to it and die with it even on SIGKILL.
    """

    workdir: Path | None = None
    detach: bool = False
    extra_apiserver_args: list[str] = field(default_factory=list)
    # False: etcd + apiserver only (a few API tests need no controllers).
    controllers: bool = True

    network: PodNetwork | None = None
    etcd_proc: subprocess.Popen | None = None
    apiserver_proc: subprocess.Popen | None = None
    scheduler_proc: subprocess.Popen | None = None
    controller_manager_proc: subprocess.Popen | None = None
    etcd_url: str = ""
    apiserver_url: str = ""
    kubeconfig: Path | None = None
    _owns_workdir: bool = False
    _client_ca: TinyCA | None = None
    _serving_ca: TinyCA | None = None
    bins: binaries.Binaries | None = None

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> ControlPlane:
        self.bins = binaries.find()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="golora-devcluster-"))
            self._owns_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if self.network is None:
                self.network = PodNetwork().create()
            self._start_etcd()
            self._start_apiserver()
            self.kubeconfig = self.write_kubeconfig(ADMIN_USER, ["system:masters"], self.workdir / "kubeconfig")
            if self.controllers:
                self._start_scheduler()
                self._start_controller_manager()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Controllers, apiserver, etcd, the pod network; then remove what we created."""
        for proc in (self.controller_manager_proc, self.scheduler_proc, self.apiserver_proc, self.etcd_proc):
            _stop(proc)
        self.apiserver_proc = self.etcd_proc = self.scheduler_proc = self.controller_manager_proc = None
        if self.network is not None and not self.detach:
            self.network.destroy()
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def host(self) -> str:
        """Where the apiserver listens: the pod network's gateway (Pods reach it too)."""
        return self.network.gateway if self.network else HOST

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _popen(self, args: list[str], log: Path) -> subprocess.Popen:
        return spawn(args, log, detach=self.detach)

    def _start_etcd(self) -> None:
        assert self.bins and self.workdir
        for attempt in range(3):
            client, peer = free_port(), free_port()
            self.etcd_url = f"http://{HOST}:{client}"
            peer_url = f"http://{HOST}:{peer}"
            data = self.workdir / "etcd-data"
            shutil.rmtree(data, ignore_errors=True)
            args = [
                str(self.bins.etcd),
                "--name=golora",
                f"--data-dir={data}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=golora={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ]
            self.etcd_proc = self._popen(args, self.workdir / "etcd.log")
            try:
                _wait_http(f"{self.etcd_url}/health", self.etcd_proc, self.workdir / "etcd.log", START_TIMEOUT)
                return
            except RuntimeError:
                if attempt == 2:
                    raise
                _stop(self.etcd_proc)

    def _start_apiserver(self) -> None:
        assert self.bins and self.workdir
        certs = self.workdir / "certs"
        certs.mkdir(exist_ok=True)
        self._serving_ca = TinyCA("golora-serving-ca")
        self._client_ca = TinyCA("golora-client-ca")
        self._serving_ca.serving(HOST, self.host).write(certs, "apiserver")
        self._client_ca.pair.write(certs, "client-ca")
        (certs / "serving-ca.crt").write_bytes(self._serving_ca.pair.cert_pem)
        sa_crt, sa_key = signing_key_pair().write(certs, "sa-signer")
        for attempt in range(3):
            port = free_port()
            self.apiserver_url = f"https://{self.host}:{port}"
            args = [
                str(self.bins.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                f"--cert-dir={certs}",
                f"--tls-cert-file={certs / 'apiserver.crt'}",
                f"--tls-private-key-file={certs / 'apiserver.key'}",
                f"--client-ca-file={certs / 'client-ca.crt'}",
                f"--secure-port={port}",
                f"--bind-address={self.host}",
                f"--advertise-address={self.host}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--authorization-mode=RBAC",
                # Nodes register an InternalIP only (their names do not resolve): logs and
                # exec are proxied there, to the node agent's kubelet port.
                "--kubelet-preferred-address-types=InternalIP",
                f"--service-account-issuer={self.apiserver_url}/",
                f"--service-account-key-file={sa_crt}",
                f"--service-account-signing-key-file={sa_key}",
                "--v=0",
                *self.extra_apiserver_args,
            ]
            log = self.workdir / "kube-apiserver.log"
            self.apiserver_proc = self._popen(args, log)
            try:
                _wait_http(f"{self.apiserver_url}/readyz", self.apiserver_proc, log, START_TIMEOUT)
                return
            except RuntimeError:
                if attempt == 2:
                    raise
                _stop(self.apiserver_proc)

    def _component_args(self, user: str, name: str) -> list[str]:
        """Flags both components share: their own identity, loopback, no leader election."""
        assert self.workdir
        kc = self.write_kubeconfig(user, None, self.workdir / f"{name}.kubeconfig")
        return [f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                "--authentication-skip-lookup=true", "--leader-elect=false", f"--bind-address={HOST}",
                f"--cert-dir={self.workdir / (name + '-certs')}", "--v=1"]

    def _start_component(self, binary: Path, user: str, name: str, extra: list[str]) -> subprocess.Popen:
        assert self.workdir
        log = self.workdir / f"{name}.log"
        for attempt in range(3):
            port = free_port()
            proc = self._popen([str(binary), *self._component_args(user, name), f"--secure-port={port}", *extra], log)
            try:
                _wait_http(f"https://{HOST}:{port}/healthz", proc, log, START_TIMEOUT)
                return proc
            except RuntimeError:
                if attempt == 2:
                    raise
                _stop(proc)
        raise AssertionError("unreachable")

    def _start_scheduler(self) -> None:
        assert self.bins
        self.scheduler_proc = self._start_component(self.bins.kube_scheduler, SCHEDULER_USER, "kube-scheduler", [])

    def _start_controller_manager(self) -> None:
        assert self.bins and self.workdir
        certs = self.workdir / "certs"
        self.controller_manager_proc = self._start_component(
            self.bins.kube_controller_manager, CONTROLLER_MANAGER_USER, "kube-controller-manager", [
                f"--service-account-private-key-file={certs / 'sa-signer.key'}",
                f"--root-ca-file={certs / 'serving-ca.crt'}",
                "--use-service-account-credentials=true",
                "--controllers=*",
            ])

    def restart_apiserver(self) -> None:
        """Kill kube-apiserver and start it again on the same etcd and port (fault injection)."""
        assert self.apiserver_proc is not None
        args = list(self.apiserver_proc.args)
        _stop(self.apiserver_proc)
        self.apiserver_proc = self._popen(args, self.workdir / "kube-apiserver.log")
        _wait_http(f"{self.apiserver_url}/readyz", self.apiserver_proc, self.workdir / "kube-apiserver.log", START_TIMEOUT)

    # ---- users and kubeconfigs ------------------------------------------------------
    @property
    def ca_pem(self) -> bytes:
        assert self.workdir
        return (self.workdir / "certs" / "serving-ca.crt").read_bytes()

    def kubeconfig_dict(self, user: str, groups: list[str] | None = None, namespace: str | None = None) -> dict:
        """A kubeconfig authenticating as ``user`` in ``groups`` with a fresh client certificate."""
        assert self._client_ca
        pair = self._client_ca.client(user, groups)
        b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
        context = {"cluster": "golora-dev", "user": user}
        if namespace:
            context["namespace"] = namespace
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "golora-dev", "cluster": {
                "server": self.apiserver_url, "certificate-authority-data": b64(self.ca_pem)}}],
            "users": [{"name": user, "user": {
                "client-certificate-data": b64(pair.cert_pem), "client-key-data": b64(pair.key_pem)}}],
            "contexts": [{"name": "golora-dev", "context": context}],
            "current-context": "golora-dev",
        }

    def write_kubeconfig(self, user: str, groups: list[str] | None, path: Path, namespace: str | None = None) -> Path:
        path.write_text(yaml.safe_dump(self.kubeconfig_dict(user, groups, namespace)))
        path.chmod(0o600)
        return path

    def kubectl(self, *args: str, kubeconfig: Path | None = None, input: str | None = None,
                check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run the built kubectl against this control plane (argument list, no shell)."""
        assert self.bins
        cmd = [str(self.bins.kubectl), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        out = subprocess.run(cmd, input=input, text=True, capture_output=True, timeout=timeout)
        if check and out.returncode != 0:
            raise KubectlError(out)
        return out

    @classmethod
    def attach(cls, state: dict) -> ControlPlane:
        """A handle on a control plane started by another process (``up``)."""
        plane = cls(workdir=Path(state["workdir"]), detach=True)
        plane.apiserver_url, plane.etcd_url = state["apiserver"], state["etcd"]
        plane.kubeconfig = Path(state["kubeconfig"])
        net = state.get("network") or {}
        plane.network = PodNetwork(index=net.get("index", -1), namespaced=net.get("namespaced", False))
        certs = plane.workdir / "certs"
        plane._client_ca = TinyCA.load(certs / "client-ca.crt", certs / "client-ca.key")
        plane.bins = binaries.find()
        return plane

    # ---- state for the CLI ----------------------------------------------------------
    def state(self) -> dict:
        return {
            "workdir": str(self.workdir),
            "kubeconfig": str(self.kubeconfig),
            "apiserver": self.apiserver_url,
            "etcd": self.etcd_url,
            "network": {"index": self.network.index, "namespaced": self.network.namespaced,
                        "subnet": str(self.network.subnet), "gateway": self.network.gateway} if self.network else None,
            "pids": {name: proc.pid for name, proc in (
                ("etcd", self.etcd_proc), ("kube-apiserver", self.apiserver_proc),
                ("kube-scheduler", self.scheduler_proc),
                ("kube-controller-manager", self.controller_manager_proc)) if proc is not None},
            "kubectl": str(self.bins.kubectl) if self.bins else None,
        }
