"""A Pod's volumes as local directories, the way the kubelet's volume plugins set them up.

- ``persistentVolumeClaim``: the bound PersistentVolume's ``hostPath`` / ``local`` path (an
  unbound claim waits, as on a node), so storage is real static provisioning;
- ``hostPath``: the path itself; ``emptyDir``: a fresh directory per Pod;
- ``secret``, ``configMap``, ``downwardAPI`` and ``projected`` (service-account token from the
  TokenRequest API bound to the Pod, ``kube-root-ca.crt``, the namespace): files written once
  at start (no refresh: local Pods are short-lived).
"""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path
from typing import Any

import kubernetes

from .env import field_value


class VolumeNotReady(Exception):
    """The volume cannot be set up yet (claim not bound, Secret missing): retry later."""


def _write_items(target: Path, data: dict[str, bytes], items: list[dict[str, Any]] | None, mode: int | None) -> None:
    for item in items or [{"key": k, "path": k} for k in data]:
        if item["key"] not in data:
            raise VolumeNotReady(f"key {item['key']} not found")
        path = target / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[item["key"]])
        if item.get("mode") or mode:
            path.chmod(item.get("mode") or mode)


class VolumeSetup:
    """Builds the directories for one Pod under ``scratch``."""

    def __init__(self, core: kubernetes.client.CoreV1Api, pod: dict[str, Any], scratch: Path, ca_pem: bytes):
        self.core, self.pod, self.scratch, self.ca_pem = core, pod, scratch, ca_pem
        self.ns = pod["metadata"]["namespace"]

    def all(self) -> dict[str, Path]:
        return {vol["name"]: self.one(vol) for vol in self.pod["spec"].get("volumes") or []}

    def _dir(self, name: str) -> Path:
        path = self.scratch / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def one(self, vol: dict[str, Any]) -> Path:
        name = vol["name"]
        if "persistentVolumeClaim" in vol:
            return self._claim(vol["persistentVolumeClaim"]["claimName"])
        if "hostPath" in vol:
            path = Path(vol["hostPath"]["path"])
            if vol["hostPath"].get("type") in ("DirectoryOrCreate",):
                path.mkdir(parents=True, exist_ok=True)
            return path
        if "emptyDir" in vol:
            return self._dir(name)
        for kind, key, read in (("secret", "secretName", self._secret), ("configMap", "name", self._config_map)):
            if kind in vol:
                src = vol[kind]
                target = self._dir(name)
                _write_items(target, read(src[key], src.get("optional")), src.get("items"), src.get("defaultMode"))
                return target
        if "downwardAPI" in vol:
            target = self._dir(name)
            self._downward(target, vol["downwardAPI"].get("items") or [])
            return target
        if "projected" in vol:
            target = self._dir(name)
            for source in vol["projected"].get("sources") or []:
                self._projected(target, source)
            return target
        raise VolumeNotReady(f"volume {name}: this node supports pvc, hostPath, emptyDir, secret, configMap, "
                             "downwardAPI and projected volumes")

    # ---- sources ------------------------------------------------------------------------
    def _claim(self, claim: str) -> Path:
        try:
            pvc = self.core.read_namespaced_persistent_volume_claim(claim, self.ns)
        except kubernetes.client.ApiException as exc:
            raise VolumeNotReady(f"persistentvolumeclaim {claim!r} not found") from exc
        if pvc.status.phase != "Bound" or not pvc.spec.volume_name:
            raise VolumeNotReady(f"persistentvolumeclaim {claim!r} is not bound")
        pv = self.core.read_persistent_volume(pvc.spec.volume_name)
        source = pv.spec.host_path or pv.spec.local
        if source is None:
            raise VolumeNotReady(f"persistentvolume {pv.metadata.name}: only hostPath and local volumes "
                                 "exist on this node")
        path = Path(source.path)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _secret(self, name: str, optional: bool | None) -> dict[str, bytes]:
        try:
            return {k: base64.b64decode(v) for k, v in (self.core.read_namespaced_secret(name, self.ns).data
                                                         or {}).items()}
        except kubernetes.client.ApiException as exc:
            if optional:
                return {}
            raise VolumeNotReady(f'secret "{name}" not found') from exc

    def _config_map(self, name: str, optional: bool | None) -> dict[str, bytes]:
        try:
            cm = self.core.read_namespaced_config_map(name, self.ns)
        except kubernetes.client.ApiException as exc:
            if optional:
                return {}
            raise VolumeNotReady(f'configmap "{name}" not found') from exc
        return {k: v.encode() for k, v in (cm.data or {}).items()}

    def _downward(self, target: Path, items: list[dict[str, Any]]) -> None:
        for item in items:
            if "fieldRef" in item:
                path = target / item["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(field_value(self.pod, item["fieldRef"]["fieldPath"]))

    def _projected(self, target: Path, source: dict[str, Any]) -> None:
        if "serviceAccountToken" in source:
            src = source["serviceAccountToken"]
            meta = self.pod["metadata"]
            body = {"spec": {"expirationSeconds": src.get("expirationSeconds", 3607),
                             "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"],
                                                "uid": meta["uid"]}}}
            if src.get("audience"):
                body["spec"]["audiences"] = [src["audience"]]
            sa = self.pod["spec"].get("serviceAccountName") or "default"
            token = self.core.create_namespaced_service_account_token(sa, self.ns, body).status.token
            path = target / src.get("path", "token")
            path.write_text(token)
            path.chmod(0o600 if os.geteuid() != 0 else 0o644)
        elif "configMap" in source:
            src = source["configMap"]
            _write_items(target, self._config_map(src["name"], src.get("optional")), src.get("items"), None)
        elif "secret" in source:
            src = source["secret"]
            _write_items(target, self._secret(src["name"], src.get("optional")), src.get("items"), None)
        elif "downwardAPI" in source:
            self._downward(target, source["downwardAPI"].get("items") or [])


def scratch_dir(root: Path, pod: dict[str, Any]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    meta = pod["metadata"]
    return Path(tempfile.mkdtemp(prefix=f"{meta['namespace']}_{meta['name']}_", dir=root))
