"""Training beyond one GPU, without a cluster: the Job for placement.gpus/nodes, the headless
Service, how a multi-pod attempt's end is read, and the launcher's torchrun command and exit code."""

from __future__ import annotations

import json

import pytest

from golora.api.loratraining import LoraTrainingSpec
from golora.api.worker import (
    EXIT_INTERRUPTED,
    EXIT_OUT_OF_MEMORY,
    REASON_INTERRUPTED,
    REASON_OUT_OF_MEMORY,
    TrainerConfig,
)
from golora.builders import training as tb
from golora.settings import Settings
from golora_trainer import distributed, launch
from golora_trainer.errors import TrainerError


def spec(**placement) -> LoraTrainingSpec:
    return LoraTrainingSpec.model_validate({"baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct"},
                                            "datasetRef": {"name": "go"}, "placement": placement})


def build(s: LoraTrainingSpec, attempt: int = 1) -> dict:
    return tb.build_training_job(namespace="llm", name="ad", uid="u", generation=2, attempt=attempt, spec=s,
                                 files=tb.DatasetFiles("t.jsonl", None), micro_batch_size=None, settings=Settings())


def test_one_gpu_runs_the_trainer_itself():
    job = build(spec(gpus=1))
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["python", "-m", "golora_trainer", "run"]
    assert "completionMode" not in job["spec"] and "subdomain" not in job["spec"]["template"]["spec"]


