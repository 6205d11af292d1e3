"""Prometheus metrics of the operator, served on ``GOLORA_METRICS_PORT`` (default 8000,
``0`` = off) at ``/metrics``.

What is counted, and where it comes from:

- ``golora_reconciles_total{kind,outcome}``: every spec the operator validated
  (``handlers.common.accept``): ``outcome`` is ``accepted`` or ``invalid``.
- ``golora_handler_errors_total{kind}``: every handler failure kopf reports (an exception,
  a temporary or permanent error, an API error such as a 403), by the kind of the object
  being handled. Read from kopf's per-object log records, so no handler has to remember it.
- ``golora_jobs{kind,phase}`` (gauge) and ``golora_job_phase_transitions_total{kind,phase}``:
  golora's worker Jobs that exist now, and the phase changes this process saw, from a watch
  on Jobs labelled ``app.kubernetes.io/managed-by=golora``. Phases are those of
  ``golora.conditions`` (Pending, Running, Succeeded, Failed).
- ``golora_resources{kind,phase}`` (gauge): golora resources by ``status.phase``.
- ``golora_adapters_served`` (gauge): AdapterServings whose ``Serving`` condition is True.
- ``golora_retries_total{kind,reason}``: new attempts after a failed one; the handler that
  decides a retry calls :func:`record_retry`.
- ``golora_build_info{version}`` = 1, plus the client library's process metrics (memory,
  CPU, open file descriptors).

The gauges are rebuilt from the watch streams, so they are right after a restart; the
counters start from zero with the process, as Prometheus expects of counters.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

import kopf
from prometheus_client import Counter, Gauge
from prometheus_client import start_http_server as _start_http_server

from . import __version__, naming
from . import conditions as cond
from .api import GROUP, KINDS, VERSION
from .settings import current as current_settings

log = logging.getLogger("golora.metrics")

RECONCILES = Counter("golora_reconciles", "Specs validated by the operator, by kind and outcome "
                     "(accepted | invalid).", ["kind", "outcome"])
HANDLER_ERRORS = Counter("golora_handler_errors", "Handler failures reported by kopf, by the kind of "
                         "the object handled.", ["kind"])
JOBS = Gauge("golora_jobs", "golora worker Jobs that exist now, by owning kind and phase.", ["kind", "phase"])
JOB_TRANSITIONS = Counter("golora_job_phase_transitions", "Worker Job phase changes seen by this "
                          "operator process, by owning kind and new phase.", ["kind", "phase"])
RESOURCES = Gauge("golora_resources", "golora resources by kind and status.phase.", ["kind", "phase"])
ADAPTERS_SERVED = Gauge("golora_adapters_served", "AdapterServings whose Serving condition is True.")
RETRIES = Counter("golora_retries", "Worker retries (a new attempt after a failed one), by kind and "
                  "reason.", ["kind", "reason"])
BUILD_INFO = Gauge("golora_build_info", "golora version of this operator process.", ["version"])
BUILD_INFO.labels(__version__).set(1)

_PROCESS_START = dt.datetime.now(dt.UTC)


# ---- helpers the handlers call ------------------------------------------------------------

def record_reconcile(kind: str, outcome: str) -> None:
    """One validated spec of ``kind``; ``outcome`` is ``accepted`` or ``invalid``."""
    RECONCILES.labels(kind or "unknown", outcome).inc()


def record_retry(kind: str, reason: str) -> None:
    """The operator started attempt N+1 of ``kind`` because attempt N failed with ``reason``
    (e.g. a LoraTraining retried after ``OutOfMemory`` with half the micro-batch)."""
    RETRIES.labels(kind, reason or "unknown").inc()


# ---- state rebuilt from the watch streams -------------------------------------------------

class _PhaseBook:
    """uid -> (kind, phase) for one gauge, kept consistent under concurrent handler threads."""

    def __init__(self, gauge: Gauge) -> None:
        self.gauge = gauge
        self.items: dict[str, tuple[str, str]] = {}
        self.lock = threading.Lock()

    def set(self, uid: str, kind: str, phase: str) -> str | None:
        """Record the phase; return the previous one (None if the object is new)."""
        with self.lock:
            old = self.items.get(uid)
            if old == (kind, phase):
                return phase
            if old is not None:
                self.gauge.labels(*old).dec()
            self.items[uid] = (kind, phase)
            self.gauge.labels(kind, phase).inc()
            return old[1] if old else None

    def forget(self, uid: str) -> None:
        with self.lock:
            old = self.items.pop(uid, None)
            if old is not None:
                self.gauge.labels(*old).dec()


_jobs = _PhaseBook(JOBS)
_resources = _PhaseBook(RESOURCES)
_served: set[str] = set()
_served_lock = threading.Lock()


def _created_before_start(body: dict[str, Any]) -> bool:
    stamp = body.get("metadata", {}).get("creationTimestamp")
    try:
        created = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return True
    return created < _PROCESS_START


def observe_job(body: dict[str, Any], event_type: str | None) -> None:
    """Update the Job gauges from one watch event of a golora Job."""
    from .builders.status import job_state  # the one reading of a Job's status

    meta = body.get("metadata", {})
    uid = meta.get("uid", "")
    if event_type == "DELETED":
        _jobs.forget(uid)
        return
    kind = (meta.get("labels") or {}).get(naming.LABEL_KIND, "unknown")
    phase = job_state(body).phase
    old = _jobs.set(uid, kind, phase)
    # A Job listed at startup in a phase it already had is not a transition seen here.
    if old != phase and (old is not None or not _created_before_start(body)):
        JOB_TRANSITIONS.labels(kind, phase).inc()


def observe_resource(body: dict[str, Any], event_type: str | None) -> None:
    """Update the resource gauges from one watch event of a golora resource."""
    meta = body.get("metadata", {})
    uid, kind = meta.get("uid", ""), body.get("kind", "unknown")
    if event_type == "DELETED":
        _resources.forget(uid)
        with _served_lock:
            _served.discard(uid)
            ADAPTERS_SERVED.set(len(_served))
        return
    status = body.get("status") or {}
    _resources.set(uid, kind, status.get("phase") or "New")
    if kind == "AdapterServing":
        with _served_lock:
            if cond.is_true(status.get("conditions"), cond.SERVING):
                _served.add(uid)
            else:
                _served.discard(uid)
            ADAPTERS_SERVED.set(len(_served))


@kopf.on.event("batch", "v1", "jobs", labels={naming.LABEL_MANAGED_BY: naming.MANAGED_BY}, id="metrics")
def _job_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    observe_job(dict(body), type)


def _resource_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    observe_resource(dict(body), type)


for _kind in KINDS:
    kopf.on.event(GROUP, VERSION, _kind.plural, id="metrics")(_resource_event)


# ---- handler errors, read from kopf's per-object log records -------------------------------

class _ErrorCounter(logging.Handler):
    """Counts ERROR records that kopf logs for an object (they carry ``k8s_ref``)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)

    def emit(self, record: logging.LogRecord) -> None:
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            HANDLER_ERRORS.labels(ref.get("kind") or "unknown").inc()


