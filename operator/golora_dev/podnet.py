"""Pod networking for the local cluster: every Pod gets its own IP, reachable from this machine.

As root with iproute2 (CI and the dev machines), each cluster gets a Linux bridge with a /22
subnet and each Pod its own network namespace with a veth on that bridge: two Pods that
listen on the same port never collide, and the machine reaches every Pod at its IP. The
bridge's own address is the nodes' ``InternalIP``, and kube-apiserver listens on it, so
Pods reach the apiserver the way they reach a node. Traffic never leaves the machine
(there is no NAT: a Pod cannot reach outside networks, only this machine and other Pods).

Without root or ``ip``, Pods fall back to their own loopback addresses (127.77.x.y) in
the machine's namespace: distinct IPs, but one port space (a wildcard bind collides).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("golora.podnet")

LOCK_DIR = Path(os.environ.get("GOLORA_PODNET_LOCK_DIR", "/run/golora-podnet"))
BRIDGE_PREFIX = "glr"
NETNS_PREFIX = "glrpod-"
FIRST_SUBNET = ipaddress.ip_network("10.88.0.0/22")
MAX_NETWORKS = 64


def namespaced_supported() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("nsenter") is not None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _ip_batch(lines: list[str], netns: str | None = None) -> None:
    out = subprocess.run(["ip", *(["-n", netns] if netns else []), "-batch", "-"], input="\n".join(lines) + "\n", capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"ip -batch failed: {out.stderr.strip()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


@dataclass
class PodNetwork:
    """One cluster's pod network. ``create()`` picks a free index (bridge ``glr<N>``,
    subnet ``10.88.4N.0/22``); ``destroy()`` removes the bridge and every pod namespace."""

    index: int = -1
    namespaced: bool = field(default_factory=namespaced_supported)
    _free: list[str] = field(default_factory=list)
    _used: dict[str, str] = field(default_factory=dict)  # pod uid -> ip
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.index >= 0:  # attaching to a network another process created (``up``'s node agent)
            self._free = self._hosts()

    def _hosts(self) -> list[str]:
        return [str(h) for h in self.subnet.hosts()][1:]  # the first is the gateway

    # ---- the network --------------------------------------------------------------------
    @property
    def subnet(self) -> ipaddress.IPv4Network:
        if not self.namespaced:
            return ipaddress.ip_network(f"127.77.{max(self.index, 0) * 4}.0/22")
        return ipaddress.ip_network((int(FIRST_SUBNET.network_address) + self.index * 1024, 22))

    @property
    def bridge(self) -> str:
        return f"{BRIDGE_PREFIX}{self.index}"

    @property
    def gateway(self) -> str:
        """The nodes' InternalIP and the apiserver's address (127.0.0.1 without namespaces)."""
        return str(self.subnet.network_address + 1) if self.namespaced else "127.0.0.1"

    def create(self) -> PodNetwork:
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        with open(LOCK_DIR / ".lock", "w") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            for index in range(MAX_NETWORKS):
                owner = LOCK_DIR / f"{index}.pid"
                if owner.exists():
                    pid = int(owner.read_text().strip() or 0)
                    if pid and _pid_alive(pid):
                        continue
                    self.index = index
                    self._remove_leftovers()
                self.index = index
                owner.write_text(str(os.getpid()))
                break
            else:
                raise RuntimeError(f"no free pod network: {MAX_NETWORKS} local clusters are running")
        if self.namespaced:
            self._remove_leftovers()
            _ip_batch([f"link add {self.bridge} type bridge",
                       f"addr add {self.gateway}/{self.subnet.prefixlen} dev {self.bridge}",
                       f"link set {self.bridge} up"])
        self._free = self._hosts()
        return self

    def adopt(self, owner_pid: int) -> None:
        """Hand the network to another process (the detached node agent of ``up``)."""
        (LOCK_DIR / f"{self.index}.pid").write_text(str(owner_pid))

    def _remove_leftovers(self) -> None:
        """A bridge and pod namespaces of a cluster whose owner died."""
        if not self.namespaced:
            return
        _ip("link", "del", self.bridge, check=False)
        for name in self._netns_names():
            _ip("netns", "del", name, check=False)
            shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)

    def _netns_names(self) -> list[str]:
        out = _ip("netns", "list", check=False).stdout.split()
        return [n for n in out if n.startswith(f"{NETNS_PREFIX}{self.index}-")]

    def destroy(self) -> None:
        if self.index < 0:
            return
        self._remove_leftovers()
        with contextlib.suppress(OSError):
            (LOCK_DIR / f"{self.index}.pid").unlink()

    # ---- one pod ---------------------------------------------------------------------------
    def netns(self, uid: str) -> str:
        return f"{NETNS_PREFIX}{self.index}-{uid[:12]}"

    def attach(self, uid: str) -> str:
        """Give a pod its IP (and namespace); idempotent. Returns the IP."""
        with self._lock:
            if uid in self._used:
                return self._used[uid]
            if not self._free:
                raise RuntimeError(f"pod network {self.subnet} is full")
            ip = self._free.pop(0)
            self._used[uid] = ip
        if self.namespaced:
            ns, host_end = self.netns(uid), f"glrv{self.index}{uid[:8]}"[:15]
            try:
                _ip_batch([f"netns add {ns}",
                           f"link add {host_end} type veth peer name eth0 netns {ns}",
                           f"link set {host_end} master {self.bridge} up"])
                _ip_batch([f"addr add {ip}/{self.subnet.prefixlen} dev eth0", "link set eth0 up", "link set lo up",
                           f"route add default via {self.gateway}"], netns=ns)
            except RuntimeError:
                self.detach(uid)
                raise
        return ip

    def detach(self, uid: str) -> None:
        with self._lock:
            ip = self._used.pop(uid, None)
        if ip is None:
            return
        if self.namespaced:
            _ip("netns", "del", self.netns(uid), check=False)  # takes the veth pair with it
            shutil.rmtree(Path("/etc/netns") / self.netns(uid), ignore_errors=True)  # its hosts file, if any
        with self._lock:
            self._free.append(ip)

    def enter(self, uid: str | None, hosts: bool = False) -> list[str]:
        """The argv prefix that runs a command inside the pod's network (none for hostNetwork).
        ``hosts``: through ``ip netns exec``, which also bind-mounts /etc/netns/<netns>/hosts
        over /etc/hosts (the node agent's stand-in for cluster DNS, nodeagent/hosts.py)."""
        if uid is None or not self.namespaced:
            return []
        if hosts:
            return ["ip", "netns", "exec", self.netns(uid)]
        return ["nsenter", f"--net=/run/netns/{self.netns(uid)}", "--"]
