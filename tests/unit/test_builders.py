"""The pure builders: spec -> Job / config / decisions, without a cluster."""

from __future__ import annotations

import json

import pytest

from golora.api.godataset import GoDatasetSpec
from golora.api.loratraining import LoraTrainingSpec
from golora.api.worker import REASON_INTERRUPTED, REASON_OUT_OF_MEMORY, TrainerConfig
from golora.builders import dataset as db
from golora.builders import status as st
from golora.builders import training as tb
from golora.settings import Settings

SETTINGS = Settings(extractor_image="x/extract:1", trainer_image="x/train:1")


def gds_spec(**kw) -> GoDatasetSpec:
    return GoDatasetSpec.model_validate({"sources": [
        {"name": "k8s", "git": {"url": "https://github.com/kubernetes/kubernetes", "revision": "v1.36.3",
                                "credentialsSecret": {"name": "gh"}}},
        {"name": "etcd", "module": {"path": "go.etcd.io/etcd/server/v3", "version": "v3.6.16"}},
        {"name": "std", "pvc": {"claimName": "go-src", "path": "src"}},
        {"name": "mirror", "pvc": {"claimName": "golora-store", "path": "mirror/x"}},
    ], **kw})


def test_extraction_job_is_list_args_and_one_json_config():
    job = db.build_dataset_job(namespace="llm", name="go", uid="u1", generation=3, spec=gds_spec(), settings=SETTINGS)
    assert job["metadata"]["name"] == "go-gds-g3-a1"
    assert job["metadata"]["labels"]["golora.dev/generation"] == "3"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u1"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["golora-extract", "run"] and "args" not in container
    assert container["image"] == "x/extract:1"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    config = json.loads(next(e["value"] for e in container["env"] if e["name"] == "GOLORA_CONFIG"))
    assert config["outputPath"] == "datasets/llm/go" and config["storeRoot"] == "/store"
    srcs = {s["name"]: s for s in config["sources"]}
    assert srcs["k8s"]["git"]["credentialsFile"] == "/var/run/golora/secrets/k8s/token"
    assert srcs["std"]["dir"] == "/mnt/claims/go-src/src"
    assert config["statusTarget"] == {"group": "golora.dev", "version": "v1alpha1", "plural": "godatasets",
                                      "namespace": "llm", "name": "go"}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/mnt/claims/go-src"]["readOnly"] is True
    assert "/var/run/golora/secrets/k8s" in mounts
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert sorted(claims) == ["go-src", "golora-store"]  # one volume per claim


def test_extractor_config_matches_filters_and_defaults():
    config = db.extractor_config("ns", "n", gds_spec(filters={"includeTests": True}, maxPairs=10))
    assert config["filters"]["includeTests"] is True and config["filters"]["minLines"] == 5
    assert config["maxPairs"] == 10 and config["template"] == "doc"
    assert config["split"] == {"evalFraction": 0.05, "seed": 42}


def lt_spec(**kw) -> LoraTrainingSpec:
    base = {"baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct"}, "datasetRef": {"name": "go"}}
    base.update(kw)
    return LoraTrainingSpec.model_validate(base)


