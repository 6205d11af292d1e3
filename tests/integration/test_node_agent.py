"""The node agent (the kubelet stand-in) as the real controllers and kubectl see it: own pod
IPs with separate port spaces, init and sidecar containers in order, probes and restarts,
a clear reason for images it cannot run, deletion with the grace period, `kubectl logs`."""

from __future__ import annotations

import time
import urllib.request

import kubernetes
import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.cluster

SERVE = "import http.server,sys; http.server.ThreadingHTTPServer(('0.0.0.0', 8080), http.server.SimpleHTTPRequestHandler).serve_forever()"


def pod(name: str, containers: list[dict], **spec) -> dict:
    return {"metadata": {"name": name, "labels": {"test": name}},
            "spec": {"terminationGracePeriodSeconds": 2, "containers": containers, **spec}}


def box(name: str, *command: str, **extra) -> dict:
    return {"name": name, "image": "busybox", "command": list(command), **extra}


def status(core, ns: str, name: str):
    return core.read_namespaced_pod(name, ns).status


def ready(core, ns: str, name: str) -> bool:
    st = status(core, ns, name)
    return any(c.type == "Ready" and c.status == "True" for c in st.conditions or [])


def test_two_pods_on_the_same_port_each_on_its_own_ip(api, namespace, node_agent):
    core = kubernetes.client.CoreV1Api(api)
    probe = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
    for name in ("web-a", "web-b"):
        core.create_namespaced_pod(namespace, pod(name, [box("web", "python3", "-c", SERVE, readinessProbe=probe)]))
    for name in ("web-a", "web-b"):
        wait_for(lambda n=name: ready(core, namespace, n), timeout=60, what=f"{name} ready")
    ips = {status(core, namespace, n).pod_ip for n in ("web-a", "web-b")}
    assert len(ips) == 2 and all(ip.startswith(("10.88.", "127.77.")) for ip in ips), ips
    for ip in ips:
        with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as resp:  # noqa: S310 - a pod on this machine
            assert resp.status == 200


def test_init_then_sidecar_then_main_and_logs(cluster, api, namespace, node_agent):
    core = kubernetes.client.CoreV1Api(api)
    init = box("init", "sh", "-c", "echo init-done > /work/marker")
    sidecar = box("side", "sh", "-c", "echo sidecar-up; exec sleep 600", restartPolicy="Always")
    main = box("main", "sh", "-c", "cat /work/marker; echo main-says-hello; sleep 1")
    mounts = [{"name": "work", "mountPath": "/work"}]
    for c in (init, sidecar, main):
        c["volumeMounts"] = mounts
    core.create_namespaced_pod(namespace, pod("seq", [main], initContainers=[init, sidecar], restartPolicy="Never",
                                              volumes=[{"name": "work", "emptyDir": {}}]))
    wait_for(lambda: status(core, namespace, "seq").phase == "Succeeded", timeout=60, what="pod Succeeded")
    st = status(core, namespace, "seq")
    main_state = st.container_statuses[0].state.terminated
    assert main_state.exit_code == 0 and main_state.reason == "Completed"
    out = cluster.kubectl("logs", "seq", "-c", "main", "-n", namespace).stdout
    assert "init-done" in out and "main-says-hello" in out  # the init container ran first, on the same volume
    assert "sidecar-up" in cluster.kubectl("logs", "seq", "-c", "side", "-n", namespace).stdout


def test_liveness_failure_restarts_and_exit_codes_are_reported(api, namespace, node_agent):
    core = kubernetes.client.CoreV1Api(api)
    live = {"exec": {"command": ["sh", "-c", "exit 1"]}, "periodSeconds": 1, "failureThreshold": 2}
    core.create_namespaced_pod(namespace, pod("sick", [box("c", "sleep", "600", livenessProbe=live)]))
    st = wait_for(lambda: (s := status(core, namespace, "sick")).container_statuses
                  and s.container_statuses[0].restart_count >= 1 and s, timeout=60, what="restarted by liveness")
    last = st.container_statuses[0].last_state.terminated
    assert last is not None and last.exit_code in (137, 143), last  # killed by the runtime: 128 + signal
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=sick").items
    assert any(e.reason == "Unhealthy" for e in events) and any(e.reason == "Killing" for e in events)

    # No termination-log file written: with FallbackToLogsOnError the log's tail is the message.
    termination = box("fail", "sh", "-c", "echo 'disk is full'; exit 3", terminationMessagePolicy="FallbackToLogsOnError")
    core.create_namespaced_pod(namespace, pod("failing", [termination], restartPolicy="Never"))
    wait_for(lambda: status(core, namespace, "failing").phase == "Failed", timeout=60, what="pod Failed")
    term = status(core, namespace, "failing").container_statuses[0].state.terminated
    assert (term.exit_code, term.reason, term.message.strip()) == (3, "Error", "disk is full")


def test_an_image_it_cannot_run_waits_with_a_reason(api, namespace, node_agent):
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, pod("foreign", [{"name": "c", "image": "ghcr.io/llm-d/llm-d-routing-sidecar:v0.2.0"}]))
    st = wait_for(lambda: (s := status(core, namespace, "foreign")).container_statuses and s, timeout=30,
                  what="container status")
    waiting = st.container_statuses[0].state.waiting
    assert st.phase == "Pending" and waiting.reason == "ImageNotRunnableLocally", waiting
    assert "llm-d-routing-sidecar" in waiting.message


def test_deletion_sends_sigterm_then_removes_the_pod_and_deployment_logs(cluster, api, namespace, node_agent):
    core, apps = kubernetes.client.CoreV1Api(api), kubernetes.client.AppsV1Api(api)
    trap = box("c", "sh", "-c", "trap 'echo got-sigterm; exit 0' TERM; echo started; while true; do sleep 0.2; done")
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "graceful"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "graceful"}},
                                                 "template": {"metadata": {"labels": {"app": "graceful"}},
                                                              "spec": {"terminationGracePeriodSeconds": 10,
                                                                       "containers": [trap]}}}})
    name = wait_for(lambda: [p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector="app=graceful")
                             .items if p.status.phase == "Running"], timeout=60, what="deployment pod running")[0]
    wait_for(lambda: "started" in cluster.kubectl("logs", "deploy/graceful", "-n", namespace, check=False).stdout,
             timeout=30, what="kubectl logs deploy/graceful")
    log_file = next(w for w in node_agent.workers.values() if w.pod_name == name).mains[0].log_path
    t0 = time.monotonic()
    core.delete_namespaced_pod(name, namespace)
    wait_for(lambda: name not in [p.metadata.name for p in core.list_namespaced_pod(namespace).items],
             timeout=30, what="pod removed")
    assert time.monotonic() - t0 < 10  # it exited on SIGTERM, well before the grace period ran out
    assert "got-sigterm" in log_file.read_text()
