"""Operator scale benchmark: N GoDatasets applied at once against the real local cluster
(real scheduler and Job controller), the operator running as its own process, the node
agent (kubelet stand-in, one node with this machine's capacity) running the Pods.

Prints: time until all N Jobs exist, time until all N GoDatasets are Succeeded, apiserver
requests per object by verb/resource (from the apiserver's own /metrics), API writes per
minute while everything is idle (golora's objects and Jobs; the controllers' and the node's
own lease and status writes are listed apart), and the operator's peak RSS.

    python bench/operator/run.py [--count 500] [--idle 60]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import kubernetes

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from golora_dev import ControlPlane  # noqa: E402
from golora_dev.session import local_golora  # noqa: E402

WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE"}
LINE = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$')


def request_counts(plane: ControlPlane, kubeconfig: Path) -> Counter:
    """apiserver_request_total by (verb, resource, subresource), read from /metrics."""
    out = plane.kubectl("get", "--raw", "/metrics", kubeconfig=kubeconfig).stdout
    counts: Counter = Counter()
    for line in out.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        labels = dict(kv.split("=", 1) for kv in re.findall(r'\w+="[^"]*"', m["labels"]))
        labels = {k: v.strip('"') for k, v in labels.items()}
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
        counts[key] += int(float(m["value"]))
    return counts


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--idle", type=float, default=60, help="seconds to watch for idle writes")
    ap.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args()
    fixture = REPO / "tests" / "fixtures" / "gotree"
    with local_golora(start_agent=False) as local:
        plane, runner, op = local.plane, local.agent, local.operator
        api = kubernetes.config.new_client_from_config(config_file=str(plane.kubeconfig))
        core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
        batch = kubernetes.client.BatchV1Api(api)
        ns = "bench"
        core.create_namespace({"metadata": {"name": ns}})
        time.sleep(3)  # operator watching
        before = request_counts(plane, plane.kubeconfig)
        objs = [{"apiVersion": "golora.dev/v1alpha1", "kind": "GoDataset", "metadata": {"name": f"d{i:04d}"},
                 "spec": {"sources": [{"name": "fx", "pvc": {"claimName": "fixture-src"}}]}}
                for i in range(args.count)]
        t0 = time.monotonic()
        # "At once": the CRs go in from several client threads, as kubectl apply of a big file would.
        chunks = [objs[i::8] for i in range(8)]
        threads = [threading.Thread(target=lambda c=c: [custom.create_namespaced_custom_object(
            "golora.dev", "v1alpha1", ns, "godatasets", o) for o in c]) for c in chunks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_applied = time.monotonic() - t0
        while len(batch.list_namespaced_job(ns).items) < args.count:
            time.sleep(0.2)
        t_jobs = time.monotonic() - t0
        after_jobs = request_counts(plane, plane.kubeconfig)
        runner.start()  # the node joins now: the real scheduler binds the waiting pods to it
        runner.claim(ns, "fixture-src", fixture, read_only=True)
        runner.claim(ns, "golora-store")
        while True:
            items = custom.list_namespaced_custom_object("golora.dev", "v1alpha1", ns, "godatasets")["items"]
            done = sum((i.get("status") or {}).get("phase") == "Succeeded" for i in items)
            failed = sum((i.get("status") or {}).get("phase") == "Failed" for i in items)
            if done + failed >= args.count:
                break
            time.sleep(0.5)
        t_done = time.monotonic() - t0
        time.sleep(5)  # let the last status patches settle
        settled = request_counts(plane, plane.kubeconfig)
        time.sleep(args.idle)
        idle = request_counts(plane, plane.kubeconfig)
        rss = peak_rss_kb(op.pid)

    def per_object(a: Counter, b: Counter) -> dict[str, float]:
        delta = b - a
        return {f"{v} {r}{'/' + s if s else ''}": round(n / args.count, 2) for (v, r, s), n in sorted(delta.items())
                if r and n}

    # The benchmark's own calls (create + listing) are in these numbers too: listed separately.
    to_jobs = per_object(before, after_jobs)
    whole = per_object(before, settled)
    # Writes the operator makes: golora's objects and Jobs (not jobs/status: the Job controller's).
    golora = {"godatasets", "godatasets/status", "loratrainings", "loratrainings/status", "adapterservings",
              "adapterservings/status", "jobs"}
    idle_delta = {f"{v} {r}{'/' + s if s else ''}": n for (v, r, s), n in (idle - settled).items()
                  if v in WRITE_VERBS}
    idle_writes = sum(n for k, n in idle_delta.items() if k.split()[1] in golora)
    figures = {
        "objects": args.count, "failed": failed,
        "seconds_to_create_crs": round(t_applied, 2),
        "seconds_to_all_jobs": round(t_jobs, 2),
        "seconds_to_all_succeeded": round(t_done, 2),
        "requests_per_object_until_jobs": to_jobs,
        "requests_per_object_total": whole,
        "writes_per_object_total": round(sum(n for k, n in whole.items() if k.split()[0] in WRITE_VERBS), 2),
        "idle_seconds": args.idle, "idle_writes_per_minute": round(idle_writes * 60 / args.idle, 2),
        "idle_writes_by_others": {k: n for k, n in idle_delta.items() if k.split()[1] not in golora},
        "operator_peak_rss_mib": round(rss / 1024, 1),
        "target_jobs_seconds": 30,
    }
    print(f"\n{args.count} GoDatasets applied in {t_applied:.1f}s")
    print(f"all {args.count} Jobs exist after       {t_jobs:6.1f} s   (target <= 30 s: "
          f"{'met' if t_jobs <= 30 else 'NOT met'}, ratio {t_jobs / 30:.2f})")
    print(f"all {args.count} Succeeded after        {t_done:6.1f} s   ({failed} failed)")
    print(f"operator API writes while idle  {figures['idle_writes_per_minute']:6.1f} /min (target 0; "
          f"not counted, the controllers' and the node's own: {figures['idle_writes_by_others']})")
    print(f"operator peak RSS               {figures['operator_peak_rss_mib']:6.1f} MiB")
    print("apiserver requests per object (whole run; includes the benchmark's create, the real controllers "
          "and the node agent):")
    for k, v in whole.items():
        print(f"  {k:45s} {v:6.2f}")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
