"""Installing golora and running it under GitOps, against the real control plane:

- every kustomization under manifests/ passes ``kubectl apply --dry-run=server -k``;
- ``python -m golora`` (the image's entrypoint) runs a GoDataset end to end with nothing but
  the install ClusterRole, and that role denies what the operator never needs;
- the worker identity it creates can patch its resource's status and nothing else;
- the metrics endpoint counts what happened;
- an Argo-CD-style apply and golora's patch of a model-server Deployment own separate
  fields, which is what ``ignoreDifferences.managedFieldsManagers: [golora]`` relies on;
- the Argo CD health scripts, run in a real Lua 5.1, map every phase as documented;
- the Dockerfiles are pinned and run the install steps CI runs.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from tests.conftest import REPO, wait_for
from tests.integration.status_conventions import ready_now
from tests.kube_helpers import (
    create_cr,
    delete_cr,
    get_cr,
    install_operator_identity,
    list_crs,
    make_condition,
    patch_cr_status,
    wait_handled,
)

MANIFESTS = REPO / "manifests"
KUSTOMIZATIONS = sorted(p.parent for p in MANIFESTS.rglob("kustomization.yaml"))
OPERATOR_USER = "golora-operator-under-test"  # a plain User bound to the install ClusterRole

cluster_test = pytest.mark.cluster


# ---- helpers ---------------------------------------------------------------------------------

def build(cluster: Any, directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize`` (the kustomize inside the built kubectl) -> objects."""
    out = cluster.kubectl("kustomize", str(directory)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def ensure_namespace(api: Any, name: str) -> None:
    try:
        kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise


def can_i(cluster: Any, kubeconfig: Path | None, *args: str) -> bool:
    out = cluster.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False)
    assert out.stdout.strip() in ("yes", "no"), out.stderr
    return out.stdout.strip() == "yes"


def free_port() -> int:
    from golora_dev.cluster import free_port as _free_port

    return _free_port()


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


# An Argo CD Application CRD stand-in (schema-less), so manifests/argocd can be dry-run
# without installing Argo CD. It only lets the apiserver accept the kind.
ARGOCD_APPLICATION_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "applications.argoproj.io"},
    "spec": {"group": "argoproj.io", "scope": "Namespaced",
             "names": {"kind": "Application", "plural": "applications", "singular": "application",
                       "listKind": "ApplicationList"},
             "versions": [{"name": "v1alpha1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
}


# ---- manifests ---------------------------------------------------------------------------------

def test_crds_kustomization_lists_exactly_the_generated_crds():
    from golora.api import KINDS
    from golora.api.crdgen import filename

    listed = yaml.safe_load((REPO / "crds" / "kustomization.yml").read_text())["resources"]
    assert sorted(listed) == sorted(filename(k) for k in KINDS)
    assert sorted(listed) == sorted(p.name for p in (REPO / "crds").glob("golora.dev_*.yaml"))


@cluster_test
def test_every_kustomization_applies_with_server_side_dry_run(cluster, api):
    assert {p.relative_to(MANIFESTS).as_posix() for p in KUSTOMIZATIONS} >= {"install", "samples", "argocd", "demo"}
    # The GitOps tests (earlier in the session) may have installed Argo CD's real CRDs; the
    # minimal stand-in is only for a cluster without them.
    if cluster.kubectl("get", "crd", "applications.argoproj.io", check=False).returncode != 0:
        cluster.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(ARGOCD_APPLICATION_CRD))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/applications.argoproj.io")
    for directory in KUSTOMIZATIONS:
        objects = build(cluster, directory)
        assert objects, directory
        # A dry-run creates nothing, so the namespaces the objects go to must exist already
        # (the kustomization's own Namespaces as written, labels included).
        for obj in objects:
            if obj["kind"] == "Namespace":
                cluster.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(obj))
            elif obj["metadata"].get("namespace"):
                ensure_namespace(api, obj["metadata"]["namespace"])
        out = cluster.kubectl("apply", "--dry-run=server", "-k", str(directory))
        assert "(server dry run)" in out.stdout, out.stdout
        # golora-system enforces the "restricted" Pod Security level; its Deployment must meet it.
        assert "would violate PodSecurity" not in out.stderr, out.stderr
    # The llm-d-shaped example is kept out of the samples kustomization (the chart owns the
    # real ones) but must be valid too.
    cluster.kubectl("apply", "--dry-run=server", "-f", str(MANIFESTS / "samples" / "llm-d-example.yaml"))


