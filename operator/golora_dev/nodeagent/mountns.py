"""STAND-IN (node agent): run a container's command in its own mount namespace with each of its
volumes bind-mounted at its ``mountPath``, as a container runtime gives every real container.

The agent otherwise maps container paths by rewriting the command line and the environment;
a path that reaches the process another way (e.g. ``lora_path`` in an HTTP request to vLLM's
``/v1/load_lora_adapter``) is then only valid in the container's own view, which this gives.
Used for images whose ``ImageSpec.own_mounts`` is set. The mount points are created on the
host's filesystem if missing (empty directories); the mounts themselves are private.

    python -I mountns.py HOST_DIR MOUNT_PATH [...] -- ARGV...
"""

from __future__ import annotations

import ctypes
import os
import sys

CLONE_NEWNS = 0x00020000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18


def wrap(mounts: list[tuple[str, str]]) -> list[str]:
    """The argv prefix (before the container's own argv)."""
    out = [sys.executable, "-I", os.path.abspath(__file__)]  # by path: the container's env may not import golora
    for host, path in mounts:
        out += [host, path]
    return [*out, "--"]


def main(argv: list[str]) -> int:
    sep = argv.index("--")
    pairs, command = argv[:sep], argv[sep + 1:]
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:  # not root: run with the agent's path rewriting only
        print(f"mountns: no mount namespace ({os.strerror(ctypes.get_errno())}); volumes are not mounted at "
              "their mount paths", file=sys.stderr, flush=True)
        os.execvp(command[0], command)
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    for host, path in zip(pairs[::2], pairs[1::2], strict=True):
        os.makedirs(path, exist_ok=True)
        if libc.mount(host.encode(), path.encode(), None, MS_BIND | MS_REC, None) != 0:
            raise OSError(ctypes.get_errno(), f"mount --bind {host} {path}")
    os.execvp(command[0], command)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
