"""builders.training_status and builders.dataset's status: a LoraTraining's and a GoDataset's
status from what a reconcile read. Pure: no cluster, no API client."""

from __future__ import annotations

import pytest

from golora import conditions as cond
from golora.api import worker
from golora.api.loratraining import LoraTrainingSpec
from golora.builders import dataset, training, training_status
from golora.builders.status import JobState, Termination, acceptance

SPEC = LoraTrainingSpec.model_validate({"baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct"}, "datasetRef": {"name": "ds"},
                                        "training": {"microBatchSize": 8}, "retry": {"maxAttempts": 3}})
READY = training_status.dataset_ready(training.DatasetFiles("datasets/ns/ds/train.jsonl", None))
FAILED_JOB = JobState(cond.FAILED, "BackoffLimitExceeded", "Job has reached the specified backoff limit")


def term(code: int, reason: str = "Error", signal: int | None = None) -> Termination:
    return Termination("p", code, reason, signal, "")


def by_type(patch: dict) -> dict:
    return {x["type"]: x for x in patch["conditions"]}


def test_every_trainer_exit_code_maps_back_to_its_reason():
    for reason, code in worker.REASON_EXIT_CODES.items():
        expected = worker.REASON_INVALID_CONFIG if reason == worker.REASON_PREQUANTIZED_BASE else reason
        assert worker.reason_for_exit_code(code) == expected, (reason, code)
    assert worker.exit_code_for(worker.REASON_INTERRUPTED) == worker.EXIT_INTERRUPTED == 7


def test_a_pod_that_exited_interrupted_is_retried_from_its_checkpoint():
    """The trainer exits 7 on SIGTERM after saving a checkpoint; when its status patch did not
    arrive, the Pod's exit code alone must make the attempt Interrupted, and Interrupted is
    retried with the same micro-batch (it fails if the mapping for 7 is disabled)."""
    reason, message = training_status.failure({}, term(worker.EXIT_INTERRUPTED), FAILED_JOB)
    assert reason == worker.REASON_INTERRUPTED and "exit code 7" in message
    assert training.next_attempt(SPEC, 1, reason, 8) == training.Retry(2, 8)
    killed, _ = training_status.failure({}, term(137), FAILED_JOB)  # SIGKILL: the node went away
    assert killed == worker.REASON_INTERRUPTED


def test_failure_reason_precedence():
    reported = {"failure": {"reason": "Diverged", "message": "loss is NaN at step 12"}}
    assert training_status.failure(reported, term(137, "OOMKilled"), FAILED_JOB) == ("Diverged",
                                                                                      "loss is NaN at step 12")
    assert training_status.failure({}, term(137, "OOMKilled"), FAILED_JOB)[0] == worker.REASON_OUT_OF_MEMORY
    assert training_status.failure({}, term(42), FAILED_JOB)[0] == "BackoffLimitExceeded"  # not a trainer code
    assert training_status.failure({}, None, FAILED_JOB) == ("BackoffLimitExceeded", FAILED_JOB.message)
    odd = JobState(cond.FAILED, "pod failure policy", "m")
    assert cond.valid_reason(training_status.failure({}, None, odd)[0])


def test_used_micro_batch_reported_then_progress_then_override_then_spec():
    assert training_status.used_micro_batch(SPEC, {}, {"microBatchSize": 2}, 4) == 2
    assert training_status.used_micro_batch(SPEC, {"progress": {"microBatchSize": 3}}, {}, 4) == 3
    assert training_status.used_micro_batch(SPEC, {}, {}, 4) == 4
    assert training_status.used_micro_batch(SPEC, {}, {}, None) == 8


def test_waiting_for_a_dataset_shows_the_expected_precision():
    patch = training_status.waiting_for_dataset({}, 1, "ds", None, "fp16")
    assert (patch["phase"], patch["expectedPrecision"]) == (cond.PENDING, "fp16")
    assert by_type(patch)[cond.DATASET_READY]["reason"] == "DatasetNotFound"
    failed = training_status.waiting_for_dataset({}, 1, "ds", {"status": {"phase": "Failed", "message": "no Go"}}, "fp16")
    assert failed["phase"] == cond.FAILED and failed["message"] == "waiting: GoDataset ds is Failed: no Go"