def test_operator_deployment_matches_the_code():
    """Image tags and the settings the Deployment sets agree with the code's defaults."""
    import golora
    from golora.settings import Settings

    docs = list(yaml.safe_load_all((MANIFESTS / "install" / "operator.yaml").read_text()))
    dep = next(d for d in docs if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"golora/operator:{golora.__version__}"
    assert container["command"] == ["python", "-m", "golora"]
    env = {e["name"]: e["value"] for e in container["env"]}
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("GOLORA_")}
    try:
        defaults = Settings()
    finally:
        os.environ.update(saved)
    assert env["GOLORA_EXTRACTOR_IMAGE"] == defaults.extractor_image
    assert env["GOLORA_TRAINER_IMAGE"] == defaults.trainer_image
    assert env["GOLORA_IMAGE_PULL_POLICY"] == defaults.image_pull_policy
    assert int(env["GOLORA_DATASET_DEADLINE_SECONDS"]) == defaults.dataset_deadline_seconds
    # Hardening and probes.
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] and container["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["args"] == [f"--liveness=http://0.0.0.0:{ports['health']}/healthz"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert int(env["GOLORA_METRICS_PORT"]) == ports["metrics"]
    # Standalone kopf: never two operators, not even during a rollout.
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"


# ---- RBAC: the operator on its ClusterRole alone ----------------------------------------------

class OperatorSubprocess:
    """``python -m golora`` (what the image runs) as its own process, with a given kubeconfig."""

    def __init__(self, kubeconfig: Path, log: Path) -> None:
        from tests.operator_runner import FAST_ENV

        self.health_port, self.metrics_port = free_port(), free_port()
        self.log = log
        self.env = {**os.environ, **FAST_ENV, "KUBECONFIG": str(kubeconfig),
                    "GOLORA_METRICS_PORT": str(self.metrics_port), "GOLORA_METRICS_ADDR": "127.0.0.1"}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> OperatorSubprocess:
        from golora_dev.cluster import _die_with_parent

        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "golora", f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
                 "--verbose"], env=self.env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent)
        try:
            wait_for(lambda: self.proc.poll() is not None or http_get(self.url("health", "/healthz"))[0] == 200,
                     timeout=30, what="the operator's health endpoint")
            assert self.proc.poll() is None, self.output()
            wait_for(lambda: self.output().count("Starting the watch-stream for") >= 3, timeout=20,
                     what="watch streams")
        except BaseException:
            self.__exit__()
            raise
        return self

    def url(self, which: str, path: str) -> str:
        port = self.health_port if which == "health" else self.metrics_port
        return f"http://127.0.0.1:{port}{path}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


FORBIDDEN = re.compile(r'HTTP/1\.1" 403 |\(403\)|Reason: Forbidden|APIForbiddenError|ForbiddenException|'
                       r"Not enough permissions")


def forbidden(log: str) -> list[str]:
    """Log lines of a request the operator's RBAC refused (or kopf's warning about one)."""
    return [line[:400] for line in log.splitlines() if FORBIDDEN.search(line)]


