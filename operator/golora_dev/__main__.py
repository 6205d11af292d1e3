"""``python -m golora_dev up|down|env|status|kubeconfig|build``

A local Kubernetes cluster on this machine: etcd, kube-apiserver, kube-scheduler and
kube-controller-manager (real, built from the pinned Go modules) plus the node agent (the
stand-in for the kubelet), all in the background; ``up --argocd`` adds a real Argo CD.
``make demo`` and the tests use the same code. State lives in ``$GOLORA_DEVCLUSTER_DIR``
(default ``~/.cache/golora_dev``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import binaries
from .cluster import ControlPlane
from .podnet import PodNetwork

DEMO_NAMESPACE = "golora-demo"


def state_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "golora" / "devcluster"
    return Path(os.environ.get("GOLORA_DEVCLUSTER_DIR", default))


def _load() -> dict | None:
    path = state_dir() / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def alive(pid: int | None) -> bool:
    """Whether process ``pid`` runs (a zombie counts as gone)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def _kill(pid: int | None, timeout: float = 20) -> None:
    if not alive(pid):
        return
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def cmd_up(args: argparse.Namespace) -> int:
    state = _load()
    if state and alive(state["pids"].get("kube-apiserver")):
        print(f"already up: export KUBECONFIG={state['kubeconfig']}")
        return 0
    root = state_dir()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    t0 = time.monotonic()
    plane = ControlPlane(workdir=root / "run", detach=True).start()
    repo = binaries.repo_root()
    if repo is not None:
        from .crds import install_crds

        install_crds(plane, repo / "crds")
    state = plane.state()
    state["nodes"] = str(Path(args.nodes).resolve()) if args.nodes else None
    state["vllm"] = args.vllm
    if args.argocd:
        from .argocd import ArgoCD, ArgoCDUnavailable, GitRepo

        try:
            argo = ArgoCD(plane, root / "run" / "argocd", detach=True).start()
        except ArgoCDUnavailable as exc:
            print(f"--argocd: {exc}", file=sys.stderr)
            plane.stop()
            return 1
        state["argocd"] = {**argo.state(), "git": GitRepo(root / "gitops").url}
        state["pids"].update(argo.state()["pids"])
    (root / "state.json").write_text(json.dumps(state, indent=2))
    log = open(root / "run" / "node-agent.log", "ab")  # noqa: SIM115 - handed to the child
    agent = subprocess.Popen([sys.executable, "-m", "golora_dev", "node-agent"], stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    assert plane.network is not None
    plane.network.adopt(agent.pid)
    state["pids"]["node-agent"] = agent.pid
    (root / "state.json").write_text(json.dumps(state, indent=2))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = plane.kubectl("get", "nodes", "--no-headers", check=False).stdout
        if out and all(" Ready " in line for line in out.splitlines()):
            break
        if agent.poll() is not None:
            print((root / "run" / "node-agent.log").read_text()[-3000:], file=sys.stderr)
            return 1
        time.sleep(0.5)
    print(f"local cluster up in {time.monotonic() - t0:.0f}s at {plane.apiserver_url}")
    print(plane.kubectl("get", "nodes", "-o", "wide").stdout.rstrip())
    print(f"""
  eval "$(python -m golora_dev env)"      # KUBECONFIG and kubectl on PATH
  kubectl apply -k manifests/demo               # the demo's claims are provisioned ({DEMO_NAMESPACE})
  python -m golora                              # the operator, as on a cluster
  kubectl get golora -A -w
  python -m golora_dev down              # stop everything, remove its state""")
    if args.argocd:
        argo = state["argocd"]
        print(f"""
  Argo CD {argo['bindir']} (repo-server, application-controller, redis; namespace {argo['namespace']}):
  Applications use destination.server {argo['server']}; a local git repository: {argo['git']}""")
    return 0


def cmd_node_agent(_: argparse.Namespace) -> int:
    """The node agent of ``up`` (runs in the background until SIGTERM)."""
    import logging

    from .images import local_images
    from .nodeagent import NodeAgent, NodeSpec
    from .nodeagent.spec import load_nodes

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    state = _load()
    assert state is not None
    plane = ControlPlane.attach(state)
    nodes = load_nodes(Path(state["nodes"])) if state.get("nodes") else [NodeSpec()]
    workdir = state_dir() / "node-agent"
    repo = binaries.repo_root() or Path.cwd()
    vllm_bin = None
    if state.get("vllm") in ("real", "auto"):
        from . import vllm_local

        if vllm_local.installed():
            vllm_bin = vllm_local.vllm_executable().parent
        elif state.get("vllm") == "real":
            print("vLLM is not installed (make vllm)", file=sys.stderr)
            return 1
    agent = NodeAgent(plane, workdir, nodes, local_images(workdir, repo / ".bin" / "golora-extract", vllm_bin))
    agent.start()
    # The demo's claims (manifests/demo asks for them): the store and the Go standard library.
    agent.volume(DEMO_NAMESPACE, "golora-store")
    agent.volume(DEMO_NAMESPACE, "go-src", binaries.go_root(), read_only=True)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    while not stop["now"]:
        time.sleep(0.5)
    agent.stop()
    return 0


def cmd_down(_: argparse.Namespace) -> int:
    state = _load()
    if not state:
        print("not running")
        return 0
    for name in ("argocd-application-controller", "argocd-repo-server", "redis",
                 "node-agent", "kube-controller-manager", "kube-scheduler", "kube-apiserver", "etcd"):
        _kill(state["pids"].get(name))
    net = state.get("network") or {}
    if net.get("index", -1) >= 0:
        PodNetwork(index=net["index"], namespaced=net.get("namespaced", False)).destroy()
    shutil.rmtree(state_dir(), ignore_errors=True)
    print("local cluster stopped")
    return 0


def cmd_env(_: argparse.Namespace) -> int:
    state = _load()
    if not state:
        print("the local cluster is not running (python -m golora_dev up)", file=sys.stderr)
        return 1
    print(f"export KUBECONFIG={state['kubeconfig']}")
    print(f"export GOLORA_KUBECTL={state['kubectl']}")
    print(f"export PATH={Path(state['kubectl']).parent}:$PATH")
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    state = _load()
    if not state:
        print("not running")
        return 1
    up = {name: alive(pid) for name, pid in state["pids"].items()}
    print(json.dumps({**state, "alive": up}, indent=2))
    return 0 if all(up.values()) else 1


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    state = _load()
    if not state:
        print("the local cluster is not running", file=sys.stderr)
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
    parser = argparse.ArgumentParser(prog="python -m golora_dev", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the local cluster in the background")
    up.add_argument("--nodes", help="YAML list of node specs (default: one node with this machine's capacity), "
                                    "e.g. [{name: cpu}, {name: t4, gpuProduct: Tesla-T4, gpus: 1}]")
    up.add_argument("--vllm", choices=("auto", "real", "stub"), default="auto",
                    help="what runs vLLM images: the installed vLLM (make vllm), or the stand-in")
    up.add_argument("--argocd", action="store_true",
                    help="also run Argo CD (repo-server, application-controller, redis; built by hack/argocd)")
    up.set_defaults(fn=cmd_up)
    sub.add_parser("node-agent", help=argparse.SUPPRESS).set_defaults(fn=cmd_node_agent)
    sub.add_parser("down", help="stop everything and remove its state").set_defaults(fn=cmd_down)
    sub.add_parser("env", help="print export KUBECONFIG=...").set_defaults(fn=cmd_env)
    sub.add_parser("status", help="print each component; exit 1 unless all run").set_defaults(fn=cmd_status)
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
