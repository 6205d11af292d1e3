"""The three images, built by ``make images``, run for real with the local engine:

- the extractor image runs the demo GoDataset's Job (its container spec from the builder:
  non-root, read-only root filesystem, the config in GOLORA_CONFIG) over the Go standard
  library mounted read-only, and writes the same dataset as the host binary;
- the trainer image runs the LoraTraining Job's container (``python -m golora_trainer run``)
  on the tiny model for a few steps, on that dataset, and writes an adapter that passes
  golora's vLLM adapter check;
- the operator image runs the install Deployment's container against the local cluster
  (host network) with a kubeconfig for the install ClusterRole only, and takes a GoDataset
  to a created Job.

Skipped, with the reason, where no engine exists or ``make images`` has not built them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from tests.conftest import REPO, go_root, wait_for
from tests.kube_helpers import create_cr, get_cr, install_operator_identity

from .podrun import PodRun, engine, require_image

pytestmark = pytest.mark.images

VERSION = __import__("golora").__version__
NAMESPACE = "golora-demo"
OPERATOR_USER = "golora-operator-image"


def _settings():
    from golora.settings import Settings

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("GOLORA_")}
    try:
        return Settings()
    finally:
        os.environ.update(saved)


def _demo(kind: str) -> dict[str, Any]:
    for path in sorted((REPO / "manifests" / "demo").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind:
                return doc
    raise AssertionError(f"no {kind} in manifests/demo")


def _writable_by_workers(path: Path) -> Path:
    """A claim directory as a volume with fsGroup 65532 would be: writable by the worker."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 65532, 65532)
    return path


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, extractor_binary) -> dict[str, Any]:
    """The demo GoDataset's Job run by the extractor image, and the host binary on the same config."""
    from golora.api.godataset import GoDatasetSpec
    from golora.builders.dataset import build_dataset_job, extractor_config

    settings = _settings()
    require_image(settings.extractor_image)
    doc = _demo("GoDataset")
    spec = GoDatasetSpec.model_validate(doc["spec"])
    job = build_dataset_job(namespace=NAMESPACE, name=doc["metadata"]["name"], uid="0000", generation=1,
                            spec=spec, settings=settings)
    work = tmp_path_factory.mktemp("extract")
    store = _writable_by_workers(work / "store")
    pod = job["spec"]["template"]["spec"]
    run = PodRun(pod, {"golora-store": store, "go-src": go_root()}, work / "termination-log")
    started = time.monotonic()
    proc = run.run(timeout=600)
    took = time.monotonic() - started

    # The host binary, on the same document with host paths.
    config = extractor_config(NAMESPACE, doc["metadata"]["name"], spec)
    host_store = work / "host-store"
    host_store.mkdir()
    config["storeRoot"] = str(host_store)
    for src in config["sources"]:
        src["dir"] = str(go_root() / src["pvc"]["path"])
    config.pop("statusTarget")
    (work / "host.json").write_text(json.dumps(config))
    host = subprocess.run([str(extractor_binary), "run", "--config", str(work / "host.json")],
                          capture_output=True, text=True, timeout=600)
    assert host.returncode == 0, host.stderr[-3000:]
    return {"proc": proc, "args": run.args(), "store": store, "host_store": host_store, "seconds": took,
            "out": f"datasets/{NAMESPACE}/{doc['metadata']['name']}", "termination": run.termination_log}


def test_extractor_image_runs_the_dataset_job_like_the_host_binary(extracted):
    proc, args = extracted["proc"], extracted["args"]
    assert "--read-only" in args and "--user=65532:65532" in args and "--network=none" in args
    assert any(a.startswith("--volume=") and a.endswith(":/mnt/claims/go-src:ro") for a in args), args
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    out, host = extracted["store"] / extracted["out"], extracted["host_store"] / extracted["out"]
    for name in ("train.jsonl", "eval.jsonl"):
        assert (out / name).read_bytes() == (host / name).read_bytes(), name
    result, host_result = (json.loads((d / "result.json").read_text()) for d in (out, host))
    assert result["pairsKept"] == host_result["pairsKept"] == 2000  # the demo's maxPairs, from the stdlib
    assert result["digest"] == host_result["digest"] and result["pairsTrain"] > 0 and result["pairsEval"] > 0
    # Written by the worker's uid, nothing left behind as root.
    assert {p.stat().st_uid for p in out.iterdir()} == {65532}
    print(f"\nextractor image: {result['pairsKept']} pairs from {result['filesParsed']} stdlib files "
          f"in {extracted['seconds']:.1f} s")