def metric(text: str, name: str, **labels: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


@cluster_test
def test_operator_runs_a_dataset_on_its_clusterrole_alone(cluster, api, namespace, operator, node_agent, tmp_path):
    # The install, for real, then its ClusterRole bound to a plain User.
    kubeconfig = install_operator_identity(cluster, api, OPERATOR_USER, tmp_path / "operator.kubeconfig")

    # Not more than needed: what the operator must never be able to do.
    ns = ["-n", namespace]
    for denied in (["get", "secrets"], ["list", "secrets", "-A"], ["create", "deployments.apps"],
                   ["delete", "deployments.apps"], ["update", "deployments.apps"], ["create", "pods"],
                   ["create", "pods", "--subresource=exec"], ["delete", "godatasets.golora.dev"],
                   ["update", "godatasets.golora.dev"], ["patch", "nodes"], ["get", "configmaps"],
                   ["delete", "serviceaccounts"], ["patch", "roles.rbac.authorization.k8s.io"],
                   ["get", "serviceaccounts/other"], ["create", "serviceaccounts", "--subresource=token"],
                   ["create", "clusterrolebindings.rbac.authorization.k8s.io"],
                   ["escalate", "roles.rbac.authorization.k8s.io"], ["bind", "clusterroles.rbac.authorization.k8s.io"],
                   ["impersonate", "users"], ["create", "leases.coordination.k8s.io"]):
        assert not can_i(cluster, kubeconfig, *denied, *ns), f"the operator can {' '.join(denied)}"
    for allowed in (["patch", "deployments.apps"], ["get", "serviceaccounts/golora-worker"], ["watch", "pods", "-A"], ["list", "nodes"],
                    ["patch", "loratrainings.golora.dev", "--subresource=status"], ["create", "events"],
                    ["watch", "customresourcedefinitions.apiextensions.k8s.io"]):
        assert can_i(cluster, kubeconfig, *allowed, *ns), f"the operator cannot {' '.join(allowed)}"

    # The real proof: the image's entrypoint with that identity only, one GoDataset end to end
    # (the session's admin operator steps aside meanwhile: two operators would both handle it).
    apps = kubernetes.client.AppsV1Api(api)
    operator.stop()
    try:
        with OperatorSubprocess(kubeconfig, tmp_path / "operator.log") as op:
            def until(predicate: Any, what: str, timeout: float = 40) -> Any:
                def check() -> Any:
                    assert not forbidden(op.output()), "\n".join(forbidden(op.output())[:20])
                    return predicate()
                return wait_for(check, timeout=timeout, what=what)

            # The reference lab in miniature: a dataset, the llm-d model servers of
            # llm-d-example.yaml, a trained adapter, and the sample AdapterServing.
            create_cr(api, namespace, {
                "apiVersion": "golora.dev/v1alpha1", "kind": "GoDataset", "metadata": {"name": "rbac"},
                "spec": {"sources": [{"name": "fx", "pvc": {"claimName": "fixture-src"}}],
                         "split": {"evalFraction": 0.0}}})
            servers = list(yaml.safe_load_all((MANIFESTS / "samples" / "llm-d-example.yaml").read_text()))
            for dep in servers:
                dep["metadata"]["namespace"] = namespace
                apps.create_namespaced_deployment(namespace, dep)
            create_cr(api, namespace, {
                "apiVersion": "golora.dev/v1alpha1", "kind": "LoraTraining", "metadata": {"name": "go-adapter"},
                "spec": {"baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct"}, "datasetRef": {"name": "absent"},
                         "lora": {"r": 16}}})

            obj = until(lambda: (o := get_cr(api, namespace, "godatasets", "rbac")).get("status", {}).get("phase")
                        in ("Succeeded", "Failed") and o,
                        "GoDataset finished under the install ClusterRole")
            assert obj["status"]["phase"] == "Succeeded", (obj["status"], op.output()[-3000:])
            assert obj["status"]["result"]["pairsKept"] == 3
            # No finalizer: its Jobs go with it through the garbage collector (ownerReferences).
            assert "golora.dev/finalizer" not in obj["metadata"].get("finalizers", [])

            # The training waits for its (absent) dataset; then it "succeeds" as the trainer
            # and the operator would have written it, so the adapter can be served.
            waiting = wait_handled(api, namespace, "loratrainings", "go-adapter", timeout=120)
            assert waiting["status"]["phase"] == "Pending", waiting["status"]
            patch_cr_status(api, namespace, "loratrainings", "go-adapter", {
                "phase": "Succeeded", "message": "adapter ready", "conditions": [
                    make_condition(t, "True", r)
                    for t, r in (("Accepted", "Valid"), ("Succeeded", "AdapterReady"), ("QualityGatePassed", "Passed"))],
                "result": {"adapterPath": f"adapters/{namespace}/go-adapter", "rank": 16,
                           "baseModel": "Qwen/Qwen2.5-7B-Instruct", "qualityGate": {"passed": True, "reason": "Passed"}}})
            sample = yaml.safe_load((MANIFESTS / "samples" / "adapterserving.yaml").read_text())
            create_cr(api, namespace, sample)

            def lora_args() -> list[list[str]]:
                out = []
                for dep in servers:
                    live = apps.read_namespaced_deployment(dep["metadata"]["name"], namespace)
                    (vllm,) = [c for c in live.spec.template.spec.containers if c.name == "vllm"]
                    out.append(vllm.args)
                return out

            until(lambda: all("--enable-lora" in args for args in lora_args()), "both llm-d roles patched")
            rolling = until(lambda: (o := get_cr(api, namespace, "adapterservings", "go-adapter")).get("status", {})
                            .get("phase") == "RollingOut" and o, "AdapterServing RollingOut")
            # Deleting it: the operator takes exactly its part out again, then releases the finalizer.
            delete_cr(api, namespace, "adapterservings", "go-adapter")
            until(lambda: not list_crs(api, namespace, "adapterservings"),
                  "AdapterServing deleted")
            assert lora_args() == [d["spec"]["template"]["spec"]["containers"][0]["args"] for d in servers]

            # Metrics, scraped the way Prometheus would.
            status, text = http_get(op.url("metrics", "/metrics"))
            assert status == 200
            assert metric(text, "golora_reconciles_total", kind="GoDataset", outcome="accepted") >= 1
            assert metric(text, "golora_reconciles_total", kind="AdapterServing", outcome="accepted") >= 1
            assert metric(text, "golora_jobs", kind="GoDataset", phase="Succeeded") >= 1
            assert metric(text, "golora_job_phase_transitions_total", kind="GoDataset", phase="Succeeded") >= 1
            assert metric(text, "golora_resources", kind="GoDataset", phase="Succeeded") >= 1
            assert metric(text, "golora_build_info") == 1
            log = op.output()
        assert not forbidden(log), "\n".join(forbidden(log)[:20])
    finally:
        operator.start()

    # The worker identity was created by that operator (so RBAC's escalation check passed:
    # it holds what the Role grants) and can patch its resources' status, nothing else.
    worker = f"--as=system:serviceaccount:{namespace}:golora-worker"
    for resource in ("godatasets.golora.dev", "loratrainings.golora.dev", "adapterservings.golora.dev"):
        assert can_i(cluster, None, "patch", resource, "--subresource=status", worker, *ns)
        assert not can_i(cluster, None, "patch", resource, worker, *ns)
        assert not can_i(cluster, None, "patch", resource, "--subresource=status", worker, "-n", "default")
    for denied in (["get", "secrets"], ["create", "jobs.batch"], ["patch", "deployments.apps"], ["list", "pods"],
                   ["create", "pods"], ["delete", "godatasets.golora.dev"]):
        assert not can_i(cluster, None, *denied, worker, *ns), f"the worker can {' '.join(denied)}"

    # What Argo CD would show for these real objects.
    if LUA is not None:
        assert health("GoDataset", obj) == ("Healthy", obj["status"]["message"])
        assert health("LoraTraining", waiting) == ("Progressing", waiting["status"]["message"])
        assert health("AdapterServing", rolling) == ("Progressing", rolling["status"]["message"])


