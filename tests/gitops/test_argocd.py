"""golora under a real Argo CD (v3.6.1, built from its Go modules) on the local cluster.

A quick variant of manifests/demo in a local git repository, in the reference layout of
manifests/argocd/applications.yaml (those Applications, re-pointed): ``lab`` holds the golora
resources, ``servers`` the model-server Deployment golora patches (with the ignoreDifferences
and RespectIgnoreDifferences of the shipped Application), ``failing`` resources that cannot
succeed. The real operator does the work; Argo CD computes every health from the
``resource.customizations`` of manifests/argocd/argocd-cm.yaml.

The tests run in order on one rollout (module fixture ``lab``).
"""

from __future__ import annotations

import copy
import shutil
import sys
import threading
import time
import uuid
from typing import Any

import kubernetes
import pytest
import yaml

from tests.conftest import REPO, wait_for
from tests.integration.test_install import managed
from tests.kube_helpers import condition, get_cr

pytestmark = [pytest.mark.cluster, pytest.mark.train, pytest.mark.argocd]

ARGO = ("argoproj.io", "v1alpha1")
ARGO_NS = "argocd"
MANIFESTS = REPO / "manifests"
SHIPPED = {d["metadata"]["name"]: d for d in yaml.safe_load_all((MANIFESTS / "argocd" / "applications.yaml").read_text())}
CASCADE = "resources-finalizer.argocd.argoproj.io"  # what `argocd app delete --cascade` relies on
GOLORA_KINDS = ("GoDataset", "LoraTraining", "AdapterServing")


# ---- git content: a quick variant of manifests/demo ----------------------------------------------

def demo(name: str) -> dict[str, Any]:
    return yaml.safe_load((MANIFESTS / "demo" / name).read_text())


def lab_files() -> dict[str, str]:
    """The demo's resources, small: a few stdlib pairs, four training steps, no gate (it runs in
    ``failing``), served by the demo's Deployment (the node agent's vLLM stand-in answers it)."""
    ds = demo("godataset.yaml")
    ds["spec"]["maxPairs"] = 120
    ds["spec"]["split"] = {"evalFraction": 0.1, "seed": 42}
    lt = demo("loratraining.yaml")
    lt["spec"]["training"] = {"maxSteps": 4, "maxSeqLength": 256, "microBatchSize": 4, "effectiveBatchSize": 4,
                              "loggingSteps": 1, "checkpointSteps": 100}
    lt["spec"]["qualityGate"] = {"enabled": False}
    serving = demo("adapterserving.yaml")
    serving["spec"]["requireQualityGate"] = False
    return {"lab/godataset.yaml": yaml.safe_dump(ds), "lab/loratraining.yaml": yaml.safe_dump(lt),
            "lab/adapterserving.yaml": yaml.safe_dump(serving)}


def server_deployment(grace: int = 10) -> dict[str, Any]:
    dep = demo("vllm-deployment.yaml")
    dep["metadata"]["annotations"] = {"example.com/owner": "platform"}
    dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = grace
    return dep


def failing_files() -> dict[str, str]:
    """A source that does not exist; a training whose gate cannot pass; the serving of it."""
    ds = demo("godataset.yaml")
    ds["metadata"]["name"] = "missing"
    ds["spec"]["sources"] = [{"name": "gone", "pvc": {"claimName": "fixture-src", "path": "does/not/exist"}}]
    lt = demo("loratraining.yaml")
    lt["metadata"]["name"] = "gate-fails"
    lt["spec"]["training"] = {"maxSteps": 2, "maxSeqLength": 256, "microBatchSize": 4, "effectiveBatchSize": 4}
    lt["spec"]["qualityGate"] = {"prompts": 1, "maxNewTokens": 8, "compareWithBase": False,
                                 "maxEvalLossRatio": 0.01}  # 100x lower loss than the base: never
    serving = demo("adapterserving.yaml")
    serving["metadata"]["name"] = "gate-fails"
    serving["spec"]["trainingRef"] = {"name": "gate-fails"}
    serving["spec"]["servedName"] = "gate-fails"
    return {"failing/resources.yaml": yaml.safe_dump_all([ds, lt, serving])}


