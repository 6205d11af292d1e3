"""Run the golora operator in-process for tests (kopf.testing.KopfRunner), with the fast
timeouts tests need, and restart it on demand."""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

import kopf
from kopf.testing import KopfRunner

from tests.conftest import wait_for

FAST_ENV = {"GOLORA_WATCH_SERVER_TIMEOUT": "10", "GOLORA_BACKOFF": "1", "GOLORA_METRICS_PORT": "0",
            "GOLORA_SERVING_RECHECK_SECONDS": "5"}


class _Capture(logging.Handler):
    """Keeps kopf's log lines (with the ``[ns/name]`` prefix) readable while it runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._mutex = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        ref = getattr(record, "k8s_ref", None)
        prefix = f"[{ref.get('namespace', '')}/{ref.get('name', '')}] " if ref else ""
        with self._mutex:
            self.lines.append(prefix + record.getMessage())

    def text(self) -> str:
        with self._mutex:
            return "\n".join(self.lines)

    def since(self, mark: int) -> list[str]:
        with self._mutex:
            return self.lines[mark:]


class OperatorProcess:
    """Start/stop/restart the operator; ``output`` accumulates the logs of all runs."""

    def __init__(self, cluster: Any, extra_args: list[str] | None = None):
        self.cluster = cluster
        self.extra_args = extra_args or []
        self.runner: KopfRunner | None = None
        self.capture = _Capture()

    def start(self) -> None:
        os.environ.update(FAST_ENV)
        os.environ["KUBECONFIG"] = str(self.cluster.kubeconfig)
        import golora.handlers  # noqa: F401  (registers handlers in kopf's default registry)

        settings = kopf.OperatorSettings()
        self.runner = KopfRunner(
            ["run", "--standalone", "--all-namespaces", "--verbose", "-m", "golora.handlers", *self.extra_args],
            settings=settings,
            timeout=60,
        )
        logging.getLogger().addHandler(self.capture)
        logging.getLogger("kopf").setLevel(logging.DEBUG)
        mark = len(self.capture.lines)
        self.runner.__enter__()
        try:
            wait_for(lambda: sum("Starting the watch-stream for" in line and "golora.dev" in line
                                 for line in self.capture.lines[mark:]) >= 3,
                     timeout=30, what="operator watching all three kinds")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.runner is None:
            return
        runner, self.runner = self.runner, None
        try:
            runner.__exit__(None, None, None)
        finally:
            logging.getLogger().removeHandler(self.capture)
        assert runner.exception is None, runner.exception

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def output(self) -> str:
        return self.capture.text()

    def log_mark(self) -> int:
        """Where the log is now: ``wait_for_log`` after it looks only at what comes later."""
        return len(self.capture.lines)

    def wait_for_log(self, since: int, ns: str, name: str, pattern: str, timeout: float = 30) -> str:
        """The first line about ``ns/name`` logged after mark ``since`` that matches ``pattern``
        (a regular expression): a positive sign that the operator got that far."""
        prefix = f"[{ns}/{name}] "
        regex = re.compile(pattern)
        return wait_for(lambda: next((line for line in self.capture.since(since)
                                      if line.startswith(prefix) and regex.search(line, len(prefix))), None),
                        timeout=timeout, interval=0.1, what=f"operator log about {ns}/{name} matching {pattern!r}")

    def handler_successes(self, handler: str, ns: str, name: str) -> int:
        """How many times handler ``handler`` succeeded for ``ns/name`` across all runs."""
        pattern = re.compile(rf"\[{re.escape(ns)}/{re.escape(name)}\] Handler '{re.escape(handler)}[^']*' succeeded")
        return len(pattern.findall(self.output))

    def __enter__(self) -> OperatorProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