def test_metrics_bookkeeping():
    """Handler errors are read from kopf's per-object log records; Job and resource gauges
    follow watch events (the endpoint itself is scraped in the ClusterRole test above)."""
    import datetime as dt
    import logging
    import uuid

    from prometheus_client import REGISTRY

    from golora import metrics

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    logger = logging.getLogger(f"golora.test.{uuid.uuid4().hex}")
    logger.addHandler(metrics._error_counter)
    errors = value("golora_handler_errors_total", kind="LoraTraining")
    logger.warning("retrying", extra={"k8s_ref": {"kind": "LoraTraining"}})
    logger.error("no object", extra={})
    logger.error("Handler 'validate' failed with an exception", extra={"k8s_ref": {"kind": "LoraTraining"}})
    assert value("golora_handler_errors_total", kind="LoraTraining") == errors + 1

    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    job = {"metadata": {"uid": uuid.uuid4().hex, "creationTimestamp": now,
                        "labels": {"golora.dev/kind": "LoraTraining", "app.kubernetes.io/managed-by": "golora"}}}
    running = value("golora_jobs", kind="LoraTraining", phase="Running")
    moved = value("golora_job_phase_transitions_total", kind="LoraTraining", phase="Running")
    metrics.observe_job(job, None)
    metrics.observe_job({**job, "status": {"active": 1, "ready": 1, "startTime": now}}, "MODIFIED")
    metrics.observe_job({**job, "status": {"active": 1, "ready": 1, "startTime": now}}, "MODIFIED")  # no change
    assert value("golora_jobs", kind="LoraTraining", phase="Running") == running + 1
    assert value("golora_job_phase_transitions_total", kind="LoraTraining", phase="Running") == moved + 1
    metrics.observe_job(job, "DELETED")
    assert value("golora_jobs", kind="LoraTraining", phase="Running") == running

    served = value("golora_adapters_served")
    serving = {"kind": "AdapterServing", "metadata": {"uid": uuid.uuid4().hex},
               "status": {"phase": "Serving", "conditions": [{"type": "Serving", "status": "True"}]}}
    metrics.observe_resource(serving, None)
    assert value("golora_adapters_served") == served + 1
    metrics.observe_resource(serving, "DELETED")
    assert value("golora_adapters_served") == served


# ---- GitOps: who owns which field of a model-server Deployment ---------------------------------

