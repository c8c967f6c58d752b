"""``benchmarks/decontam.py --fit``: the rephrase check's weights, refitted (needs scikit-learn).

Two fits, both on even-numbered rows only (the benchmark table is on the odd ones):

1. the first-stage rephrase score (:data:`datafactory.quality.decontam_score.WEIGHTS`, features
   :meth:`RephraseIndex.features`): positives, each even-numbered GSM8K test question under every
   transformation paired with its own item; negatives, each even-numbered train question under every
   transformation paired with its ``HARD`` best-scoring items. Printed scaled so the positive weights sum to 1.
2. the second stage (:data:`datafactory.quality.decontam_verify.WEIGHTS` and ``THRESHOLD``) on the two
   candidates the shipped first stage retrieves: positives, a test question's own item when it is one of
   them; negatives, both candidates of every train question. The threshold is the highest, over the
   transformations, of the score that ``FP_TARGET`` of the train questions reach — 0.7%, under the 1% target
   by what the rate moved between two halves of train in trials (±0.3 points).

Each is a class-balanced logistic regression. Stage 2 is fitted on the shipped stage 1, so after pasting new
stage-1 weights run ``--fit`` again for stage 2.
"""

from __future__ import annotations

import numpy as np
from decontam_transforms import TRANSFORMS, transform

from datafactory.quality import decontam_verify as verify
from datafactory.quality.decontam_gate import DecontamGate
from datafactory.quality.decontam_score import FEATURES
from datafactory.quality.normalize import tokenize_batch

HARD = 10
FP_TARGET = 0.007


def fit(gate: DecontamGate, test: list[str], train: list[str], names: frozenset[str]) -> None:
    from sklearn.linear_model import LogisticRegression

    index = gate.index
    assert index is not None
    pos, neg, neg_rows = [], [], []
    pos2, neg2 = [], []
    for name in TRANSFORMS:
        rows = list(range(0, len(test), 2))
        texts = [transform(name, test[i], i, names) for i in rows]
        feats = index.features(tokenize_batch(texts))
        pos.append(feats[np.arange(len(rows)), rows])
        second = stage2(gate, texts)
        own = second[0] == np.array(rows)[:, None]
        pos2.append(second[1][own])
        rows = list(range(0, len(train), 2))
        texts = [transform(name, train[i], i, names) for i in rows]
        feats = index.features(tokenize_batch(texts))
        score = feats @ np.ones(feats.shape[2], np.float32)
        top = np.argsort(-score, axis=1)[:, :HARD]
        neg.append(np.take_along_axis(feats, top[:, :, None], axis=1).reshape(-1, feats.shape[2]))
        neg_rows.append(np.repeat(np.arange(len(rows)) + len(neg_rows) * len(rows), HARD))
        neg2.append(stage2(gate, texts)[1])
    x = np.vstack([*pos, *neg])
    y = np.r_[np.ones(sum(map(len, pos))), np.zeros(sum(map(len, neg)))]
    model = LogisticRegression(C=10, class_weight="balanced", max_iter=5000).fit(x, y)
    w = model.coef_[0]
    total = float(w[w > 0].sum())
    print("stage 1 features:", ", ".join(FEATURES))
    print("decontam_score.WEIGHTS =", tuple(round(float(v) / total, 4) for v in w))

    x = np.vstack([*pos2, *(n.reshape(-1, n.shape[2]) for n in neg2)])
    y = np.r_[np.ones(sum(map(len, pos2))), np.zeros(sum(n.shape[0] * n.shape[1] for n in neg2))]
    model = LogisticRegression(C=10, class_weight="balanced", max_iter=5000).fit(x, y)
    w = model.coef_[0] / float(model.coef_[0][model.coef_[0] > 0].sum())
    cut = max(float(np.quantile((n @ w).max(axis=1), 1 - FP_TARGET)) for n in neg2)
    print("stage 2 features:", ", ".join(verify.FEATURES))
    print("decontam_verify.WEIGHTS =", tuple(round(float(v), 4) for v in w))
    print(f"decontam_verify.THRESHOLD = {cut:.3f}  ({FP_TARGET:.1%} FP on the even train rows, worst transformation)")
    for name, p, n in zip(TRANSFORMS, pos2, neg2, strict=True):
        print(f"  {name}: recall {np.sum(p @ w >= cut) / (len(test) + 1) * 2:.3f}, "
              f"FP {np.mean((n @ w).max(axis=1) >= cut):.4f} (even rows)")


def stage2(gate: DecontamGate, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each text's two first-stage candidates and their stage-2 features: (rows, 2), (rows, 2, features)."""
    index = gate.index
    assert index is not None
    tokens = tokenize_batch(texts)
    items, first = index.best(tokens, 2)
    mine = verify.row_shapes(tokens, index.masked_counts(tokens), texts, np.arange(len(texts)))
    return items, verify.features(gate.shapes, mine, items, first)
