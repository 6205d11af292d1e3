"""builders.serving.outcome and .probe: whether to patch, and the phase, message and conditions
an AdapterServing gets from the facts of one reconcile. Pure: no cluster, no API client."""

from __future__ import annotations

import pytest

from golora import conditions as cond
from golora import settings
from golora.api.adapterserving import AdapterServingSpec
from golora.builders import serving as sv
from golora.builders.serving import outcome, probe

from .serving_helpers import AWQ, QWEN, apply, deployment, entry

FACTS = sv.Facts("adapters/ns/lt", 16, QWEN, "golora-store", "LoraTraining lt status.result (result.rank)",
                 "checked", "TrainingSucceeded")


def spec(**kw) -> AdapterServingSpec:
    body = {"servedName": "go-adapter", "trainingRef": {"name": "lt"}, "targets": {"deployments": ["vllm"]}}
    body.update(kw)
    return AdapterServingSpec.model_validate(body)


def by_type(result: outcome.Outcome) -> dict[str, tuple[str, str, str]]:
    return {t: (s, r, m) for t, s, r, m in result.conditions}


def test_a_hold_patches_nothing_and_says_why():
    hold = sv.Hold(cond.UNKNOWN, "TrainingNotReady", "waiting for LoraTraining lt", cond.PENDING)
    got = outcome.decide("ns", "as", spec(), [deployment()], "", hold, {}, 1)
    assert isinstance(got, outcome.Outcome) and got.phase == cond.PENDING and got.adapter is None
    conds = by_type(got)
    assert conds[cond.ADAPTER_VALIDATED][:2] == (cond.UNKNOWN, "TrainingNotReady")
    assert conds[cond.PATCHED][:2] == (cond.UNKNOWN, "AdapterNotValidated")
    assert conds[cond.SERVING][1] == "NotPatched" and got.targets == [{"name": "vllm"}]
    failed = sv.Hold(cond.FALSE, "TrainingFailed", "failed", cond.FAILED)
    assert by_type(outcome.decide("ns", "as", spec(), [], "", failed, {}, 1))[cond.PATCHED][0] == cond.FALSE


@pytest.mark.parametrize("facts,kw,missing,phase,reason", [
    (sv.Facts(**{**FACTS.__dict__, "rank": 600}), {}, "", cond.FAILED, "AdapterNotValidated"),
    (FACTS, {"vllm": {"maxLoraRank": 8}}, "", cond.FAILED, "RankAboveMaxLoraRank"),
    (FACTS, {}, "Deployment vllm not found", cond.PENDING, "TargetNotFound"),
])
def test_refusals_before_any_patch(facts, kw, missing, phase, reason):
    got = outcome.decide("ns", "as", spec(**kw), [], missing, facts, {}, 1)
    assert isinstance(got, outcome.Outcome) and got.phase == phase
    assert by_type(got)[cond.PATCHED][:2] == (cond.FALSE, reason)
    if facts.rank > 512:
        assert by_type(got)[cond.ADAPTER_VALIDATED][:2] == (cond.FALSE, "RankTooHigh")


def test_the_entry_carries_the_facts_and_the_explicit_options():
    got = outcome.decide("ns", "as", spec(containerName="engine", vllm={"maxLoraRank": 32, "maxLoras": 4}), [], "",
                         FACTS, {}, 1)
    assert got == sv.AdapterEntry(name="go-adapter", owner="as", path=FACTS.path, rank=16, base_model=QWEN,
                                  claim="golora-store", container="engine", max_lora_rank=32, max_loras=4)
    auto = outcome.decide("ns", "as", spec(), [], "", FACTS, {}, 1)
    assert (auto.max_lora_rank, auto.max_loras, auto.max_cpu_loras) == (None, None, None)


def test_a_rejected_adapter_stays_out_until_it_or_the_spec_changes():
    rejected = {"path": FACTS.path, "source": FACTS.source, "generation": 3, "pod": "p", "message": "ValueError: x"}
    got = outcome.decide("ns", "as", spec(), [deployment()], "", FACTS, {"rejected": rejected}, 3)
    assert isinstance(got, outcome.Outcome) and got.phase == cond.FAILED and got.rejected == rejected
    assert by_type(got)[cond.SERVING] == (cond.FALSE, outcome.SERVER_REJECTED_ADAPTER, "ValueError: x")
    assert isinstance(outcome.decide("ns", "as", spec(), [], "", FACTS, {"rejected": rejected}, 4), sv.AdapterEntry)


def test_what_an_earlier_patch_left_serving_is_named():
    dep = deployment()
    dep = apply(dep, sv.plan_deployment(dep, [entry("go-adapter", owner="as")]).body)
    got = outcome.refused(spec(), "as", [dep], FACTS, "BaseModelMismatch", "base model differs")
    assert "stays in place on vllm (adapters/ns/go-adapter)" in got.message
    assert by_type(got)[cond.PATCHED][2] == got.message