def managed(deployment: dict[str, Any]) -> dict[str, set[str]]:
    """manager -> the readable paths it owns (from metadata.managedFields)."""
    def walk(fields: dict[str, Any], path: str, out: set[str]) -> None:
        for key, sub in fields.items():
            if key == ".":
                continue
            if key.startswith("f:"):
                here = f"{path}.{key[2:]}" if path else key[2:]
            elif key.startswith("k:"):
                keys = json.loads(key[2:])
                here = f"{path}[{','.join(f'{k}={v}' for k, v in sorted(keys.items()))}]"
            else:
                here = f"{path}[{key}]"
            if not sub or "." in sub:  # a leaf, or the map / list item itself
                out.add(here)
            if sub and set(sub) != {"."}:
                walk(sub, here, out)
    owners: dict[str, set[str]] = {}
    for entry in deployment["metadata"].get("managedFields") or []:
        walk(entry.get("fieldsV1") or {}, "", owners.setdefault(entry["manager"], set()))
    return owners


def respect_ignore_differences(desired: dict[str, Any], live: dict[str, Any], manager: str) -> dict[str, Any]:
    """What Argo CD applies with ``ignoreDifferences: managedFieldsManagers: [manager]`` and
    ``RespectIgnoreDifferences=true``: Git's object with the live values of every field that
    ``manager`` owns (a simulation of that step, written from Argo CD's documentation)."""
    out = copy.deepcopy(desired)

    def overlay(fields: dict[str, Any], src: Any, dst: Any) -> None:
        for key, sub in fields.items():
            if key == ".":
                continue
            leaf = not sub or set(sub) == {"."}
            if key.startswith("f:"):
                name = key[2:]
                if name not in src:
                    continue
                if leaf:
                    dst[name] = copy.deepcopy(src[name])
                else:
                    dst.setdefault(name, [] if isinstance(src[name], list) else {})
                    overlay(sub, src[name], dst[name])
            elif key.startswith("k:"):
                keys = json.loads(key[2:])
                match = lambda item, keys=keys: all(item.get(k) == v for k, v in keys.items())  # noqa: E731
                live_item = next((i for i in src if match(i)), None)
                if live_item is None:
                    continue
                dst_item = next((i for i in dst if match(i)), None)
                if dst_item is None:
                    dst.append(copy.deepcopy(live_item) if leaf else dict(keys))
                    dst_item = dst[-1]
                if not leaf:
                    overlay(sub, live_item, dst_item)
            elif key.startswith("v:"):
                value = json.loads(key[2:])
                if value not in dst:
                    dst.append(value)

    for entry in live["metadata"].get("managedFields") or []:
        if entry["manager"] == manager:
            overlay(entry.get("fieldsV1") or {}, live, out)
    return out


