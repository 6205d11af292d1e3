"""LoraTraining end to end on the real apiserver: GoDataset -> LoraTraining -> the real
trainer (tiny Qwen2 on CPU) in pods the real scheduler places and the real Job controller
tracks, run by the node agent -> status, retries (classified from real Pod status), scheduling."""

from __future__ import annotations

import shutil

import kubernetes
import pytest

from tests.conftest import wait_for
from tests.integration.status_conventions import Recorder, kstatus, kubectl_wait_ready, kubectl_wait_times_out
from tests.kube_helpers import condition, create_cr, get_cr, wait_for_phase

pytestmark = [pytest.mark.cluster, pytest.mark.train]


def finished(api, ns, name, *, timeout):
    """The LoraTraining once its phase is Succeeded or Failed."""
    return wait_for_phase(api, ns, "loratrainings", name, timeout=timeout, interval=0.5)


@pytest.fixture(scope="module")
def tiny_base():
    from golora_trainer.tiny import TinySpec, ensure_tiny

    return ensure_tiny(TinySpec(pretrain_steps=300))


def put_model(node_agent, ns, tiny_base) -> str:
    target = node_agent.claim_dir(ns, "golora-store") / "models" / "tiny-go"
    shutil.copytree(tiny_base, target, dirs_exist_ok=True)
    return "models/tiny-go"


def training(name, model_path, dataset="stdlib", **training) -> dict:
    return {"apiVersion": "golora.dev/v1alpha1", "kind": "LoraTraining", "metadata": {"name": name}, "spec": {
        "baseModel": {"path": model_path}, "datasetRef": {"name": dataset},
        "quantization": {"type": "none"}, "placement": {"gpus": 0},
        "training": {"maxSteps": 30, "maxSeqLength": 512, "microBatchSize": 4, "effectiveBatchSize": 8,
                     "learningRate": 2e-4, "loggingSteps": 5, "checkpointSteps": 100, **training},
        "qualityGate": {"prompts": 6, "maxNewTokens": 64}}}


def stdlib_dataset(name="stdlib", max_pairs=600) -> dict:
    return {"apiVersion": "golora.dev/v1alpha1", "kind": "GoDataset", "metadata": {"name": name},
            "spec": {"sources": [{"name": "stdlib", "pvc": {"claimName": "go-src", "path": "src"}}],
                     "maxPairs": max_pairs, "split": {"evalFraction": 0.1, "seed": 1}}}


