"""Generate ``crds/*.yaml`` from the pydantic models.

pydantic's JSON schema is turned into a Kubernetes *structural* schema: ``$ref``
inlined, ``Optional[X]`` collapsed to ``X`` (absent = not required), ``int | "auto"``
to ``x-kubernetes-int-or-string``, titles dropped, CEL rules kept where the model
declared them. ``python -m golora.api.crdgen [--check] [DIR]``.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import sys
from pathlib import Path
from typing import Any

import yaml

from . import KINDS
from .common import CATEGORY, GROUP, VERSION, KindInfo

_DROP_KEYS = {"title", "$defs", "additionalProperties_", "discriminator"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].split("/")[-1]]
            merged = {**_resolve(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}
            return _resolve(merged, defs)
        return {k: _resolve(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    """Rewrite one resolved pydantic schema node into a structural CRD schema node."""
    node = {k: v for k, v in node.items() if k not in _DROP_KEYS}
    extra_validations = node.pop("x-kubernetes-validations", None)
    description = node.pop("description", None)
    default = node.pop("default", None) if "default" in node else None
    has_default = default is not None

    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        kinds = {o.get("type") for o in options}
        if len(options) == 1:
            inner = _structural(options[0])
            inner_desc = inner.pop("description", None)
            node = {**inner, **node}
            description = description or inner_desc
        elif kinds == {"integer", "string"}:
            node = {"x-kubernetes-int-or-string": True, **node}
        else:
            raise ValueError(f"cannot express union {options} structurally")
    if "const" in node:
        node["enum"] = [node.pop("const")]
        node.setdefault("type", "string")
    if node.get("type") == "object":
        props = node.get("properties")
        if props is not None:
            node["properties"] = {k: _structural(v) for k, v in props.items()}
            if not node.get("required"):
                node.pop("required", None)
        addl = node.get("additionalProperties")
        if isinstance(addl, dict):
            node["additionalProperties"] = _structural(addl)
        elif addl is False or addl is True:
            node.pop("additionalProperties")
            if addl is True and props is None:
                node["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        node["items"] = _structural(node["items"])
    if node.get("type") == "number" and has_default and isinstance(default, int):
        default = float(default)
    # JSON Schema 2020 spells exclusive bounds as numbers; OpenAPI v3.0 (Kubernetes) as booleans.
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node and not isinstance(node[bound], bool):
            node[plain] = node.pop(bound)
            node[bound] = True

    out: dict[str, Any] = {}
    if description:
        out["description"] = inspect.cleandoc(description)
    out.update(node)
    # Defaults are applied by the apiserver so `kubectl get -o yaml` shows what golora uses.
    # An object default is `{}`: the apiserver then fills in each child's own default
    # (pydantic only has an object default when every child has one).
    if has_default:
        out["default"] = {} if isinstance(default, dict) else default
    if extra_validations:
        out["x-kubernetes-validations"] = extra_validations
    return out


def schema_for(model: type, *, mode: str) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode=mode)
    defs = raw.pop("$defs", {})
    return _structural(_resolve(raw, defs))


def _status_schema(info: KindInfo) -> dict[str, Any]:
    schema = schema_for(info.status, mode="serialization")
    # Status models allow extra fields (a newer worker may report more); the apiserver would
    # prune them silently, so keep the declared shape and also preserve unknown keys at the top.
    schema["x-kubernetes-preserve-unknown-fields"] = True
    return schema


def build_crd(info: KindInfo) -> dict[str, Any]:
    spec_schema = schema_for(info.spec, mode="validation")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": info.crd_name, "labels": {"app.kubernetes.io/part-of": "golora"}},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": c.name,
                            "type": c.type,
                            "jsonPath": c.json_path,
                            **({"description": c.description} if c.description else {}),
                            **({"priority": c.priority} if c.priority else {}),
                        }
                        for c in info.printer_columns
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "description": info.description,
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "APIVersion of this object."},
                                "kind": {"type": "string", "description": "Kind of this object."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": _status_schema(info),
                            },
                        }
                    },
                }
            ],
        },
    }


def render(info: KindInfo) -> str:
    header = "# Generated by `make crds` from golora.api; do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(info), sort_keys=False, width=100)


def filename(info: KindInfo) -> str:
    return f"{GROUP}_{info.plural}.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the files differ")
    parser.add_argument("dir", nargs="?", default="crds")
    args = parser.parse_args(argv)
    out = Path(args.dir)
    stale = []
    for info in KINDS:
        path = out / filename(info)
        text = render(info)
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        if args.check:
            stale.append(path)
            sys.stdout.writelines(
                difflib.unified_diff(current.splitlines(True), text.splitlines(True), str(path), "generated")
            )
        else:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(map(str, stale))} -- run `make crds`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
