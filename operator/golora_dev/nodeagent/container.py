"""One container of a Pod as a local process: start, exit status, restarts, probes, kill.

What the container runtime and the kubelet report, reproduced: ``state.waiting`` /
``running`` / ``terminated`` (exitCode, reason ``Completed`` / ``Error`` / ``OOMKilled``,
signal, termination message from ``terminationMessagePath`` or, with
``FallbackToLogsOnError``, the log's tail), ``lastState``, ``restartCount``, ``started`` and
``ready``. A container with ``resources.limits.memory`` runs in its own memory cgroup, so an
out-of-memory kill is the kernel's, and is reported as ``OOMKilled``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golora.timestamps import now_rfc3339

from .probes import ProbeState

MESSAGE_LIMIT = 4096
FALLBACK_LINES = 80
FALLBACK_BYTES = 2048
BACKOFF_INITIAL, BACKOFF_MAX = 10.0, 300.0


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (``512Mi``, ``1G``, ``1e9``) in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(float(quantity))


def _memory_cgroup_root() -> Path | None:
    """This process's cgroup-v1 memory hierarchy, if it can hold children."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                root = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
                return root if os.access(root, os.W_OK) else None
    except OSError:
        pass
    return None


MEMORY_CGROUP_ROOT = _memory_cgroup_root()


def _child_setup(cgroup: Path | None) -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # die with the agent
    if cgroup is not None:
        with contextlib.suppress(OSError):
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))


@dataclass
class Container:
    """Runtime state of one container; ``PodWorker`` drives it."""

    spec: dict[str, Any]
    log_dir: Path
    init: bool = False
    restart_count: int = 0
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    started: bool = False
    ready: bool = False
    proc: subprocess.Popen | None = None
    termination_log: Path | None = None
    backoff_until: float = 0.0
    run_started: float = 0.0
    probes: dict[str, ProbeState] = field(default_factory=dict)
    _cgroup: Path | None = None
    _killed_for: str = ""

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def sidecar(self) -> bool:
        return self.init and self.spec.get("restartPolicy") == "Always"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.{self.restart_count}.log"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ---- start ----------------------------------------------------------------------------
    def start(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        limit = ((self.spec.get("resources") or {}).get("limits") or {}).get("memory")
        self._cgroup = None
        if limit and MEMORY_CGROUP_ROOT is not None:
            self._cgroup = MEMORY_CGROUP_ROOT / f"golora-{self.log_dir.parent.name[-40:]}-{self.name}"
            with contextlib.suppress(FileExistsError):
                self._cgroup.mkdir()
            (self._cgroup / "memory.limit_in_bytes").write_text(str(memory_bytes(str(limit))))
        if self.termination_log is not None:
            self.termination_log.write_text("")
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(argv, env=env, cwd=str(cwd), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=lambda: _child_setup(self._cgroup))  # noqa: PLW1509
        self.run_started = time.monotonic()
        self.state = {"running": {"startedAt": now_rfc3339()}}
        self.started = "startupProbe" not in self.spec
        self.ready = False
        self._killed_for = ""
        self.probes = {kind: ProbeState(self.spec[kind]) for kind in ("startupProbe", "readinessProbe", "livenessProbe")
                       if kind in self.spec}

    def waiting(self, reason: str, message: str = "") -> None:
        self.state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        self.started = self.ready = False

    # ---- stop -----------------------------------------------------------------------------
    def signal(self, sig: int) -> None:
        if self.running():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self, grace: float, why: str = "") -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL (what the runtime does)."""
        self._killed_for = why
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    # ---- exit -----------------------------------------------------------------------------
    def _oom_killed(self) -> bool:
        if self._cgroup is None:
            return False
        try:
            for line in (self._cgroup / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1]) > 0
        except OSError:
            pass
        return False

    def _message(self, exit_code: int) -> str:
        text = ""
        if self.termination_log is not None and self.termination_log.exists():
            text = self.termination_log.read_text(errors="replace")[:MESSAGE_LIMIT]
        if not text.strip() and exit_code != 0 and self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = self.log_path.read_text(errors="replace").splitlines()[-FALLBACK_LINES:]
            text = "\n".join(lines)[-FALLBACK_BYTES:]
        return text

    def reap(self) -> dict[str, Any] | None:
        """If the process ended: record ``state.terminated`` and return it."""
        if self.proc is None or self.proc.poll() is None:
            return None
        rc = self.proc.returncode
        sig = -rc if rc < 0 else 0
        exit_code = 128 + sig if sig else rc
        oom = self._oom_killed()
        terminated: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": "OOMKilled" if oom else ("Completed" if exit_code == 0 else "Error"),
            "startedAt": (self.state.get("running") or {}).get("startedAt") or now_rfc3339(),
            "finishedAt": now_rfc3339(),
            "containerID": self.container_id,
        }
        if sig:
            terminated["signal"] = sig
        message = self._message(exit_code)
        if message:
            terminated["message"] = message
        self.state = {"terminated": terminated}
        self.proc = None
        self.ready = False
        if self._cgroup is not None:
            with contextlib.suppress(OSError):
                self._cgroup.rmdir()
            self._cgroup = None
        return terminated

    def schedule_restart(self) -> None:
        """Move the terminated state to ``lastState`` and wait out the crash-loop back-off."""
        ran_for = time.monotonic() - self.run_started
        delay = BACKOFF_INITIAL if ran_for > 600 else min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** self.restart_count)
        self.last_state = self.state
        self.restart_count += 1
        self.backoff_until = time.monotonic() + delay
        self.waiting("CrashLoopBackOff", f"back-off {int(delay)}s restarting failed container={self.name}")

    @property
    def container_id(self) -> str:
        return f"local://{self.log_dir.parent.name}/{self.name}/{self.restart_count}"

    def status(self, image: str) -> dict[str, Any]:
        status = {"name": self.name, "image": image, "imageID": "", "ready": self.ready,
                  "started": self.started, "restartCount": self.restart_count, "state": self.state,
                  "lastState": self.last_state}
        if "running" in self.state or "terminated" in self.state:
            status["containerID"] = self.container_id
        return status