def application(shipped: str, name: str, path: str, argocd: Any, repo_url: str, namespace: str) -> dict[str, Any]:
    """One of manifests/argocd's Applications, pointed at the local git repository and cluster."""
    app = copy.deepcopy(SHIPPED[shipped])
    app["metadata"] = {"name": name, "namespace": ARGO_NS}
    app["spec"]["source"] = {"repoURL": repo_url, "targetRevision": "main", "path": path}
    app["spec"]["destination"] = {"server": argocd.server, "namespace": namespace}
    return app


# ---- reading Argo CD -----------------------------------------------------------------------------

class AppWatch:
    """Every version of the Applications in argocd, from a watch: per-resource health as Argo
    CD wrote it, next to the golora phase the operator had written at that moment."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.seen: list[tuple[str, str, str, str, str]] = []  # app, kind, name, health, message
        self._watch = kubernetes.watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        custom = kubernetes.client.CustomObjectsApi(self.api)
        try:
            for event in self._watch.stream(custom.list_namespaced_custom_object, *ARGO, ARGO_NS, "applications",
                                            timeout_seconds=1800):
                app = event["object"]
                for r in (app.get("status") or {}).get("resources") or []:
                    if r.get("namespace") == self.namespace and r.get("health"):
                        entry = (app["metadata"]["name"], r["kind"], r["name"], r["health"].get("status", ""),
                                 r["health"].get("message", ""))
                        if not self.seen or self.seen[-1] != entry:
                            self.seen.append(entry)
        except Exception:  # noqa: BLE001 - stopped
            return

    def start(self) -> AppWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._watch.stop()

    def health(self, kind: str, name: str) -> list[tuple[str, str]]:
        """(health, message) in the order Argo CD reported them once the object existed (before:
        Missing), repeats folded."""
        out: list[tuple[str, str]] = []
        for _, k, n, h, m in self.seen:
            if (k, n) == (kind, name) and (not out or out[-1] != (h, m)):
                out.append((h, m))
        while out and out[0][0] == "Missing":
            out.pop(0)
        return out


def get_app(api: Any, name: str) -> dict[str, Any]:
    return kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(*ARGO, ARGO_NS, "applications", name)


def app_health(app: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    for r in (app.get("status") or {}).get("resources") or []:
        if (r["kind"], r["name"]) == (kind, name):
            return r.get("health") or {}
    return {}


def synced(app: dict[str, Any], revision: str | None = None) -> bool:
    sync = (app.get("status") or {}).get("sync") or {}
    return sync.get("status") == "Synced" and (revision is None or sync.get("revision") == revision)


def refresh(api: Any, name: str) -> None:
    """What `argocd app get --refresh` does: ask the controller to read git again now."""
    kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object(
        *ARGO, ARGO_NS, "applications", name, {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}})


def manual_sync(api: Any, name: str) -> str:
    """`argocd app sync NAME`: argocd-server writes this operation (the revision and sync
    options from the Application's spec); the controller runs it. Returns its start marker."""
    app = get_app(api, name)
    marker = f"manual-{uuid.uuid4().hex[:6]}"
    op = {"initiatedBy": {"username": marker},
          "sync": {"revision": app["spec"]["source"]["targetRevision"],
                   "syncOptions": app["spec"].get("syncPolicy", {}).get("syncOptions", []),
                   "syncStrategy": {"hook": {}}}}
    kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object(
        *ARGO, ARGO_NS, "applications", name, {"operation": op})
    return marker


def operation_done(api: Any, name: str, marker: str) -> dict[str, Any] | None:
    app = get_app(api, name)
    state = (app.get("status") or {}).get("operationState") or {}
    if (state.get("operation", {}).get("initiatedBy") or {}).get("username") != marker:
        return None
    return state if state.get("phase") in ("Succeeded", "Failed", "Error") else None


# ---- the model-server Deployment -----------------------------------------------------------------

def deployment(api: Any, namespace: str) -> dict[str, Any]:
    apps = kubernetes.client.AppsV1Api(api)
    return apps.api_client.sanitize_for_serialization(apps.read_namespaced_deployment("vllm", namespace))


def vllm_args(dep: dict[str, Any]) -> list[str]:
    return next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "vllm").get("args") or []


GIT_ARGS = server_deployment()["spec"]["template"]["spec"]["containers"][0]["args"]


