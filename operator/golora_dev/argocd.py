"""A real Argo CD on the local control plane: redis, argocd-repo-server and
argocd-application-controller as local processes (no argocd-server: Applications are plain
custom resources, and a sync is the Application's ``operation`` field, as the CLI writes it).

The binary is built from Argo CD's Go modules by ``hack/argocd/build.sh`` (cached by
version). Argo CD runs outside the cluster here, so the destination is the local cluster
registered as a cluster Secret under the apiserver's URL (``https://kubernetes.default.svc``
needs in-pod configuration). golora's health checks come from ``manifests/argocd``'s
argocd-cm, applied server-side as docs/install.md says.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import binaries
from .cluster import HOST, ControlPlane, _stop, _wait_http, free_port, spawn

NAMESPACE = "argocd"
START_TIMEOUT = 60.0


class ArgoCDUnavailable(RuntimeError):
    """Something Argo CD needs is missing on this machine (the message says what)."""


def build() -> Path:
    """The cached Argo CD directory (binary, component links, CRDs), built on first use."""
    root = binaries.repo_root()
    if root is None:
        raise ArgoCDUnavailable("Argo CD is built from a golora checkout (hack/argocd/build.sh)")
    out = subprocess.run(["bash", str(root / "hack" / "argocd" / "build.sh")], check=True,
                         stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise ArgoCDUnavailable("redis-server is not installed (make argocd installs Debian's redis-server)")
    return path


def _wait_redis(port: int, proc: subprocess.Popen, log: Path, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"redis on {port} not ready after {timeout:.0f}s; see {log}")


@dataclass
class ArgoCD:
    """Argo CD's two controllers and redis against ``plane``. Context manager, or start()/stop()."""

    plane: ControlPlane
    workdir: Path
    detach: bool = False
    # Quick reactions for tests and the demo (Argo CD's defaults: 120 s resync, self-heal backoff).
    app_resync_seconds: int = 20
    self_heal_timeout_seconds: int = 2
    bindir: Path | None = None
    redis_proc: subprocess.Popen | None = None
    repo_server_proc: subprocess.Popen | None = None
    controller_proc: subprocess.Popen | None = None
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def server(self) -> str:
        """destination.server for Applications: the local cluster as registered."""
        return self.plane.apiserver_url

    def start(self) -> ArgoCD:
        redis = redis_server()
        self.bindir = build()
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.install()
            self._start_redis(redis)
            self._start_repo_server()
            self._start_controller()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in (self.controller_proc, self.repo_server_proc, self.redis_proc):
            _stop(proc)
        self.controller_proc = self.repo_server_proc = self.redis_proc = None

    def __enter__(self) -> ArgoCD:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the objects Argo CD reads from its namespace ----------------------------------------
    def install(self) -> None:
        """CRDs, namespace, config, the default AppProject, the cluster Secret, golora's health checks."""
        assert self.bindir
        kubectl = self.plane.kubectl
        for crd in sorted((self.bindir / "crds").glob("*.yaml")):
            kubectl("apply", "--server-side", "--field-manager=golora-devcluster", "-f", str(crd))
        deadline = time.monotonic() + START_TIMEOUT
        while kubectl("wait", "--for=condition=Established", "--timeout=10s", "crd/applications.argoproj.io",
                      "crd/appprojects.argoproj.io", check=False).returncode != 0:
            if time.monotonic() > deadline:  # (kubectl wait fails at once while a CRD has no status yet)
                raise TimeoutError("Argo CD's CRDs not Established")
            time.sleep(0.2)
        kubectl("apply", "--server-side", "--field-manager=golora-devcluster", "-f", "-",
                input=yaml.safe_dump_all(self._objects()))
        repo = binaries.repo_root()
        if repo is not None:
            # What docs/install.md tells users to run: the keys merge into the existing argocd-cm.
            kubectl("apply", "--server-side", "-f", str(repo / "manifests" / "argocd" / "argocd-cm.yaml"))

    def _objects(self) -> list[dict]:
        cfg = self.plane.kubeconfig_dict("golora-argocd", ["system:masters"])
        user = cfg["users"][0]["user"]
        labels = {"app.kubernetes.io/part-of": "argocd"}
        secret_key = base64.b64encode(os.urandom(32)).decode()
        return [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": "argocd-cm", "namespace": NAMESPACE, "labels": {**labels, "app.kubernetes.io/name": "argocd-cm"}}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": "argocd-cmd-params-cm", "namespace": NAMESPACE,
                "labels": {**labels, "app.kubernetes.io/name": "argocd-cmd-params-cm"}}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {
                "name": "argocd-secret", "namespace": NAMESPACE, "labels": {**labels, "app.kubernetes.io/name": "argocd-secret"}},
             "type": "Opaque", "stringData": {"server.secretkey": secret_key}},
            {"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
             "metadata": {"name": "default", "namespace": NAMESPACE},
             "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}],
                      "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {
                "name": "cluster-golora-dev", "namespace": NAMESPACE,
                "labels": {"argocd.argoproj.io/secret-type": "cluster"}},
             "type": "Opaque", "stringData": {
                 "name": "golora-dev", "server": self.plane.apiserver_url,
                 "config": json.dumps({"tlsClientConfig": {
                     "caData": cfg["clusters"][0]["cluster"]["certificate-authority-data"],
                     "certData": user["client-certificate-data"], "keyData": user["client-key-data"]}})}},
        ]

    # ---- processes ----------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        assert self.bindir
        # The repo-server execs git-verify-wrapper.sh and git from PATH; no GPG keyring here.
        return {**os.environ, "PATH": f"{self.bindir}{os.pathsep}{os.environ.get('PATH', '')}",
                "ARGOCD_GPG_ENABLED": "false", "HOME": str(self.workdir)}

    def _popen(self, args: list[str], name: str) -> subprocess.Popen:
        return spawn(args, self.workdir / f"{name}.log", detach=self.detach, env=self._env(), cwd=str(self.workdir))

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _start_redis(self, redis: str) -> None:
        port = self.ports["redis"] = free_port()
        conf = self.workdir / "redis.conf"
        conf.write_text(f"bind {HOST}\nport {port}\nsave \"\"\nappendonly no\ndir {self.workdir}\n"
                        "protected-mode yes\n")
        self.redis_proc = self._popen([redis, str(conf)], "redis")
        _wait_redis(port, self.redis_proc, self.workdir / "redis.log")

    def _start_repo_server(self) -> None:
        assert self.bindir
        port, metrics = self.ports["repo-server"], self.ports["repo-server-metrics"] = free_port(), free_port()
        self.repo_server_proc = self._popen([
            str(self.bindir / "argocd-repo-server"), f"--address={HOST}", f"--port={port}",
            "--disable-tls", "--client-ca-path=", f"--redis={HOST}:{self.ports['redis']}",
            f"--metrics-address={HOST}", f"--metrics-port={metrics}", "--loglevel=info"], "argocd-repo-server")
        _wait_http(f"http://{HOST}:{metrics}/healthz", self.repo_server_proc,
                   self.workdir / "argocd-repo-server.log", START_TIMEOUT)

    def _start_controller(self) -> None:
        assert self.bindir and self.plane.kubeconfig
        metrics = self.ports["controller-metrics"] = free_port()
        self.controller_proc = self._popen([
            str(self.bindir / "argocd-application-controller"), f"--kubeconfig={self.plane.kubeconfig}",
            f"--namespace={NAMESPACE}", f"--redis={HOST}:{self.ports['redis']}",
            f"--repo-server={HOST}:{self.ports['repo-server']}", "--repo-server-plaintext",
            "--repo-server-client-cert-path=", "--repo-server-client-cert-key-path=",
            f"--metrics-port={metrics}", f"--app-resync={self.app_resync_seconds}",
            f"--self-heal-timeout-seconds={self.self_heal_timeout_seconds}",
            # Per-resource health in Application.status.resources (what tests and `kubectl get` read).
            "--persist-resource-health", "--loglevel=info"], "argocd-application-controller")
        _wait_http(f"http://{HOST}:{metrics}/healthz", self.controller_proc,
                   self.workdir / "argocd-application-controller.log", START_TIMEOUT)

    def state(self) -> dict:
        return {"namespace": NAMESPACE, "server": self.server, "bindir": str(self.bindir), "ports": self.ports,
                "pids": {name: proc.pid for name, proc in (
                    ("argocd-application-controller", self.controller_proc),
                    ("argocd-repo-server", self.repo_server_proc), ("redis", self.redis_proc)) if proc is not None}}


class GitRepo:
    """A local git repository Argo CD reads through a ``file://`` URL (branch main)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or Path(tempfile.mkdtemp(prefix="golora-gitops-"))
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / ".git").exists():
            self._git("init", "-q", "-b", "main")

    @property
    def url(self) -> str:
        return self.path.resolve().as_uri()

    def _git(self, *args: str) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "golora", "GIT_AUTHOR_EMAIL": "golora@example.invalid",
               "GIT_COMMITTER_NAME": "golora", "GIT_COMMITTER_EMAIL": "golora@example.invalid"}
        out = subprocess.run(["git", "-C", str(self.path), *args], env=env, check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def commit(self, files: dict[str, str | None], message: str) -> str:
        """Write ``files`` (path -> text; None removes), commit, return the commit id."""
        for rel, text in files.items():
            target = self.path / rel
            if text is None:
                target.unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        self._git("add", "-A")
        self._git("commit", "-q", "--allow-empty", "-m", message)
        return self._git("rev-parse", "HEAD")
