"""Run one container of a Pod spec golora builds with the local engine, the way a kubelet
would: its command, env, mounts and securityContext turned into ``run`` flags. Anything in
the spec it does not know is an error, so a new field in the builders cannot pass silently."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "hack" / "images" / "engine.sh"
KNOWN_SECURITY = {"runAsNonRoot", "runAsUser", "runAsGroup", "allowPrivilegeEscalation",
                  "readOnlyRootFilesystem", "capabilities", "seccompProfile"}


def engine(*args: str, timeout: float = 120, check: bool = True, **kw: Any) -> subprocess.CompletedProcess:
    out = subprocess.run([str(ENGINE), *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"engine {' '.join(args[:3])} failed ({out.returncode}): {out.stderr[-3000:]}")
    return out


@dataclass
class PodRun:
    """``claims``: claim name -> host directory (the bound PersistentVolume's path)."""

    pod: dict[str, Any]
    claims: dict[str, Path]
    termination_log: Path
    network: str = "none"
    env_override: dict[str, str] = field(default_factory=dict)

    def args(self) -> list[str]:
        spec = self.pod
        (container,) = spec["containers"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        pod_sc = spec.get("securityContext", {})
        sc = {k: v for k, v in pod_sc.items() if k != "fsGroup"} | container.get("securityContext", {})
        unknown = set(sc) - KNOWN_SECURITY
        assert not unknown, f"securityContext fields this runner does not apply: {unknown}"
        args = ["run", "--rm", f"--network={self.network}", "--pull=never"]
        if sc.get("runAsUser") is not None:
            group = sc.get("runAsGroup", pod_sc.get("fsGroup", sc["runAsUser"]))
            args.append(f"--user={sc['runAsUser']}:{group}")
        if sc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if sc.get("allowPrivilegeEscalation") is False:
            args.append("--security-opt=no-new-privileges")
        for cap in sc.get("capabilities", {}).get("drop", []):
            args.append(f"--cap-drop={cap}")
        if limit := container.get("resources", {}).get("limits", {}).get("memory"):
            args.append(f"--memory={limit.replace('Gi', 'g').replace('Mi', 'm')}")
        for mount in container.get("volumeMounts", []):
            vol = volumes[mount["name"]]
            ro = mount.get("readOnly", False)
            if "persistentVolumeClaim" in vol:
                pvc = vol["persistentVolumeClaim"]
                host = self.claims[pvc["claimName"]]
                ro = ro or pvc.get("readOnly", False)
                args.append(f"--volume={host}:{mount['mountPath']}:{'ro' if ro else 'rw'}")
            elif "emptyDir" in vol and mount["mountPath"] == "/dev/shm":
                size = vol["emptyDir"].get("sizeLimit", "64Mi").replace("Gi", "g").replace("Mi", "m")
                args.append(f"--shm-size={size}")
            elif "emptyDir" in vol:
                size = vol["emptyDir"].get("sizeLimit", "1Gi").replace("Gi", "g").replace("Mi", "m")
                args.append(f"--tmpfs={mount['mountPath']}:rw,size={size},mode=1777")
            else:
                raise AssertionError(f"volume kind this runner does not mount: {vol}")
        self.termination_log.touch()
        os.chmod(self.termination_log, 0o666)
        args.append(f"--volume={self.termination_log}:/dev/termination-log:rw")
        env = {e["name"]: e["value"] for e in container.get("env", [])} | self.env_override
        for name, value in env.items():
            args.append(f"--env={name}={value}")
        command = container.get("command") or []
        if command:
            args.append("--entrypoint=" + json.dumps(command[:1]))
        args.append(container["image"])
        args += command[1:] + container.get("args", [])
        return args

    def run(self, timeout: float) -> subprocess.CompletedProcess:
        return engine(*self.args(), timeout=timeout, check=False)


def require_image(tag: str) -> None:
    """Skip (with the reason) when there is no engine or ``make images`` did not build ``tag``."""
    import pytest

    which = subprocess.run([str(ENGINE), "--which"], capture_output=True, text=True, timeout=60)
    if which.returncode == 3:
        pytest.skip(which.stderr.strip())
    assert which.returncode == 0, which.stderr
    if engine("image", "inspect", tag, check=False).returncode != 0:
        pytest.skip(f"{tag} is not built: run `make images`")