class ArgsWatch:
    """Every (generation, args, owner of args) the Deployment had, from a watch."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.seen: list[tuple[int, list[str], list[str]]] = []
        self.specs: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}  # generation -> spec, managedFields
        self._watch = kubernetes.watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        apps = kubernetes.client.AppsV1Api(self.api)
        try:
            for event in self._watch.stream(apps.list_namespaced_deployment, self.namespace,
                                            field_selector="metadata.name=vllm", timeout_seconds=1800):
                dep = apps.api_client.sanitize_for_serialization(event["object"])
                owners = sorted(m for m, paths in managed(dep).items()
                                if "spec.template.spec.containers[name=vllm].args" in paths)
                self.seen.append((dep["metadata"]["generation"], vllm_args(dep), owners))
                self.specs.setdefault(dep["metadata"]["generation"], (dep["spec"], dep["metadata"]["managedFields"]))
        except Exception:  # noqa: BLE001 - stopped
            return

    def __enter__(self) -> ArgsWatch:
        self._thread.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)
        self._watch.stop()

    def changes(self) -> str:
        """What each new generation changed in the spec (and who wrote it), for failure messages."""
        import difflib
        gens = sorted(self.specs)
        out = []
        for a, b in zip(gens, gens[1:], strict=False):
            diff = difflib.unified_diff(yaml.safe_dump(self.specs[a][0]).splitlines(),
                                        yaml.safe_dump(self.specs[b][0]).splitlines(), lineterm="", n=1)
            managers = [(m["manager"], m["operation"], m.get("time")) for m in self.specs[b][1]]
            out.append(f"generation {a} -> {b}: {managers}\n" + "\n".join(list(diff)[2:]))
        return "\n".join(out)

    def generations(self) -> set[int]:
        return {g for g, _, _ in self.seen}


# ---- the rollout -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab(cluster, api, operator, node_agent, argocd, tmp_path_factory):
    """Namespace + claims + the tiny base model (untrained: the stand-in serves it, and only the
    failing gate runs, which fails on any model); the git repository; the three Applications;
    then the real operator works while an AppWatch records what Argo CD reports."""
    from golora_dev.argocd import GitRepo

    from golora_trainer.tiny import TinySpec, ensure_tiny
    from tests.conftest import FIXTURE_TREE, go_root

    ns = f"gitops-{uuid.uuid4().hex[:8]}"
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": ns}})
    wait_for(lambda: core.list_namespaced_service_account(ns, field_selector="metadata.name=default").items,
             timeout=30, what="default ServiceAccount")
    store = node_agent.claim(ns, "golora-store")
    node_agent.claim(ns, "go-src", go_root(), read_only=True)
    node_agent.claim(ns, "fixture-src", FIXTURE_TREE, read_only=True)
    shutil.copytree(ensure_tiny(TinySpec(pretrain_steps=0)), store / "models" / "tiny-go", dirs_exist_ok=True)

    repo = GitRepo(tmp_path_factory.mktemp("gitops-repo"))
    first = repo.commit({**lab_files(), **failing_files(),
                         "servers/vllm-deployment.yaml": yaml.safe_dump(server_deployment())}, "the lab")
    lab_app = application("golora-lab", "lab", "lab", argocd, repo.url, ns)
    lab_app["metadata"]["finalizers"] = [CASCADE]
    apps = [lab_app, application("golora-lab", "failing", "failing", argocd, repo.url, ns),
            application("llm-qwen2-5-7b-instruct-awq", "servers", "servers", argocd, repo.url, ns)]
    watch = AppWatch(api, ns).start()
    custom = kubernetes.client.CustomObjectsApi(api)
    t0 = time.monotonic()
    for app in apps:
        custom.create_namespaced_custom_object(*ARGO, ARGO_NS, "applications", app)
    state = {"ns": ns, "repo": repo, "first": first, "watch": watch, "t0": t0, "argocd": argocd}
    yield state
    watch.stop()
    for app in apps:  # no cascade at teardown: the namespace goes with everything in it
        try:
            custom.patch_namespaced_custom_object(*ARGO, ARGO_NS, "applications", app["metadata"]["name"],
                                                  {"metadata": {"finalizers": None}})
            custom.delete_namespaced_custom_object(*ARGO, ARGO_NS, "applications", app["metadata"]["name"])
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
    core.delete_namespace(ns, propagation_policy="Background")


def report(line: str) -> None:
    """Figures for the log of a run (-s), past kopf's log capture."""
    sys.__stderr__.write(f"\n[gitops] {line}\n")


