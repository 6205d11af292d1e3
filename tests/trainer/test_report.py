"""Status reporting: merge patches to the status subresource over HTTPS, never fatal."""

from __future__ import annotations

import time

import pytest

from golora.api.worker import StatusTarget
from golora_trainer.report import StatusReporter, status_url, write_termination_message

TARGET = StatusTarget(namespace="team-a", name="go-adapter")
PATH = "/apis/golora.dev/v1alpha1/namespaces/team-a/loratrainings/go-adapter/status"


def test_result_patch_goes_to_the_status_subresource(status_server):
    rep = StatusReporter(TARGET, min_interval=0.0)
    assert rep.enabled
    assert rep.result({"evalLoss": 0.5, "failure": None}, progress={"stage": "done", "percent": 100})
    req = status_server.requests[-1]
    assert req["path"] == PATH
    assert req["headers"]["Content-Type"] == "application/merge-patch+json"
    assert req["headers"]["Authorization"] == "Bearer test-token"
    body = req["body"]
    assert body["status"]["result"] == {"evalLoss": 0.5, "failure": None}  # null clears an old failure
    assert body["status"]["progress"]["stage"] == "done" and "updatedAt" in body["status"]["progress"]
    assert set(body) == {"status"}


def test_progress_is_throttled_and_coalesced(status_server):
    rep = StatusReporter(TARGET, min_interval=0.5)
    for step in range(1, 21):
        rep.progress({"step": step, "totalSteps": 20})
        time.sleep(0.02)
    rep.flush()
    steps = [p["step"] for p in status_server.progress()]
    assert steps[-1] == 20  # the newest always arrives
    assert len(steps) <= 4  # 20 updates in ~0.4 s -> a couple of patches
    assert steps == sorted(steps)


def test_server_errors_are_retried_and_never_fatal(status_server):
    status_server.responses = [500, 503]
    rep = StatusReporter(TARGET, min_interval=0.0, backoff=0.01)
    assert rep.result({"trainLoss": 1.0})
    assert [r["code"] for r in status_server.requests] == [500, 503, 200]
    status_server.responses = [403]
    assert not rep.result({"trainLoss": 1.0})  # permission errors are not retried
    assert status_server.requests[-1]["code"] == 403 and rep.errors == 1


def test_unreachable_apiserver_is_logged_not_raised(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "9")  # discard: nothing listens
    monkeypatch.setenv("GOLORA_SERVICEACCOUNT_DIR", str(tmp_path))
    rep = StatusReporter(TARGET, min_interval=0.0, timeout=0.5, retries=2, backoff=0.01)
    rep.progress({"step": 1})
    assert rep.result({"trainLoss": 1.0}) is False


def test_wrong_ca_fails_verification_quietly(status_server, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "token").write_text("t")
    from .helpers import self_signed_cert

    cert, _ = self_signed_cert(other)
    (other / "ca.crt").write_bytes(cert.read_bytes())
    rep = StatusReporter(TARGET, sa_dir=str(other), min_interval=0.0, retries=1)
    assert rep.result({"trainLoss": 1.0}) is False
    assert status_server.requests == []


def test_no_target_sends_nothing(status_server):
    rep = StatusReporter(None)
    assert not rep.enabled
    rep.progress({"step": 1})
    assert rep.result({"x": 1}) is False
    assert status_server.requests == []


def test_target_without_in_cluster_env_is_disabled(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert not StatusReporter(TARGET).enabled


def test_status_url_handles_ipv6():
    assert status_url(TARGET, "fd00::1", "443").startswith("https://[fd00::1]:443/apis/golora.dev/")


def test_termination_message_is_written_and_capped(tmp_path, monkeypatch):
    path = tmp_path / "termination-log"
    monkeypatch.setenv("GOLORA_TERMINATION_LOG", str(path))
    write_termination_message("OutOfMemory: " + "x" * 10000)
    assert path.read_text().startswith("OutOfMemory: ") and len(path.read_bytes()) == 4096
    monkeypatch.setenv("GOLORA_TERMINATION_LOG", str(tmp_path / "missing-dir" / "log"))
    write_termination_message("ignored")  # errors are ignored


@pytest.mark.parametrize("code", [401, 404, 422])
def test_client_errors_stop_retrying(status_server, code):
    status_server.responses = [code]
    rep = StatusReporter(TARGET, min_interval=0.0, backoff=0.01)
    assert not rep.patch({"progress": {"step": 1}})
    assert len(status_server.requests) == 1


def test_progress_uses_the_crds_field_names_and_refuses_others():
    from golora.api.loratraining_status import TrainingProgress
    from golora_trainer.report import CURVE_FIELDS, progress_fields

    got = progress_fields(attempt=2, micro_batch_size=4, stage="training", total_steps=10, tokens_per_second=None)
    assert got == {"attempt": 2, "microBatchSize": 4, "stage": "training", "totalSteps": 10, "tokensPerSecond": None}
    assert TrainingProgress.model_validate(got).total_steps == 10
    assert {"step", "total_steps", "loss", "percent"} <= set(CURVE_FIELDS) and "attempt" not in CURVE_FIELDS
    with pytest.raises(TypeError, match="totalSteps"):
        progress_fields(totalSteps=10)  # the camelCase spelling is the wire's, not a field name


def test_progress_shows_step_of_total_and_a_loss_for_people():
    """kubectl get's PROGRESS and LOSS columns print the fields as they are: "12/32 (37%)" and
    4.271, not 37 and 4.271347308919449."""
    from types import SimpleNamespace

    from golora_trainer.callbacks import ProgressCallback
    from golora_trainer.report import progress_fields

    cb = ProgressCallback(StatusReporter(None), {"attempt": 1})
    cb.last["loss"] = 4.271347308919449
    got = cb.progress(SimpleNamespace(max_steps=32, global_step=12, epoch=0.375))
    assert (got["summary"], got["percent"], got["loss"]) == ("12/32 (37%)", 37, 4.271)
    assert progress_fields(step=32, total_steps=32)["summary"] == "32/32 (100%)"
    assert "summary" not in progress_fields(step=0, total_steps=None)  # the plan is not known yet
    assert progress_fields(step=None, total_steps=None, summary=None)["summary"] is None  # a new attempt clears it
