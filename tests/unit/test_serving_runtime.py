"""Runtime loading (spec.loading: Runtime) as pure functions: the Deployment is prepared once
(and never rewritten for later adapter changes), what each pod needs, the resolver Job and
snapshot layout, and vLLM's answers (the status from them: test_runtime_status.py)."""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from golora import vllm
from golora.builders import runtime as rt
from golora.builders import runtime_load as rl
from golora.builders import serving as sv
from golora.builders.serving import probe
from golora.settings import Settings
from golora.vllm import http as vllm_http

from .serving_helpers import AWQ, deployment, entry
from .serving_helpers import apply_env as apply

CACHE = f"{sv.STORE_MOUNT}/{rt.resolver_dir('ns', 'vllm')}"


def rentry(name="go-adapter", rank=16, **kw) -> sv.AdapterEntry:
    return entry(name, rank, loading=rt.RUNTIME, **kw)


def engine(dep: dict) -> dict:
    return dep["spec"]["template"]["spec"]["containers"][0]


def env_of(dep: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in engine(dep).get("env", [])}


def test_preparing_adds_the_runtime_env_and_no_lora_modules():
    dep = deployment(args=[AWQ, "--port", "8000"])
    plan = sv.plan_deployment(dep, [rentry()])
    dep = apply(dep, plan.body)
    args = engine(dep)["args"]
    assert args == [AWQ, "--port", "8000", "--enable-lora", "--max-lora-rank", "16", "--max-loras",
                    str(rt.RUNTIME_MAX_LORAS)]
    assert vllm.FLAG_LORA_MODULES not in args  # vLLM gets the adapter through its API
    assert env_of(dep) == {vllm.ENV_ALLOW_RUNTIME: "True", vllm.ENV_PLUGINS: "lora_filesystem_resolver",
                           vllm.ENV_RESOLVER_CACHE_DIR: CACHE}
    assert engine(dep)["volumeMounts"] == [sv.store_mount()]
    assert rt.missing_for_runtime(engine(dep), CACHE, lora_enabled=True, store_mount=sv.STORE_MOUNT) == []
    assert [a.loading for a in sv.read_record(dep).adapters] == [rt.RUNTIME]
    assert sv.plan_deployment(dep, [rentry()]).body is None  # prepared: nothing is written


def test_a_prepared_deployment_is_never_rewritten_for_adapter_changes():
    dep = apply(deployment(), sv.plan_deployment(deployment(), [rentry("a")]).body)
    template, generation = copy.deepcopy(dep["spec"]["template"]), dep["metadata"]["generation"]
    # a second adapter, a bigger one (vLLM refuses it at load: no restart to fit it), five more:
    for entries in ([rentry("a"), rentry("b")], [rentry("a"), rentry("big", 64)],
                    [rentry(n) for n in "abcdefg"], [rentry("b")]):
        plan = sv.plan_deployment(dep, entries)
        assert plan.body is not None  # the annotation (metadata) says who is served
        dep = apply(dep, plan.body)
        assert dep["spec"]["template"] == template, entries
        assert dep["metadata"]["generation"] == generation
    assert [a.name for a in sv.read_record(dep).adapters] == ["b"]


def test_explicit_options_still_raise_a_prepared_deployment():
    dep = apply(deployment(), sv.plan_deployment(deployment(), [rentry("a")]).body)
    dep = apply(dep, sv.plan_deployment(dep, [rentry("a"), rentry("big", 64, max_lora_rank=64)]).body)
    inv = vllm.parse_invocation(engine(dep)["command"], engine(dep)["args"])
    assert inv.int_value(vllm.FLAG_MAX_LORA_RANK) == 64 and inv.int_value(vllm.FLAG_MAX_LORAS) == rt.RUNTIME_MAX_LORAS


def test_restart_and_runtime_adapters_on_one_deployment():
    dep = apply(deployment(), sv.plan_deployment(deployment(), [entry("static"), rentry("live")]).body)
    inv = vllm.parse_invocation(engine(dep)["command"], engine(dep)["args"])
    assert [m.name for m in inv.lora_modules] == ["static"]
    assert vllm.ENV_ALLOW_RUNTIME in env_of(dep)


