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

``--dedup-rows N`` also measures global dedup both ways (``ray_dedup``), on the same N synthetic GSM8K-like
rows (``benchmarks/dedup.py``'s generator: ~10% near copies, 2% exact copies) parked in the object store
as the workers' output batches (pickled ``(row, outcome records)``), each into its own SQLite commit log:

* driver: the driver's collector — unpickle, exact + MinHash near dedup in input order, commit;
* shuffle: the keys computed on Ray workers (``map_batches``, as each RowWorker does), streamed to the
  driver and parked, the Ray shuffle, the greedy pass over the candidates, then unpickle + verdict + commit.

Both print their rows/s side by side and whether they kept the same rows (they must).

    .venv/bin/python benchmarks/ray_engine.py --rows 2000 --dedup-rows 1000000
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


def _outputs(n: int, batch: int) -> tuple[list[object], int]:
    """N synthetic GSM8K-like rows as the workers' output batches — pickled ``(row, [record])`` — parked in
    the object store (not timed: in a run they arrive from the workers)."""
    import pyarrow as pa
    import ray
    from dedup import Generator  # type: ignore[import-not-found]

    from datafactory.engine.ray.worker import dumps
    from datafactory.record import Record

    gen = Generator(seed=1)
    refs, done = [], 0
    while done < n:
        k = min(batch, n - done)
        texts, _ = gen.batch(done, k)
        outs = []
        for i, text in enumerate(texts):
            rec = Record(id=f"r{done + i}", source={}, fields={"question": text, "answer": "#### 1"},
                         meta={"seq": done + i + 1})
            outs.append(dumps((rec, [rec])))
        refs.append(ray.put(pa.table({"seq": pa.array(range(done + 1, done + k + 1), pa.int64()),
                                      "out": pa.array(outs, pa.binary()), "stats": pa.array([b""] * k, pa.binary())})))
        done += k
    return refs, done


def _gates() -> list[object]:
    from datafactory.quality.dedup import ExactDedup, NearDedup

    return [ExactDedup(["question"]), NearDedup(["question"], threshold=0.8)]


def _add_keys(batch: dict[str, object], gates: list[object], parts: int) -> dict[str, object]:
    """What a RowWorker does with ray_dedup: shuffle: its output batch's dedup keys (engine/ray/keys.py)."""
    import numpy as np

    from datafactory.engine.ray.keys import key_rows, plan_for, with_parts
    from datafactory.engine.ray.worker import dumps, loads

    plan = plan_for(gates)  # type: ignore[arg-type]
    assert plan is not None
    rows = [loads(blob) for blob in batch["out"]]  # type: ignore[attr-defined]
    keys = [b""] * len(rows)
    keys[-1] = dumps(with_parts(key_rows(plan, [(row.meta["seq"], outs) for row, outs in rows]), parts))
    return {**batch, "keys": np.array(keys, dtype=object)}


def dedup_bench(n: int, workers: int, batch: int = 256) -> dict[str, dict[str, float]]:
    """Global dedup of N rows both ways, on the same parked outputs, each into its own SQLite commit log:
    driver (unpickle + exact + near dedup in input order + commit) and shuffle (keys on the workers,
    streamed in; park; Ray shuffle; greedy pass over the candidates; unpickle + verdicts + commit)."""
    import numpy as np
    import ray

    from datafactory.engine.cache import Cache
    from datafactory.engine.commit import CommitBatcher
    from datafactory.engine.ray.collect import Collector
    from datafactory.engine.ray.keys import plan_for
    from datafactory.engine.ray.shuffle import ShuffleCollector, parts_for
    from datafactory.engine.stats import Stats

    ray.data.DataContext.get_current().execution_options.preserve_order = True  # as a run does
    t0 = time.perf_counter()
    refs, n = _outputs(n, batch)
    print(f"dedup: {n} synthetic rows generated and parked in {time.perf_counter() - t0:.1f} s", flush=True)
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="df-ray-dedup-") as tmp:
        # the driver path
        stats = Stats()
        cache = Cache(Path(tmp) / "driver.sqlite")
        collect = Collector(_gates(), CommitBatcher(cache, "fp", stats, max_wait_s=0), stats)  # type: ignore[arg-type]
        busy = 0.0
        for ref in refs:
            table = ray.get(ref)
            chunk = {name: np.asarray(table[name].to_pylist(), dtype=object) for name in ("out", "stats")}
            chunk["seq"] = table["seq"].to_numpy()
            t = time.perf_counter()
            collect.take(chunk)
            busy += time.perf_counter() - t
        cache.close()
        out["driver"] = {"wall_s": busy, "rows_per_s": n / busy, "written": stats.written,
                         "rejected": sum(stats.rejected.values())}
        print(f"  driver: {n / busy:,.0f} rows/s", flush=True)
        # the shuffle path
        parts = parts_for(n, workers)
        stats2 = Stats()
        cache2 = Cache(Path(tmp) / "shuffle.sqlite")
        plan = plan_for(_gates())  # type: ignore[arg-type]
        assert plan is not None
        scollect = ShuffleCollector(plan, CommitBatcher(cache2, "fp", stats2, max_wait_s=0), stats2, parts)
        keyed = ray.data.from_arrow_refs(refs).map_batches(
            _add_keys, fn_kwargs={"gates": _gates(), "parts": parts}, batch_format="numpy", batch_size=4096,
            concurrency=workers)
        t = time.perf_counter()
        for chunk in keyed.iter_batches(batch_size=None, batch_format="numpy"):
            scollect.take(chunk)
        streamed = time.perf_counter() - t
        scollect.finish()
        wall = time.perf_counter() - t
        cache2.close()
        out["shuffle"] = {"wall_s": wall, "rows_per_s": n / wall, "keys_streamed_s": streamed,
                          "shuffle_s": scollect.shuffle_s, "commit_s": wall - streamed - scollect.shuffle_s,
                          "written": stats2.written, "rejected": sum(stats2.rejected.values()), "parts": parts}
        print(f"  shuffle: {n / wall:,.0f} rows/s", flush=True)
    same = (stats.written, dict(stats.rejected)) == (stats2.written, dict(stats2.rejected))
    print(f"  same kept set: {same} (written {stats.written} / {stats2.written}, rejected {dict(stats.rejected)} / "
          f"{dict(stats2.rejected)})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight per worker")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--gsm8k", type=Path, default=GSM8K, help="GSM8K train.jsonl (question/answer rows)")
    ap.add_argument("--dedup-rows", type=int, default=0, help="also measure global dedup (driver vs shuffle) on N "
                    "synthetic rows")
    ap.add_argument("--skip-throughput", action="store_true", help="only the dedup measurement")
    args = ap.parse_args()

    import ray

    os.environ["OPENAI_API_KEY"] = "bench-key"
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    print(f"ray.init: {time.perf_counter() - t0:.1f} s, {ray.cluster_resources().get('CPU', 0):g} CPUs; "
          f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[int, dict[str, float]] = {}
    dedup: dict[str, dict[str, float]] = {}
    try:
        if not args.skip_throughput:
            server, url = start_server(args.latency)
            try:
                with tempfile.TemporaryDirectory(prefix="df-ray-bench-") as tmp:
                    rows = Path(tmp) / "rows.jsonl"
                    write_input(rows, args.rows, args.gsm8k)
                    for w in args.workers:
                        results[w] = run_once(rows, Path(tmp) / f"run-{w}", url, w, args.concurrency)
                        print(f"  workers={w}: {results[w]['rows_per_s_call']:.1f} rows/s", flush=True)
            finally:
                server.terminate()
                server.wait(timeout=10)
        if args.dedup_rows:
            dedup = dedup_bench(args.dedup_rows, max(args.workers))
    finally:
        ray.shutdown()
    print(f"\n{os.cpu_count()} CPUs on this machine; load after: {os.getloadavg()[0]:.2f}")
    if results:
        print(f"throughput: {args.rows} rows, latency {args.latency * 1000:.0f} ms, {args.concurrency} in flight "
              "per worker")
        print(f"{'workers':>8} {'rows/s (call)':>14} {'pool start s':>13} {'rows/s after':>13} {'wall s':>8} "
              f"{'requests':>9} {'step CPU s':>11}")
        for w, r in results.items():
            print(f"{w:>8} {r['rows_per_s_call']:>14.1f} {r['first_output_s']:>13.1f} "
                  f"{r['rows_per_s_after_start']:>13.1f} {r['wall_s']:>8.1f} {r['requests']:>9.0f} "
                  f"{r['cpu_s_steps']:>11.2f}")
    if dedup:
        print(f"global dedup: {args.dedup_rows} synthetic rows (exact + near on question, threshold 0.8)")
        print(f"{'path':>8} {'rows/s':>10} {'wall s':>8} {'keys in s':>10} {'shuffle s':>10} {'commit s':>9} "
              f"{'written':>9} {'rejected':>9}")
        for name, r in dedup.items():
            print(f"{name:>8} {r['rows_per_s']:>10,.0f} {r['wall_s']:>8.1f} {r.get('keys_streamed_s', 0.0):>10.1f} "
                  f"{r.get('shuffle_s', 0.0):>10.1f} {r.get('commit_s', 0.0):>9.1f} {r['written']:>9.0f} "
                  f"{r['rejected']:>9.0f}")


if __name__ == "__main__":
    main()
