"""``python -m golora_trainer launch``: the training Job's entry point when it has more than one
rank. Runs ``golora_trainer run`` under PyTorch's own launcher (torchrun), and turns its outcome
into the exit code the operator classifies.

One node: ``torchrun --standalone --nproc-per-node N``. Several nodes (one pod per node of an
Indexed Job): c10d rendezvous on the index-0 pod, addressed as ``<job>-0.<service>`` through the
Job's headless Service (cluster DNS); pod 0 hosts the rendezvous store (``is_host``); each agent
advertises its pod IP (``--local-addr``, from the downward API), so the workers' process group
does not depend on hostnames. ``join_timeout`` bounds how long placed pods wait for the rest.

torchrun itself exits 1 whatever its workers did; here the exit code is the first meaningful
worker failure: a rank's own reason (OutOfMemory, InvalidConfig, ...) before a rank that only
lost its peer (EXIT_INTERRUPTED), before a rank killed by a signal (128 + signal).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import time

from golora.api.worker import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RENDEZVOUS_TIMEOUT,
    POD_IP_ENV,
    REASON_RENDEZVOUS_TIMEOUT,
)

log = logging.getLogger(__name__)

RDZV_PORT = 29400
INDEX_ENV = "JOB_COMPLETION_INDEX"  # set by the Job controller in Indexed Jobs


def torchrun_args(*, nnodes: int, nproc: int, endpoint: str | None, rdzv_id: str | None, index: int,
                  local_addr: str | None, join_timeout: int) -> list[str]:
    """torchrun's command line (without the program name) for this pod."""
    if nnodes <= 1:
        args = ["--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc)]
    else:
        if not endpoint or not rdzv_id:
            raise ValueError("several nodes need --rdzv-endpoint and --rdzv-id")
        conf = f"is_host={'true' if index == 0 else 'false'},join_timeout={join_timeout}"
        args = ["--nnodes", str(nnodes), "--nproc-per-node", str(nproc), "--rdzv-backend", "c10d",
                "--rdzv-endpoint", endpoint, "--rdzv-id", rdzv_id, "--rdzv-conf", conf]
        if local_addr:
            args += ["--local-addr", local_addr]
    return args + ["--max-restarts", "0", "--monitor-interval", "1", "-m", "golora_trainer", "run"]


def exit_code(failures: list[tuple[float, int]]) -> int:
    """The container's exit code from (timestamp, exitcode) of the failed workers (negative
    exitcode: killed by that signal)."""
    ordered = [code for _, code in sorted(failures)]
    own = [c for c in ordered if c > 0 and c != EXIT_INTERRUPTED]
    if own:
        return own[0]
    if EXIT_INTERRUPTED in ordered:
        return EXIT_INTERRUPTED
    signalled = [c for c in ordered if c < 0]
    return 128 - signalled[0] if signalled else EXIT_FAILED


def wait_resolvable(host: str, timeout: float, interval: float = 1.0) -> bool:
    """The rendezvous host's DNS record exists once its pod has an IP: wait for it (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.getaddrinfo(host, None)
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)


def _timeout(message: str) -> int:
    from .report import write_termination_message

    log.error("%s", message)
    write_termination_message(f"{REASON_RENDEZVOUS_TIMEOUT}: {message}")
    return EXIT_RENDEZVOUS_TIMEOUT


def main(args: argparse.Namespace) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousTimeoutError
    from torch.distributed.run import parse_args, run

    index = int(os.environ.get(INDEX_ENV, "0") or 0)
    argv = torchrun_args(nnodes=args.nnodes, nproc=args.nproc_per_node, endpoint=args.rdzv_endpoint,
                         rdzv_id=args.rdzv_id, index=index, local_addr=os.environ.get(POD_IP_ENV) or None,
                         join_timeout=args.join_timeout)
    log.info("torchrun %s", " ".join(argv))
    if args.nnodes > 1:
        host = args.rdzv_endpoint.rsplit(":", 1)[0]
        if not wait_resolvable(host, args.join_timeout):
            return _timeout(f"rendezvous host {host} (the index-0 pod) did not appear within {args.join_timeout}s: "
                            f"not all {args.nnodes} pods could start")
    try:
        run(parse_args(argv))
    except ChildFailedError as exc:
        code = exit_code([(f.timestamp, f.exitcode) for f in exc.failures.values()])
        log.error("workers failed (%s): exit %d", {r: f.exitcode for r, f in exc.failures.items()}, code)
        return code
    except RendezvousTimeoutError as exc:
        return _timeout(f"not all {args.nnodes} nodes joined the rendezvous within {args.join_timeout}s ({exc})")
    except SignalException as exc:
        log.warning("stopped by signal %s", exc.sigval)
        return 128 + int(exc.sigval)
    return EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("launch", help="run `run` under torchrun (several GPUs or nodes)")
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--nproc-per-node", type=int, default=1)
    p.add_argument("--rdzv-endpoint", help="host:port of the index-0 pod (several nodes)")
    p.add_argument("--rdzv-id", help="rendezvous id, the same on every pod (the Job's name)")
    p.add_argument("--join-timeout", type=int, default=600, help="seconds to wait for every node")
    p.set_defaults(func=main)
