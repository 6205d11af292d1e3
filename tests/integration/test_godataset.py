"""GoDataset end to end on the real apiserver: operator -> Job -> (real Job controller, node agent) ->
golora-extract -> status through the status subresource under the worker's own RBAC."""

from __future__ import annotations

import json

import kubernetes
import pytest

from tests.conftest import wait_for
from tests.integration.status_conventions import Recorder, kstatus, kubectl_wait_ready
from tests.kube_helpers import (
    FINISHED,
    condition,
    create_cr,
    delete_cr,
    get_cr,
    list_crs,
    patch_cr,
    wait_for_phase,
)

pytestmark = pytest.mark.cluster


def gds(name: str, sources: list[dict], **spec) -> dict:
    return {"apiVersion": "golora.dev/v1alpha1", "kind": "GoDataset", "metadata": {"name": name},
            "spec": {"sources": sources, **spec}}


def wait_phase(api, ns, name, phases=FINISHED, timeout=60):
    return wait_for_phase(api, ns, "godatasets", name, phases, timeout=timeout)


def jobs(api, ns, name):
    return kubernetes.client.BatchV1Api(api).list_namespaced_job(
        ns, label_selector=f"golora.dev/kind=GoDataset,golora.dev/name={name}").items


def test_pvc_fixture_tree_to_succeeded_with_counts(cluster, api, namespace, operator, node_agent):
    with Recorder(api, namespace, "godatasets", "fixture") as recorder:
        create_cr(api, namespace, gds(
            "fixture", [{"name": "fx", "pvc": {"claimName": "fixture-src"}}], split={"evalFraction": 0.0}))
        # What a script or pipeline waits on: returns once the dataset is written.
        kubectl_wait_ready(cluster, "godataset", "fixture", namespace)
        obj = wait_phase(api, namespace, "fixture")
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    # kstatus: InProgress while extracting, Current at the end (and only when Ready is about this spec).
    assert kstatus(obj) == "Current" and obj["status"]["observedGeneration"] == 1
    assert "InProgress" in recorder.check()
    result = obj["status"]["result"]
    # Three documented functions of >= 5 lines; the rest dropped for a reason each.
    assert result["pairsKept"] == 3 and result["pairsTrain"] == 3
    assert result["perSource"] == {"fx": 3}
    assert result["dropped"] == {"directiveOnly": 1, "generated": 1, "test": 1, "tooShort": 1, "vendor": 1}
    assert result["sources"][0]["license"] == "MIT"
    assert result["digest"].startswith("sha256:")
    assert condition(obj, "Ready")["status"] == "True" and condition(obj, "Extracted")["reason"] == "Extracted"
    # The worker's log, through the apiserver's pods/log proxy to the node's kubelet port.
    logs = cluster.kubectl("logs", f"job/{obj['status']['jobName']}", "-n", namespace)
    assert "golora-extract:" in logs.stdout, logs.stdout

    # The dataset is on the store, where DESIGN.md's layout says.
    store = node_agent.claim_dir(namespace, "golora-store")
    lines = (store / f"datasets/{namespace}/fixture/train.jsonl").read_text().splitlines()
    pairs = [json.loads(x) for x in lines]
    assert {p["meta"]["name"] for p in pairs} == {"Area", "Perimeter", "Sum"}
    assert all(p["output"].startswith("func ") for p in pairs)

    # kubectl get shows it at a glance.
    table = cluster.kubectl("get", "gds", "fixture", "-n", namespace).stdout
    assert "Succeeded" in table and " 3 " in table

    # One Job, deterministic name, owned by the GoDataset, labelled, no shell anywhere.
    (job,) = jobs(api, namespace, "fixture")
    assert job.metadata.name == "fixture-gds-g1-a1"
    assert job.metadata.owner_references[0].kind == "GoDataset" and job.metadata.owner_references[0].controller
    container = job.spec.template.spec.containers[0]
    assert container.command == ["golora-extract", "run"] and not container.args
    assert job.spec.template.spec.service_account_name == "golora-worker"
    config = json.loads(next(e.value for e in container.env if e.name == "GOLORA_CONFIG"))
    assert config["outputPath"] == f"datasets/{namespace}/fixture"

    # Events tell the story.
    events = kubernetes.client.CoreV1Api(api).list_namespaced_event(namespace).items
    reasons = [e.reason for e in events if e.involved_object.name == "fixture"]
    assert "Succeeded" in reasons