def test_several_gpus_run_torchrun_on_one_node():
    job = build(spec(gpus=4, gpuProduct="NVIDIA-H100-80GB-HBM3"))
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["command"] == ["python", "-m", "golora_trainer", "launch", "--nproc-per-node", "4"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert "completionMode" not in job["spec"] and job["spec"]["backoffLimit"] == 0
    config = TrainerConfig.model_validate_json(next(e["value"] for e in c["env"] if e["name"] == "GOLORA_CONFIG"))
    assert config.spec.placement.gpus == 4


def test_several_nodes_are_an_indexed_job_with_a_rendezvous_on_pod_0():
    s = spec(gpus=2, nodes=3, schedulingTimeoutSeconds=120)
    job = build(s, attempt=2)
    name = job["metadata"]["name"]
    assert name == "ad-lt-g2-a2"
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == ("Indexed", 3, 3)
    assert job["spec"]["backoffLimit"] == 0  # one failed rank fails the attempt
    pod = job["spec"]["template"]["spec"]
    service = tb.rendezvous_service_name("ad", 2)
    assert pod["subdomain"] == service == "r-ad-lt-g2"
    c = pod["containers"][0]
    assert c["command"] == ["python", "-m", "golora_trainer", "launch", "--nproc-per-node", "2", "--nnodes", "3",
                            "--rdzv-endpoint", f"{name}-0.{service}:29400", "--rdzv-id", name, "--join-timeout", "120"]
    assert {"name": "GOLORA_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in c["env"]
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert term["labelSelector"]["matchLabels"]["golora.dev/attempt"] == "2"  # not older attempts' pods

    svc = tb.build_rendezvous_service(namespace="llm", name="ad", uid="u", generation=2)
    assert svc["metadata"]["name"] == service and svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "u"
    json.dumps(job)


def test_names_are_dns_labels_even_for_long_cr_names():
    name = "9" + "x" * 250
    svc = tb.rendezvous_service_name(name, 12)
    assert len(svc) <= 63 and svc[0].isalpha()
    job = tb.build_training_job(namespace="n", name=name, uid="u", generation=12, attempt=3, spec=spec(nodes=2),
                                files=tb.DatasetFiles("t", None), micro_batch_size=None, settings=Settings())
    host = tb.rendezvous_host(job["metadata"]["name"], svc).split(".")[0]
    assert len(host) <= 63


def test_placement_bounds():
    with pytest.raises(ValueError):
        spec(nodes=0)
    with pytest.raises(ValueError):
        spec(schedulingTimeoutSeconds=1)


def _pod(name, code=None, reason="Error", finished="2026-01-01T00:00:00Z", scheduled=True, message=""):
    status = {"conditions": [{"type": "PodScheduled", "status": "True" if scheduled else "False",
                              **({"message": message} if message else {})}]}
    if code is not None:
        status["containerStatuses"] = [{"name": "train", "state": {"terminated": {
            "exitCode": code, "reason": reason, "finishedAt": finished}}}]
    return {"metadata": {"name": name}, "status": status}


def test_a_ranks_own_failure_wins_over_the_peers_that_lost_it():
    pods = [_pod("j-0", EXIT_INTERRUPTED, finished="2026-01-01T00:00:01Z"),
            _pod("j-1", EXIT_OUT_OF_MEMORY, finished="2026-01-01T00:00:05Z")]
    term = tb.attempt_termination(pods)
    assert term.pod == "j-1" and tb.reason_from_termination(term) == REASON_OUT_OF_MEMORY
    killed = [_pod("j-0", EXIT_INTERRUPTED), _pod("j-1", 137, finished="2026-01-01T00:00:00Z")]
    assert tb.reason_from_termination(tb.attempt_termination(killed)) == REASON_INTERRUPTED
    assert tb.attempt_termination([_pod("j-0", 0, reason="Completed")]) is None


def test_scheduling_summary_is_all_or_nothing():
    ok = [_pod("j-0"), _pod("j-1")]
    assert tb.scheduling_summary(ok, 2) == (True, "all 2 training pods scheduled")
    stuck = [_pod("j-0"), _pod("j-1", scheduled=False, message="0/3 nodes are available: 3 Insufficient cpu.")]
    placed, msg = tb.scheduling_summary(stuck, 2)
    assert not placed and msg == "1 of 2 training pods scheduled; j-1: 0/3 nodes are available: 3 Insufficient cpu."
    assert tb.scheduling_summary([_pod("j-0")], 2) is None  # the scheduler has not seen j-1 yet
    # j-0 gave up waiting and failed; the scheduler then placed j-1 on the node it freed: not "all placed"
    ended = {**_pod("j-0", 8), "status": {**_pod("j-0", 8)["status"], "phase": "Failed"}}
    assert tb.scheduling_summary([ended, _pod("j-1")], 2) is None


def test_torchrun_command_lines():
    assert launch.torchrun_args(nnodes=1, nproc=2, endpoint=None, rdzv_id=None, index=0, local_addr=None,
                                join_timeout=600) == [
        "--standalone", "--nnodes", "1", "--nproc-per-node", "2", "--max-restarts", "0", "--monitor-interval", "1",
        "-m", "golora_trainer", "run"]
    args = dict(nnodes=2, nproc=1, endpoint="j-0.r-j:29400", rdzv_id="j", local_addr="10.0.0.7", join_timeout=30)
    host = launch.torchrun_args(index=0, **args)
    assert host[host.index("--rdzv-conf") + 1] == "is_host=true,join_timeout=30"
    assert host[host.index("--local-addr") + 1] == "10.0.0.7" and host[host.index("--rdzv-backend") + 1] == "c10d"
    other = launch.torchrun_args(index=1, **args)
    assert other[other.index("--rdzv-conf") + 1] == "is_host=false,join_timeout=30"
    with pytest.raises(ValueError):
        launch.torchrun_args(nnodes=2, nproc=1, endpoint=None, rdzv_id=None, index=0, local_addr=None, join_timeout=1)


def test_launcher_exit_code_is_the_first_rank_that_failed_by_itself():
    assert launch.exit_code([(1.0, EXIT_INTERRUPTED), (2.0, EXIT_OUT_OF_MEMORY)]) == EXIT_OUT_OF_MEMORY
    assert launch.exit_code([(1.0, -9), (2.0, EXIT_INTERRUPTED)]) == EXIT_INTERRUPTED
    assert launch.exit_code([(1.0, -15)]) == 143
    assert launch.exit_code([(2.0, 5), (1.0, 3)]) == 3
    assert launch.exit_code([]) == 1


def test_effective_batch_is_kept_across_ranks():
    assert [distributed.per_rank_batch(16, w) for w in (1, 2, 3, 4, 32)] == [16, 8, 6, 4, 1]


def test_precision_auto_refuses_a_mix_of_gpu_generations():
    distributed.check_same_generation("auto", [(8, 0), (9, 0)])
    distributed.check_same_generation("auto", [(7, 5), (7, 0)])
    distributed.check_same_generation("fp16", [(8, 0), (7, 5)])  # an explicit precision is the same everywhere
    with pytest.raises(TrainerError) as err:
        distributed.check_same_generation("auto", [(8, 6), (7, 5), (7, 5)])
    assert err.value.reason == "InvalidConfig"
    assert "8.6 (bf16) and 7.5 (fp16, no bf16) across the 3 ranks" in err.value.message
    assert "placement.gpuProduct" in err.value.message


def test_peer_failures_are_told_from_a_ranks_own():
    assert distributed.is_peer_failure(RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] "
                                                    "Connection closed by peer [10.88.0.5]:1234"))
    assert not distributed.is_peer_failure(RuntimeError("CUDA out of memory"))
    assert not distributed.is_peer_failure(ValueError("gloo"))
