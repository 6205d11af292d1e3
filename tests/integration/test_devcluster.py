"""The local control plane itself: real versions, RBAC for minted users, a CLI that
starts/stops it, and no orphan processes even when the owner is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import kubernetes
import pytest
from golora_dev.__main__ import alive

from tests.conftest import wait_for

pytestmark = pytest.mark.cluster


def test_real_versions_reported(cluster):
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == out["clientVersion"]["gitVersion"]
    assert out["serverVersion"]["gitVersion"].startswith("v1.") and "0.0.0" not in out["serverVersion"]["gitVersion"]


def test_minted_user_is_subject_to_rbac(cluster, namespace, tmp_path, api):
    kubeconfig = cluster.write_kubeconfig("golora-test-operator", [], tmp_path / "kc")
    denied = cluster.kubectl("get", "godatasets", "-n", namespace, kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0 and 'User "golora-test-operator" cannot list resource "godatasets"' in denied.stderr

    rbac = kubernetes.client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "read-gds"},
        "rules": [{"apiGroups": ["golora.dev"], "resources": ["godatasets"], "verbs": ["get", "list"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "read-gds"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-gds"},
        "subjects": [{"kind": "User", "name": "golora-test-operator", "apiGroup": "rbac.authorization.k8s.io"}]})
    wait_for(lambda: cluster.kubectl("get", "godatasets", "-n", namespace, kubeconfig=kubeconfig,
                                     check=False).returncode == 0, what="RBAC allows list")
    # Still nothing beyond what was granted.
    assert cluster.kubectl("get", "secrets", "-n", namespace, kubeconfig=kubeconfig, check=False).returncode != 0


def test_cli_up_env_down_leaves_nothing(tmp_path):
    env = {**os.environ, "GOLORA_DEVCLUSTER_DIR": str(tmp_path / "dc")}
    run = lambda *a: subprocess.run([sys.executable, "-m", "golora_dev", *a], env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    up = run("up")
    assert up.returncode == 0, up.stderr
    status = json.loads(run("status").stdout)
    pids = list(status["pids"].values())
    assert set(status["pids"]) == {"etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "node-agent"}
    assert all(alive(p) for p in pids)
    assert run("env").stdout.startswith(f"export KUBECONFIG={status['kubeconfig']}")
    # The background node agent runs Pods: one, through the real scheduler, to Succeeded.
    kubectl = [status["kubectl"], f"--kubeconfig={status['kubeconfig']}"]
    pod = ('{"apiVersion":"v1","kind":"Pod","metadata":{"name":"hello"},"spec":{"restartPolicy":"Never",'
           '"containers":[{"name":"c","image":"busybox","command":["sh","-c","echo hello from the node agent"]}]}}')
    wait_for(lambda: subprocess.run([*kubectl, "apply", "-f", "-"], input=pod, text=True,
                                    capture_output=True).returncode == 0, timeout=30, what="pod created")
    wait_for(lambda: subprocess.run([*kubectl, "get", "pod", "hello", "-o", "jsonpath={.status.phase}"],
                                    capture_output=True, text=True).stdout == "Succeeded", timeout=60,
             what="pod Succeeded on the background node agent")
    logs = subprocess.run([*kubectl, "logs", "hello"], capture_output=True, text=True).stdout
    assert "hello from the node agent" in logs
    minted = run("kubeconfig", "--user", "alice", "--group", "devs", "-o", str(tmp_path / "alice.kc"))
    assert minted.returncode == 0 and (tmp_path / "alice.kc").exists()
    down = run("down")
    assert down.returncode == 0, down.stderr
    wait_for(lambda: not any(alive(p) for p in pids), timeout=30, what="processes gone")
    assert not (tmp_path / "dc").exists()


def test_killed_owner_leaves_no_orphans(tmp_path):
    script = (
        "import json,sys,time\n"
        "from golora_dev import ControlPlane\n"
        "p=ControlPlane().start()\n"
        "print(json.dumps([p.etcd_proc.pid,p.apiserver_proc.pid]),flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(owner.stdout.readline())
        assert all(alive(p) for p in pids)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    wait_for(lambda: not any(alive(p) for p in pids), timeout=30, what="children died with their owner")
    time.sleep(0.1)
