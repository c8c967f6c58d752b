"""The decontamination index's build shortcuts give exactly what the plain numpy calls gave."""

from __future__ import annotations

import numpy as np

from datafactory.quality.decontam_index import _distinct_pairs, ordinary_words


def test_distinct_pairs_equal_numpy_unique_along_axis():
    rng = np.random.default_rng(3)
    grams = rng.integers(0, 40, 2000).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    rows = rng.integers(0, 30, 2000).astype(np.int64)
    pairs = np.unique(np.stack([grams, rows.astype(np.uint64)]), axis=1)
    got_grams, got_rows = _distinct_pairs(grams, rows)
    assert np.array_equal(got_grams, pairs[0]) and np.array_equal(got_rows, pairs[1].astype(np.int64))
    empty = _distinct_pairs(np.zeros(0, np.uint64), np.zeros(0, np.int64))
    assert len(empty[0]) == len(empty[1]) == 0


def test_ordinary_words_leave_out_capitalised_words_and_any_digit_kind():
    plain = ordinary_words(["apples cost money"])
    assert set(ordinary_words(["Apples cost money x2 x² 3rd"]).tolist()) < set(plain.tolist())
    assert np.array_equal(ordinary_words(["Apples cost money x2 x² 3rd"]), ordinary_words(["cost money"]))