def argo_logs(argocd: Any) -> str:
    return "\n".join(argocd.log(n)[-3000:] for n in ("argocd-application-controller", "argocd-repo-server"))


def test_applications_sync_and_health_follows_every_phase(api, lab):
    ns, watch, first = lab["ns"], lab["watch"], lab["first"]

    def all_settled() -> bool:
        lab_app, failing, servers = (get_app(api, n) for n in ("lab", "failing", "servers"))
        return (synced(lab_app, first) and synced(servers, first) and synced(failing, first)
                and lab_app["status"].get("health", {}).get("status") == "Healthy"
                and app_health(failing, "AdapterServing", "gate-fails").get("status") == "Degraded"
                and app_health(failing, "GoDataset", "missing").get("status") == "Degraded")

    wait_for(all_settled, timeout=420, interval=1, what=f"lab Healthy, failing Degraded\n{argo_logs(lab['argocd'])}")
    report(f"synced and settled in {time.monotonic() - lab['t0']:.0f}s")
    lab_app, failing, servers = (get_app(api, n) for n in ("lab", "failing", "servers"))
    assert servers["status"]["health"]["status"] == "Healthy"
    assert failing["status"]["health"]["status"] == "Degraded"

    def cr(plural: str, name: str) -> dict[str, Any]:
        return get_cr(api, ns, plural, name)

    # Healthy at the end, for each kind: the Lua's message is golora's (Serving: the condition's).
    served = cr("adapterservings", "go-adapter")
    assert served["status"]["phase"] == "Serving"
    serving_cond = condition(served, "Serving")
    assert app_health(lab_app, "AdapterServing", "go-adapter") == {"status": "Healthy", "message": serving_cond["message"]}
    for kind, plural, name in (("GoDataset", "godatasets", "stdlib"), ("LoraTraining", "loratrainings", "go-adapter")):
        obj = cr(plural, name)
        assert app_health(lab_app, kind, name) == {"status": "Healthy", "message": obj["status"]["message"]}

    # Progressing before: every kind was reported Progressing while golora worked on it,
    # and the last report before Healthy was never anything else.
    for kind, name in (("GoDataset", "stdlib"), ("LoraTraining", "go-adapter"), ("AdapterServing", "go-adapter")):
        seen = watch.health(kind, name)
        states = [h for h, _ in seen]
        assert states[-1] == "Healthy" and "Progressing" in states, (kind, seen)
        assert set(states) <= {"Progressing", "Healthy"}, (kind, seen)
    # The phases golora passed through, as Argo CD's messages show them.
    messages = {kind: " | ".join(m for h, m in watch.health(kind, name) if h == "Progressing")
                for kind, name in (("GoDataset", "stdlib"), ("LoraTraining", "go-adapter"),
                                   ("AdapterServing", "go-adapter"))}
    report(f"Progressing messages: {messages}")
    assert "waiting" in messages["LoraTraining"]  # for its GoDataset, which was extracting
    assert "roll" in messages["AdapterServing"] or "waiting" in messages["AdapterServing"]

    # Degraded: the failed gate, the serving that refuses it, the dataset that cannot exist.
    gate = cr("loratrainings", "gate-fails")
    assert gate["status"]["phase"] == "Failed"
    assert any(c["type"] == "QualityGatePassed" and c["status"] == "False" for c in gate["status"]["conditions"])
    assert app_health(failing, "LoraTraining", "gate-fails") == {"status": "Degraded",
                                                                  "message": gate["status"]["message"]}
    refused = cr("adapterservings", "gate-fails")
    assert refused["status"]["phase"] == "Failed"
    assert app_health(failing, "AdapterServing", "gate-fails")["status"] == "Degraded"
    assert app_health(failing, "GoDataset", "missing")["status"] == "Degraded"
    for kind, name in (("LoraTraining", "gate-fails"), ("AdapterServing", "gate-fails"), ("GoDataset", "missing")):
        states = [h for h, _ in watch.health(kind, name)]
        assert states[-1] == "Degraded" and "Healthy" not in states, (kind, watch.health(kind, name))


def golora_paths(dep: dict[str, Any]) -> set[str]:
    return managed(dep).get("golora", set())