@cluster_test
def test_gitops_apply_and_golora_patch_own_separate_fields(cluster, api, namespace):
    """The decode Deployment of manifests/samples/llm-d-example.yaml, applied as Argo CD does
    (server-side apply, field manager argocd-controller, forced), patched with the real
    AdapterServing builder's apply body under field manager golora (as its handler does),
    then synced again by Argo CD: naively, and with ignoreDifferences + RespectIgnoreDifferences."""
    from golora.builders import serving as sv

    apps = kubernetes.client.AppsV1Api(api)
    docs = list(yaml.safe_load_all((MANIFESTS / "samples" / "llm-d-example.yaml").read_text()))
    git = next(d for d in docs if d["metadata"]["labels"]["llm-d.ai/role"] == "decode")
    git["metadata"]["namespace"] = namespace
    name = git["metadata"]["name"]
    git_args = git["spec"]["template"]["spec"]["containers"][0]["args"]

    def apply(body: dict[str, Any], manager: str) -> dict[str, Any]:
        return apps.api_client.sanitize_for_serialization(apps.patch_namespaced_deployment(
            body["metadata"]["name"], namespace, body, field_manager=manager, force=True,
            _content_type="application/apply-patch+yaml"))

    def golora_reconcile(live: dict[str, Any]) -> dict[str, Any]:
        """As the handler does: read, plan, apply with the read resourceVersion; on a conflict
        (the real Deployment controller writes the Deployment too) read again."""
        entry = sv.AdapterEntry(name="go-adapter", owner="go-adapter", path=f"adapters/{namespace}/go-adapter",
                                rank=16, base_model="Qwen/Qwen2.5-7B-Instruct")
        for _ in range(5):
            live = apps.api_client.sanitize_for_serialization(apps.read_namespaced_deployment(name, namespace))
            plan = sv.plan_deployment(live, [entry])
            if not plan.changed:
                return live
            try:
                return apply(plan.body, "golora")
            except kubernetes.client.ApiException as exc:
                if exc.status != 409:
                    raise
        raise AssertionError("five conflicts in a row")

    def vllm(dep: dict[str, Any]) -> dict[str, Any]:
        return next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "vllm")

    def volume_names(dep: dict[str, Any]) -> set[str]:
        return {v["name"] for v in dep["spec"]["template"]["spec"].get("volumes") or []}

    live = apply(git, "argocd-controller")
    assert live["metadata"]["generation"] == 1
    live = golora_reconcile(live)
    assert live["metadata"]["generation"] == 2 and "--enable-lora" in vllm(live)["args"]
    assert vllm(live)["args"][:len(git_args)] == git_args  # the user's args are kept, golora's appended
    owners = managed(live)
    vllm_key = "spec.template.spec.containers[name=vllm]"
    golora_fields = {f"{vllm_key}.args", f"{vllm_key}.volumeMounts[mountPath={sv.STORE_MOUNT}]",
                     f"spec.template.spec.volumes[name={sv.STORE_VOLUME}]", f"metadata.annotations.{sv.ANNOTATION}"}
    assert golora_fields <= owners["golora"], owners["golora"]
    assert f"{vllm_key}.image" in owners["argocd-controller"]
    # args are an atomic list: golora took them over whole (force), Argo CD owns the rest.
    assert f"{vllm_key}.args" not in owners["argocd-controller"]
    assert not any(p.startswith("spec.template.spec.initContainers") for p in owners["golora"])  # routing-proxy

    # A naive sync (Git's object, forced) takes the args back: golora's flags are gone and the
    # pods roll, while the fields golora owns alone (volume, mount, annotation) stay put.
    live = apply(git, "argocd-controller")
    assert live["metadata"]["generation"] == 3
    assert vllm(live)["args"] == git_args
    assert sv.STORE_VOLUME in volume_names(live)
    assert sv.ANNOTATION in live["metadata"]["annotations"]
    # golora puts its flags back: another rollout. Every sync would cost two: the fight.
    live = golora_reconcile(live)
    assert live["metadata"]["generation"] == 4 and "--enable-lora" in vllm(live)["args"]

    # The sync with managedFieldsManagers: [golora] + RespectIgnoreDifferences=true: Git's
    # object with golora's fields taken from the live one. Nothing changes, nothing rolls.
    patched_args = vllm(live)["args"]
    desired = respect_ignore_differences(git, live, "golora")
    assert desired["spec"]["template"]["spec"]["initContainers"] == git["spec"]["template"]["spec"]["initContainers"]
    for _ in range(2):  # a sync, then a self-heal
        live = apply(desired, "argocd-controller")
        assert live["metadata"]["generation"] == 4
        assert vllm(live)["args"] == patched_args and sv.STORE_VOLUME in volume_names(live)
        assert golora_reconcile(live)["metadata"]["generation"] == 4  # golora has nothing to do either
    owners = managed(live)
    assert golora_fields <= owners["golora"]
    assert f"{vllm_key}.args" in owners["argocd-controller"]  # now shared: both applied the same value
    # kubectl shows the same (what a person would look at).
    shown = cluster.kubectl("get", "deployment", name, "-n", namespace, "--show-managed-fields", "-o", "yaml").stdout
    assert "manager: golora" in shown and "manager: argocd-controller" in shown


# ---- Argo CD health checks in Lua ---------------------------------------------------------------

def _lua_runtime() -> Any:
    try:
        from lupa import lua51  # Argo CD runs its health scripts in gopher-lua, a Lua 5.1
        return lua51.LuaRuntime(unpack_returned_tuples=True)
    except ImportError:
        try:
            import lupa
        except ImportError:
            return None
        return lupa.LuaRuntime(unpack_returned_tuples=True)


LUA = _lua_runtime()
HEALTH = {key.rsplit("_", 1)[1]: script for key, script in yaml.safe_load(
    (MANIFESTS / "argocd" / "argocd-cm.yaml").read_text())["data"].items()
    if key.startswith("resource.customizations.health.golora.dev_")}


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    assert LUA is not None
    LUA.globals().obj = LUA.table_from(json.loads(json.dumps(obj)), recursive=True)
    result = LUA.execute(HEALTH[kind])
    return result["status"], result["message"]


def cr(kind: str, generation: int = 1, **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "golora.dev/v1alpha1", "kind": kind,
                           "metadata": {"name": "x", "namespace": "llm", "generation": generation}}
    if status:
        obj["status"] = {"observedGeneration": generation, **status}
    return obj


def cond(type_: str, status: str, reason: str = "Reason", message: str = "", generation: int = 1) -> dict[str, Any]:
    """A condition about generation 1 unless told (the objects' generation in these cases)."""
    return make_condition(type_, status, reason, message, generation)


