"""What the run needs from its input before the first request (row count, exact dedup's against_input
seeding) comes from as few passes as possible: a format without a cheap count gets it from the seeding pass."""

from __future__ import annotations

import csv

from datafactory import augment


def test_a_csv_input_seeded_for_against_input_gets_its_row_count_from_that_pass(make_project):
    proj = make_project(rows=12, quality={"reask": 1, "exact_dedup": {"fields": ["question"],
                                                                     "against_input": ["question"]}})
    path = proj.root / "input.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["qid", "question", "answer"])
        writer.writeheader()
        writer.writerows(proj.rows)
    stats = augment(proj.pipeline, input=str(path))
    assert stats.rows_total == 12 and stats.rows_done == 12  # before: None (a CSV has no cheap count)
    limited = augment(proj.pipeline, input=str(path), limit=5, output=str(proj.root / "run5"))
    assert limited.rows_total == 5
