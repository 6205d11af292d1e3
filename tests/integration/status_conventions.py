"""What generic tools make of golora's status: cli-utils' kstatus (used by kpt, Flux, Config
Sync), ``kubectl wait --for=condition=Ready``, and a recorder of every version of an object
(a watch) to check them while the object works, not only at the end."""

from __future__ import annotations

import threading
import time
from typing import Any

import kubernetes

from tests.kube_helpers import GROUP, VERSION, custom_objects

CURRENT, IN_PROGRESS, FAILED, TERMINATING = "Current", "InProgress", "Failed", "Terminating"


def kstatus(obj: dict[str, Any]) -> str:
    """sigs.k8s.io/cli-utils pkg/kstatus/status ``Compute`` for a custom resource (no
    kind-specific rules): terminating; observedGeneration != generation -> InProgress;
    Reconciling=True -> InProgress, Stalled=True -> Failed; then the Ready condition (True ->
    Current, False/Unknown -> InProgress); no known condition at all -> Current."""
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return TERMINATING
    status = obj.get("status") or {}
    if "observedGeneration" in status and status["observedGeneration"] != meta.get("generation"):
        return IN_PROGRESS
    conds = status.get("conditions") or []
    for cond in conds:
        if cond.get("type") == "Reconciling" and cond.get("status") == "True":
            return IN_PROGRESS
        if cond.get("type") == "Stalled" and cond.get("status") == "True":
            return FAILED
    for cond in conds:
        if cond.get("type") != "Ready":
            continue
        if cond.get("status") == "True":
            return CURRENT
        if cond.get("status") in ("False", "Unknown"):
            return IN_PROGRESS
    return CURRENT


def ready_now(obj: dict[str, Any]) -> bool:
    """Ready=True about the object's current spec: status.observedGeneration and the Ready
    condition's observedGeneration both equal metadata.generation."""
    status, gen = obj.get("status") or {}, (obj.get("metadata") or {}).get("generation")
    if status.get("observedGeneration") != gen:
        return False
    return any(x.get("type") == "Ready" and x.get("status") == "True" and x.get("observedGeneration", gen) == gen
               for x in status.get("conditions") or [])


def kubectl_wait_ready(cluster: Any, kind: str, name: str, namespace: str, timeout: int = 120) -> str:
    """``kubectl wait --for=condition=Ready`` as a script would run it; its output."""
    out = cluster.kubectl("wait", "--for=condition=Ready", f"{kind}/{name}", "-n", namespace,
                          f"--timeout={timeout}s", timeout=timeout + 30, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "condition met" in out.stdout, out.stdout
    return out.stdout


def kubectl_wait_times_out(cluster: Any, kind: str, name: str, namespace: str, timeout: int = 2) -> None:
    """``kubectl wait --for=condition=Ready`` does not return while the object works."""
    out = cluster.kubectl("wait", "--for=condition=Ready", f"{kind}/{name}", "-n", namespace,
                          f"--timeout={timeout}s", timeout=timeout + 30, check=False)
    assert out.returncode != 0 and "condition met" not in out.stdout, out.stdout + out.stderr


class Recorder:
    """Every version of one golora object, from a watch started before it exists."""

    def __init__(self, api: Any, namespace: str, plural: str, name: str):
        self.api, self.namespace, self.plural, self.name = api, namespace, plural, name
        self.versions: list[dict[str, Any]] = []
        self._watch = kubernetes.watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()

    def _run(self) -> None:
        custom = custom_objects(self.api)
        self._started.set()
        try:
            for event in self._watch.stream(custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                                            self.plural, field_selector=f"metadata.name={self.name}",
                                            timeout_seconds=1800):
                if event["type"] in ("ADDED", "MODIFIED"):
                    self.versions.append(event["object"])
        except Exception:  # noqa: BLE001 - stopped, or the namespace went away
            return

    def start(self) -> Recorder:
        self._thread.start()
        self._started.wait(5)
        time.sleep(0.3)  # the watch request is out before the object is created
        return self

    def stop(self) -> None:
        time.sleep(0.5)  # the last events are in
        self._watch.stop()

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def statuses(self) -> list[str]:
        return [kstatus(v) for v in self.versions if v.get("status")]

    def check(self) -> list[str]:
        """The kstatus of each version with a status; checks that kstatus says Current exactly
        when Ready=True is about the current spec, that the operator's writes carry
        observedGeneration, and that the last version is Current after InProgress ones."""
        with_status = [v for v in self.versions if v.get("status")]
        assert with_status, f"no status recorded for {self.plural}/{self.name}"
        for v in with_status:
            status = v["status"]
            if status.get("phase") or status.get("conditions"):  # written by the operator
                assert status.get("observedGeneration") == v["metadata"]["generation"], status
            assert (kstatus(v) == CURRENT) == ready_now(v), (kstatus(v), status)
        statuses = [kstatus(v) for v in with_status]
        assert statuses[-1] == CURRENT, statuses
        assert IN_PROGRESS in statuses[:-1], statuses
        return statuses