def test_trainer_image_trains_the_tiny_model_and_writes_a_servable_adapter(extracted, tmp_path):
    from golora.api.loratraining import LoraTrainingSpec
    from golora.builders.training import build_training_job, dataset_files
    from golora.vllm import validate_adapter_dir
    from golora_trainer.tiny import TinySpec, ensure_tiny

    settings = _settings()
    require_image(settings.trainer_image)
    if extracted["proc"].returncode != 0:
        pytest.skip("the extractor image did not write the dataset (its test says why)")
    store = extracted["store"]
    model = store / "models" / "tiny-go"
    shutil.copytree(ensure_tiny(TinySpec(pretrain_steps=300)), model)
    spec = LoraTrainingSpec.model_validate({
        "baseModel": {"path": "models/tiny-go"},
        # The extractor image's train.jsonl, 400 pairs of it (the trainer holds out 20 for eval):
        # the CPU time goes to the container, not to evaluating 100 held-out pairs twice.
        "dataPath": f"{extracted['out']}/train.jsonl",
        "lora": {"r": 8},
        "training": {"maxSteps": 6, "maxSamples": 400, "effectiveBatchSize": 4, "microBatchSize": 2,
                     "learningRate": 1e-3,
                     "maxSeqLength": 256, "loggingSteps": 2, "checkpointSteps": 3},
        "qualityGate": {"enabled": False},
        "placement": {"gpus": 0},
    })
    files = dataset_files(NAMESPACE, spec, None)
    job = build_training_job(namespace=NAMESPACE, name="go-adapter", uid="0000", generation=1, attempt=1,
                             spec=spec, files=files, micro_batch_size=None, settings=settings)
    for path in (store, *store.rglob("*")):
        os.chown(path, 65532, 65532, follow_symlinks=False)
    run = PodRun(job["spec"]["template"]["spec"], {"golora-store": store}, tmp_path / "termination-log")
    started = time.monotonic()
    proc = run.run(timeout=900)
    took = time.monotonic() - started
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-4000:], run.termination_log.read_text())
    out = store / "adapters" / NAMESPACE / "go-adapter"
    check = validate_adapter_dir(out)
    assert check.ok, check.message
    assert check.rank == 8 and check.base_model == "/store/models/tiny-go"
    report = json.loads((out / "result.json").read_text())
    assert report["globalStep"] == 6 and report["precision"] == "fp32" and report["exitCode"] == 0
    assert report["trainLoss"] is not None and report["adapterPath"] == "adapters/golora-demo/go-adapter"
    print(f"\ntrainer image: 6 steps on {report['trainSamples']} pairs, loss {report['firstLoss']:.3f} -> "
          f"{report['trainLoss']:.3f}, in {took:.1f} s (container start to adapter)")


# ---- the operator image against the local cluster --------------------------------------------

def _operator_container() -> tuple[dict[str, Any], dict[str, Any]]:
    docs = list(yaml.safe_load_all((REPO / "manifests" / "install" / "operator.yaml").read_text()))
    dep = next(d for d in docs if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


@pytest.mark.cluster
def test_operator_image_takes_a_godataset_to_a_job_on_the_install_clusterrole(cluster, api, namespace, operator,
                                                                               tmp_path):
    from tests.integration.test_install import forbidden, free_port, http_get

    pod, container = _operator_container()
    require_image(container["image"])
    kubeconfig = install_operator_identity(cluster, api, OPERATOR_USER, tmp_path / "kubeconfig")
    kubeconfig.chmod(0o644)
    health, metrics = free_port(), free_port()
    # The Deployment's container, but on the host network: its ports are moved to free ones.
    container = {**container, "args": [f"--liveness=http://127.0.0.1:{health}/healthz"]}
    env = {"KUBECONFIG": "/etc/golora/kubeconfig", "GOLORA_METRICS_PORT": str(metrics),
           "GOLORA_WATCH_SERVER_TIMEOUT": "10", "GOLORA_BACKOFF": "1"}
    pod = {**pod, "containers": [container]}
    run = PodRun(pod, {}, tmp_path / "termination-log", network="host", env_override=env)
    args = run.args()
    args.insert(args.index(container["image"]), f"--volume={kubeconfig}:/etc/golora/kubeconfig:ro")
    args.insert(1, "--name=golora-operator-image-test")
    assert "--read-only" in args and any(a.startswith("--tmpfs=/tmp") for a in args)

    batch = kubernetes.client.BatchV1Api(api)
    operator.stop()  # one operator at a time: the session's in-process one steps aside
    log = tmp_path / "operator.log"
    engine("rm", "-f", "golora-operator-image-test", check=False)
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(REPO / "hack" / "images" / "engine.sh"), *args], stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: proc.poll() is not None or http_get(f"http://127.0.0.1:{health}/healthz")[0] == 200,
                 timeout=90, what="the operator image's health endpoint")
        assert proc.poll() is None, log.read_text()[-3000:]
        gds = _demo("GoDataset")
        gds = {**gds, "metadata": {"name": "from-image"}}
        create_cr(api, namespace, gds)

        def job_created() -> Any:
            assert not forbidden(log.read_text()), "\n".join(forbidden(log.read_text())[:20])
            jobs = batch.list_namespaced_job(namespace).items
            return jobs[0] if jobs else None

        try:
            job = wait_for(job_created, timeout=90, what="the GoDataset's Job")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from None
        (worker,) = job.spec.template.spec.containers
        assert worker.image == f"golora/extractor:{VERSION}" == _settings().extractor_image
        assert job.metadata.owner_references[0].name == "from-image"
        env = {e.name: e.value for e in worker.env}
        assert json.loads(env["GOLORA_CONFIG"])["sources"][0]["pvc"]["claimName"] == "go-src"
        status = wait_for(lambda: (s := get_cr(api, namespace, "godatasets", "from-image").get("status", {}))
                          .get("jobName") and s, timeout=30, what="status written")
        assert status["jobName"] == job.metadata.name and status["phase"] == "Pending", status
        assert status["observedGeneration"] == 1, status
        # The worker identity the Job runs as, created by this operator under its ClusterRole.
        kubernetes.client.CoreV1Api(api).read_namespaced_service_account("golora-worker", namespace)
        assert job.spec.template.spec.service_account_name == "golora-worker"
        assert not forbidden(log.read_text())
    finally:
        engine("stop", "-t", "10", "golora-operator-image-test", check=False, timeout=60)
        proc.wait(30)
        operator.start()
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
