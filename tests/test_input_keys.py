"""Input rows are keyed by content; a repeat gets ``<key>~n`` however long ago its first copy was read."""

from __future__ import annotations

import random

from datafactory.engine.input_keys import RowKeys, row_key


def test_repeats_are_named_by_their_count_across_the_merges_of_the_seen_set(monkeypatch) -> None:
    monkeypatch.setattr(RowKeys, "RECENT", 8)  # merge into the sorted array every 8 new contents
    rng = random.Random(3)
    rows = [{"question": f"q{rng.randrange(60)}"} for _ in range(500)]
    keys, counts = RowKeys(), {}
    for row in rows:
        key = row_key(row)
        got = keys.key(row)
        if key in counts:
            counts[key] += 1
            assert got == (f"{key}~{counts[key]}", key)
        else:
            counts[key] = 0
            assert got == (key, None)
    assert len(counts) == 60 and len(keys._old) >= 56  # most contents live in the sorted array


def test_the_seen_set_costs_about_eight_bytes_a_distinct_row() -> None:
    keys = RowKeys()
    for i in range(100_000):
        keys.key({"question": f"distinct question {i}"})
    assert keys._old.itemsize * len(keys._old) + 100 * len(keys._recent) < 100_000 * 40
