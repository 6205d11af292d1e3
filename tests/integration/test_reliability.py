"""Reliability against the real apiserver: the operator stopped at each phase and started
again, Jobs deleted or killed under it, and the apiserver itself restarted."""

from __future__ import annotations

import time

import kubernetes
import pytest

from tests.conftest import wait_for
from tests.kube_helpers import condition, create_cr, get_cr, phase_of

pytestmark = pytest.mark.cluster

def phase(api, ns, plural, name):
    return phase_of(get_cr(api, ns, plural, name))


def jobs(api, ns, kind, name):
    return kubernetes.client.BatchV1Api(api).list_namespaced_job(
        ns, label_selector=f"golora.dev/kind={kind},golora.dev/name={name}").items


def gds(name, path="", claim="fixture-src"):
    return {"apiVersion": "golora.dev/v1alpha1", "kind": "GoDataset", "metadata": {"name": name},
            "spec": {"sources": [{"name": "src", "pvc": {"claimName": claim, "path": path}}]}}


def test_created_while_operator_down_then_exactly_one_job(cluster, api, namespace, operator, node_agent):
    operator.stop()
    try:
        create_cr(api, namespace, gds("offline"))
        time.sleep(1)
        assert not jobs(api, namespace, "GoDataset", "offline")
    finally:
        operator.start()
    wait_for(lambda: phase(api, namespace, "godatasets", "offline") == "Succeeded", timeout=60, what="Succeeded")
    assert [j.metadata.name for j in jobs(api, namespace, "GoDataset", "offline")] == ["offline-gds-g1-a1"]


def test_job_finishes_while_operator_down_status_converges(cluster, api, namespace, operator, node_agent):
    create_cr(api, namespace, gds("std", "src", "go-src"))
    wait_for(lambda: jobs(api, namespace, "GoDataset", "std"), what="Job created")
    operator.stop()
    try:
        wait_for(lambda: (j := jobs(api, namespace, "GoDataset", "std")) and j[0].status.succeeded,
                 timeout=120, what="Job finished while the operator is down")
        # The worker reported its result itself; the phase is the operator's to set.
        obj = get_cr(api, namespace, "godatasets", "std")
        assert obj["status"]["result"]["pairsKept"] > 0
        assert obj["status"]["phase"] != "Succeeded"
    finally:
        operator.start()
    wait_for(lambda: phase(api, namespace, "godatasets", "std") == "Succeeded", timeout=60, what="converged")
    assert len(jobs(api, namespace, "GoDataset", "std")) == 1
    def succeeded_events():
        events = kubernetes.client.CoreV1Api(api).list_namespaced_event(namespace).items
        return [e.reason for e in events if e.involved_object.name == "std"].count("Succeeded")

    wait_for(succeeded_events, what="Succeeded event (posted asynchronously)")
    time.sleep(1)
    assert succeeded_events() == 1


def test_deleted_extraction_job_is_a_clear_failure(cluster, api, namespace, operator, node_agent):
    nodes = [n.name for n in node_agent.nodes]
    cluster.kubectl("cordon", *nodes)  # the Job's pod waits for a node
    try:
        create_cr(api, namespace, gds("victim", "src", "go-src"))
        (job,) = wait_for(lambda: jobs(api, namespace, "GoDataset", "victim"), what="Job created")
        kubernetes.client.BatchV1Api(api).delete_namespaced_job(job.metadata.name, namespace,
                                                                propagation_policy="Background")  # as kubectl does
    finally:
        cluster.kubectl("uncordon", *nodes)
    obj = wait_for(lambda: (o := get_cr(api, namespace, "godatasets", "victim"))["status"].get("phase") == "Failed"
                   and o, what="Failed after Job deletion")
    ready = condition(obj, "Ready")
    assert ready["reason"] == "JobDeleted" and "was deleted before it finished" in ready["message"]
    time.sleep(2)
    assert not jobs(api, namespace, "GoDataset", "victim")  # no hot loop re-creating it


def test_apiserver_restart_under_the_operator(cluster, api, namespace, operator, node_agent):
    cluster.restart_apiserver()
    create_cr(api, namespace, gds("after-restart"))
    wait_for(lambda: phase(api, namespace, "godatasets", "after-restart") == "Succeeded", timeout=90,
             what="processed after the apiserver came back")
    assert len(jobs(api, namespace, "GoDataset", "after-restart")) == 1


def test_failed_job_is_final_and_quiet(cluster, api, namespace, operator, node_agent):
    """A failed extraction is a clear condition, not a hot loop: no writes once it settled."""
    create_cr(api, namespace, gds("broken", "no/such/dir"))
    wait_for(lambda: phase(api, namespace, "godatasets", "broken") == "Failed", timeout=60, what="Failed")
    time.sleep(2)
    # Every write changes an object's resourceVersion: the GoDataset's and its Job's stay put.
    # (The apiserver's own request counters would also count other tests' namespaces being
    # torn down by the real namespace controller meanwhile.)
    def versions():
        obj = get_cr(api, namespace, "godatasets", "broken")
        return obj["metadata"]["resourceVersion"], [j.metadata.resource_version
                                                    for j in jobs(api, namespace, "GoDataset", "broken")]
    before = versions()
    time.sleep(5)
    assert versions() == before
    assert len(jobs(api, namespace, "GoDataset", "broken")) == 1
