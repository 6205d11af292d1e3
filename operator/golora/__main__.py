"""``python -m golora``: run the operator (in-cluster config, or KUBECONFIG).

Extra arguments go to ``kopf run`` (e.g. ``--namespace ns``, ``--verbose``);
the default watches all namespaces.
"""

from __future__ import annotations

import sys

import kopf.cli


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a in ("-n", "--namespace", "-A", "--all-namespaces") or a.startswith("--namespace=") for a in args):
        args.append("--all-namespaces")
    if "--standalone" not in args and "--peering" not in args:
        args.append("--standalone")
    return kopf.cli.main(["run", "-m", "golora.handlers", *args], standalone_mode=False) or 0


if __name__ == "__main__":
    sys.exit(main())
