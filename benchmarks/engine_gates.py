"""The gates on the engine path: what the shipped gsm8k_rephrase pipeline's gates cost per row, fed the
way the asyncio engine feeds them, with datasketch as the peer for near dedup.

    .venv/bin/python benchmarks/engine_gates.py [--rows 20000] [--batch 64] [--repeat 3] [--datasketch-rows 4000]

The gates are the objects ``engine/gates.py``'s ``build_gates`` makes from ``pipelines/gsm8k_rephrase.yaml``
(empty_fields, length, answer_check, decontaminate with ``inputs``, exact_dedup, near_dedup), and they are
called through the engine's own classes, in an event loop, the way ``engine/scheduler.py`` and
``engine/process.py`` call them:

* the input step (``SourceStep.batch``) on feed batches of 256 input rows: decontamination of the inputs;
* per row, the parsed model object is shaped (``ShapeStep``) and waits in ``GateBatcher`` (micro-batches of
  ``--batch``, in *arrival* order: rows finish in a random order within 256 in flight) for the gates without
  memory, decontamination of the output among them;
* then ``OrderedGates`` (micro-batches of ``--batch`` in *input* order) for exact and near dedup.

Rows: GSM8K train questions (repeated with a ``(Set N.)`` marker past 7,473, as benchmarks/throughput.py
does) whose "rephrase" is the question's words shuffled (the loopback ``gsm8k`` responder's output) with the
reference answer. Mixed in, deterministic for ``--seed``: 2% outputs that are an earlier output with case,
spacing and punctuation changed (exact copies), 8% an earlier output with 1-4 word edits (near copies), 1%
outputs quoting a GSM8K test question, 1% inputs that are a GSM8K test question.

Timed: the process CPU time inside each gate's batch call (``check_batch`` / ``check_sources``), summed over
the run; rows/s is the run's rows over that time (so a gate that sees only survivors is charged per row of
the run, like the pipeline's rows/s). Also the engine's own per-step time (``gates``, ``ordered_gates``:
the batch calls plus the batching around them). Best of ``--repeat`` fresh runs (the box is shared; the
best run is the one least disturbed). numpy is held to one thread.

Peer: datasketch's documented per-row path (``MinHash.update_batch`` of the 3-word shingles, ``MinHashLSH``
16 x 8 query then insert) on the first ``--datasketch-rows`` texts near dedup saw, against our near-dedup
gate on the same texts in micro-batches of ``--batch`` — rows/s and which rows each rejected.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, whatever numpy links against

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datafactory.config.pipeline import load_pipeline  # noqa: E402
from datafactory.engine.gate_batch import GateBatcher  # noqa: E402
from datafactory.engine.gates import Gates, build_gates  # noqa: E402
from datafactory.engine.input_keys import RowKeys, input_record  # noqa: E402
from datafactory.engine.ordered import OrderedGates  # noqa: E402
from datafactory.engine.outcome import is_rejected, reject  # noqa: E402
from datafactory.quality.decontam import builtin_eval_set  # noqa: E402
from datafactory.quality.dedup import NearDedup  # noqa: E402
from datafactory.quality.normalize import normalize_words  # noqa: E402
from datafactory.record import Record  # noqa: E402
from datafactory.steps.shape import ShapeStep  # noqa: E402
from datafactory.steps.source import SourceStep  # noqa: E402

PIPELINE = REPO / "pipelines" / "gsm8k_rephrase.yaml"
GSM8K_TRAIN = REPO.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
FEED = 256  # rows per feed batch (engine/scheduler.py BATCH) and rows in flight


# ---------------------------------------------------------------------------- rows
def make_rows(n: int, seed: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(input row, the model's parsed object) per row, in input order (see the module docstring)."""
    rng = random.Random(seed)
    train = [json.loads(line) for line in GSM8K_TRAIN.read_text().splitlines() if line.strip()]
    test = [json.loads(line)["question"] for line in builtin_eval_set("gsm8k").read_text().splitlines()
            if line.strip()]
    out: list[tuple[dict[str, Any], dict[str, Any]]] = []
    outputs: list[str] = []
    for i in range(n):
        row = dict(train[i % len(train)])
        if i >= len(train):
            row["question"] = f"{row['question']} (Set {i // len(train)}.)"
        roll = rng.random()
        if roll < 0.01:
            row["question"] = test[rng.randrange(len(test))]
        answer = row["answer"].rsplit("####", 1)[-1].strip()
        words = row["question"].split()
        rng.shuffle(words)
        text = "Told differently: " + " ".join(words)
        roll = rng.random()
        if outputs and roll < 0.02:
            src = outputs[rng.randrange(len(outputs))]
            text = "  ".join(w.upper() if k % 5 == 0 else w for k, w in enumerate(src.split())) + " !"
        elif outputs and roll < 0.10:
            text = near_copy(outputs[rng.randrange(len(outputs))], rng)
        elif roll < 0.11:
            text = f"{text} {test[rng.randrange(len(test))]}"
        outputs.append(text)
        out.append((row, {"question": text, "answer": f"Step by step, the numbers give the result.\n#### {answer}"}))
    return out


