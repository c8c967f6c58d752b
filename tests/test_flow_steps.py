"""The record flow as steps: stats.json counts and times each step; preference / KTO runs tag every
sample with the answer check and run the per-sample gates on every sample before pairing."""

from __future__ import annotations

import json
import re
from typing import Any


def _qid(body: dict[str, Any]) -> int:
    return int(re.search(r"\[q(\d+)\]", body["messages"][-1]["content"]).group(1))


def _paired(make_project, fmt: str, rows: int = 3):
    return make_project(rows=rows, provider={"params": {"temperature": 1.0, "max_tokens": 256, "n": 4}},
                        quality={"reask": 0, "answer_check": {"output_field": "answer", "source_field": "answer"},
                                 "length": {"fields": ["output"], "min_chars": 20}},
                        output={"format": fmt, "columns": {"instruction": "source.question"}})


def _samples(body: dict[str, Any], k: int) -> str:
    """Per row: sample 0 right but short, 1 right, 2 wrong, 3 wrong but short."""
    i = _qid(body)
    right, wrong = i + 3, i + 10
    text = [f"#### {right}", f"Add three to it.\n#### {right}", f"Subtract instead.\n#### {wrong}",
            f"#### {wrong}"][k]
    return json.dumps({"question": "A rephrased question?", "answer": text})


def test_stats_json_counts_and_times_every_step(make_project, server):
    proj = make_project(rows=6, quality={"reask": 0, "length": {"fields": ["question"], "min_chars": 1},
                                         "exact_dedup": {"fields": ["answer"]}})
    proj.rows[5] = {**proj.rows[5], "question": ""}
    proj.set_rows(proj.rows)
    proj.augment()
    steps = proj.stats()["steps"]
    assert steps["input"] == {"in": 6, "rejected": 1, "seconds": steps["input"]["seconds"]}
    assert steps["request"]["in"] == 5 and steps["parse"]["in"] == 5 and steps["shape"]["in"] == 5
    assert steps["gates"]["in"] == 5 and steps["ordered_gates"]["in"] == 5
    assert steps["ordered_gates"]["out_of_order"] == 0
    assert all(s["seconds"] >= 0 for s in steps.values())


def test_preference_runs_the_per_sample_gates_on_every_sample_and_pairs_the_survivors(make_project, server):
    server.responder = _samples
    proj = _paired(make_project, "preference")
    stats = proj.augment()
    assert stats.written == 3
    for row, pair in zip(proj.rows, proj.data(), strict=True):
        i = int(row["qid"][1:])
        assert pair["chosen"] == f"Add three to it.\n#### {i + 3}"
        assert pair["rejected"] == f"Subtract instead.\n#### {i + 10}"
    short = proj.rejects_by_reason()["too_short"]
    assert len(short) == 6 and {r["id"][-2:] for r in short} == {"-0", "-3"}
    assert all(r["stage"] == "gate" for r in short)
    assert proj.stats()["steps"]["gates"]["in"] == 12  # every sample, not the 3 pairs


def test_kto_tags_the_samples_that_passed_the_per_sample_gates(make_project, server):
    server.responder = _samples
    proj = _paired(make_project, "kto", rows=2)
    stats = proj.augment()
    assert stats.written == 4 and dict(stats.rejected) == {"too_short": 4}
    tags = [(r["output"].split("\n")[0], r["kto_tag"]) for r in proj.data()]
    assert tags == [("Add three to it.", True), ("Subtract instead.", False)] * 2


def test_dedup_on_a_property_no_column_writes_keeps_its_memory_across_a_resume(make_project, server):
    """``near_dedup.fields: [question]`` where no output column carries ``question``: what the gate read is
    stored beside the written row, and the resume seeds from it."""
    same = "A farmer has many apples in the orchard and sells some of them at the market every single week"

    def responder(body: dict[str, Any], k: int) -> str:
        i = _qid(body)
        return json.dumps({"question": f"{same} (row {i})", "answer": f"Add.\n#### {i + 3}"})

    server.responder = responder
    proj = make_project(rows=3, quality={"near_dedup": {"fields": ["question"], "threshold": 0.8}},
                        output={"columns": {"qid": "source.qid", "answer": "answer", "question": None}})
    rows = proj.rows
    proj.set_rows(rows[:1])
    assert proj.augment().written == 1
    proj.set_rows(rows)                              # the resume: row 0 is done, rows 1-2 repeat it
    second = proj.augment()
    assert dict(second.rejected) == {"near_duplicate": 2}
    assert [r["qid"] for r in proj.data()] == ["q00000"]
