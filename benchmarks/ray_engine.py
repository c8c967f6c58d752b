"""Ray engine throughput: rows/s of the shipped gsm8k_rephrase pipeline with 1 vs 2 Ray workers, side by side.

One loopback server in its own process (``--latency`` 200 ms, ``--responder gsm8k``: a distinct valid
rephrase of every problem, so every gate passes what a real model would). One local Ray (``ray.init``
sized to the machine, started once and not timed); then, for each worker count, a fresh run dir and
``augment(PIPELINE, engine="ray", workers=W, concurrency=C, ...)`` — ``C`` requests in flight *per
worker*, so W workers offer W × C. Reported per worker count: rows/s over the whole call (actor pool
start included), the pool's start (until the first output, ``stats.json`` ``ray.first_output_s``), rows/s
after it, requests sent, and the steps' CPU seconds.
Rows: the first ``--rows`` of GSM8K train (repeated with a marker when more are asked).

    .venv/bin/python benchmarks/ray_engine.py --rows 2000 --concurrency 32 --workers 1 2

``--dedup-rows N`` instead measures the driver's global dedup (no Ray, no server): N synthetic GSM8K-like
rows (``benchmarks/dedup.py``'s generator: ~10% near copies, 2% exact copies) as the workers' output
batches — pickled ``(row, outcome records)`` — through the driver's collector: unpickle, exact + MinHash
near dedup in input order, one commit transaction per batch into a real SQLite commit log. Rows/s of
that path is the ceiling of a Ray run whatever the number of workers (the driver is one process).

    .venv/bin/python benchmarks/ray_engine.py --dedup-rows 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PIPELINE = REPO / "pipelines" / "gsm8k_rephrase.yaml"
GSM8K = REPO.parent / "shared" / "data" / "gsm8k" / "train.jsonl"

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from throughput import start_server, write_input  # noqa: E402  (the same loopback server and input rows)


def run_once(rows: Path, out: Path, url: str, workers: int, conc: int) -> dict[str, float]:
    from datafactory import augment

    t0 = time.perf_counter()
    stats = augment(PIPELINE, input=str(rows), output=str(out), base_url=url, concurrency=conc,
                    engine="ray", workers=workers)
    wall = time.perf_counter() - t0
    data = json.loads((out / "stats.json").read_text())
    steps = data.get("steps", {})
    first = data["ray"].get("first_output_s") or 0.0
    return {"rows": stats.rows_done, "wall_s": wall, "rows_per_s_call": stats.rows_done / wall,
            "first_output_s": first, "rows_per_s_after_start": stats.rows_done / max(1e-9, wall - first),
            "rows_per_s_run": data["rows_per_s"], "requests": stats.requests_sent,
            "cpu_s_steps": sum(s.get("seconds", 0.0) for s in steps.values())}


def dedup_bench(n: int, batch: int = 256) -> None:
    import numpy as np
    from dedup import Generator  # type: ignore[import-not-found]

    from datafactory.engine.cache import Cache
    from datafactory.engine.commit import CommitBatcher
    from datafactory.engine.ray.collect import Collector
    from datafactory.engine.ray.worker import dumps
    from datafactory.engine.stats import Stats
    from datafactory.quality.dedup import ExactDedup, NearDedup
    from datafactory.record import Record

    gen = Generator(seed=1)
    stats = Stats()
    with tempfile.TemporaryDirectory(prefix="df-ray-dedup-") as tmp:
        cache = Cache(Path(tmp) / "cache.sqlite")
        commits = CommitBatcher(cache, "fp", stats, max_wait_s=0)
        collect = Collector([ExactDedup(["question"]), NearDedup(["question"], threshold=0.8)], commits, stats)
        busy = 0.0
        done = 0
        while done < n:
            k = min(batch, n - done)
            texts, _ = gen.batch(done, k)
            outs = []
            for i, text in enumerate(texts):
                rec = Record(id=f"r{done + i}", source={}, fields={"question": text, "answer": "#### 1"},
                             meta={"seq": done + i + 1})
                outs.append(dumps((rec, [rec])))
            chunk = {"seq": np.arange(done + 1, done + k + 1), "out": np.array(outs, dtype=object),
                     "stats": np.array([b""] * k, dtype=object)}
            t0 = time.perf_counter()
            collect.take(chunk)
            busy += time.perf_counter() - t0
            done += k
        cache.close()
    print(f"driver dedup: {n} rows in {busy:.1f} s = {n / busy:,.0f} rows/s (unpickle + exact + near dedup + "
          f"commit); written {stats.written}, rejected {dict(stats.rejected)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight per worker")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--gsm8k", type=Path, default=GSM8K, help="GSM8K train.jsonl (question/answer rows)")
    ap.add_argument("--dedup-rows", type=int, help="measure the driver's global dedup on N synthetic rows instead")
    args = ap.parse_args()
    if args.dedup_rows:
        dedup_bench(args.dedup_rows)
        return

    import ray

    os.environ["OPENAI_API_KEY"] = "bench-key"
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    server, url = start_server(args.latency)
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    print(f"ray.init: {time.perf_counter() - t0:.1f} s, {ray.cluster_resources().get('CPU', 0):g} CPUs", flush=True)
    results = {}
    try:
        with tempfile.TemporaryDirectory(prefix="df-ray-bench-") as tmp:
            rows = Path(tmp) / "rows.jsonl"
            write_input(rows, args.rows, args.gsm8k)
            for w in args.workers:
                results[w] = run_once(rows, Path(tmp) / f"run-{w}", url, w, args.concurrency)
                print(f"  workers={w}: {results[w]['rows_per_s_call']:.1f} rows/s", flush=True)
    finally:
        ray.shutdown()
        server.terminate()
        server.wait(timeout=10)
    print(f"\n{args.rows} rows, latency {args.latency * 1000:.0f} ms, {args.concurrency} in flight per worker, "
          f"{os.cpu_count()} CPUs on this machine")
    print(f"{'workers':>8} {'rows/s (call)':>14} {'pool start s':>13} {'rows/s after':>13} {'wall s':>8} "
          f"{'requests':>9} {'step CPU s':>11}")
    for w, r in results.items():
        print(f"{w:>8} {r['rows_per_s_call']:>14.1f} {r['first_output_s']:>13.1f} {r['rows_per_s_after_start']:>13.1f} "
              f"{r['wall_s']:>8.1f} {r['requests']:>9.0f} {r['cpu_s_steps']:>11.2f}")


if __name__ == "__main__":
    main()