def near_copy(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(words))
        op = rng.randrange(4)
        if op == 0:
            words[i] = "some"
        elif op == 1 and len(words) > 5:
            del words[i]
        elif op == 2:
            words.insert(i, "then")
        elif i + 1 < len(words):
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


# ---------------------------------------------------------------------------- timing
class Timed:
    """CPU seconds and records seen per gate: its batch methods wrapped on the instance (the gate object
    and every isinstance check on it stay as the engine sees them)."""

    def __init__(self) -> None:
        self.cpu: Counter[str] = Counter()
        self.seen: Counter[str] = Counter()
        self.texts: dict[str, list[list[Any]]] = {}

    def wrap(self, gate: Any, method: str, label: str, keep: bool = False) -> None:
        inner: Callable[..., Any] = getattr(gate, method)

        def timed(items: Any, *rest: Any) -> Any:
            c0 = time.process_time()
            result = inner(items, *rest)
            self.cpu[label] += time.process_time() - c0
            self.seen[label] += len(items) if hasattr(items, "__len__") else 1
            if keep:
                self.texts.setdefault(label, []).append(items)
            return result

        setattr(gate, method, timed)


def built(timer: Timed) -> tuple[Gates, Any]:
    pipe = load_pipeline(PIPELINE)
    gates = build_gates(pipe)
    for gate in gates.source:
        timer.wrap(gate, "check_sources", f"{gate.name} (inputs)")
    for gate in gates.batch:
        timer.wrap(gate, "check_batch" if hasattr(gate, "check_batch") else "check", gate.name)  # check_all's choice
    for gate in gates.ordered:  # inside the ordered step's pass: what each dedup gate's own part costs
        timer.wrap(gate, "check_tokens", f"  {gate.name}: check_tokens", keep=gate.name == "near_dedup")
    return gates, pipe


def timed_ordered(ordered: OrderedGates, timer: Timed) -> None:
    """Time what the ordered step runs per batch (exact then near dedup fused into one pass, or each)."""
    for gate in ordered._run:  # noqa: SLF001 — the gates as the step runs them
        timer.wrap(gate, "check_batch" if hasattr(gate, "check_batch") else "check", gate.name)


async def engine_path(rows: list[tuple[dict[str, Any], dict[str, Any]]], gates: Gates, pipe: Any, batch: int,
                      seed: int, timer: Timed) -> tuple[Counter[str], dict[str, float]]:
    """Every row through the input step, the batch gates and the ordered gates; rejects by reason."""
    rng = np.random.default_rng(seed)
    source = SourceStep(pipe.input.fields, gates.source)
    shape = ShapeStep(pipe.output, gates.needs_object)
    from datafactory.engine.flow import StepStats

    counts = StepStats()
    batcher = GateBatcher(gates.batch, max_size=batch, counts=counts)
    reasons: Counter[str] = Counter()

    def sink(row: Record, outcomes: list[Record]) -> None:
        for rec in outcomes:
            reasons[rec.meta.get("reason", "written") if is_rejected(rec) else "written"] += 1

    ordered = OrderedGates(gates.ordered, sink, counts, max_size=batch, expected_rows=len(rows))  # as the scheduler
    timed_ordered(ordered, timer)
    models = {}

    async def one(row: Record) -> None:
        if is_rejected(row):
            ordered.submit(row, [row])
            return
        sample = Record(id=row.id, source=row.source, fields=models.pop(row.meta["seq"]), meta={})
        records = shape(sample)
        alive = [r for r in records if not is_rejected(r)]
        for rec, verdict in zip(alive, await batcher.check_many(alive), strict=True):
            if verdict is not None:
                reject(rec, "gate", verdict.reason, verdict.detail)
        ordered.submit(row, records)

    keys = RowKeys()
    pending: set[asyncio.Task[None]] = set()
    for lo in range(0, len(rows), FEED):
        todo = []
        for seq, (row, model) in enumerate(rows[lo : lo + FEED], lo + 1):
            key, dup = keys.key(row)
            todo.append(input_record(key, seq, f"input:{seq}", row, dup))
            models[seq] = model
        t0 = time.perf_counter()
        rejected = source.batch(todo)
        counts.add("input", len(todo), rejected, t0)
        for rec in todo:
            ordered.enter(rec.meta["seq"])
        # responses come back in a random order among the rows in flight
        for k in np.argsort(np.arange(len(todo)) + rng.uniform(0, FEED, len(todo))).tolist():
            task = asyncio.ensure_future(one(todo[k]))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.sleep(0)
    while pending:
        await asyncio.gather(*list(pending))
    ordered.close()
    return reasons, {name: c.seconds for name, c in counts.counts.items() if c.taken}