def test_waits_for_dataset_then_trains_to_succeeded_with_live_progress(
        cluster, api, namespace, operator, node_agent, tiny_base):
    model = put_model(node_agent, namespace, tiny_base)
    recorder = Recorder(api, namespace, "loratrainings", "go-adapter").start()
    create_cr(api, namespace, training("go-adapter", model))
    waiting = wait_for(lambda: (o := get_cr(api, namespace, "loratrainings", "go-adapter"))
                       and condition(o, "DatasetReady") and o, what="DatasetReady condition")
    assert condition(waiting, "DatasetReady")["status"] == "False"
    assert condition(waiting, "DatasetReady")["reason"] == "DatasetNotFound"
    # Not Ready, and why: the dataset; kstatus InProgress; `kubectl wait` keeps waiting.
    ready = condition(waiting, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "DatasetNotFound")
    assert kstatus(waiting) == "InProgress"
    kubectl_wait_times_out(cluster, "loratraining", "go-adapter", namespace)
    assert waiting["status"]["phase"] == "Pending" and "GoDataset stdlib not found" in waiting["status"]["message"]
    assert not kubernetes.client.BatchV1Api(api).list_namespaced_job(
        namespace, label_selector="golora.dev/kind=LoraTraining").items

    create_cr(api, namespace, stdlib_dataset())
    seen_progress: list[dict] = []

    def finished_recording_progress():
        obj = get_cr(api, namespace, "loratrainings", "go-adapter")
        status = obj.get("status", {})
        if status.get("phase") == "Running" and (status.get("progress") or {}).get("step"):
            seen_progress.append(status["progress"])
        return status.get("phase") in ("Succeeded", "Failed") and obj

    done = wait_for(finished_recording_progress, timeout=400, interval=0.5, what="training finished")
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    # Adapter written and gate passed: Ready; kubectl wait returns; kstatus Current at the end,
    # InProgress while it waited for the dataset and trained.
    assert condition(done, "Ready")["status"] == "True" and condition(done, "Ready")["reason"] == "AdapterReady"
    kubectl_wait_ready(cluster, "loratraining", "go-adapter", namespace)
    kubectl_wait_ready(cluster, "godataset", "stdlib", namespace)
    every = cluster.kubectl("wait", "--for=condition=Ready", "golora", "--all", "-n", namespace, "--timeout=30s")
    assert "godataset.golora.dev/stdlib condition met" in every.stdout, every.stdout
    assert "loratraining.golora.dev/go-adapter condition met" in every.stdout, every.stdout
    recorder.stop()
    assert kstatus(done) == "Current" and status["observedGeneration"] == done["metadata"]["generation"]
    recorder.check()
    assert seen_progress, "no live progress seen while Running"
    assert any(p.get("totalSteps") == 30 and 0 < p["step"] <= 30 for p in seen_progress)
    result = status["result"]
    assert result["evalLoss"] < result["baseEvalLoss"]
    assert result["adapterPath"] == f"adapters/{namespace}/go-adapter"
    assert result["precision"] == "fp32" and status["expectedPrecision"] == "fp32"
    assert condition(done, "QualityGatePassed")["status"] == "True"
    gate = result["qualityGate"]  # golora-extract check ran in the gate, on the base and on the adapter
    assert gate["adapter"]["goParseRate"] is not None and gate["base"]["goParseRate"] is not None
    assert gate["comparison"].startswith("parse ") and result["goParseRate"] == gate["adapter"]["goParseRate"]
    assert condition(done, "Succeeded")["status"] == "True"
    assert [a["outcome"] for a in status["attempts"]] == ["Succeeded"]
    from golora.vllm import validate_adapter_dir

    adapter = node_agent.claim_dir(namespace, "golora-store") / result["adapterPath"]
    assert validate_adapter_dir(adapter).ok
    table = cluster.kubectl("get", "lt", "go-adapter", "-n", namespace).stdout
    assert "Succeeded" in table and "Passed" in table and f"{result['evalLoss']:.4g}"[:4] in table


def test_out_of_memory_is_retried_with_half_the_micro_batch(cluster, api, namespace, operator, node_agent, tiny_base):
    """Fault injection: the trainer raises CUDA's OOM error for micro-batches above 2."""
    model = put_model(node_agent, namespace, tiny_base)
    create_cr(api, namespace, stdlib_dataset(max_pairs=200))
    with node_agent.env(GOLORA_FAULT_OOM_ABOVE_MICRO_BATCH="2"):
        create_cr(api, namespace, training(
            "oom", model, microBatchSize=8, effectiveBatchSize=8, maxSteps=4))
        done = finished(api, namespace, "oom", timeout=400)
    status = done["status"]
    assert [(a["attempt"], a.get("microBatchSize"), a["outcome"]) for a in status["attempts"]] == [
        (1, None, "OutOfMemory"), (2, 4, "OutOfMemory"), (3, 2, "Succeeded")]
    assert status["phase"] == "Succeeded" and status["result"]["microBatchSize"] == 2
    jobs = kubernetes.client.BatchV1Api(api).list_namespaced_job(
        namespace, label_selector="golora.dev/kind=LoraTraining,golora.dev/name=oom").items
    assert sorted(j.metadata.name for j in jobs) == ["oom-lt-g1-a1", "oom-lt-g1-a2", "oom-lt-g1-a3"]


