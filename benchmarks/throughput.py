"""Throughput: datafactory augment vs a minimal raw aiohttp client, side by side, one loopback server.

The server runs in its own process (200 ms latency by default). Each round runs the raw client and
then ``datafactory.augment`` (end to end: render, request, SQLite cache, JSON parse, jsonschema
validation, commit log, atomic JSONL export) over the same number of rows at the same concurrency;
rounds alternate so machine noise hits both alike. Prints rows/s per client and the ratio.

    .venv/bin/python benchmarks/throughput.py --rows 2000 --concurrency 100 --latency 0.2 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

REPO = Path(__file__).resolve().parent.parent


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "datafactory.testing.loopback", "--port", "0",
                             "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("LISTENING"):
        raise SystemExit(f"server did not start: {line!r}")
    return proc, line.split()[1]


def write_input(path: Path, rows: int) -> None:
    with path.open("w") as fh:
        for i in range(rows):
            q = f"A baker makes {i} loaves in the morning and {i % 17 + 3} more in the afternoon. How many loaves?"
            fh.write(json.dumps({"question": q, "answer": f"{i} + {i % 17 + 3}\n#### {i + i % 17 + 3}"}) + "\n")


def write_pipeline(tmp: Path, url: str, inp: Path, conc: int, transport: str) -> Path:
    cfg = {
        "name": "bench", "input": {"path": str(inp), "fields": {"question": "question", "answer": "answer"}},
        "prompt": {"template": str(REPO / "prompts/gsm8k_rephrase.yaml")},
        "schema": str(REPO / "schemas/gsm8k_rephrase.json"),
        "provider": {"kind": "openai", "model": "bench-model", "base_url": url, "transport": transport,
                     "params": {"temperature": 0.7, "max_tokens": 512}},
        "limits": {"concurrency": conc, "timeout_s": 30, "max_attempts": 3},
        "output": {"format": "alpaca", "columns": {"instruction": "question", "output": "answer"}},
    }
    path = tmp / f"bench_{transport}.yaml"
    path.write_text(json.dumps(cfg))  # JSON is valid YAML
    return path


async def raw_client(url: str, inp: Path, conc: int) -> float:
    """The baseline: semaphore + POST + JSON decode, nothing else (no parse, no validation, no disk)."""
    rows = [orjson.loads(line) for line in inp.read_bytes().splitlines()]
    sem = asyncio.Semaphore(conc)
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as session:
        async def one(row: dict) -> None:
            body = orjson.dumps({"model": "bench-model", "messages": [{"role": "user", "content": row["question"]}]})
            async with sem, session.post(f"{url}/chat/completions", data=body,
                                         headers={"Authorization": "Bearer x",
                                                  "Content-Type": "application/json"}) as resp:
                data = orjson.loads(await resp.read())
                assert data["choices"]
        await asyncio.gather(*(one(r) for r in rows))
    return len(rows) / (time.perf_counter() - t0)


def datafactory_run(pipeline: Path, out: Path) -> tuple[float, int]:
    from datafactory import augment

    t0 = time.perf_counter()
    stats = augment(pipeline, output=str(out))
    elapsed = time.perf_counter() - t0
    return stats.rows_done / elapsed, stats.written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sdk", action="store_true", help="also measure the openai-SDK transport")
    args = ap.parse_args()
    os.environ["OPENAI_API_KEY"] = "bench-key"
    proc, url = start_server(args.latency)
    results: dict[str, list[float]] = {"raw aiohttp": [], "datafactory (http transport)": []}
    if args.sdk:
        results["datafactory (openai SDK transport)"] = []
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            inp = tmp / "input.jsonl"
            write_input(inp, args.rows)
            pipes = {"datafactory (http transport)": write_pipeline(tmp, url, inp, args.concurrency, "http"),
                     "datafactory (openai SDK transport)": write_pipeline(tmp, url, inp, args.concurrency, "sdk")}
            for r in range(args.rounds):
                results["raw aiohttp"].append(asyncio.run(raw_client(url, inp, args.concurrency)))
                for name in results:
                    if name == "raw aiohttp":
                        continue
                    rps, written = datafactory_run(pipes[name], tmp / f"run-{name[-14:-10]}-{r}")
                    if written != args.rows:
                        raise SystemExit(f"{name}: wrote {written} of {args.rows} rows")
                    results[name].append(rps)
    finally:
        proc.terminate()
        proc.wait()
    ideal = args.concurrency / args.latency if args.latency else float("inf")
    base = statistics.median(results["raw aiohttp"])
    print(f"\n{args.rows} rows, concurrency {args.concurrency}, server latency {args.latency * 1000:.0f} ms, "
          f"{args.rounds} alternating rounds (median); ideal {ideal:.0f} rows/s\n")
    print("| client | rows/s (median) | all rounds | vs raw aiohttp |")
    print("|---|---|---|---|")
    for name, vals in results.items():
        med = statistics.median(vals)
        print(f"| {name} | {med:.0f} | {', '.join(f'{v:.0f}' for v in vals)} | {med / base:.2f} |")


if __name__ == "__main__":
    main()
