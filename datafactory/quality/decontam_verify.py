"""The second stage of the rephrase check: does a text have the *shape* of the eval item it is nearest to?

The rephrase score (:mod:`datafactory.quality.decontam_score`) ranks every eval item against a text; a
rephrasing's own item comes first ~99.7% of the time even when names, numbers, sentence order and most
content words changed, but its score can fall to that of a different question of the same genre ("Kyle is
5 years older than Julian ..." against "Trent is 5 years older than Jane ..."). What a rewording keeps
and such a neighbour does not is the problem's shape: as many words, as many names/numbers/rare words,
as many quantities (words that start with a digit — a problem needs all its givens) and as many sentences, and
one item standing out from the rest. So for its two best items only, each text gets

* ``s``: the rephrase score of the item;
* ``words``, ``masked``, ``quantities``, ``sentences``: min/max ratios of those counts, text against item;
* ``margin``: the item's score minus the best other item's (negative for the runner-up),

and the verdict is their weighted sum, scaled so that the largest possible sum is 1. The weights and the
threshold come from a class-balanced logistic regression on GSM8K (``benchmarks/decontam.py --fit``:
even-numbered test rows transformed as positives, even-numbered train rows as negatives; the benchmark
table is on the odd rows). A text whose best score is so low that no shape could lift it to the
threshold (``floor``) is decided at once: most unrelated texts stop after the first stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from datafactory.quality.normalize import I64, TokenBatch

FEATURES = ("s", "words", "masked", "quantities", "sentences", "margin")
# fitted by benchmarks/decontam.py --fit (scaled: the weights sum to 1, so the score is at most 1)
WEIGHTS = (0.2759, 0.1505, -0.0028, 0.1942, 0.1811, 0.1984)
THRESHOLD = 0.570

Matrix = npt.NDArray[np.float64]


def sentences(text: str) -> int:
    """Sentences in ``text``: a . ! ? before a space, a line break or the end (at least 1)."""
    return int(sentence_counts([text])[0])


def sentence_counts(texts: Sequence[str]) -> I64:
    """:func:`sentences` of many texts in one numpy pass over their UTF-8 bytes."""
    parts = [t.rstrip() for t in texts]
    lens = np.fromiter((len(p) if p.isascii() else len(p.encode()) for p in parts), np.int64, len(parts))
    buf = np.frombuffer(("\n".join(parts) + "\n").encode(), np.uint8)  # each text ends at a line break
    head, tail = buf[:-1], buf[1:]
    mark = (head == ord(".")) | (head == ord("?")) | (head == ord("!"))
    ends = np.flatnonzero(mark & ((tail == ord(" ")) | (tail == ord("\n"))))
    starts = np.zeros(len(parts) + 1, np.int64)
    np.cumsum(lens + 1, out=starts[1:])
    rows = np.searchsorted(starts, ends, side="right") - 1
    return np.maximum(np.bincount(rows, minlength=len(parts)), 1).astype(np.int64)


def digit_words(tokens: TokenBatch) -> I64:
    """Per row: its words that start with a digit (the quantities a problem gives: "3", "2.5", "$40")."""
    buf = np.frombuffer(tokens.text, np.uint8)
    if not len(buf):
        return np.zeros(len(tokens), np.int64)
    start = np.empty(len(buf), np.bool_)
    start[0] = True
    start[1:] = buf[:-1] == 0x20
    starts = tokens.text_offsets[:-1]
    start[starts[starts < len(buf)]] = True  # each row's first byte (rows are not separated in ``text``)
    pos = np.flatnonzero(start & (buf >= 0x30) & (buf <= 0x39))
    rows = np.searchsorted(tokens.text_offsets, pos, side="right") - 1
    return np.bincount(rows, minlength=len(tokens)).astype(np.int64)


class Shapes:
    """Per eval item: words, masked words, quantities, sentences (the counts a rephrasing keeps)."""

    def __init__(self, tokens: TokenBatch, masked: I64, texts: Sequence[str]) -> None:
        self.counts = row_shapes(tokens, masked, texts, np.arange(len(tokens)))


def row_shapes(tokens: TokenBatch, masked: I64, texts: Sequence[str], rows: I64) -> Matrix:
    """(len(rows), 4) counts of ``rows``: words, ``masked`` (per row of ``tokens``), quantities, sentences."""
    out = np.empty((len(rows), 4), np.float64)
    out[:, 0] = tokens.word_counts()[rows]
    out[:, 1] = masked[rows]
    out[:, 2] = digit_words(tokens)[rows]
    out[:, 3] = sentence_counts([texts[r] for r in rows.tolist()])
    return out


def ratio(a: Matrix, b: Matrix) -> Matrix:
    """min/max of two counts, element-wise (1.0 when both are 0)."""
    high = np.maximum(a, b)
    return np.where(high > 0, np.minimum(a, b) / np.maximum(high, 1), 1.0)


def features(shapes: Shapes, mine: Matrix, items: I64, scores: npt.NDArray[np.float32]) -> Matrix:
    """(rows, k, FEATURES) for each row's ``k`` candidate ``items`` (best first) with their ``scores``;
    ``mine``: the rows' counts (:func:`row_shapes`). The margin is against the best other candidate (0 with
    a single candidate: an eval set of one item)."""
    s = scores.astype(np.float64)
    runner_up = s[:, 1:2] if s.shape[1] > 1 else np.zeros((len(s), 1))
    best_other = np.where(np.arange(s.shape[1])[None, :] == 0, runner_up, s[:, :1])
    shape = ratio(mine[:, None, :], shapes.counts[items])
    return np.concatenate([s[:, :, None], shape, (s - best_other)[:, :, None]], axis=2)


def verdict_scores(feats: Matrix, weights: Sequence[float] = WEIGHTS) -> Matrix:
    return np.asarray(feats @ np.asarray(weights, np.float64))


def floor(threshold: float = THRESHOLD, weights: Sequence[float] = WEIGHTS) -> float:
    """The best first-stage score below which no text reaches ``threshold`` (every shape ratio 1, the
    margin at most the score itself)."""
    w = dict(zip(FEATURES, weights, strict=True))
    lift = sum(max(w[f], 0.0) for f in ("words", "masked", "quantities", "sentences"))
    return (threshold - lift) / max(w["s"] + max(w["margin"], 0.0), 1e-9)