def test_gpu_placement_expected_precision_and_unschedulable(cluster, api, namespace, operator, node_agent):
    """The session's ``t4`` node has one GPU; a prefill pod holds it, so the real scheduler
    cannot place the training pod and says why, in its own words."""
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, {"metadata": {"name": "prefill"}, "spec": {
        "nodeSelector": {"nvidia.com/gpu.product": "Tesla-T4"}, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "vllm", "image": "busybox", "command": ["sleep", "600"],
                        "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}})
    wait_for(lambda: core.read_namespaced_pod("prefill", namespace).status.phase == "Running", what="prefill running")
    # Waiting for a dataset that does not exist yet, the precision the T4 implies is already shown.
    early = training("early", "models/none", dataset="later")
    early["spec"]["placement"] = {"gpuProduct": "Tesla-T4", "gpus": 1}
    create_cr(api, namespace, early)
    waiting = wait_for(lambda: (o := get_cr(api, namespace, "loratrainings", "early")).get("status", {})
                       .get("expectedPrecision") and o, what="expectedPrecision while waiting for the dataset")
    assert waiting["status"]["expectedPrecision"] == "fp16"
    assert condition(waiting, "DatasetReady")["status"] == "False"
    create_cr(api, namespace, stdlib_dataset(max_pairs=50))
    lt = training("t4", "models/none")
    lt["spec"]["placement"] = {"gpuProduct": "Tesla-T4", "gpus": 1}
    lt["spec"]["quantization"] = {"type": "nf4"}
    create_cr(api, namespace, lt)
    obj = wait_for(lambda: (o := get_cr(api, namespace, "loratrainings", "t4")) and condition(o, "Scheduled")
                   and condition(o, "Scheduled")["status"] == "False" and o, timeout=120, what="Scheduled=False")
    assert obj["status"]["expectedPrecision"] == "fp16"  # a T4 is compute capability 7.5: no bf16
    message = condition(obj, "Scheduled")["message"]
    assert message.startswith("0/3 nodes are available:"), message  # the real scheduler's message
    assert "1 Insufficient nvidia.com/gpu" in message and "didn't match Pod's node affinity/selector" in message
    assert obj["status"]["phase"] == "Pending" and "unschedulable" in obj["status"]["message"]
    (job,) = kubernetes.client.BatchV1Api(api).list_namespaced_job(
        namespace, label_selector="golora.dev/kind=LoraTraining,golora.dev/name=t4").items
    pod = job.spec.template.spec
    assert pod.node_selector == {"nvidia.com/gpu.product": "Tesla-T4"}
    assert pod.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    assert pod.containers[0].command == ["python", "-m", "golora_trainer", "run"]
    # The GPU is free again: the scheduler binds the waiting pod to the T4 at once.
    core.delete_namespaced_pod("prefill", namespace)
    obj = wait_for(lambda: (o := get_cr(api, namespace, "loratrainings", "t4"))
                   and condition(o, "Scheduled")["status"] == "True" and o,
                   timeout=60, what="Scheduled=True once the GPU is free")
    pods = core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job.metadata.name}").items
    assert [p.spec.node_name for p in pods] == ["t4"]


def test_killed_worker_resumes_from_its_last_checkpoint(cluster, api, namespace, operator, node_agent, tiny_base):
    """The node dies mid-training (the process is SIGKILLed): the next attempt resumes."""
    model = put_model(node_agent, namespace, tiny_base)
    create_cr(api, namespace, stdlib_dataset(max_pairs=300))
    with node_agent.env(GOLORA_PROGRESS_INTERVAL="0.5"):
        create_cr(api, namespace, training(
            "killed", model, maxSteps=40, checkpointSteps=10, loggingSteps=2))
        wait_for(lambda: ((get_cr(api, namespace, "loratrainings", "killed").get("status") or {})
                          .get("progress") or {}).get("step", 0) >= 12, timeout=300, interval=0.2,
                 what="training past step 10")
        assert node_agent.kill(namespace, "killed-lt-g1-a1") == 1
        done = finished(api, namespace, "killed", timeout=400)
    # The Job controller only says BackoffLimitExceeded; the exit code 137 is on the Pod.
    job = kubernetes.client.BatchV1Api(api).read_namespaced_job("killed-lt-g1-a1", namespace)
    assert next(c for c in job.status.conditions if c.type == "Failed").reason == "BackoffLimitExceeded"
    status = done["status"]
    assert [(a["attempt"], a["outcome"]) for a in status["attempts"]] == [(1, "Interrupted"), (2, "Succeeded")], \
        {k: status.get("result", {}).get("qualityGate", {}).get(k) for k in ("reason", "message")}
    assert status["phase"] == "Succeeded"
    assert status["result"]["resumedFromStep"] >= 10 and status["result"]["globalStep"] == 40


def test_oom_killed_pod_is_classified_from_the_pod_status(cluster, api, namespace, operator, node_agent):
    """A memory limit the trainer cannot fit in: the kernel kills it (the node agent runs it in a
    memory cgroup) and the Pod says ``OOMKilled``; golora calls that OutOfMemory and retries with
    half the micro-batch, within retry.maxAttempts."""
    create_cr(api, namespace, stdlib_dataset(max_pairs=50))
    lt = training("tight", "models/none", microBatchSize=4)
    lt["spec"]["placement"]["resources"] = {"requests": {"cpu": "100m", "memory": "64Mi"},
                                            "limits": {"memory": "64Mi"}}
    lt["spec"]["retry"] = {"maxAttempts": 2}
    create_cr(api, namespace, lt)
    done = finished(api, namespace, "tight", timeout=240)
    status = done["status"]
    assert [(a["attempt"], a["outcome"], a.get("microBatchSize")) for a in status["attempts"]] == \
        [(1, "OutOfMemory", None), (2, "OutOfMemory", 2)], status["attempts"]
    assert status["phase"] == "Failed" and "OOMKilled" in status["message"], status["message"]


def test_operator_down_while_training_converges_without_a_second_job(
        cluster, api, namespace, operator, node_agent, tiny_base):
    model = put_model(node_agent, namespace, tiny_base)
    create_cr(api, namespace, stdlib_dataset(max_pairs=200))
    create_cr(api, namespace, training("offline", model, maxSteps=10))
    batch = kubernetes.client.BatchV1Api(api)
    selector = "golora.dev/kind=LoraTraining,golora.dev/name=offline"
    wait_for(lambda: batch.list_namespaced_job(namespace, label_selector=selector).items, timeout=120,
             what="training Job created")
    operator.stop()
    try:
        wait_for(lambda: (j := batch.list_namespaced_job(namespace, label_selector=selector).items)
                 and j[0].status.succeeded, timeout=300, what="training finished while the operator is down")
        assert get_cr(api, namespace, "loratrainings", "offline")["status"]["phase"] != "Succeeded"
    finally:
        operator.start()
    done = finished(api, namespace, "offline", timeout=60)
    assert done["status"]["phase"] == "Succeeded"
    assert [j.metadata.name for j in batch.list_namespaced_job(namespace, label_selector=selector).items] == \
        ["offline-lt-g1-a1"]


def _needs_pod_dns(node_agent):
    if not node_agent.network.namespaced:
        pytest.skip("several nodes need the namespaced pod network (root and iproute2): the node agent's "
                    "stand-in for cluster DNS is a per-pod hosts file bind-mounted by `ip netns exec`")


@pytest.mark.timeout(900)
def test_two_nodes_train_together_and_a_killed_rank_resumes_from_the_checkpoint(
        cluster, api, namespace, operator, node_agent, tiny_base):
    """placement.nodes: 2 -> an Indexed Job of 2 pods on 2 nodes (the real scheduler, anti-affinity),
    torchrun's c10d rendezvous on pod 0 through the headless Service's name (gloo on CPU).
    Killing one rank's pod fails the attempt; the next resumes from the last checkpoint."""
    _needs_pod_dns(node_agent)
    model = put_model(node_agent, namespace, tiny_base)
    create_cr(api, namespace, stdlib_dataset(max_pairs=120))
    lt = training("ddp", model, maxSteps=10, checkpointSteps=3, loggingSteps=1)
    lt["spec"]["placement"] = {"gpus": 0, "nodes": 2, "schedulingTimeoutSeconds": 120,
                               "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}}
    lt["spec"]["qualityGate"] = {"prompts": 3, "maxNewTokens": 32}
    core, batch = kubernetes.client.CoreV1Api(api), kubernetes.client.BatchV1Api(api)
    with node_agent.env(GOLORA_PROGRESS_INTERVAL="0.5"):
        create_cr(api, namespace, lt)
        wait_for(lambda: ((get_cr(api, namespace, "loratrainings", "ddp").get("status") or {})
                          .get("progress") or {}).get("step", 0) >= 4, timeout=400, interval=0.2,
                 what="two ranks training past the step-3 checkpoint")
        pods = core.list_namespaced_pod(namespace, label_selector="batch.kubernetes.io/job-name=ddp-lt-g1-a1").items
        assert len(pods) == 2 and len({p.spec.node_name for p in pods}) == 2, [p.spec.node_name for p in pods]
        assert sorted(p.spec.hostname for p in pods) == ["ddp-lt-g1-a1-0", "ddp-lt-g1-a1-1"]
        obj = get_cr(api, namespace, "loratrainings", "ddp")
        assert condition(obj, "Scheduled")["status"] == "True" and "all 2" in condition(obj, "Scheduled")["message"]
        assert node_agent.kill(namespace, "ddp-lt-g1-a1", index=1) == 1
        done = finished(api, namespace, "ddp", timeout=450)
    status = done["status"]
    assert [(a["attempt"], a["outcome"]) for a in status["attempts"]] == [(1, "Interrupted"), (2, "Succeeded")], \
        status.get("message")
    job = batch.read_namespaced_job("ddp-lt-g1-a1", namespace)
    assert job.spec.completion_mode == "Indexed" and job.spec.completions == 2
    assert next(c for c in job.status.conditions if c.type == "Failed").reason == "BackoffLimitExceeded"
    result = status["result"]
    assert status["phase"] == "Succeeded" and result["worldSize"] == 2
    assert result["resumedFromStep"] >= 3 and result["globalStep"] == 10
    assert (result["microBatchSize"], result["gradientAccumulationSteps"]) == (4, 1)  # 8 = 4 x 1 x 2 ranks
    assert result["evalLoss"] < result["baseEvalLoss"]
    svc = core.read_namespaced_service("r-ddp-lt-g1", namespace)
    assert svc.spec.cluster_ip == "None" and svc.spec.publish_not_ready_addresses


def test_nodes_that_cannot_all_be_placed_fail_unschedulable_and_release_the_placed(
        cluster, api, namespace, operator, node_agent):
    """Two pods, one node allowed, one pod per node: the real scheduler places one. It waits for
    its peer only schedulingTimeoutSeconds, then the attempt fails, Unschedulable, in the
    scheduler's words, and nothing is left holding a node."""
    _needs_pod_dns(node_agent)
    lt = training("gang", "models/none")
    lt["spec"].pop("datasetRef")
    lt["spec"]["dataPath"] = "none.jsonl"
    lt["spec"]["placement"] = {"gpus": 0, "nodes": 2, "schedulingTimeoutSeconds": 15,
                               "nodeSelector": {"kubernetes.io/hostname": "golora-node"},
                               "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}}
    create_cr(api, namespace, lt)
    obj = wait_for(lambda: (o := get_cr(api, namespace, "loratrainings", "gang")) and condition(o, "Scheduled")
                   and condition(o, "Scheduled")["status"] == "False" and o, timeout=60, what="Scheduled=False")
    assert condition(obj, "Scheduled")["message"].startswith("1 of 2 training pods scheduled; gang-lt-g1-a1-")
    done = finished(api, namespace, "gang", timeout=180)
    status = done["status"]
    assert [(a["attempt"], a["outcome"]) for a in status["attempts"]] == [(1, "Unschedulable")], status["message"]
    assert status["phase"] == "Failed"
    msg = condition(done, "Succeeded")["message"]
    assert "not all 2 training pods could be scheduled within 15s" in msg and "anti-affinity" in msg, msg
    batch = kubernetes.client.BatchV1Api(api)
    wait_for(lambda: not batch.read_namespaced_job("gang-lt-g1-a1", namespace).status.active, timeout=60,
             what="no pod of the failed attempt left")
