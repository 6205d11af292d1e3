"""Hostile and malformed input: each case asserts what the user sees (the admission message
or the condition) and that nothing was executed or written. Together with the cases in
test_crds.py (schema and CEL rejections) these cover the issue's list."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import kubernetes
import pytest
import yaml

from tests.conftest import wait_for
from tests.kube_helpers import create_cr, get_cr, wait_for_phase

pytestmark = pytest.mark.cluster

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"


def sample(kind: str) -> dict:
    return yaml.safe_load((SAMPLES / f"{kind}.yaml").read_text())


def with_(obj: dict, path: str, value) -> dict:
    obj = copy.deepcopy(obj)
    node = obj
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    if keys[-1].isdigit():
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value
    return obj


GIT = "spec.sources.0.git"
CASES = [
    # Git URLs that would run something or read local files if they reached a shell or git's transports.
    ("godataset", f"{GIT}.url", "--upload-pack=touch /tmp/golora-pwned", "must be an https://"),
    ("godataset", f"{GIT}.url", "/etc/passwd", "must be an https://"),
    ("godataset", f"{GIT}.url", "fd::17", "must be an https://"),
    ("godataset", f"{GIT}.revision", "--output=/tmp/x", "should match"),
    ("godataset", f"{GIT}.revision", "main; reboot", "should match"),
    # Paths escaping their volume.
    ("godataset", "spec.sources.0", {"name": "p", "pvc": {"claimName": "c", "path": "/etc"}}, "must not contain '..'"),
    ("godataset", "spec.sources.0", {"name": "p", "pvc": {"claimName": "c", "path": "a/../../b"}},
     "must not contain '..'"),
    ("godataset", "spec.sources.0", {"name": "Bad Name", "pvc": {"claimName": "c"}}, "should match"),
    ("godataset", "spec.sources.0", {"name": "m", "module": {"path": "example.com/x y", "version": "v1.0.0"}},
     "should match"),
    ("godataset", "spec.sources.0", {"name": "m", "module": {"path": "example.com/x", "version": "latest"}},
     "should match"),
    ("loratraining", "spec.baseModel", {"path": "../../etc"}, "must not contain '..'"),
    ("loratraining", "spec.dataPath", "/etc/shadow", None),  # rejected: see message check below
    ("adapterserving", "spec.adapterPath", "../adapters/other-ns/x", "must not contain '..'"),
    # Names that break vLLM's --lora-modules or a client's "model" field.
    ("adapterserving", "spec.servedName", "go-adapter\tx", "must not contain"),
    ("adapterserving", "spec.servedName", "a,b", "must not contain"),
    ("adapterserving", "spec.servedName", "-rm", "must start with a letter or digit"),
    # Ranks and sizes.
    ("loratraining", "spec.lora.r", -16, "greater than or equal to 1"),
    ("loratraining", "spec.lora.r", 16.5, "must be of type integer"),
    ("loratraining", "spec.lora.targetModules", [f"m{i}" for i in range(40)], "must have at most 32 items"),
    ("godataset", "spec.sources", [{"name": f"s{i}", "pvc": {"claimName": "c"}} for i in range(65)],
     "must have at most 64 items"),
    ("godataset", f"{GIT}.url", "https://example.com/" + "a" * 5000, "Too long: may not be more than 2048 bytes"),
    # Cross-namespace references cannot be expressed: a namespace field is refused, not ignored.
    ("loratraining", "spec.datasetRef", {"name": "go-distributed", "namespace": "other"},
     'unknown field "spec.datasetRef.namespace"'),
    ("adapterserving", "spec.trainingRef", {"name": "go-adapter", "namespace": "other"},
     'unknown field "spec.trainingRef.namespace"'),
]


@pytest.mark.parametrize("kind,path,value,message", CASES, ids=[f"{k}:{p}" for k, p, *_ in CASES])
def test_hostile_spec_rejected_at_admission(cluster, namespace, kind, path, value, message):
    obj = with_(sample(kind), path, value)
    out = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj), check=False)
    assert out.returncode != 0, f"admitted: {path}={value!r}"
    if message:
        assert message in out.stderr, out.stderr
    else:
        assert "must be relative to the store" in out.stderr
    assert cluster.kubectl("get", kind, "-n", namespace, "-o", "name").stdout.strip() == ""


def test_git_url_with_shell_syntax_is_just_a_url_that_fails(cluster, api, namespace, operator, node_agent, tmp_path):
    marker = tmp_path / "pwned"
    url = f"https://127.0.0.1:9/repo;touch${{IFS}}{marker};`touch${{IFS}}{marker}`"
    obj = {"apiVersion": "golora.dev/v1alpha1", "kind": "GoDataset", "metadata": {"name": "sneaky"},
           "spec": {"sources": [{"name": "x", "git": {"url": url, "revision": "v1.0.0"}}]}}
    create_cr(api, namespace, obj)
    done = wait_for_phase(api, namespace, "godatasets", "sneaky", ("Failed",))
    assert any(c["reason"] == "SourceFetchFailed" for c in done["status"]["conditions"])
    assert not marker.exists()
    job = kubernetes.client.BatchV1Api(api).list_namespaced_job(namespace).items[0]
    container = job.spec.template.spec.containers[0]
    assert container.command == ["golora-extract", "run"] and not container.args
    assert json.loads(container.env[0].value)["sources"][0]["git"]["url"] == url  # data, never a command


def test_enormous_object_is_refused(cluster, namespace):
    obj = sample("godataset")
    obj["metadata"]["annotations"] = {"junk": "x" * (300 * 1024)}
    out = cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj),
                          check=False)
    assert out.returncode != 0 and "Too long: may not be more than 262144 bytes" in out.stderr
    assert cluster.kubectl("get", "gds", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_status_written_by_a_user_is_ignored_or_forbidden(cluster, api, namespace, tmp_path):
    """A user's status in a manifest is dropped (status subresource); writing /status needs
    a permission users are not given."""
    obj = sample("loratraining")
    obj["status"] = {"phase": "Succeeded", "conditions": [{"type": "QualityGatePassed", "status": "True",
                                                           "reason": "Passed", "message": "trust me"}]}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj))
    stored = get_cr(api, namespace, "loratrainings", "go-adapter")
    assert not any(c.get("message") == "trust me" for c in (stored.get("status") or {}).get("conditions", []))

    rbac = kubernetes.client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "edit-golora"}, "rules": [
        {"apiGroups": ["golora.dev"], "resources": ["loratrainings"], "verbs": ["get", "list", "patch", "update"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "edit-golora"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "edit-golora"},
        "subjects": [{"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}]})
    kc = cluster.write_kubeconfig("mallory", [], tmp_path / "mallory")
    patch = json.dumps({"status": {"phase": "Succeeded"}})
    out = wait_for(lambda: (r := cluster.kubectl("patch", "lt", "go-adapter", "-n", namespace, "--subresource=status",
                                                 "--type=merge", "-p", patch, kubeconfig=kc, check=False))
                   and "forbidden" in r.stderr.lower() and r, what="status patch forbidden")
    assert 'User "mallory" cannot' in out.stderr and '"loratrainings/status"' in out.stderr
