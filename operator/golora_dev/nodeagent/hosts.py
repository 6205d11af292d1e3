"""Name resolution for Pods in a subdomain — PART OF THE STAND-IN, in place of cluster DNS.

The local cluster has no DNS server. On a real cluster a Pod with ``hostname`` and
``subdomain`` (an Indexed Job's pods with a headless Service) is found by its peers as
``<hostname>.<subdomain>`` through cluster DNS, and the kubelet's /etc/hosts maps the Pod's
own hostname to its IP. Here, for Pods that set ``subdomain`` only, the agent writes one hosts
file per Pod with the lines cluster DNS would answer for that subdomain (every running Pod of
the namespace in it, by ``<hostname>.<subdomain>[.<namespace>.svc.cluster.local]``) and maps
the process's hostname to the Pod's IP, as the kubelet's file does. The file lives in
``/etc/netns/<pod netns>/hosts``, which ``ip netns exec`` bind-mounts over /etc/hosts for the
Pod's processes; it is rewritten in place (same inode) when a Pod of the subdomain comes or goes.

golora's product code never relies on this: it addresses the Pods by the names cluster DNS
serves; this file only makes those names resolve on a machine without it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

NETNS_ETC = Path("/etc/netns")
CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class Member:
    ip: str
    hostname: str
    subdomain: str
    namespace: str


def render(own: Member, members: list[Member]) -> str:
    lines = ["# golora node agent (kubelet stand-in): cluster DNS for this pod's subdomain, see hosts.py",
             "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             f"{own.ip}\t{socket.gethostname()}"]
    for m in sorted(members, key=lambda m: m.hostname):
        fqdn = f"{m.hostname}.{m.subdomain}.{m.namespace}.svc.{CLUSTER_DOMAIN}"
        lines.append(f"{m.ip}\t{fqdn} {m.hostname}.{m.subdomain}" + (f" {m.hostname}" if m == own else ""))
    return "\n".join(lines) + "\n"


def path_for(netns: str) -> Path:
    return NETNS_ETC / netns / "hosts"


def write(netns: str, text: str) -> None:
    """Write in place: the bind mount of a running Pod keeps seeing the same inode."""
    path = path_for(netns)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return
    with open(path, "w") as fh:  # truncates, keeps the inode
        fh.write(text)


def remove(netns: str) -> None:
    shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)
