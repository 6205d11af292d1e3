"""``python -m golora.devcluster up|down|env|status|kubeconfig|build``

Runs the real local control plane from the command line (``make demo`` uses it).
State lives in ``$GOLORA_DEVCLUSTER_DIR`` (default ``~/.cache/golora/devcluster``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from . import binaries
from .cluster import ControlPlane


def state_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "golora" / "devcluster"
    return Path(os.environ.get("GOLORA_DEVCLUSTER_DIR", default))


def _load() -> dict | None:
    path = state_dir() / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _kill(pid: int | None, timeout: float = 20) -> None:
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def cmd_up(_: argparse.Namespace) -> int:
    state = _load()
    if state and _alive(state["pids"]["kube-apiserver"]):
        print(f"already up: export KUBECONFIG={state['kubeconfig']}")
        return 0
    root = state_dir()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    plane = ControlPlane(workdir=root / "run", detach=True).start()
    plane.save_state(root / "state.json")
    print(f"control plane up at {plane.apiserver_url}\nexport KUBECONFIG={plane.kubeconfig}")
    return 0


def cmd_down(_: argparse.Namespace) -> int:
    state = _load()
    if not state:
        print("not running")
        return 0
    _kill(state["pids"]["kube-apiserver"])
    _kill(state["pids"]["etcd"])
    shutil.rmtree(state_dir(), ignore_errors=True)
    print("control plane stopped")
    return 0


def cmd_env(_: argparse.Namespace) -> int:
    state = _load()
    if not state:
        print("control plane is not running (python -m golora.devcluster up)", file=sys.stderr)
        return 1
    print(f"export KUBECONFIG={state['kubeconfig']}")
    print(f"export GOLORA_KUBECTL={state['kubectl']}")
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    state = _load()
    if not state:
        print("not running")
        return 1
    up = {name: _alive(pid) for name, pid in state["pids"].items()}
    print(json.dumps({**state, "alive": up}, indent=2))
    return 0 if all(up.values()) else 1


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    state = _load()
    if not state:
        print("control plane is not running", file=sys.stderr)
        return 1
    plane = ControlPlane.attach(state)
    out = Path(args.output)
    plane.write_kubeconfig(args.user, args.group, out, args.namespace)
    print(out)
    return 0


def cmd_build(_: argparse.Namespace) -> int:
    bins = binaries.find()
    print(bins.kube_apiserver.parent)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m golora.devcluster", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="start etcd + kube-apiserver in the background").set_defaults(fn=cmd_up)
    sub.add_parser("down", help="stop them and remove their data").set_defaults(fn=cmd_down)
    sub.add_parser("env", help="print export KUBECONFIG=...").set_defaults(fn=cmd_env)
    sub.add_parser("status", help="print state; exit 1 unless running").set_defaults(fn=cmd_status)
    sub.add_parser("build", help="build/find the binaries; print their directory").set_defaults(fn=cmd_build)
    kc = sub.add_parser("kubeconfig", help="mint a kubeconfig for another user (client certificate)")
    kc.add_argument("--user", required=True)
    kc.add_argument("--group", action="append", default=[])
    kc.add_argument("--namespace")
    kc.add_argument("-o", "--output", required=True)
    kc.set_defaults(fn=cmd_kubeconfig)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