def test_succeeded_rounds_losses_and_reports_the_gate():
    result = {"adapterPath": "adapters/ns/x", "evalLoss": 0.412345, "baseEvalLoss": 1.0,
              "qualityGate": {"passed": True, "reason": "Passed", "message": "ok"}}
    patch = training_status.succeeded({}, 1, result, 1, [{"attempt": 1, "outcome": "Running"}], READY)
    assert patch["message"] == "adapter adapters/ns/x: eval loss 0.412 (base 1.000), gate Passed"
    assert by_type(patch)[cond.READY]["status"] == cond.TRUE and patch["attempts"][0]["outcome"] == "Succeeded"
    disabled = training_status.succeeded({}, 1, {"adapterPath": "a"}, 1, [], READY)
    assert by_type(disabled)[cond.QUALITY_GATE_PASSED]["reason"] == worker.GATE_DISABLED
    assert "eval loss n/a" in disabled["message"]


def test_failed_by_the_gate_sets_the_gate_condition():
    gate = {"passed": False, "reason": "DegenerateOutput", "message": "only whitespace"}
    patch = training_status.failed({}, 1, worker.REASON_QUALITY_GATE_FAILED, "gate", gate, [], READY)
    assert by_type(patch)[cond.QUALITY_GATE_PASSED]["reason"] == "DegenerateOutput"
    assert patch["message"] == "QualityGateFailed: gate"
    assert cond.QUALITY_GATE_PASSED not in by_type(training_status.failed({}, 1, "OutOfMemory", "oom", {}, [], READY))


def test_started_records_the_attempt_and_clears_an_old_result():
    status = {"jobName": "x-lt-g1-a1", "result": {"evalLoss": 1}}
    patch = training_status.started(status, 2, job_name="x-lt-g2-a1", attempt=1, micro_batch=4, attempts=[],
                                    ready=READY, note="", expected_precision="bf16")
    assert patch["attempts"] == [{"attempt": 1, "jobName": "x-lt-g2-a1", "outcome": "Pending", "microBatchSize": 4}]
    assert patch["result"] is None and patch["progress"] is None and patch["expectedPrecision"] == "bf16"
    retry = training_status.started({"jobName": "x-lt-g2-a1"}, 2, job_name="x-lt-g2-a2", attempt=2, micro_batch=2,
                                    attempts=patch["attempts"], ready=READY,
                                    note=training_status.retry_note(1, "OutOfMemory", 2), expected_precision="bf16")
    assert "result" not in retry and retry["message"] == "attempt 1 failed (OutOfMemory); retrying with micro-batch 2"


@pytest.mark.parametrize("scheduled,phase,reason", [
    ({"status": "True"}, "Running", "Scheduled"),
    ({"status": "False", "reason": "Unschedulable", "message": "0/1 nodes: Insufficient nvidia.com/gpu"}, "Pending",
     "Unschedulable"),
])
def test_pod_scheduling(scheduled, phase, reason):
    patch = training_status.pod_scheduling({"phase": "Running", "message": "training"}, 1, "p", scheduled) or {}
    assert patch.get("phase", "Running") == phase and by_type(patch)[cond.SCHEDULED]["reason"] == reason


def test_dataset_status_from_the_job_and_the_report():
    running = dataset.dataset_status({}, JobState(cond.RUNNING, "JobRunning", ""), 1)
    assert running["phase"] == cond.RUNNING
    done = {"result": {"pairsKept": 10, "pairsTrain": 9, "pairsEval": 1, "filesParsed": 3}}
    ok = dataset.dataset_status(done, JobState(cond.SUCCEEDED, "JobComplete", ""), 1)
    assert ok["message"] == "10 pairs (9 train / 1 eval) from 3 files" and by_type(ok)[cond.READY]["status"] == "True"
    empty = dataset.dataset_status({}, JobState(cond.SUCCEEDED, "JobComplete", ""), 1)
    assert by_type(empty)[cond.EXTRACTED]["reason"] == "NoResult" and empty["phase"] == cond.FAILED
    oom = dataset.with_termination(FAILED_JOB, term(137, "OOMKilled"))
    assert oom.reason == "OOMKilled" and "ended with exit code 137" in oom.message
    deleted = dataset.dataset_status({}, dataset.job_deleted("j"), 1)
    assert by_type(deleted)[cond.READY]["reason"] == "JobDeleted"
    assert dataset.dataset_status({}, JobState(cond.PENDING, "JobPending", ""), 1) is None


