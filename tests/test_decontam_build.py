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


def _plain_reference(text: str) -> str:
    return " ".join(t for t in text.split() if not t[:1].isupper() and not any(map(str.isdigit, t)))


def test_plain_words_of_ascii_texts_equal_the_word_by_word_rule():
    from datafactory.quality.decontam import eval_set_path, load_eval_set
    from datafactory.quality.decontam_index import _plain

    rng = np.random.default_rng(11)
    alphabet = list("aZ9 \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f.,'$-_x²é")  # every ASCII space str.split knows, and non-ASCII
    texts = ["".join(rng.choice(alphabet, int(rng.integers(0, 40)))) for _ in range(5000)]
    texts += [t for _, t in load_eval_set(eval_set_path("gsm8k"), "question")]
    texts += ["", " ", "a", "A", "1", "a1 b", " lead trail ", "x\x1cY\x1fz 3rd", "Zoe's apples cost $5."]
    assert any(t.isascii() for t in texts) and not all(t.isascii() for t in texts)
    assert [_plain(t) for t in texts] == [_plain_reference(t) for t in texts]