def ready(status: str, reason: str, message: str = "", generation: int = 1) -> dict[str, Any]:
    return cond("Ready", status, reason, message, generation)


UNSCHEDULABLE = "0/3 nodes are available: 1 Insufficient nvidia.com/gpu."
HEALTH_CASES = [
    # kind, object, expected status, expected message
    ("GoDataset", cr("GoDataset"), "Progressing", "waiting for the golora operator"),
    ("GoDataset", cr("GoDataset", phase="Pending", message="waiting for extraction Job x-gds-g1-a1 to start",
                     conditions=[ready("False", "Extracting")]),
     "Progressing", "waiting for extraction Job x-gds-g1-a1 to start"),
    ("GoDataset", cr("GoDataset", phase="Running", message="extracting", conditions=[ready("False", "Extracting")]),
     "Progressing", "extracting"),
    ("GoDataset", cr("GoDataset", phase="Succeeded", message="3 pairs (3 train / 0 eval) from 4 files",
                     conditions=[ready("True", "DatasetReady")]),
     "Healthy", "3 pairs (3 train / 0 eval) from 4 files"),
    # Only Ready says Healthy: a Succeeded phase without it (an older golora's status) is not.
    ("GoDataset", cr("GoDataset", phase="Succeeded", message="3 pairs"), "Progressing", "3 pairs"),
    ("GoDataset", cr("GoDataset", phase="Failed", message="source fx: does/not/exist not found",
                     conditions=[ready("False", "SourceFetchFailed")]),
     "Degraded", "source fx: does/not/exist not found"),
    ("GoDataset", cr("GoDataset", phase="Invalid", message="spec.filters.minLines: Input should be > 0",
                     conditions=[ready("False", "InvalidSpec")]),
     "Degraded", "spec.filters.minLines: Input should be > 0"),
    # A new spec: the Succeeded status belongs to the previous generation.
    ("GoDataset", {**cr("GoDataset", generation=2), "status": {"observedGeneration": 1, "phase": "Succeeded",
                                                                "conditions": [ready("True", "DatasetReady")]}},
     "Progressing", "waiting for the golora operator to handle generation 2"),
    # observedGeneration is current but Ready is about the previous spec.
    ("GoDataset", cr("GoDataset", generation=2, phase="Succeeded", message="3 pairs",
                     conditions=[ready("True", "DatasetReady", generation=1)]),
     "Progressing", "3 pairs"),
    ("LoraTraining", cr("LoraTraining", phase="Pending", message="waiting: GoDataset go-distributed is Running",
                        conditions=[cond("DatasetReady", "False", "DatasetNotReady", "GoDataset is Running"),
                                    ready("False", "DatasetNotReady")]),
     "Progressing", "waiting: GoDataset go-distributed is Running"),
    ("LoraTraining", cr("LoraTraining", phase="Pending", message=f"unschedulable: {UNSCHEDULABLE}",
                        conditions=[cond("Scheduled", "False", "Unschedulable", UNSCHEDULABLE),
                                    ready("False", "Unschedulable")]),
     "Suspended", f"waiting for a node: {UNSCHEDULABLE}"),
    ("LoraTraining", cr("LoraTraining", phase="Running", message="training",
                        progress={"step": 40, "totalSteps": 250, "loss": 0.61}),
     "Progressing", "training: step 40/250"),
    ("LoraTraining", cr("LoraTraining", phase="Succeeded", message="adapter adapters/llm/x: eval loss 0.512",
                        conditions=[cond("QualityGatePassed", "True", "Passed"), ready("True", "AdapterReady")]),
     "Healthy", "adapter adapters/llm/x: eval loss 0.512"),
    ("LoraTraining", cr("LoraTraining", phase="Succeeded", message="adapter adapters/llm/x, gate Disabled",
                        conditions=[cond("QualityGatePassed", "Unknown", "Disabled"), ready("True", "AdapterReady")]),
     "Healthy", "adapter adapters/llm/x, gate Disabled"),
    ("LoraTraining", cr("LoraTraining", phase="Failed", message="QualityGateFailed: 97% of samples are whitespace",
                        conditions=[cond("QualityGatePassed", "False", "QualityGateFailed"),
                                    ready("False", "QualityGateFailed")]),
     "Degraded", "QualityGateFailed: 97% of samples are whitespace"),
    ("AdapterServing", cr("AdapterServing", phase="Pending", message="no target yet",
                          conditions=[cond("Patched", "False", "TargetNotFound", "no Deployment matches llm-d.ai/model"),
                                      ready("False", "TargetNotFound")]),
     "Suspended", "no Deployment matches llm-d.ai/model"),
    ("AdapterServing", cr("AdapterServing", phase="Pending", message="waiting for LoraTraining go-adapter to succeed",
                          conditions=[cond("AdapterValidated", "False", "TrainingNotSucceeded"),
                                      ready("False", "TrainingNotSucceeded")]),
     "Progressing", "waiting for LoraTraining go-adapter to succeed"),
    ("AdapterServing", cr("AdapterServing", phase="RollingOut", message="patched; rolling out: 0/1 updated",
                          conditions=[cond("Patched", "True", "Patched"), cond("RolledOut", "False", "RollingOut"),
                                      ready("False", "RollingOut")]),
     "Progressing", "patched; rolling out: 0/1 updated"),
    ("AdapterServing", cr("AdapterServing", phase="RolledOut", message="rolled out; serving not confirmed: no ready pods",
                          conditions=[cond("RolledOut", "True", "RolledOut"), cond("Serving", "Unknown", "NoReadyPods"),
                                      ready("False", "NoReadyPods")]),
     "Progressing", "rolled out; serving not confirmed: no ready pods"),
    ("AdapterServing", cr("AdapterServing", phase="Serving", message="go-adapter is served by prefill, decode",
                          conditions=[cond("Serving", "True", "Listed", "listed by 2 pods"),
                                      ready("True", "Serving", "listed by 2 pods")]),
     "Healthy", "listed by 2 pods"),
    ("AdapterServing", cr("AdapterServing", phase="Failed", message="BaseModelMismatch: Llama adapter on Qwen",
                          conditions=[ready("False", "BaseModelMismatch")]),
     "Degraded", "BaseModelMismatch: Llama adapter on Qwen"),
]


