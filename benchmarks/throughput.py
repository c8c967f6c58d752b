"""Throughput: the shipped gsm8k_rephrase pipeline (every gate on) vs a raw aiohttp client, side by side.

One loopback server in its own process (200 ms latency, ``--responder gsm8k``: a distinct valid rephrase
of every problem, so the gates pass what a real model would). Each round runs, in alternating order, one
fresh process of each client over the same rows at the same concurrency:

* raw aiohttp: semaphore + POST + JSON decode of each row's prompt (no parse, no validation, no disk), on
  asyncio's default loop — what a user would write; the target ratio is against this one;
* raw aiohttp + uvloop (when uvloop is installed): the same client on the loop datafactory runs on, so the
  table also shows datafactory against the best a raw client gets here;
* datafactory: ``datafactory.augment("pipelines/gsm8k_rephrase.yaml", input=…, output=…, base_url=…,
  concurrency=…)`` — only what a user overrides on the command line; every gate, the SQLite cache and
  commit log and the atomic export run as shipped.

Both clocks start before the client imports its library (aiohttp for the raw client, ``datafactory`` for
the other) and reads its rows, so each pays the same kind of start-up (``--clock run``: the raw client's
clock starts after its imports and reading, while datafactory's own lazy imports of aiohttp and numpy
stay timed — how the first tables were measured, which charged those to datafactory alone).

Prints, per concurrency, the median over rounds of rows/s, the ratios, CPU ms per row (the process CPU
time of the run, all threads, over its rows) and peak RSS, and the box's load average before and after;
per run, the time each step of the record flow spent on the event loop per row (``stats.json`` ``steps``).
Rows: the first ``--rows`` of GSM8K train (``--gsm8k``), repeated with a marker when more are asked
(``--rows 100000`` is the RSS-flat check; use a shorter ``--latency`` for it).

    .venv/bin/python benchmarks/throughput.py --rows 7000 --concurrency 256 512 --rounds 3
    .venv/bin/python benchmarks/throughput.py --rows 100000 --concurrency 256 --latency 0.05 --rounds 1 --no-raw
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PIPELINE = REPO / "pipelines" / "gsm8k_rephrase.yaml"
GSM8K = REPO.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "datafactory.testing.loopback", "--port", "0",
                             "--latency", str(latency), "--responder", "gsm8k"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("LISTENING"):
        raise SystemExit(f"server did not start: {line!r}")
    return proc, line.split()[1]


def write_input(path: Path, rows: int, source: Path) -> None:
    base = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    with path.open("w") as fh:
        for i in range(rows):
            row = dict(base[i % len(base)])
            if i >= len(base):  # a repeat is its own row (the input dedup would otherwise skip it)
                row["question"] = f"{row['question']} (Set {i // len(base)}.)"
            fh.write(json.dumps(row) + "\n")


# ---------------------------------------------------------------------------- child processes
def _usage() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def child_raw(url: str, inp: Path, conc: int, uv: bool = False, clock_after_imports: bool = False) -> dict[str, Any]:
    from datafactory.config.pipeline import load_pipeline

    prompt = load_pipeline(PIPELINE).prompt  # a user's script would hold its prompt as a literal: not timed
    cpu0, t0 = _usage()
    import aiohttp
    import orjson

    rows = [orjson.loads(line) for line in inp.read_bytes().splitlines()]
    if clock_after_imports:
        cpu0, t0 = _usage()

    async def run() -> None:
        sem = asyncio.Semaphore(conc)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as session:
            async def one(row: dict[str, Any]) -> None:
                async with sem:
                    body = orjson.dumps({"model": "gpt-4o-mini", "messages": prompt.render(row)})
                    async with session.post(f"{url}/chat/completions", data=body,
                                            headers={"Authorization": "Bearer x",
                                                     "Content-Type": "application/json"}) as resp:
                        assert orjson.loads(await resp.read())["choices"]
            await asyncio.gather(*(one(r) for r in rows))

    if uv:
        import uvloop

        uvloop.run(run())
    else:
        asyncio.run(run())
    cpu1, t1 = _usage()
    return {"rows": len(rows), "written": len(rows), "wall": t1 - t0, "cpu": cpu1 - cpu0}


def child_datafactory(url: str, inp: Path, conc: int, out: Path, clock_after_imports: bool = False) -> dict[str, Any]:
    os.environ["OPENAI_API_KEY"] = "bench-key"
    cpu0, t0 = _usage()
    from datafactory import augment

    if clock_after_imports:
        cpu0, t0 = _usage()
    stats = augment(PIPELINE, input=str(inp), output=str(out), base_url=url, concurrency=conc)
    cpu1, t1 = _usage()
    return {"rows": stats.rows_done, "written": stats.written, "wall": t1 - t0, "cpu": cpu1 - cpu0,
            "rejected": dict(stats.rejected), "steps": stats.sections.get("steps", {}),
            "loop": stats.sections.get("runtime", {}).get("event_loop")}


def run_child(kind: str, url: str, inp: Path, conc: int, out: Path, clock: str = "imports") -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, url, str(inp), str(conc), str(out), clock],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_main(argv: list[str]) -> None:
    kind, url, inp, conc, out, clock = argv
    after = clock == "run"
    if kind in ("raw", "raw-uvloop"):
        result = child_raw(url, Path(inp), int(conc), uv=kind == "raw-uvloop", clock_after_imports=after)
    else:
        result = child_datafactory(url, Path(inp), int(conc), Path(out), clock_after_imports=after)
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps(result))


# ---------------------------------------------------------------------------- driver
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=7000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gsm8k", type=Path, default=GSM8K, help="GSM8K train.jsonl (question/answer rows)")
    ap.add_argument("--no-raw", action="store_true", help="datafactory only (the RSS check)")
    ap.add_argument("--clock", choices=["imports", "run"], default="imports",
                    help="imports (default): each client's clock starts before it imports its library (aiohttp; "
                         "datafactory) and reads its rows; run: after (the raw client's aiohttp import and row "
                         "reading untimed, datafactory's own lazy imports timed: the first tables' method)")
    args = ap.parse_args()
    proc, url = start_server(args.latency)
    raws = ["raw", "raw-uvloop"] if importlib.util.find_spec("uvloop") else ["raw"]
    kinds = ["datafactory"] if args.no_raw else [*raws, "datafactory"]
    load_before = os.getloadavg()
    results: dict[tuple[int, str], list[dict[str, Any]]] = {}
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            inp = tmp / "input.jsonl"
            write_input(inp, args.rows, args.gsm8k)
            for r in range(args.rounds):
                for conc in args.concurrency:
                    order = kinds if r % 2 == 0 else kinds[::-1]
                    for kind in order:
                        res = run_child(kind, url, inp, conc, tmp / f"run-{conc}-{r}", args.clock)
                        if res["rows"] != args.rows:
                            raise SystemExit(f"{kind}: finished {res['rows']} of {args.rows} rows")
                        results.setdefault((conc, kind), []).append(res)
                        print(f"round {r} conc {conc} {kind}: {res['rows'] / res['wall']:.0f} rows/s, "
                              f"{res['cpu'] * 1000 / res['rows']:.2f} ms CPU/row, {res['rss_mb']:.0f} MB, "
                              f"written {res['written']} {res.get('rejected', '')} {res.get('loop') or ''}",
                              file=sys.stderr)
                        if res.get("steps"):  # where the engine's time on the event loop went, per row
                            print("    steps (ms/row on the loop): " + ", ".join(
                                f"{name} {step['seconds'] * 1000 / res['rows']:.3f}"
                                for name, step in res["steps"].items()), file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait()
    load_after = os.getloadavg()
    loops = sorted({str(x.get("loop")) for (_, k), rs in results.items() if k == "datafactory" for x in rs})
    print(f"\n{args.rows} rows, server latency {args.latency * 1000:.0f} ms, {args.rounds} alternating "
          f"rounds (median), clock: {args.clock}; datafactory on {', '.join(loops)}; load average before "
          f"{load_before[0]:.2f} / after {load_after[0]:.2f} (1 min) on {os.cpu_count()} CPUs\n")
    uv = "raw-uvloop" in kinds
    print("| in flight | ideal rows/s | raw aiohttp rows/s | " + ("raw + uvloop rows/s | " if uv else "")
          + "datafactory rows/s | ratio (vs raw) | " + ("ratio vs raw + uvloop | " if uv else "")
          + "CPU ms/row (df / raw" + (" / raw+uv" if uv else "") + ") | peak RSS MB (df / raw) | written |")
    print("|---|---|---|---|---|---|---|---|" + ("---|---|" if uv else ""))
    for conc in args.concurrency:
        df = results[(conc, "datafactory")]
        raw = results.get((conc, "raw"), [])
        rawuv = results.get((conc, "raw-uvloop"), [])

        def med(rs: list[dict[str, Any]], f: Any) -> float:
            return statistics.median(f(x) for x in rs) if rs else float("nan")

        df_rps, raw_rps = med(df, lambda x: x["rows"] / x["wall"]), med(raw, lambda x: x["rows"] / x["wall"])
        df_cpu = med(df, lambda x: x["cpu"] * 1000 / x["rows"])
        raw_cpu = med(raw, lambda x: x["cpu"] * 1000 / x["rows"])
        ratio, ratio_uv = _ratio(df, raw), _ratio(df, rawuv)
        ideal = conc / args.latency if args.latency else float("inf")
        uv_rps = f"{med(rawuv, lambda x: x['rows'] / x['wall']):.0f} | " if uv else ""
        uv_ratio = f"{ratio_uv:.2f} | " if uv else ""
        uv_cpu = f" / {med(rawuv, lambda x: x['cpu'] * 1000 / x['rows']):.2f}" if uv else ""
        print(f"| {conc} | {ideal:.0f} | {raw_rps:.0f} | {uv_rps}{df_rps:.0f} | {ratio:.2f} | {uv_ratio}"
              f"{df_cpu:.2f} / {raw_cpu:.2f}{uv_cpu} "
              f"| {med(df, lambda x: x['rss_mb']):.0f} / {med(raw, lambda x: x['rss_mb']):.0f} "
              f"| {int(med(df, lambda x: x['written']))} |")


def _ratio(df: list[dict[str, Any]], raw: list[dict[str, Any]]) -> float:
    """Median over rounds of datafactory's rows/s over the raw client's of the same round."""
    if not raw:
        return float("nan")
    return statistics.median((a["rows"] / a["wall"]) / (b["rows"] / b["wall"]) for a, b in zip(df, raw, strict=True))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
    else:
        main()