def assert_golora_owns_only_its_fields(dep: dict[str, Any]) -> None:
    """golora's managedFields entry holds what it applies (and the list items that contain it,
    with their key fields):
    its args and annotation always; the store volume and mount too, shared with git when the
    Deployment already has them as golora would (the demo's does). Argo CD's syncs (and its
    client-side apply migration) never moved anything else to it."""
    from golora.builders import serving as sv

    vllm = "spec.template.spec.containers[name=vllm]"
    mine = {f"{vllm}.name", f"{vllm}.args", f"{vllm}.volumeMounts[mountPath={sv.STORE_MOUNT}]",
            f"spec.template.spec.volumes[name={sv.STORE_VOLUME}]", f"metadata.annotations.{sv.ANNOTATION}"}
    paths = golora_paths(dep)
    assert {f"{vllm}.args", f"metadata.annotations.{sv.ANNOTATION}"} <= paths, paths
    extra = {p for p in paths if not any(m == p or m.startswith(p + ".") or m.startswith(p + "[") for m in mine)
             and not any(p.startswith(m) for m in mine)}
    assert not extra, extra
    for path in ("spec.selector", "spec.template.spec.containers[name=vllm].image", "spec.replicas"):
        assert path not in paths


def served_args(dep: dict[str, Any]) -> bool:
    args = vllm_args(dep)
    return "--enable-lora" in args and args[:len(GIT_ARGS)] == GIT_ARGS


def test_no_drift_fight_with_ignore_differences(api, lab):
    """golora's patch (the real operator's server-side apply) survives a manual sync, a
    self-heal and a new commit that changes another field; the shipped Application's
    ignoreDifferences + RespectIgnoreDifferences is what keeps it (without them: reverted)."""
    ns, repo = lab["ns"], lab["repo"]
    custom = kubernetes.client.CustomObjectsApi(api)
    start = deployment(api, ns)
    assert served_args(start), vllm_args(start)
    assert_golora_owns_only_its_fields(start)
    assert "argocd-controller" in managed(start)  # Argo CD's server-side apply (ServerSideApply=true)

    with ArgsWatch(api, ns) as args_watch:
        # 1. A manual sync: applied, and the args stay golora's; nothing rolls.
        marker = manual_sync(api, "servers")
        state = wait_for(lambda: operation_done(api, "servers", marker), timeout=60, what="manual sync")
        assert state["phase"] == "Succeeded", state
        assert any(r["kind"] == "Deployment" for r in state["syncResult"]["resources"])
        dep = deployment(api, ns)
        assert served_args(dep) and dep["metadata"]["generation"] == start["metadata"]["generation"], \
            args_watch.changes()

        # 2. A self-heal: someone edits a field that is in git; Argo CD puts it back, args stay.
        kubernetes.client.AppsV1Api(api).patch_namespaced_deployment(
            "vllm", ns, {"metadata": {"annotations": {"example.com/owner": "someone"}}}, field_manager="kubectl-edit")
        wait_for(lambda: deployment(api, ns)["metadata"]["annotations"]["example.com/owner"] == "platform",
                 timeout=60, what="self-heal of the annotation")
        dep = deployment(api, ns)
        # The same pod template: nothing rolled (a Deployment's generation also counts
        # annotation changes: the edit and its revert).
        assert served_args(dep) and dep["spec"] == start["spec"], args_watch.changes()

        # 3. A commit that changes another field of the Deployment (its pod template: one rollout).
        rev = repo.commit({"servers/vllm-deployment.yaml": yaml.safe_dump(server_deployment(grace=15))}, "grace 15s")
        refresh(api, "servers")
        wait_for(lambda: synced(get_app(api, "servers"), rev), timeout=90, what="servers synced to the new commit")
        dep = wait_for(lambda: (d := deployment(api, ns))["spec"]["template"]["spec"]
                       ["terminationGracePeriodSeconds"] == 15 and d, timeout=30, what="new commit applied")
        time.sleep(6)  # golora's serving re-check and Argo CD's next comparison
        dep = deployment(api, ns)
        assert served_args(dep), vllm_args(dep)
        assert synced(get_app(api, "servers"), rev)
    # Two pod templates in all: the start's and the commit's (one rollout, no fight).
    templates = {yaml.safe_dump(spec["template"]) for spec, _ in args_watch.specs.values()}
    assert len(templates) == 2, args_watch.changes()
    # At no point did the args lose golora's flags.
    assert all("--enable-lora" in args for _, args, _ in args_watch.seen), args_watch.seen
    assert_golora_owns_only_its_fields(dep)
    wait_for(lambda: get_app(api, "lab")["status"].get("health", {}).get("status") == "Healthy",
             timeout=60, what="lab Healthy again after the rollout")

    # Without ignoreDifferences and RespectIgnoreDifferences: the fight.
    servers = get_app(api, "servers")
    shipped_spec = copy.deepcopy(servers["spec"])
    naive = [o for o in servers["spec"]["syncPolicy"]["syncOptions"] if o != "RespectIgnoreDifferences=true"]
    with ArgsWatch(api, ns) as args_watch:
        custom.patch_namespaced_custom_object(*ARGO, ARGO_NS, "applications", "servers", [
            {"op": "remove", "path": "/spec/ignoreDifferences"},
            {"op": "replace", "path": "/spec/syncPolicy/syncOptions", "value": naive}],
            _content_type="application/json-patch+json")
        # Argo CD writes git's args back (it owns them then); golora puts its flags back: a fight.
        def reverted() -> int | None:
            return next((i for i, (_, args, owners) in enumerate(args_watch.seen)
                         if args == GIT_ARGS and "argocd-controller" in owners), None)

        wait_for(lambda: reverted() is not None, timeout=90,
                 what=f"Argo CD reverting golora's args\n{args_watch.seen}")
        wait_for(lambda: any("--enable-lora" in args for _, args, _ in args_watch.seen[reverted():]), timeout=60,
                 what="golora patching again")
        custom.patch_namespaced_custom_object(*ARGO, ARGO_NS, "applications", "servers", [
            {"op": "replace", "path": "/spec", "value": shipped_spec}], _content_type="application/json-patch+json")
        wait_for(lambda: served_args(deployment(api, ns)) and synced(get_app(api, "servers")), timeout=90,
                 what="golora's args back and Synced once ignoreDifferences is back")
    report(f"without ignoreDifferences: args by generation {[(g, '--enable-lora' in a, o) for g, a, o in args_watch.seen]}")
    dep = deployment(api, ns)
    assert_golora_owns_only_its_fields(dep)