_error_counter = _ErrorCounter()
_OBJECT_LOGGER = logging.getLogger("kopf.objects")


# ---- the HTTP server ------------------------------------------------------------------------

_server: Any = None
_server_lock = threading.Lock()


def metrics_port() -> int:
    """The port from ``GOLORA_METRICS_PORT`` (golora.settings; 0 = off)."""
    return current_settings().metrics_port


def start_server(port: int | None = None, addr: str | None = None) -> int | None:
    """Serve ``/metrics`` on ``port`` (default: :func:`metrics_port`); return the port, or
    None when off or when the port is taken (the operator keeps running without metrics)."""
    global _server
    port = metrics_port() if port is None else port
    addr = addr or current_settings().metrics_addr
    if port <= 0:
        return None
    with _server_lock:
        if _server is not None:
            return _server.server_port
        try:
            server, _thread = _start_http_server(port, addr=addr)
        except OSError as exc:
            log.warning("metrics server not started on %s:%s: %s", addr, port, exc)
            return None
        _server = server
        return server.server_port


def stop_server() -> None:
    global _server
    with _server_lock:
        server, _server = _server, None
    if server is not None:
        server.shutdown()
        server.server_close()


@kopf.on.startup(id="metrics")
def _startup(logger: logging.Logger, **_: Any) -> None:
    if _error_counter not in _OBJECT_LOGGER.handlers:
        _OBJECT_LOGGER.addHandler(_error_counter)
    port = start_server()
    if port:
        logger.info(f"metrics on :{port}/metrics")


@kopf.on.cleanup(id="metrics")
def _cleanup(**_: Any) -> None:
    _OBJECT_LOGGER.removeHandler(_error_counter)
    stop_server()