def test_job_created_is_written_once_per_job():
    from golora.api.godataset import GoDatasetSpec

    spec = {"sources": [{"name": "std", "pvc": {"claimName": "go-src", "path": "src"}}]}
    accepted = acceptance(GoDatasetSpec, spec, {}, 1)
    patch = dataset.job_created(accepted, {}, 1, "ds-gds-g1-a1")
    assert patch["jobName"] == "ds-gds-g1-a1" and patch["phase"] == cond.PENDING
    assert by_type(patch)[cond.READY]["reason"] == "Extracting"
    assert "jobName" not in (dataset.job_created(accepted, {"jobName": "ds-gds-g1-a1"}, 1, "ds-gds-g1-a1") or {})


def test_several_nodes_are_scheduled_all_or_nothing():
    waiting = training_status.ranks_scheduling({"phase": "Pending"}, 1, False, "1 of 2 pods placed: 0/1 nodes free")
    assert waiting["message"] == "unschedulable: 1 of 2 pods placed: 0/1 nodes free"
    assert by_type(waiting)[cond.SCHEDULED]["reason"] == "Unschedulable"
    placed = training_status.ranks_scheduling({"phase": "Running", "message": "training"}, 1, True, "2 of 2 placed")
    assert "message" not in placed and by_type(placed)[cond.SCHEDULED]["status"] == cond.TRUE
    running = training_status.running({}, 1, JobState(cond.RUNNING, "JobRunning", ""), 1, [], READY, nodes=2)
    assert cond.SCHEDULED not in by_type(running)  # one running pod does not mean all are placed


def test_a_rendezvous_timeout_of_unplaced_ranks_is_unschedulable():
    spec = LoraTrainingSpec.model_validate({**SPEC.model_dump(by_alias=True, exclude_none=True),
                                            "placement": {"nodes": 2, "schedulingTimeoutSeconds": 30}})
    status = {"conditions": cond.set_condition(None, cond.SCHEDULED, cond.FALSE, "Unschedulable", "1 of 2 placed", 1)}
    reason, message = training_status.unschedulable_ranks(spec, status, worker.REASON_RENDEZVOUS_TIMEOUT, "timeout")
    assert reason == worker.REASON_UNSCHEDULABLE and "within 30s" in message and message.endswith("1 of 2 placed")
    assert training_status.unschedulable_ranks(spec, {}, worker.REASON_RENDEZVOUS_TIMEOUT, "t") == (
        worker.REASON_RENDEZVOUS_TIMEOUT, "t")  # placed, but a peer never came: the timeout stands


def test_kubectl_get_columns_show_values_for_people():
    """Printer columns cannot format numbers: PROGRESS is progress.summary ("12/32 (37%)"), the
    loss columns are fields kept to 3 decimals (the precise losses stay in result.qualityGate)."""
    from golora.api.loratraining import KIND
    from golora.api.loratraining_status import progress_percent, progress_summary, shown

    cols = {c.name: c for c in KIND.printer_columns}
    assert (cols["Progress"].type, cols["Progress"].json_path) == ("string", ".status.progress.summary")
    assert {cols[n].json_path for n in ("Loss", "Eval-Loss", "Base-Loss")} == {
        ".status.progress.loss", ".status.result.evalLoss", ".status.result.baseEvalLoss"}
    assert progress_summary(12, 32) == "12/32 (37%)" and progress_percent(12, 32) == 37
    assert progress_summary(32, 32) == "32/32 (100%)" and progress_percent(31, 32) == 96
    assert progress_summary(0, None) is None and progress_percent(3, 0) is None
    assert shown(4.271347308919449) == 4.271 and shown(None) is None and shown(1) == 1.0