def test_deleting_the_application_prunes_and_golora_cleans_up(api, lab):
    """Deleting ``lab`` (cascade): Argo CD deletes the golora resources, golora's finalizer on
    the AdapterServing takes its flags and annotation out of the Deployment (as on a
    ``kubectl delete``: the args are git's again, still applied by golora, which took them
    over), which ``servers`` still holds: git's Deployment again, Synced."""
    from golora.builders import serving as sv

    ns = lab["ns"]
    custom = kubernetes.client.CustomObjectsApi(api)
    assert CASCADE in get_app(api, "lab")["metadata"]["finalizers"]
    custom.delete_namespaced_custom_object(*ARGO, ARGO_NS, "applications", "lab")

    def gone() -> bool:
        try:
            get_app(api, "lab")
            return False
        except kubernetes.client.ApiException as exc:
            return exc.status == 404

    wait_for(gone, timeout=120, interval=0.5, what="Application lab deleted with its resources")
    for plural, name in (("godatasets", "stdlib"), ("loratrainings", "go-adapter"), ("adapterservings", "go-adapter")):
        with pytest.raises(kubernetes.client.ApiException) as err:
            get_cr(api, ns, plural, name)
        assert err.value.status == 404, (plural, name)
    dep = wait_for(lambda: (d := deployment(api, ns)) and vllm_args(d) == GIT_ARGS and d, timeout=60,
                   what="golora's args removed")
    git = server_deployment(grace=15)
    pod = dep["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == [v["name"] for v in git["spec"]["template"]["spec"]["volumes"]]
    assert [m["mountPath"] for m in pod["containers"][0]["volumeMounts"]] == ["/golora-store"] == \
        [m["mountPath"] for m in git["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]]
    assert sv.ANNOTATION not in (dep["metadata"].get("annotations") or {})
    assert not golora_paths(dep) & {"spec.template.spec.volumes[name=golora-store]",
                                    f"metadata.annotations.{sv.ANNOTATION}"}
    wait_for(lambda: synced(get_app(api, "servers")), timeout=60, what="servers Synced")
    # The other Application's resources are not pruned with it.
    for plural, name in (("godatasets", "missing"), ("loratrainings", "gate-fails"), ("adapterservings", "gate-fails")):
        assert get_cr(api, ns, plural, name)["metadata"]["name"] == name