def test_missing_path_and_unreachable_git_fail_with_actionable_message(cluster, api, namespace, operator, node_agent):
    create_cr(api, namespace, gds(
        "nopath", [{"name": "fx", "pvc": {"claimName": "fixture-src", "path": "does/not/exist"}}]))
    create_cr(api, namespace, gds(
        "nogit", [{"name": "remote", "git": {"url": "https://127.0.0.1:9/nothing.git", "revision": "v1.0.0"}}]))
    nopath = wait_phase(api, namespace, "nopath")
    assert nopath["status"]["phase"] == "Failed"
    assert condition(nopath, "Ready")["reason"] == "SourceNotFound"
    assert "does/not/exist" in nopath["status"]["message"]
    nogit = wait_phase(api, namespace, "nogit")
    assert nogit["status"]["phase"] == "Failed"
    assert condition(nogit, "Extracted")["reason"] == "SourceFetchFailed"
    assert "127.0.0.1:9" in nogit["status"]["message"]
    # Nothing half-written on the store.
    store = node_agent.claim_dir(namespace, "golora-store")
    assert not (store / f"datasets/{namespace}/nopath").exists()


def test_spec_change_makes_a_new_dataset_and_delete_removes_jobs(cluster, api, namespace, operator, node_agent):
    create_cr(api, namespace, gds(
        "evolving", [{"name": "fx", "pvc": {"claimName": "fixture-src"}}]))
    first = wait_phase(api, namespace, "evolving")
    assert first["status"]["result"]["pairsKept"] == 3
    patch_cr(api, namespace, "godatasets", "evolving", {"spec": {"filters": {"includeTests": True}}})
    second = wait_for(lambda: (o := get_cr(api, namespace, "godatasets", "evolving"))["status"].get("jobName")
                      == "evolving-gds-g2-a1" and o["status"].get("phase") == "Succeeded" and o,
                      what="generation 2 dataset")
    assert second["status"]["result"]["pairsKept"] == 4  # + TestArea
    assert condition(second, "Ready")["observedGeneration"] == 2
    assert [j.metadata.name for j in jobs(api, namespace, "evolving")] == ["evolving-gds-g2-a1"]

    core = kubernetes.client.CoreV1Api(api)
    pods = lambda: core.list_namespaced_pod(namespace, label_selector="golora.dev/name=evolving").items  # noqa: E731
    assert pods(), "the Job controller's pod is still there"
    delete_cr(api, namespace, "godatasets", "evolving")
    # No golora code deletes them: the garbage collector follows the ownerReferences.
    wait_for(lambda: not jobs(api, namespace, "evolving"), what="jobs deleted by the garbage collector")
    wait_for(lambda: not pods(), what="pods deleted by the garbage collector")
    wait_for(lambda: not list_crs(api, namespace, "godatasets"),
             what="GoDataset gone (finalizer released)")


def test_standard_library_dataset(cluster, api, namespace, operator, node_agent):
    """The real thing: the Go toolchain's own standard library through a pvc source."""
    create_cr(api, namespace, gds(
        "stdlib", [{"name": "stdlib", "pvc": {"claimName": "go-src", "path": "src"}}]))
    obj = wait_phase(api, namespace, "stdlib", timeout=180)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    result = obj["status"]["result"]
    assert result["pairsKept"] > 5000 and result["parseErrors"] == 0
    for reason in ("test", "vendor", "generated", "testdata", "exactDuplicate", "directiveOnly"):
        assert result["dropped"].get(reason, 0) > 0, reason
    assert result["pairsEval"] > 0
