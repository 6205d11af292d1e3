"""Shared pieces of the AdapterServing builder tests: model names, an entry, a Deployment and a
tiny server-side apply."""

from __future__ import annotations

import copy

from golora.builders import serving as sv

QWEN = "Qwen/Qwen2.5-7B-Instruct"
AWQ = "Qwen/Qwen2.5-7B-Instruct-AWQ"


def entry(name="go-adapter", rank=16, owner=None, **kw) -> sv.AdapterEntry:
    return sv.AdapterEntry(name=name, owner=owner or name, path=f"adapters/ns/{name}", rank=rank,
                           base_model=kw.pop("base_model", QWEN), **kw)



def deployment(args=None, command=("vllm", "serve"), name="vllm", extra=None, init=None, strategy=None,
               gpu=True, volumes=None, mounts=None) -> dict:
    engine = {"name": "vllm", "image": "vllm/vllm-openai:v0.21.0", "command": list(command),
              "args": list(args if args is not None else [AWQ]), "ports": [{"containerPort": 8000}]}
    if gpu:
        engine["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    if mounts:
        engine["volumeMounts"] = mounts
    pod = {"containers": [engine, *(extra or [])]}
    if init:
        pod["initContainers"] = init
    if volumes:
        pod["volumes"] = volumes
    spec = {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}
    if strategy:
        spec["strategy"] = strategy
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": "7", "generation": 1}, "spec": spec}


def apply(dep: dict, body: dict) -> dict:
    """A tiny server-side apply for golora's narrow bodies (the integration tests use the real one):
    golora's previous set is replaced by the new one; fields only golora owned disappear."""
    out = copy.deepcopy(dep)
    owned = sv.owned_fields(dep)
    pod = out["spec"]["template"]["spec"]
    intent = body["spec"]["template"]["spec"]
    items = {c["name"]: c for c in intent.get("containers", [])}
    fields: dict = {}
    for c in pod["containers"]:
        item = items.get(c["name"])
        key = f'k:{{"name":"{c["name"]}"}}'
        if item and "args" in item:
            c["args"] = item["args"]
            fields.setdefault(key, {})["f:args"] = {}
        elif c["name"] in owned.args:
            c.pop("args", None)
        mounts = [m for m in c.get("volumeMounts", []) if (c["name"], m["mountPath"]) not in owned.mounts]
        for m in (item or {}).get("volumeMounts", []):
            mounts = [x for x in mounts if x["mountPath"] != m["mountPath"]] + [m]  # merged by key
            fields.setdefault(key, {}).setdefault("f:volumeMounts", {})[f'k:{{"mountPath":"{m["mountPath"]}"}}'] = {}
        if mounts:
            c["volumeMounts"] = mounts
        else:
            c.pop("volumeMounts", None)
    vols = [v for v in pod.get("volumes", []) if v["name"] not in owned.volumes]
    vol_fields = {}
    for v in intent.get("volumes", []):
        vols = [x for x in vols if x["name"] != v["name"]] + [v]  # merged by key
        vol_fields[f'k:{{"name":"{v["name"]}"}}'] = {}
    if vols:
        pod["volumes"] = vols
    else:
        pod.pop("volumes", None)
    ann = out["metadata"].setdefault("annotations", {})
    if owned.annotation:
        ann.pop(sv.ANNOTATION, None)
    new_ann = body["metadata"].get("annotations") or {}
    ann.update(new_ann)
    if not ann:
        out["metadata"].pop("annotations")
    fv1: dict = {"f:spec": {"f:template": {"f:spec": {"f:containers": fields}}}}
    if vol_fields:
        fv1["f:spec"]["f:template"]["f:spec"]["f:volumes"] = vol_fields
    if new_ann:
        fv1["f:metadata"] = {"f:annotations": {f"f:{sv.ANNOTATION}": {}}}
    out["metadata"]["managedFields"] = [{"manager": "golora", "operation": "Apply", "fieldsV1": fv1}]
    if out["spec"]["template"] != dep["spec"]["template"]:
        out["metadata"]["generation"] += 1
    out["metadata"]["resourceVersion"] = str(int(out["metadata"]["resourceVersion"]) + 1)
    return out


def apply_env(dep: dict, body: dict) -> dict:
    """:func:`apply`, plus env (a list-map keyed by name): golora's
    env entries are replaced by the new set; entries only golora owned disappear."""
    owned = {c["name"]: sv.owned_fields(dep).env_of(c["name"]) for c in dep["spec"]["template"]["spec"]["containers"]}
    out = apply(dep, body)
    items = {c["name"]: c for c in body["spec"]["template"]["spec"].get("containers", [])}
    fields = out["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    for c in out["spec"]["template"]["spec"]["containers"]:
        env = [e for e in c.get("env", []) if e["name"] not in owned.get(c["name"], set())]
        for e in (items.get(c["name"]) or {}).get("env", []):
            env = [x for x in env if x["name"] != e["name"]] + [e]
            fields.setdefault(f'k:{{"name":"{c["name"]}"}}', {}).setdefault("f:env", {})[
                f'k:{{"name":"{e["name"]}"}}'] = {}
        if env:
            c["env"] = env
        else:
            c.pop("env", None)
    before, after = copy.deepcopy(dep["spec"]["template"]), out["spec"]["template"]
    out["metadata"]["generation"] = dep["metadata"]["generation"] + (1 if before != after else 0)
    return out
