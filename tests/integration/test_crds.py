"""The generated CRDs on the real apiserver: established, documented, and rejecting bad
input with the message a user reads (schema and CEL rules)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.kube_helpers import create_cr

pytestmark = pytest.mark.cluster

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"


def sample(name: str) -> dict:
    return yaml.safe_load((SAMPLES / f"{name}.yaml").read_text())


def apply(cluster, namespace: str, obj: dict, check: bool = False):
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj), check=check)


def test_crds_established_with_names_and_categories(cluster):
    out = cluster.kubectl("get", "crd", "-o", "yaml").stdout
    crds = {c["metadata"]["name"]: c for c in yaml.safe_load(out)["items"]}
    for name, short in [("godatasets.golora.dev", "gds"), ("loratrainings.golora.dev", "lt"),
                        ("adapterservings.golora.dev", "as")]:
        crd = crds[name]
        conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conds["Established"] == "True" and conds["NamesAccepted"] == "True"
        assert short in crd["spec"]["names"]["shortNames"]
        assert crd["spec"]["names"]["categories"] == ["golora"]
        assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_kubectl_explain_prints_field_docs(cluster):
    out = cluster.kubectl("explain", "godataset.spec.sources").stdout
    assert "Where the Go code comes from" in out
    assert "git" in out and "module" in out and "pvc" in out
    out = cluster.kubectl("explain", "loratraining.spec.training.precision").stdout
    assert "bf16 on compute capability >= 8.0" in out


@pytest.mark.parametrize("kind", ["godataset", "loratraining", "adapterserving"])
def test_valid_samples_are_accepted(cluster, namespace, kind):
    out = apply(cluster, namespace, sample(kind), check=True)
    assert "created" in out.stdout
    stored = yaml.safe_load(cluster.kubectl("get", kind, "-n", namespace, "-o", "yaml").stdout)["items"][0]
    # Defaults are applied by the apiserver, so what golora will use is visible.
    if kind == "loratraining":
        assert stored["spec"]["training"]["learningRate"] == 2e-4
        assert stored["spec"]["retry"]["maxAttempts"] == 3
    if kind == "godataset":
        assert stored["spec"]["filters"]["includeTests"] is False
        assert stored["spec"]["storage"]["claimName"] == "golora-store"


def _set(obj: dict, path: str, value) -> dict:
    obj = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node = obj
    for key in parents:
        node = node.setdefault(key, {}) if not key.isdigit() else node[int(key)]
    if value is _DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return obj


_DELETE = object()

# (kind, path, value, what the user must read in the rejection)
INVALID = [
    ("godataset", "spec.sources", [], "should have at least 1 items"),
    ("godataset", "spec.sources", _DELETE, "spec.sources: Required value"),
    ("godataset", "spec.sources.0", {"name": "x", "git": {"url": "https://h/r", "revision": "v1"},
                                     "pvc": {"claimName": "c"}}, "exactly one of git, module or pvc"),
    ("godataset", "spec.sources.0.git.url", "https://example.com/r.git; rm -rf /", "must be an https://"),
    ("godataset", "spec.sources.0.git.url", "ext::sh -c touch% /tmp/pwned", "must be an https://"),
    ("godataset", "spec.sources.0.git.url", "file:///etc", "must be an https://"),
    ("godataset", "spec.sources.0.git.revision", "$(reboot)", "spec.sources[0].git.revision in body should match"),
    ("godataset", "spec.sources.0", {"name": "p", "pvc": {"claimName": "c", "path": "../../etc"}},
     "must not contain '..'"),
    ("godataset", "spec.filters.minLines", "five", "must be of type integer"),
    ("godataset", "spec.template", "fancy", 'Unsupported value: "fancy"'),
    ("godataset", "spec.sources.1", {"name": "kubernetes", "module": {"path": "k8s.io/api", "version": "v0.36.3"}},
     "source names must be unique"),
    ("loratraining", "spec.lora.r", 0, "should be greater than or equal to 1"),
    ("loratraining", "spec.lora.r", 999, "should be less than or equal to 512"),
    ("loratraining", "spec.lora.r", "sixteen", "must be of type integer"),
    ("loratraining", "spec.baseModel.name", "Qwen/Qwen2.5-7B-Instruct-AWQ", "cannot be re-quantized to 4-bit"),
    ("loratraining", "spec.dataPath", "datasets/x/train.jsonl", "exactly one of datasetRef or dataPath"),
    ("loratraining", "spec.training.precision", "int8", 'Unsupported value: "int8"'),
    ("loratraining", "spec.training.microBatchSize", "big", "microBatchSize must be 'auto' or an integer"),
    ("loratraining", "spec.lora.targetModules", ["q_proj", "lm_head"], "lm_head cannot be served by vLLM"),
    ("loratraining", "spec.baseModel", {}, "exactly one of baseModel.name or baseModel.path"),
    ("adapterserving", "spec.servedName", "go=adapter", "must not contain '=', ',', '/' or whitespace"),
    ("adapterserving", "spec.servedName", "go adapter", "must not contain '=', ',', '/' or whitespace"),
    ("adapterserving", "spec.servedName", "org/go-adapter", "must not contain '=', ',', '/' or whitespace"),
    ("adapterserving", "spec.vllm", {"maxLoraRank": 24}, "maxLoraRank must be 'auto' or one of 1, 8, 16"),
    ("adapterserving", "spec.targets", {}, "exactly one of targets.deployments or targets.selector"),
    ("adapterserving", "spec.adapterPath", "adapters/x/y", "exactly one of trainingRef or adapterPath"),
    ("adapterserving", "spec.servedName", _DELETE, "spec.servedName: Required value"),
]


@pytest.mark.parametrize("kind,path,value,message", INVALID,
                         ids=[f"{k}:{p}={v if v is not _DELETE else 'missing'}"[:60] for k, p, v, _ in INVALID])
def test_invalid_specs_are_rejected_with_a_clear_message(cluster, namespace, kind, path, value, message):
    obj = _set(sample(kind), path, value)
    out = apply(cluster, namespace, obj)
    assert out.returncode != 0, f"accepted: {obj}"
    assert message in out.stderr, out.stderr
    # Nothing was stored.
    listed = cluster.kubectl("get", kind, "-n", namespace, "-o", "name").stdout
    assert listed.strip() == ""


def test_unknown_fields_rejected_by_kubectl_and_pruned_otherwise(cluster, namespace, api):
    """Decision: kubectl's default strict field validation rejects typos; a client that
    skips validation gets unknown fields pruned (never silently honoured)."""
    obj = sample("godataset")
    obj["spec"]["filters"]["minLine"] = 3  # typo of minLines
    out = apply(cluster, namespace, obj)
    assert out.returncode != 0 and 'unknown field "spec.filters.minLine"' in out.stderr

    obj["metadata"]["name"] = "pruned"
    created = create_cr(api, namespace, obj)
    assert "minLine" not in created["spec"]["filters"]
    assert created["spec"]["filters"]["minLines"] == 5