def test_training_job_pins_the_gpu_node_and_validates_as_trainer_config():
    spec = lt_spec(placement={"gpuProduct": "Tesla-T4", "gpus": 1, "nodeSelector": {"lab": "dagobah"},
                              "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]},
                   baseModel={"name": "Qwen/Qwen2.5-7B-Instruct", "tokenSecret": {"name": "hf"}})
    files = tb.dataset_files("llm", spec, {"result": {"trainPath": "datasets/llm/go/train.jsonl",
                                                      "evalPath": "datasets/llm/go/eval.jsonl", "pairsEval": 5}})
    job = tb.build_training_job(namespace="llm", name="ad", uid="u", generation=2, attempt=3, spec=spec,
                                files=files, micro_batch_size=2, settings=SETTINGS)
    assert job["metadata"]["name"] == "ad-lt-g2-a3"
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"lab": "dagobah", "nvidia.com/gpu.product": "Tesla-T4"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["command"] == ["python", "-m", "golora_trainer", "run"]
    doc = next(e["value"] for e in container["env"] if e["name"] == "GOLORA_CONFIG")
    cfg = TrainerConfig.model_validate_json(doc)  # the trainer's own parse
    assert cfg.micro_batch_size == 2 and cfg.attempt == 3
    assert cfg.eval_path == "datasets/llm/go/eval.jsonl" and cfg.output_path == "adapters/llm/ad"
    assert cfg.hf_token_file == "/var/run/golora/secrets/hf/token"
    assert cfg.spec == spec


@pytest.mark.parametrize("precision,gpus,majors,expected", [
    ("auto", 1, ["7"], "fp16"), ("auto", 1, ["8"], "bf16"), ("auto", 1, ["9"], "bf16"),
    ("auto", 1, ["7", "8"], "fp16"), ("auto", 1, [], "unknown"), ("auto", 0, [], "fp32"), ("bf16", 1, ["7"], "bf16"),
])
def test_expected_precision_from_node_labels(precision, gpus, majors, expected):
    spec = lt_spec(training={"precision": precision}, placement={"gpus": gpus})
    labels = [{"nvidia.com/gpu.compute.major": m} for m in majors]
    assert tb.expected_precision(spec, labels) == expected


def test_next_attempt_halves_micro_batch_on_oom_and_is_bounded():
    spec = lt_spec(retry={"maxAttempts": 3})
    assert tb.next_attempt(spec, 1, REASON_OUT_OF_MEMORY, 8) == tb.Retry(2, 4)
    assert tb.next_attempt(spec, 2, REASON_OUT_OF_MEMORY, 3) == tb.Retry(3, 1)
    assert tb.next_attempt(spec, 3, REASON_OUT_OF_MEMORY, 4) is None  # out of attempts
    assert tb.next_attempt(spec, 1, REASON_OUT_OF_MEMORY, 1) is None  # nothing left to halve
    assert tb.next_attempt(spec, 1, "Diverged", 8) is None  # retrying cannot help
    assert tb.next_attempt(spec, 1, REASON_INTERRUPTED, 4) == tb.Retry(2, 4)


def test_job_state_and_idempotent_status_patch():
    assert st.job_state({}).phase == "Pending"
    # What the real Job controller writes: an unschedulable pod is active but not ready.
    assert st.job_state({"status": {"active": 1, "startTime": "t"}}).phase == "Pending"
    assert st.job_state({"status": {"active": 1, "ready": 1, "startTime": "t"}}).phase == "Running"
    failed = st.job_state({"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                                      "message": "too slow"}]}})
    assert (failed.phase, failed.reason, failed.message) == ("Failed", "DeadlineExceeded", "too slow")
    first = st.status_patch({}, phase="Running", message="m", generation=1,
                            conditions=[("Training", "True", "Training", "go")])
    assert first["phase"] == "Running" and first["conditions"][0]["type"] == "Training"
    again = st.status_patch(first, phase="Running", message="m", generation=1,
                            conditions=[("Training", "True", "Training", "go")])
    assert again is None  # nothing changed -> no write


def _pod(name: str, created: str, terminated: dict | None, last: dict | None = None, container: str = "train") -> dict:
    cs = {"name": container, "state": {"terminated": terminated} if terminated else {"running": {}}}
    if last:
        cs["lastState"] = {"terminated": last}
    return {"metadata": {"name": name, "creationTimestamp": created}, "status": {"containerStatuses": [cs]}}


def test_last_termination_reads_the_newest_pods_container():
    old = _pod("a", "2026-01-01T00:00:00Z", {"exitCode": 3, "reason": "Error"})
    new = _pod("b", "2026-01-01T00:01:00Z", {"exitCode": 137, "reason": "OOMKilled", "message": " boom "})
    term = st.last_termination([old, new], "train")
    assert term == st.Termination("b", 137, "OOMKilled", None, "boom")
    assert st.last_termination([old, new], "other") is None
    assert st.last_termination([_pod("c", "t", None, last={"exitCode": 2, "reason": "Error"})], "train").exit_code == 2
    assert st.last_termination([_pod("d", "t", None)], "train") is None  # still running


def test_reason_from_termination_classifies_kills_ooms_and_trainer_codes():
    from golora.api.worker import EXIT_INVALID_CONFIG, REASON_INVALID_CONFIG

    term = lambda code, reason="Error", sig=None: st.Termination("p", code, reason, sig, "")  # noqa: E731
    assert tb.reason_from_termination(term(137, "OOMKilled")) == REASON_OUT_OF_MEMORY
    assert tb.reason_from_termination(term(137)) == REASON_INTERRUPTED  # SIGKILL: node lost, preempted
    assert tb.reason_from_termination(term(143)) == REASON_INTERRUPTED  # SIGTERM without a checkpoint handler
    assert tb.reason_from_termination(term(0, sig=9)) == REASON_INTERRUPTED
    assert tb.reason_from_termination(term(EXIT_INVALID_CONFIG)) == REASON_INVALID_CONFIG
    assert tb.reason_from_termination(term(42)) is None  # not a trainer code: the Job's reason stands
    assert tb.reason_from_termination(None) is None