def test_last_runtime_adapter_gone_gives_the_user_their_deployment_back():
    original = deployment(args=[AWQ, "--port", "8000"])
    original["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "VLLM_CPU_KVCACHE_SPACE", "value": "1"}]
    dep = apply(original, sv.plan_deployment(original, [rentry()]).body)
    assert set(env_of(dep)) == {"VLLM_CPU_KVCACHE_SPACE", vllm.ENV_ALLOW_RUNTIME, vllm.ENV_PLUGINS,
                                vllm.ENV_RESOLVER_CACHE_DIR}
    # switching to Restart: the env goes, the adapter moves to --lora-modules (one restart)
    switched = apply(dep, sv.plan_deployment(dep, [entry()]).body)
    assert env_of(switched) == {"VLLM_CPU_KVCACHE_SPACE": "1"}
    assert [m.name for m in vllm.parse_invocation(engine(switched)["command"], engine(switched)["args"]).lora_modules] \
        == ["go-adapter"]
    gone = apply(dep, sv.plan_deployment(dep, []).body)
    assert gone["spec"]["template"] == original["spec"]["template"]


def test_user_plugins_are_kept_and_missing_parts_are_named():
    container = {"env": [{"name": vllm.ENV_PLUGINS, "value": "my_plugin"}]}
    env = {e["name"]: e["value"] for e in rt.container_env(container, CACHE)}
    assert env[vllm.ENV_PLUGINS] == "my_plugin,lora_filesystem_resolver"
    missing = rt.missing_for_runtime(container, CACHE, lora_enabled=False, store_mount=sv.STORE_MOUNT)
    assert missing == ["--enable-lora", "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True",
                       "VLLM_PLUGINS with lora_filesystem_resolver", f"VLLM_LORA_RESOLVER_CACHE_DIR={CACHE}",
                       f"the store mounted at {sv.STORE_MOUNT}"]


# --- pods --------------------------------------------------------------------------------------------

def test_want_and_pod_actions():
    dep = deployment(args=["--model", "/golora-store/models/tiny-go"], command=("python", "-m",
                                                                                "vllm.entrypoints.openai.api_server"))
    want = rl.want_for("ns", dep, "vllm", "go-adapter", "v1")
    assert want.base_model == "/golora-store/models/tiny-go"
    assert want.load_path == f"{sv.STORE_MOUNT}/lora-resolver/ns/vllm/.versions/go-adapter-v1"
    assert rl.pod_action({}, want) == rl.LOAD
    assert rl.pod_action({"go-adapter": {"root": want.load_path}}, want) == rl.NOTHING
    assert rl.pod_action({"go-adapter": {"root": f"{CACHE}/go-adapter"}}, want) == rl.INPLACE  # the resolver's
    assert rl.pod_action({"go-adapter": {"root": want.load_path.replace("-v1", "-v0")}}, want) == rl.INPLACE
    row = {"lastError": {"adapter": "go-adapter", "path": want.load_path, "code": 500}}
    assert rl.refused_before(row, want)
    assert not rl.refused_before(row, rl.Want("vllm", "go-adapter", "v2", "x", "m"))  # a new version: try again
    assert not rl.refused_before(None, want)
    assert rl.want_for("ns", dep, "engine", "go-adapter", "v1") is None


def test_deployment_of_pod_and_readiness():
    pod = {"metadata": {"labels": {"pod-template-hash": "5d8f7"}, "ownerReferences": [
        {"kind": "ReplicaSet", "name": "ms-decode-5d8f7"}]},
        "status": {"podIP": "10.0.0.2", "conditions": [{"type": "Ready", "status": "True"}]}}
    assert rl.deployment_of_pod(pod) == "ms-decode"
    assert probe.is_ready(pod)
    assert rl.deployment_of_pod({"metadata": {"ownerReferences": [{"kind": "Job", "name": "x"}]}}) is None
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not probe.is_ready(pod)


def test_each_pods_steps():
    want = rl.Want("vllm", "go-adapter", "v1", rt.version_dir("ns", "vllm", "go-adapter", "v1"), "/m")
    pod = {"metadata": {"name": "p", "uid": "u"}, "status": {"podIP": "10.0.0.3"}}
    res = rl.pod_result(pod)
    assert (res.name, res.uid, res.ip, res.loaded) == ("p", "u", "10.0.0.3", False)
    # this snapshot is listed: loaded, since when the last reconcile saw it (or now)
    cards = {"go-adapter": {"id": "go-adapter", "root": want.load_path}, "other": {"id": "other"}}
    kept, action = rl.settle(res, cards, want, {"path": want.load_path, "loadedAt": "t0"}, "t1")
    assert action is None and (kept.loaded, kept.path, kept.loaded_at) == (True, want.load_path, "t0")
    assert rl.settle(res, cards, want, {"path": "older", "loadedAt": "t0"}, "t1")[0].loaded_at == "t1"
    assert rl.with_listed(kept, cards, {"go-adapter"}, want).listed == ["go-adapter"]  # not the user's
    # refused before: not asked again, the old error stays
    error = {"adapter": "go-adapter", "path": want.load_path, "code": 400, "message": "rank"}
    skipped, action = rl.settle(res, {}, want, {"lastError": error}, "t1")
    assert action is None and skipped.error == error and not skipped.loaded
    # not listed: load; listed from another snapshot: in place
    assert rl.settle(res, {}, want, None, "t1") == (res, rl.LOAD)
    assert rl.settle(res, {"go-adapter": {"root": "elsewhere"}}, want, None, "t1")[1] == rl.INPLACE
    assert rl.retry_in_place(rl.LOAD, False, f"The lora adapter 'a' {vllm.ALREADY_LOADED}.")
    assert not rl.retry_in_place(rl.INPLACE, False, vllm.ALREADY_LOADED)
    assert not rl.retry_in_place(rl.LOAD, True, "")
    done = rl.load_answered(res, want, True, 200, "Success", "t2")
    assert (done.loaded, done.path, done.loaded_at, done.error) == (True, want.load_path, "t2", None)
    assert rl.with_listed(done, {}, set(), want).listed == ["go-adapter"]  # loaded just now
    refused = rl.load_answered(res, want, False, 400, "x" * 3000, "t2")
    assert not refused.loaded and refused.error == {"adapter": "go-adapter", "code": 400, "message": "x" * 2000,
                                                    "at": "t2", "path": want.load_path}
    assert rl.with_listed(refused, {}, {"go-adapter"}, want).listed == []
    down = rl.unreachable(res, "http://10.0.0.3:8000", 0, "ConnectionRefusedError")
    assert down.unreachable == f"GET http://10.0.0.3:8000{vllm.MODELS_PATH}: no answer ConnectionRefusedError"
    status = {"targets": [{"name": "vllm", "pods": [{"uid": "u", "path": "p"}]}, {"name": "other"}]}
    assert rl.old_pod_rows(status, "vllm") == {"u": {"uid": "u", "path": "p"}}
    assert rl.old_pod_rows(status, "other") == {} and rl.old_pod_rows({}, "vllm") == {}


def test_deleting_unloads_where_it_is_loaded_and_removes_the_entries():
    dep = apply(deployment(), sv.plan_deployment(deployment(), [rentry("go", owner="as"), entry("static")]).body)
    other = apply(deployment(name="b"), sv.plan_deployment(deployment(name="b"), [rentry("go", owner="x")]).body)
    placements = rl.runtime_placements([dep, other, deployment(name="c")], "as")
    assert [(d["metadata"]["name"], e.name, c["name"]) for d, e, c in placements] == [("vllm", "go", "vllm")]
    wants, path, claim = rl.removal("ns", placements)
    assert [w.snapshot for w in wants] == [rt.version_dir("ns", "vllm", "go", rl.ANY_VERSION)]
    assert (path, claim) == ("adapters/ns/go", "golora-store")
    assert rl.removal("ns", []) == ([], None, None)
    assert not rl.unload_failed(True, "")
    assert not rl.unload_failed(False, f"The lora adapter 'go' {vllm.NOT_FOUND}.")  # not loaded: fine
    assert rl.unload_failed(False, "Internal Server Error")


def test_resolver_job():
    want = rl.Want("vllm", "go-adapter", "v1", rt.version_dir("ns", "vllm", "go-adapter", "v1"), "/m")
    job = rl.build_resolver_job(namespace="ns", name="go", uid="u", generation=3, claim="golora-store",
                                adapter_path="adapters/ns/go", wants=[want], settings=Settings())
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][-1] == "resolver-entry"
    config = json.loads(container["env"][0]["value"])
    assert config["entries"] == [{"snapshot": "lora-resolver/ns/vllm/.versions/go-adapter-v1",
                                  "entry": "lora-resolver/ns/vllm/go-adapter", "served": "go-adapter",
                                  "baseModel": "/m"}]
    assert not any(m.get("readOnly") for m in container["volumeMounts"])  # it writes the store
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u"
    removal = rl.build_resolver_job(namespace="ns", name="go", uid="u", generation=3, claim="golora-store",
                                    adapter_path="adapters/ns/go", wants=[want], settings=Settings(), remove=True)
    assert "ownerReferences" not in removal["metadata"] and removal["spec"]["ttlSecondsAfterFinished"] > 0
    assert removal["metadata"]["name"] != job["metadata"]["name"]
    other = rl.build_resolver_job(namespace="ns", name="go", uid="u2", generation=3, claim="golora-store",
                                  adapter_path="adapters/ns/go", wants=[want], settings=Settings())
    assert other["metadata"]["name"] != job["metadata"]["name"]  # a new object writes again


