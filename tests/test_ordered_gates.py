"""Gates with memory decide in input order: the same input gives the same written rows and the same
duplicate rejects whatever order the responses arrive in; a slow row holds later ones only up to a bound."""

from __future__ import annotations

import json
import random
import re
from typing import Any

from datafactory.engine.ordered import OrderedGates
from datafactory.quality.dedup import ExactDedup
from datafactory.record import Record
from datafactory.testing.loopback import Fault


def _qid(body: dict[str, Any]) -> int:
    return int(re.search(r"\[q(\d+)\]", body["messages"][-1]["content"]).group(1))


def _run(make_project, server, root, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    server.set_fault_fn(lambda i, body: Fault(status=200, delay_s=rng.uniform(0.0, 0.05)))
    proj = make_project(rows=40, limits={"concurrency": 16},
                        quality={"reask": 0, "exact_dedup": {"fields": ["question"]},
                                 "near_dedup": {"fields": ["answer"], "threshold": 0.8}},
                        output={"dir": str(root / f"run{seed}")})
    proj.augment()
    dups = sorted(r["id"] for r in proj.rejects() if r["reason"] in ("duplicate", "near_duplicate"))
    return [r["id"] for r in proj.data()], dups


def test_dedup_verdicts_follow_the_input_order_whatever_the_response_latencies(make_project, server, tmp_path):
    def responder(body: dict[str, Any], k: int) -> str:  # eight distinct answers, five copies of each
        i = _qid(body) % 8
        return json.dumps({"question": f"Problem number {i}: how many apples are left in the basket?",
                           "answer": f"Take {i} away from the {i * 7} apples in the basket.\n#### {i * 6}"})

    server.responder = responder
    written_a, dups_a = _run(make_project, server, tmp_path, seed=1)
    written_b, dups_b = _run(make_project, server, tmp_path, seed=2)
    assert written_a == written_b and dups_a == dups_b
    proj = make_project(rows=40)
    assert written_a == proj.expected_keys()[:8]   # the first copy in input order is the one kept
    assert len(dups_a) == 32


def test_a_slow_row_holds_later_rows_only_up_to_the_bound_then_they_pass_it():
    out: list[str] = []
    gates = OrderedGates([ExactDedup(["q"])], lambda row, outs: out.append(row.id), max_held=3, max_wait_s=0)

    def row(seq: int) -> tuple[Record, list[Record]]:
        rec = Record(id=f"r{seq}", source={}, fields={"q": f"text {seq}"}, meta={"seq": seq})
        return rec, [rec]

    for seq in range(1, 7):
        gates.enter(seq)
    for seq in (2, 3, 4):
        gates.submit(*row(seq))
    assert out == []                              # row 1 is still in flight: 2-4 wait for it
    gates.submit(*row(5))                         # a fourth waiting record: over the bound, the oldest passes
    assert out == ["r2"] and gates.out_of_order == 1
    gates.submit(*row(1))                         # the slow row is decided when it finishes, then the rest
    assert out == ["r2", "r1", "r3", "r4", "r5"]
    gates.submit(*row(6))
    assert out == ["r2", "r1", "r3", "r4", "r5", "r6"] and gates.out_of_order == 1