def test_lost_race_says_what_was_patched_so_far():
    problems = [sv.Problem(sv.DUPLICATE_SERVED_NAME, "taken")]
    got = outcome.lost_race(spec(), "as", [], FACTS, problems, ["a"])
    assert got.message.startswith("taken (patched so far: a)")
    assert outcome.lost_race(spec(), "as", [], FACTS, problems, []).message.endswith("(nothing was patched)")


def _rolled(*probes: probe.Probe) -> outcome.Outcome:
    deps = [deployment(name=f"d{i}") for i in range(len(probes))]
    rows = [outcome.target_row(d, "vllm") for d in deps]
    rollouts = [sv.Rollout(1, 1, 1, 1, 1, 1, True, f"d{i}: rolled out") for i in range(len(probes))]
    return outcome.rolled_out(spec(targets={"deployments": [f"d{i}" for i in range(len(probes))]}), deps, FACTS,
                              rows, rollouts, list(probes), [])


def test_serving_needs_every_target_to_list_the_adapter():
    got = _rolled(probe.Probe(True, "d0: listed"), probe.Probe(True, "d1: listed"))
    assert got.phase == outcome.SERVING and by_type(got)[cond.SERVING][:2] == (cond.TRUE, "Listed")
    assert [r["served"] for r in got.targets] == [True, True] and got.target_names == "d0,d1"
    got = _rolled(probe.Probe(True, "d0: listed"), probe.Probe(False, "d1: not listed"))
    assert got.phase == outcome.ROLLED_OUT and by_type(got)[cond.SERVING][:2] == (cond.FALSE, "NotListed")
    got = _rolled(probe.no_ready_pods("d0"), probe.no_ready_pods("d1"))
    assert by_type(got)[cond.SERVING][:2] == (cond.UNKNOWN, "NoReadyPods") and got.phase == outcome.ROLLED_OUT
    got = _rolled(probe.no_ready_pods("d0"), probe.Probe(True, "d1: listed"))
    assert by_type(got)[cond.SERVING][:2] == (cond.UNKNOWN, "ProbeFailed")  # not confirmed on every target
    got = _rolled(probe.Probe(None, "d0: GET failed"))
    assert by_type(got)[cond.SERVING][:2] == (cond.UNKNOWN, "ProbeFailed")
    got = _rolled(probe.Probe(None, "d0: GET failed"), probe.Probe(False, "d1: not listed"))
    assert by_type(got)[cond.SERVING][:2] == (cond.FALSE, "NotListed")  # a definite no wins over no answer


def test_rolling_out_and_surge_risk():
    dep = deployment()
    ro = sv.rollout_state(dep)
    got = outcome.rolling_out(spec(), [dep], FACTS, [outcome.target_row(dep, "vllm")], [ro], ["GPU surge"])
    conds = by_type(got)
    assert got.phase == outcome.ROLLING_OUT and conds[cond.ROLLED_OUT][:2] == (cond.FALSE, "RollingOut")
    assert conds[cond.GPU_SURGE_RISK] == (cond.TRUE, "RollingUpdateWithSurge", "GPU surge")
    assert conds[cond.PATCHED][:2] == (cond.TRUE, "Patched")
    assert outcome.surge_condition([])[1:3] == (cond.FALSE, "NoSurgeRisk")
    assert [t for t, *_ in outcome.with_accepted(got)][0] == cond.ACCEPTED


def test_target_row_reads_the_patched_command_line():
    dep = deployment(args=[AWQ, "--served-model-name", "qwen"])
    dep = apply(dep, sv.plan_deployment(dep, [entry("go-adapter", rank=24)]).body)
    row = outcome.target_row(dep, "vllm")
    assert (row["servedModel"], row["maxLoraRank"], row["adapters"], row["served"]) == ("qwen", 32, ["go-adapter"],
                                                                                       None)


def _pod(name, ip="10.0.0.1", ready=True, deleting=False) -> dict:
    meta = {"name": name, **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})}
    return {"metadata": meta, "status": {"podIP": ip, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}}


def test_probe_asks_ready_pods_or_the_one_url():
    pods = [_pod("a"), _pod("b", ready=False), _pod("c", deleting=True), _pod("d", ip=None), _pod("e", "10.0.0.5")]
    ready = probe.ready_pods(pods)
    assert [p["metadata"]["name"] for p in ready] == ["a", "e"]
    assert probe.urls(settings.Settings().models_url, "ns", "v", 8200, ready) == ["http://10.0.0.1:8200",
                                                                             "http://10.0.0.5:8200"]
    assert probe.urls("http://{deployment}.{namespace}:{port}", "ns", "v", 8000, []) == ["http://v.ns:8000"]
    assert probe.verdict("v", "go", {"u1": ["base", "go"], "u2": ["base"]}) == \
        probe.Probe(False, "v: go not listed by GET /v1/models at u2")
    assert probe.verdict("v", "go", {"u1": ["go"]}).served is True