def test_versions_are_stable_and_change_with_the_training():
    assert rt.version_of("a", 1, "t") == rt.version_of("a", 1, "t")
    assert len({rt.version_of("a", 1, "t"), rt.version_of("a", 2, "t"), rt.version_of("a", 1, "u")}) == 3


# --- vLLM's answers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("body,message", [
    ({"error": {"message": "LoRA rank 16 is greater than max_lora_rank 8.", "type": "BadRequestError"}},
     "LoRA rank 16 is greater than max_lora_rank 8."),
    ({"object": "error", "message": "The lora adapter 'x' cannot be found."}, "The lora adapter 'x' cannot be found."),
    ({"detail": "Not Found"}, "Not Found"),
    ("Internal Server Error", "Internal Server Error"),
])
def test_error_messages(body, message):
    assert vllm.error_message(body) == message


def test_client_against_a_local_server():
    """The client's view of an HTTP exchange: status and vLLM's message, never an exception."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_GET(self):
            self._send(200, {"data": [{"id": "base", "parent": None}, {"id": "a", "root": "/p", "parent": "base"}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body))
            if body.get("load_inplace") or self.path == vllm.UNLOAD_PATH:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"Success: LoRA adapter 'a' added successfully.")
            else:
                self._send(400, {"error": {"message": "The lora adapter 'a' has already been loaded."}})

        def _send(self, code, obj):
            raw = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        listing = vllm_http.models(url)
        assert listing.ok and list(vllm.adapter_cards(listing.body)) == ["a"]
        refused = vllm_http.load(url, "a", "/p")
        assert (refused.code, refused.ok) == (400, False) and vllm.ALREADY_LOADED in refused.message
        done = vllm_http.load(url, "a", "/p", inplace=True)
        assert done.ok and done.message.startswith("Success")
        assert seen[-1] == (vllm.LOAD_PATH, {"lora_name": "a", "lora_path": "/p", "load_inplace": True})
        assert vllm_http.unload(url, "a").ok and seen[-1] == (vllm.UNLOAD_PATH, {"lora_name": "a"})
        assert vllm_http.model_ids(url) == ["base", "a"]  # the probe's read
    finally:
        server.shutdown()
    down = vllm_http.models(url, timeout=1)
    assert down.code == 0 and not down.ok and down.message
    with pytest.raises(OSError):
        vllm_http.model_ids(url, timeout=1)  # the probe says "GET ... failed" with the error
