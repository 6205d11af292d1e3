"""The pydantic models and the CRDs generated from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from golora.api import KINDS, crdgen
from golora.api.adapterserving import AdapterServingSpec
from golora.api.godataset import GoDatasetSpec
from golora.api.loratraining import LoraTrainingSpec

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_checked_in_crds_match_the_models():
    for info in KINDS:
        assert (CRDS / crdgen.filename(info)).read_text() == crdgen.render(info), \
            f"crds/{crdgen.filename(info)} is stale: run `make crds`"


def _walk(node, path="$"):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


@pytest.mark.parametrize("info", KINDS, ids=lambda k: k.kind)
def test_generated_schema_is_structural(info):
    schema = crdgen.build_crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "title" not in node, path
        if "properties" in node:
            assert node.get("type") == "object", path
    spec = schema["properties"]["spec"]
    # Every field is documented for `kubectl explain`.
    for path, node in _walk(spec):
        if "properties" in node:
            for name, prop in node["properties"].items():
                assert prop.get("description"), f"{path}.{name} has no description"


def test_int_or_auto_fields_become_int_or_string():
    crd = crdgen.build_crd(next(k for k in KINDS if k.kind == "LoraTraining"))
    training = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["training"]
    mbs = training["properties"]["microBatchSize"]
    assert mbs["x-kubernetes-int-or-string"] is True and mbs["default"] == "auto"


def test_sample_manifests_validate_against_the_models():
    root = Path(__file__).resolve().parents[2] / "manifests"
    models = {"GoDataset": GoDatasetSpec, "LoraTraining": LoraTrainingSpec, "AdapterServing": AdapterServingSpec}
    seen = 0
    for f in sorted(root.glob("*/*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc and doc.get("kind") in models:
                models[doc["kind"]].model_validate(doc["spec"])
                seen += 1
    assert seen >= 6


def test_spec_rejects_typos_and_round_trips_camel_case():
    with pytest.raises(ValidationError, match="minLine"):
        GoDatasetSpec.model_validate({"sources": [{"name": "a", "pvc": {"claimName": "c"}}],
                                      "filters": {"minLine": 3}})
    spec = LoraTrainingSpec.model_validate({"baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct"},
                                            "datasetRef": {"name": "d"}})
    dumped = json.loads(spec.model_dump_json(by_alias=True))
    assert dumped["training"]["microBatchSize"] == "auto"
    assert dumped["lora"]["targetModules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert LoraTrainingSpec.model_validate(dumped) == spec


def test_micro_batch_larger_than_effective_batch_is_invalid():
    with pytest.raises(ValidationError, match="microBatchSize 32 is larger than effectiveBatchSize 16"):
        LoraTrainingSpec.model_validate({"baseModel": {"name": "a/b"}, "dataPath": "d.jsonl",
                                         "training": {"microBatchSize": 32}})
