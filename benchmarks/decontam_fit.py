"""``benchmarks/decontam.py --fit``: the rephrase score's weights, refitted (needs scikit-learn).

Features per (text, eval item) pair: :meth:`RephraseIndex.features`. Positives: each even-numbered
GSM8K test question under every transformation, paired with its own item. Negatives: each
even-numbered train question under every transformation, paired with its ``HARD`` best-scoring items.
A class-balanced logistic regression; the weights are printed scaled so that the positive ones sum to 1,
and the threshold at 1% false positives on those negatives (each negative text scored by its best item).
"""

from __future__ import annotations

import numpy as np
from decontam_transforms import TRANSFORMS, transform

from datafactory.quality.decontam_gate import DecontamGate
from datafactory.quality.decontam_score import FEATURES
from datafactory.quality.normalize import tokenize_batch

HARD = 10


def fit(gate: DecontamGate, test: list[str], train: list[str], names: frozenset[str]) -> None:
    from sklearn.linear_model import LogisticRegression

    index = gate.index
    assert index is not None
    pos, neg, neg_rows = [], [], []
    for name in TRANSFORMS:
        rows = list(range(0, len(test), 2))
        feats = index.features(tokenize_batch([transform(name, test[i], i, names) for i in rows]))
        pos.append(feats[np.arange(len(rows)), rows])
        rows = list(range(0, len(train), 2))
        feats = index.features(tokenize_batch([transform(name, train[i], i, names) for i in rows]))
        score = feats @ np.ones(feats.shape[2], np.float32)
        top = np.argsort(-score, axis=1)[:, :HARD]
        neg.append(np.take_along_axis(feats, top[:, :, None], axis=1).reshape(-1, feats.shape[2]))
        neg_rows.append(np.repeat(np.arange(len(rows)) + len(neg_rows) * len(rows), HARD))
    x = np.vstack([*pos, *neg])
    y = np.r_[np.ones(sum(map(len, pos))), np.zeros(sum(map(len, neg)))]
    model = LogisticRegression(C=10, class_weight="balanced", max_iter=5000).fit(x, y)
    w, b = model.coef_[0], model.intercept_[0]
    negs = np.vstack(neg) @ w
    best = np.full(int(np.concatenate(neg_rows).max()) + 1, -np.inf)
    np.maximum.at(best, np.concatenate(neg_rows), negs)
    cut = float(np.quantile(best, 0.99))
    total = float(w[w > 0].sum())
    print("features:", ", ".join(FEATURES))
    print("WEIGHTS =", tuple(round(float(v) / total, 4) for v in w))
    print(f"threshold at 1% FP (even rows): {cut / total:.3f}  (intercept {b / total:.3f})")
    for name, p in zip(TRANSFORMS, pos, strict=True):
        print(f"  {name}: recall at that threshold {np.mean(p @ w >= cut):.3f}")