def dedup_gates(timer: Timed) -> list[str]:
    return [k for k in timer.cpu if not k.startswith(" ") and ("exact_dedup" in k or "near_dedup" in k)]


def target_gates(timer: Timed) -> list[str]:
    return ["decontam (inputs)", "decontam", *dedup_gates(timer)]


# ---------------------------------------------------------------------------- the peer
def datasketch_near(texts: list[str]) -> tuple[float, set[int]]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=0.8, num_perm=128, params=(16, 8))
    rejected: set[int] = set()
    c0 = time.process_time()
    for row, text in enumerate(texts):
        words = normalize_words(text)
        m = MinHash(num_perm=128, seed=1)
        m.update_batch([" ".join(words[i : i + 3]).encode() for i in range(max(len(words) - 2, 1))])
        if lsh.query(m):
            rejected.add(row)
            continue
        lsh.insert(str(row), m)
    return time.process_time() - c0, rejected


def ours_near(texts: list[str], batch: int) -> tuple[float, set[int]]:
    gate = NearDedup("question", threshold=0.8)
    rejected: set[int] = set()
    records = [Record(id=f"row:{i}", source={}, fields={"question": t}) for i, t in enumerate(texts)]
    c0 = time.process_time()
    for lo in range(0, len(records), batch):
        for i, verdict in enumerate(gate.check_batch(records[lo : lo + batch]), lo):
            if verdict is not None:
                rejected.add(i)
    return time.process_time() - c0, rejected


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--datasketch-rows", type=int, default=4000, help="0: skip the peer")
    args = ap.parse_args(argv)

    rows = make_rows(args.rows, args.seed)
    runs = []
    for r in range(args.repeat):
        timer = Timed()
        gates, pipe = built(timer)
        reasons, steps = asyncio.run(engine_path(rows, gates, pipe, args.batch, args.seed + r, timer))
        runs.append((sum(timer.cpu[k] for k in target_gates(timer)), timer, reasons, steps))
        print(f"run {r}: " + ", ".join(f"{k} {args.rows / v:,.0f}" for k, v in timer.cpu.items()) + " rows/s",
              file=sys.stderr)
    _, timer, reasons, steps = min(runs, key=lambda run: run[0])
    n = args.rows
    threads, load = os.environ.get("OMP_NUM_THREADS"), os.getloadavg()[0]
    print(f"\n{n} rows of the shipped gsm8k_rephrase gates on the engine path, micro-batches of {args.batch} "
          f"(best of {args.repeat}; OMP_NUM_THREADS={threads}; load {load:.2f})\n")
    print("| gate | records seen | CPU µs per row | rows/s (CPU) |")
    print("|---|---|---|---|")
    for label, cpu in timer.cpu.items():
        print(f"| {label} | {timer.seen[label]} | {cpu / n * 1e6:.1f} | {n / cpu:,.0f} |")
    together = sum(timer.cpu[k] for k in target_gates(timer))
    print(f"| **decontam (inputs + outputs) + exact + near** | | {together / n * 1e6:.1f} | **{n / together:,.0f}** |")
    dedup = sum(timer.cpu[k] for k in dedup_gates(timer))
    print(f"| exact + near | | {dedup / n * 1e6:.1f} | {n / dedup:,.0f} |")
    outputs = dedup + timer.cpu["decontam"]
    print(f"| decontam (outputs) + exact + near | | {outputs / n * 1e6:.1f} | {n / outputs:,.0f} |")
    every = sum(v for k, v in timer.cpu.items() if not k.startswith(" "))
    print(f"| every gate | | {every / n * 1e6:.1f} | {n / every:,.0f} |")
    print("\nengine steps (µs per row, time inside the step incl. batching): "
          + ", ".join(f"{k} {v / n * 1e6:.1f}" for k, v in steps.items()))
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))

    if args.datasketch_rows:
        seen = [tokens.row_text(i) for tokens in timer.texts.get("  near_dedup: check_tokens", [])
                for i in range(len(tokens))]
        texts = seen[: args.datasketch_rows]
        ds_cpu, ds_rej = datasketch_near(texts)
        our_cpu, our_rej = ours_near(texts, args.batch)
        print(f"\nnear dedup alone on the first {len(texts)} texts it saw on the engine path:\n")
        print("| near dedup | rows/s (CPU) | rejected | rejected by both |")
        print("|---|---|---|---|")
        print(f"| datafactory NearDedup, batches of {args.batch} | {len(texts) / our_cpu:,.0f} | {len(our_rej)} "
              f"| {len(our_rej & ds_rej)} |")
        print(f"| datasketch MinHash.update_batch + MinHashLSH 16x8, per row | {len(texts) / ds_cpu:,.0f} "
              f"| {len(ds_rej)} | {len(our_rej & ds_rej)} |")
        print(f"\nspeed-up over datasketch: {ds_cpu / our_cpu:.0f}x")


if __name__ == "__main__":
    main()
