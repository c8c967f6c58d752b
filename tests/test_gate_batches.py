"""Gates on micro-batches give the verdicts the record-at-a-time flow gives for the same arrival order,
and concurrent waiters are answered in batches bounded by size and age."""

from __future__ import annotations

import asyncio
import random

from datafactory.engine.gate_batch import GateBatcher, run_batch
from datafactory.quality.dedup import ExactDedup, NearDedup
from datafactory.quality.filters import LengthFilter
from datafactory.record import Record


def _gates() -> list:
    return [LengthFilter(["q"], min_chars=12), ExactDedup(["q"]), NearDedup(["q"], threshold=0.8)]


def _records(n: int, seed: int) -> list[Record]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(300)]
    base = [" ".join(rng.choices(words, k=30)) for _ in range(n // 3)]
    texts = []
    for _ in range(n):
        pick = rng.random()
        text = rng.choice(base)
        if pick < 0.2:
            text = text.replace("w1 ", "w2 ", 1)      # a near copy
        elif pick < 0.3:
            text = "tiny"                             # rejected by length before any dedup sees it
        texts.append(text)
    return [Record(id=str(i), source={}, fields={"q": t}) for i, t in enumerate(texts)]


def _one_at_a_time(records: list[Record]) -> list:
    gates = _gates()
    out = []
    for rec in records:
        verdict = None
        for gate in gates:
            verdict = gate.check(rec)
            if verdict is not None:
                break
        out.append(verdict)
    return out


def test_batched_verdicts_equal_the_record_at_a_time_verdicts_in_arrival_order():
    records = _records(600, seed=3)
    expected = _one_at_a_time(records)
    gates = _gates()
    got = []
    for start in range(0, len(records), 64):
        got.extend(run_batch(gates, records[start:start + 64]))
    assert [(v.reason if v else None) for v in got] == [(v.reason if v else None) for v in expected]
    assert {v.reason for v in got if v} == {"too_short", "duplicate", "near_duplicate"}


def test_concurrent_waiters_are_answered_in_batches_bounded_by_size_and_age():
    records = _records(200, seed=5)
    expected = [(v.reason if v else None) for v in _one_at_a_time(records)]

    async def run() -> tuple[list, int]:
        batcher = GateBatcher(_gates(), max_size=64, max_wait_s=0.05)
        verdicts = await asyncio.gather(*(batcher.check(r) for r in records))
        return [(v.reason if v else None) for v in verdicts], batcher.batches

    got, batches = asyncio.run(run())
    assert got == expected
    assert batches == 4  # 64 + 64 + 64 by size, the last 8 by age