@pytest.mark.skipif(LUA is None, reason="lupa (a Lua runtime from PyPI) is not installed")
@pytest.mark.parametrize("kind,obj,status,message", HEALTH_CASES,
                         ids=[f"{k}-{o.get('status', {}).get('phase', 'new')}-{s}" for k, o, s, _ in HEALTH_CASES])
def test_argocd_health_scripts(kind, obj, status, message):
    assert set(HEALTH) == {"GoDataset", "LoraTraining", "AdapterServing"}
    assert health(kind, obj) == (status, message)


@pytest.mark.skipif(LUA is None, reason="lupa (a Lua runtime from PyPI) is not installed")
def test_argocd_health_agrees_with_ready():
    """Healthy exactly when Ready=True for the current generation, in every case above; the
    cases include both answers for every kind."""
    for kind in HEALTH:
        cases = [obj for k, obj, _, _ in HEALTH_CASES if k == kind]
        assert {ready_now(o) for o in cases} == {True, False}, kind
        for obj in cases:
            assert (health(kind, obj)[0] == "Healthy") == ready_now(obj), (kind, obj)


# ---- images -------------------------------------------------------------------------------------

def _dockerfile(path: str) -> str:
    return (REPO / path).read_text()


@pytest.mark.parametrize("path", ["Dockerfile", "extractor/Dockerfile", "trainer_image/Dockerfile"])
def test_dockerfiles_are_pinned_and_non_root(path):
    text = _dockerfile(path)  # a missing Dockerfile fails here
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    for image in re.findall(r"^FROM\s+(\S+)", text, re.M):
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        assert re.search(r":\S*\d+\.\d+", image) or "@sha256:" in image, f"{path}: {image} is not pinned"
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and not user[-1].startswith(("root", "0")), f"{path} runs as root"


def test_images_run_the_install_steps_ci_runs():
    makefile = (REPO / "Makefile").read_text()
    # The Go build: the Makefile's `extractor` target and the Dockerfiles build the same package the same way.
    assert "go build -trimpath -o $(EXTRACT) ./cmd/golora-extract" in makefile
    go_build = re.compile(r"go build -trimpath [^\n]*-o \S+ \./cmd/golora-extract")
    assert go_build.search(_dockerfile("extractor/Dockerfile"))
    # The Python install: CI installs '.[dev,train]'; the operator image '.', the trainer '.[train]'.
    assert "pip install -q -e '.[dev,train]'" in makefile
    assert re.search(r"pip install [^\n]*--no-cache-dir[^\n]* \.(\s|$)", _dockerfile("Dockerfile"))
    trainer = _dockerfile("trainer_image/Dockerfile")
    assert ".[train]" in trainer
    assert go_build.search(trainer)
