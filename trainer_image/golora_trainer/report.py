"""Report to the LoraTraining's status subresource over plain HTTPS (no kubernetes client).

``PATCH https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/apis/<group>/<version>/
namespaces/<ns>/<plural>/<name>/status`` with ``Content-Type: application/merge-patch+json``,
the service account's bearer token and CA (the standard mount, or ``GOLORA_SERVICEACCOUNT_DIR``:
``settings``). The trainer owns ``status.progress`` and ``status.result``; the operator owns the rest.

Reporting never fails a run: errors are logged and retried. Progress goes through a
background thread that keeps only the newest update and sends at most one every
``min_interval`` seconds, so a slow apiserver never slows training. The final result is sent
synchronously (bounded retries) before the process exits.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from golora.api.loratraining_status import TrainingProgress, progress_percent, progress_summary
from golora.api.worker import TERMINATION_LOG, TERMINATION_LOG_ENV, StatusTarget
from golora.timestamps import now_rfc3339

from . import settings

log = logging.getLogger(__name__)

TERMINATION_MESSAGE_LIMIT = 4096  # the kubelet keeps at most this many bytes
# The training curve's fields of status.progress (cleared when an attempt starts over).
CURVE_FIELDS = tuple(f for f in TrainingProgress.model_fields
                     if f not in ("stage", "precision", "micro_batch_size", "attempt", "updated_at"))


def progress_fields(**fields: Any) -> dict[str, Any]:
    """``status.progress`` as the CRD names it, from TrainingProgress's own field names (an
    unknown name is an error here, not a field the operator never reads); an explicit None
    clears a field. With ``step`` and ``total_steps``, ``percent`` and ``summary`` (what
    ``kubectl get`` shows: printer columns cannot format numbers) follow from them."""
    unknown = set(fields) - set(TrainingProgress.model_fields)
    if unknown:
        raise TypeError(f"not TrainingProgress fields: {sorted(unknown)}")
    step, total = fields.get("step"), fields.get("total_steps")
    if step is not None and total:
        fields.setdefault("percent", progress_percent(step, total))
        fields.setdefault("summary", progress_summary(step, total))
    return TrainingProgress(**fields).model_dump(by_alias=True, exclude_unset=True)


def write_termination_message(message: str) -> None:
    """Put ``message`` where Kubernetes shows it as the container's termination message."""
    path = os.environ.get(TERMINATION_LOG_ENV) or TERMINATION_LOG
    try:
        data = message.encode("utf-8", "replace")[:TERMINATION_MESSAGE_LIMIT]
        with open(path, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        log.debug("termination log %s not written: %s", path, exc)


def status_url(target: StatusTarget, host: str, port: str) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 service address
    return (
        f"https://{host}:{port}/apis/{target.group}/{target.version}/namespaces/{target.namespace}/"
        f"{target.plural}/{target.name}/status"
    )


class StatusReporter:
    """Merge-patches ``status`` of one custom resource; a no-op without a target."""

    def __init__(
        self,
        target: StatusTarget | None,
        *,
        sa_dir: str | None = None,
        host: str | None = None,
        port: str | None = None,
        min_interval: float | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
    ):
        self.target = target
        now = settings.current()
        self.sa_dir = Path(sa_dir or now.serviceaccount_dir)
        self.host = host or os.environ.get("KUBERNETES_SERVICE_HOST", "")
        self.port = port or os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.min_interval = now.progress_interval if min_interval is None else min_interval
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.sent = 0
        self.errors = 0
        self._pending: dict[str, Any] | None = None
        self._last_sent = 0.0
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        if target is not None and not self.host:
            log.warning("statusTarget is set but KUBERNETES_SERVICE_HOST is not: status will not be reported")
            self.target = None

    @property
    def enabled(self) -> bool:
        return self.target is not None

    # -- sending -----------------------------------------------------------------------
    def _context(self) -> ssl.SSLContext:
        ca = self.sa_dir / "ca.crt"
        ctx = ssl.create_default_context(cafile=str(ca) if ca.is_file() else None)
        return ctx

    def _token(self) -> str | None:
        try:  # re-read every time: projected tokens rotate
            return (self.sa_dir / "token").read_text().strip()
        except OSError:
            return None

    def patch(self, status: dict[str, Any]) -> bool:
        """Send ``{"status": status}`` as a merge patch now; True when the apiserver accepted it."""
        if self.target is None:
            return False
        body = json.dumps({"status": status}).encode()
        url = status_url(self.target, self.host, self.port)
        for attempt in range(1, self.retries + 1):
            req = urllib.request.Request(url, data=body, method="PATCH")
            req.add_header("Content-Type", "application/merge-patch+json")
            req.add_header("Accept", "application/json")
            token = self._token()
            if token:
                req.add_header("Authorization", f"Bearer {token}")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout, context=self._context()) as resp:
                    resp.read()
                self.sent += 1
                return True
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace")
                log.warning("status patch %s failed (attempt %d): HTTP %s %s", url, attempt, exc.code, detail)
                if exc.code in (400, 401, 403, 404, 422):
                    break  # retrying cannot fix these
            except (OSError, ssl.SSLError) as exc:
                log.warning("status patch %s failed (attempt %d): %s", url, attempt, exc)
            if attempt < self.retries:
                time.sleep(self.backoff * 2 ** (attempt - 1))
        self.errors += 1
        return False

    # -- progress (asynchronous, throttled) ---------------------------------------------
    def progress(self, progress: dict[str, Any], *, force: bool = False) -> None:
        """Queue a progress update; only the newest queued one is sent, at most every min_interval."""
        if self.target is None:
            return
        with self._cond:
            self._pending = {"progress": {**progress, "updatedAt": now_rfc3339()}}
            if force:
                self._last_sent = 0.0
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="golora-status", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None and self._closed:
                    return
                wait = self._last_sent + self.min_interval - time.monotonic()
                if wait > 0 and not self._closed:
                    self._cond.wait(timeout=wait)
                    continue
                body, self._pending = self._pending, None
                self._last_sent = time.monotonic()
            self.patch(body)

    def flush(self, timeout: float = 30.0) -> None:
        """Send a queued progress update now and stop the background thread."""
        with self._cond:
            self._closed = True
            self._last_sent = 0.0
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._cond:
            self._closed = False

    # -- the end -------------------------------------------------------------------------
    def result(self, result: dict[str, Any], progress: dict[str, Any] | None = None) -> bool:
        """Send the final result (and last progress) synchronously."""
        if self.target is None:
            return False
        self.flush()
        status: dict[str, Any] = {"result": result}
        if progress is not None:
            status["progress"] = {**progress, "updatedAt": now_rfc3339()}
        return self.patch(status)
