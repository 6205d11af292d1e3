"""Container probes (``httpGet``, ``tcpSocket``, ``exec``) with the kubelet's timing rules:
``initialDelaySeconds``, ``periodSeconds``, ``timeoutSeconds``, ``successThreshold`` and
``failureThreshold``; an HTTP status in [200, 400) is a success."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def _port(value: Any, container: dict[str, Any]) -> int:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"no container port named {value!r}")


def check_once(probe: dict[str, Any], container: dict[str, Any], pod_ip: str,
               run_exec: Callable[[list[str], float], int]) -> tuple[bool, str]:
    """One probe attempt: (success, what failed)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            host, port = get.get("host") or pod_ip, _port(get["port"], container)
            if get.get("scheme", "HTTP").upper() == "HTTPS":
                ctx = ssl.create_default_context()
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            try:
                headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
                conn.request("GET", get.get("path") or "/", headers={"User-Agent": "kube-probe/1.36", **headers})
                status = conn.getresponse().status
            finally:
                conn.close()
            return 200 <= status < 400, f"HTTP probe failed with statuscode: {status}"
        if "tcpSocket" in probe:
            sock = probe["tcpSocket"]
            with socket.create_connection((sock.get("host") or pod_ip, _port(sock["port"], container)), timeout):
                return True, ""
        if "exec" in probe:
            code = run_exec(list(probe["exec"]["command"]), timeout)
            return code == 0, f"command exited with {code}"
    except (OSError, http.client.HTTPException, subprocess.TimeoutExpired) as exc:
        return False, str(exc) or type(exc).__name__
    return False, "unsupported probe handler"


@dataclass
class ProbeState:
    """One probe of one running container: call ``due()`` then ``record()``."""

    probe: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0
    result: bool | None = None  # None until the thresholds decide
    last_error: str = ""

    def __post_init__(self) -> None:
        self.next_at = self.started + float(self.probe.get("initialDelaySeconds", 0))

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def record(self, ok: bool, error: str, now: float) -> None:
        self.next_at = now + float(self.probe.get("periodSeconds", 10))
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.probe.get("successThreshold", 1)):
                self.result = True
        else:
            self.failures, self.successes, self.last_error = self.failures + 1, 0, error
            if self.failures >= int(self.probe.get("failureThreshold", 3)):
                self.result = False
