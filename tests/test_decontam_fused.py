"""Decontamination's fast paths (issue 11 speed): the fused one-pass score and the swap re-sort give what the
term-by-term definitions give, on shipped GSM8K test items rephrased a few ways (rows reordered, words shuffled,
names swapped) and on unrelated text."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from datafactory.quality.decontam import DATA_DIR
from datafactory.quality.decontam_gate import DecontamGate
from datafactory.quality.decontam_score import WEIGHTS
from datafactory.quality.normalize import tokenize_batch


@pytest.fixture(scope="module")
def gate() -> DecontamGate:
    return DecontamGate(fields="question", eval_sets=["gsm8k"])


def _texts() -> list[str]:
    with (DATA_DIR / "gsm8k" / "test.jsonl").open(encoding="utf-8") as f:
        items = [json.loads(line)["question"] for _, line in zip(range(150), f, strict=False)]
    rng = random.Random(5)
    texts = []
    for i, text in enumerate(items):
        words = text.split()
        if i % 3 == 1:
            rng.shuffle(words)
        elif i % 3 == 2:
            words = ["Zoltan" if w[:1].isupper() and w.isalpha() else w for w in words]
        texts.append(" ".join(words))
    return texts + ["", "the weather in Lisbon", "a b c d e f g h i j k l m n o p", "7 8 9"]


def test_the_one_pass_rephrase_score_is_the_weighted_sum_of_the_features(gate: DecontamGate) -> None:
    assert gate.index is not None
    tokens = tokenize_batch(_texts())
    fused = gate.index.scores(tokens)
    by_feature = np.tensordot(gate.index.features(tokens).astype(np.float64), np.asarray(WEIGHTS), axes=([2], [0]))
    assert fused.shape == (len(_texts()), gate.items)
    np.testing.assert_allclose(fused, by_feature, atol=2e-6)
    own = fused[:150].argmax(axis=1)
    assert (own == np.arange(150)).mean() > 0.95  # a rephrased item still finds itself


def test_the_two_verified_candidates_come_best_first_as_a_stable_sort_orders_them(gate: DecontamGate) -> None:
    assert gate.index is not None
    texts = _texts()
    tokens = tokenize_batch(texts)
    items, first = gate.index.best(tokens, 2)
    before = items.copy()
    scores = gate.verify(tokens, texts, items, first)
    assert (scores[:, 0] >= scores[:, 1]).all()
    swapped = (items != before).any(axis=1)
    assert swapped.any()  # some runner-up overtakes on shape
    assert (items[swapped] == before[swapped, ::-1]).all()
    assert (scores[swapped, 1] < scores[swapped, 0]).all()  # ties keep the first-stage order
    stays = ~swapped & (first[:, 0] >= gate.floor)
    assert (items[stays] == before[stays]).all()
