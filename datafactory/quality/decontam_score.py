"""The rephrase score: how likely a text is a rephrasing of an eval item, for every (text, item) pair.

Features (each in [0, 1], from :mod:`datafactory.quality.decontam_index`, words masked so that names and
numbers do not count as wording):

* ``c3``, ``c2``, ``c1``: idf-weighted containment of the item's masked word 3-, 2- and 1-grams in the text;
* ``names``: containment of the item's own names, numbers and rare words (what a rewording keeps);
* ``r2``, ``r1``: the share of the text's 2-grams and words that the item has (low when a long text merely
  contains a short item's stock phrases, "is 5 years older than").

The score is their weighted sum. The weights come from a class-balanced logistic regression
(``benchmarks/decontam.py --fit``) on GSM8K: test questions rephrased seven ways (positives) against train
questions rephrased the same ways (negatives), even-numbered rows only. The score ranks the eval items;
the verdict on the two best is :mod:`datafactory.quality.decontam_verify`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from datafactory.quality.decontam_index import (
    GramIndex,
    KeyTable,
    MergedGrams,
    WordIndex,
    mask_tokens,
    ordinary_words,
)
from datafactory.quality.normalize import I64, U64, TokenBatch, mix64, tokenize_batch
from datafactory.quality.shingle import WordRuns

FEATURES = ("c3", "c2", "c1", "names", "r2", "r1")
WEIGHTS = (0.2304, -0.0081, 0.0949, 0.1036, 0.4017, 0.1693)
MAX_CELLS = 1 << 19  # text rows x eval items scored per numpy pass
_POSTING = np.dtype([("base", "<f8"), ("item", "<i8")])
_PER_KEY = np.dtype([("cell", "<i8"), ("term", "<f8"), ("shift", "<i8")])


class RephraseIndex:
    """Scores texts against eval items by the rephrase score; one pass of matrix work per batch."""

    def __init__(self, texts: Sequence[str], weights: Sequence[float] = WEIGHTS) -> None:
        if len(weights) != len(FEATURES):
            raise ValueError(f"one weight per feature {FEATURES}, got {len(weights)}")
        self.weights = tuple(float(w) for w in weights)
        self.items = len(texts)
        self.ordinary = ordinary_words(texts)
        self._ordinary = KeyTable(self.ordinary)
        raw = tokenize_batch(list(texts))
        self.masked = mask_tokens(raw, self.inside(raw))  # the items' masked words (for lcs_ratio)
        self.c3, self.c2 = GramIndex(3, max_df=0.02), GramIndex(2, max_df=0.02)
        self.c3.build(self.masked)
        self.c2.build(self.masked)
        self.words = WordIndex(max_df=0.02)
        self.words.build(raw, self.ordinary)
        # one table for both questions asked of each word: ordinary? and its key in the word index
        known = np.union1d(self.ordinary, self.words.grams.keys)
        self._known = KeyTable(known)
        self._known_ordinary = np.isin(known, self.ordinary)
        at = np.searchsorted(self.words.grams.keys, known)
        at = np.minimum(at, max(len(self.words.grams.keys) - 1, 0))
        held = self.words.grams.keys[at] == known if len(self.words.grams.keys) else np.zeros(len(known), np.bool_)
        self._known_key = np.where(held, at, -1)
        self._last: tuple[TokenBatch, tuple[npt.NDArray[np.bool_], I64]] | None = None
        self._rows: tuple[TokenBatch, I64] | None = None
        self._build_identity(raw)  # each item's names, numbers and rare words
        w3, w2, w1, wn, wr2, wr1 = self.weights  # what each posting adds to its cell's score
        # the 3- and 2-gram postings of a batch found in one pass; a 2-gram posting also adds to ``r2``
        self._grams23 = MergedGrams([self.c3, self.c2])
        self._post23 = np.concatenate([w3 * self.c3.post_share, w2 * self.c2.post_share])
        self._is2 = np.arange(len(self._post23)) >= self._grams23.first_of[1]
        self._post1 = w1 * self.words.share_ord + wn * self.words.share_name
        self._post1_count = wr1 * self.words.post_count
        # the 3-, 2-gram and word postings as one CSR (word keys after the n-gram keys): a batch's distinct
        # (row, key) pairs of all three are sorted, de-duplicated and expanded once. A posting's weight is
        # ``base + num / den``, ``den`` the row's 2-grams (class 0) or words (class 1): the same float
        # operations as term by term, and per (row, item) the same postings in the same order
        words = self.words.grams
        self._keys23 = len(self._grams23.keys)
        self._keys_all = self._keys23 + len(words.keys)
        self._offsets = np.concatenate((self._grams23.offsets, words.offsets[1:] + self._grams23.offsets[-1]))
        self._lens = np.diff(self._offsets)
        # per posting its weight's base and its item, side by side (one gather)
        self._postings = np.empty(len(self._offsets) - 1 and int(self._offsets[-1]), _POSTING)
        self._postings["base"] = np.concatenate((self._post23, self._post1))
        self._postings["item"] = np.concatenate((self._grams23.items, words.items))
        # per key: ``num`` (wr2 for a 2-gram, 0 for a 3-gram, wr1 for an ordinary word, 0 for a name) and
        # the class of ``den``; a posting's ``num`` is its key's (``_is2``, ``post_count`` are per key)
        is2_key = np.arange(self._keys23) >= len(self.c3.keys)
        self._key_num = np.concatenate((np.where(is2_key, wr2, 0.0), wr1 * self.words.ordinary_key.astype(np.float64)))
        self._key_class = np.concatenate((np.zeros(self._keys23, np.int64), np.ones(len(words.keys), np.int64)))

    def masked_of(self, tokens: TokenBatch) -> TokenBatch:
        """``tokens`` as the index reads them: names, numbers and rare words masked."""
        return mask_tokens(tokens, self.inside(tokens))

    def lookup(self, tokens: TokenBatch) -> tuple[npt.NDArray[np.bool_], I64]:
        """Per word of ``tokens``: ordinary (kept by the mask)? and its key in the word index (-1: none).
        The last batch's answer is kept: the gate asks again about the same batch (``identity``)."""
        if self._last is not None and self._last[0] is tokens:
            return self._last[1]
        found = self._lookup(tokens)
        self._last = (tokens, found)
        return found

    def rows_of(self, tokens: TokenBatch) -> I64:
        """The row of each word of ``tokens`` (kept for the last batch, like :meth:`lookup`)."""
        if self._rows is not None and self._rows[0] is tokens:
            return self._rows[1]
        rows = np.repeat(np.arange(len(tokens)), tokens.word_counts())
        self._rows = (tokens, rows)
        return rows

    def _lookup(self, tokens: TokenBatch) -> tuple[npt.NDArray[np.bool_], I64]:
        at = self._known.find(tokens.word_hashes)
        known = at >= 0
        inside = np.zeros(len(at), np.bool_)
        key = np.full(len(at), -1, np.int64)
        inside[known] = self._known_ordinary[at[known]]
        key[known] = self._known_key[at[known]]
        return inside, key

    def inside(self, tokens: TokenBatch) -> npt.NDArray[np.bool_]:
        """Which words of ``tokens`` are ordinary (kept by the mask)."""
        return self._ordinary.find(tokens.word_hashes) >= 0

    def _oov_words(self, tokens: TokenBatch, rows: I64) -> tuple[I64, U64]:
        """The distinct (row, word) pairs of ``rows`` whose word is not ordinary (names, numbers, rare words),
        by word."""
        inside = self.lookup(tokens)[0]
        row_of = self.rows_of(tokens)
        wanted = np.zeros(len(tokens), np.bool_)
        wanted[rows] = True
        pick = np.flatnonzero(wanted[row_of] & ~inside)
        r, w = row_of[pick], tokens.word_hashes[pick]
        order = np.argsort(w, kind="stable")  # by word, rows ascending within a word: equal pairs adjacent
        r, w = r[order], w[order]
        first = np.concatenate((r[:1] == r[:1], (r[1:] != r[:-1]) | (w[1:] != w[:-1])))
        return r[first], w[first]

    def masked_counts(self, tokens: TokenBatch) -> I64:
        """Per row: how many of its words the mask hides (names, numbers, rare words)."""
        inside = self.lookup(tokens)[0]
        return np.bincount(self.rows_of(tokens)[~inside], minlength=len(tokens)).astype(np.int64)

    def _build_identity(self, raw: TokenBatch) -> None:
        rows, words = self._oov_words(raw, np.arange(len(raw)))
        self._item_words = KeyTable(np.unique(_salted(words, rows)))
        self._item_oov = np.bincount(rows, minlength=len(raw))

    def identity(self, tokens: TokenBatch, rows: I64, candidates: I64) -> tuple[I64, npt.NDArray[np.float64]]:
        """For ``rows`` of ``tokens`` and their ``candidates`` (items, one row of them each): how many names,
        numbers and rare words row and item share, and the Jaccard of the two sets."""
        shared = np.zeros(candidates.shape, np.int64)
        if not len(rows):
            return shared, np.zeros(candidates.shape, np.float64)
        r, w = self._oov_words(tokens, rows)
        position = np.full(len(tokens), -1, np.int64)
        position[rows] = np.arange(len(rows))
        pos = position[r]
        mine = np.bincount(pos, minlength=len(rows))
        for c in range(candidates.shape[1]):
            items = candidates[pos, c]
            hit = (items >= 0) & (self._item_words.find(_salted(w, np.maximum(items, 0))) >= 0)
            shared[:, c] = np.bincount(pos[hit], minlength=len(rows))
        theirs = self._item_oov[np.maximum(candidates, 0)]
        union = mine[:, None] + theirs - shared
        return shared, np.where(union > 0, shared / np.maximum(union, 1), 0.0)

    def parts(self, tokens: TokenBatch) -> list[npt.NDArray[np.float32]]:
        """The features, in ``FEATURES`` order, each a (rows, items) matrix."""
        masked = mask_tokens(tokens, self.inside(tokens))
        c3 = self.c3.dense(masked)
        c2, r2 = self.c2.dense_both(masked)
        c1, names, r1 = self.words.dense3(tokens)
        return [c3, c2, c1, names, r2, r1]

    def features(self, tokens: TokenBatch) -> npt.NDArray[np.float32]:
        """(rows, items, features) for fitting the weights."""
        return np.stack(self.parts(tokens), axis=2)

    def scores(self, tokens: TokenBatch) -> npt.NDArray[np.float32]:
        """(rows, items) rephrase scores of each row of ``tokens`` (normalised words) against each item:
        ``features(tokens) @ weights``, every term summed by one ``bincount`` over the postings."""
        step = max(1, MAX_CELLS // max(self.items, 1))
        if step >= len(tokens):
            return self._scores(tokens)
        out = np.zeros((len(tokens), self.items), np.float32)
        for lo in range(0, len(tokens), step):
            part = tokens if step >= len(tokens) else tokens.select(np.arange(lo, min(lo + step, len(tokens))))
            out[lo : lo + len(part)] = self._scores(part)
        return out

    def _scores(self, tokens: TokenBatch) -> npt.NDArray[np.float32]:
        rows_n, cells = len(tokens), len(tokens) * self.items
        inside, word_keys = self.lookup(tokens)
        masked = mask_tokens(tokens, inside)
        grams, gram_rows = self._grams23._grams(masked, WordRuns(masked))
        at = self._grams23.table.find(grams)
        found, known = np.flatnonzero(at >= 0), np.flatnonzero(word_keys >= 0)
        width = self._keys_all
        codes = np.concatenate((gram_rows[found] * width + at[found],
                                self.rows_of(tokens)[known] * width + (word_keys[known] + self._keys23)))
        if not len(codes):
            return np.zeros((rows_n, self.items), np.float32)
        codes.sort()
        codes = codes[np.concatenate((codes[:1] == codes[:1], codes[1:] != codes[:-1]))]  # distinct (row, key)
        rows, key = codes // width, codes % width
        lens = self._lens[key]
        ends = np.cumsum(lens)
        counts = tokens.word_counts()
        den = np.concatenate((np.maximum(counts - 1, 1), np.maximum(counts, 1)))  # per row: its 2-grams, words
        # per (row, key): its first cell, its row term and where its postings start, repeated once per posting
        # in one call (three repeats of plain arrays cost ~3.5x more)
        per_key = np.empty(len(key), _PER_KEY)
        per_key["cell"] = rows * self.items
        per_key["term"] = self._key_num[key] / den[self._key_class[key] * rows_n + rows]
        per_key["shift"] = self._offsets[key] - (ends - lens)
        each = np.repeat(per_key, lens)
        postings = self._postings.take(np.arange(int(ends[-1])) + each["shift"])
        weights = postings["base"] + each["term"]
        linear = np.bincount(each["cell"] + postings["item"], weights=weights, minlength=cells)
        return linear.reshape(rows_n, self.items).astype(np.float32)

    def best(self, tokens: TokenBatch, top: int = 1) -> tuple[I64, npt.NDArray[np.float32]]:
        """The ``top`` items of highest score per row, best first: (items, scores), each (rows, top)."""
        matrix = self.scores(tokens)
        top = min(top, self.items)
        if not top:
            return np.zeros((len(tokens), 0), np.int64), np.zeros((len(tokens), 0), np.float32)
        if top <= 2:  # one or two argmax passes: cheaper than a partition of every row
            first = matrix.argmax(axis=1)
            if top == 1:
                items = first[:, None]
            else:
                rows = np.arange(len(matrix))
                kept = matrix[rows, first].copy()
                matrix[rows, first] = -np.inf
                second = matrix.argmax(axis=1)
                matrix[rows, first] = kept
                items = np.stack([first, second], axis=1)
        else:
            part = np.argpartition(-matrix, top - 1, axis=1)[:, :top]
            order = np.argsort(-np.take_along_axis(matrix, part, axis=1), axis=1, kind="stable")
            items = np.take_along_axis(part, order, axis=1)
        return items.astype(np.int64), np.take_along_axis(matrix, items, axis=1)


def _salted(words: U64, items: I64) -> U64:
    """One hash per (item, word): the table of every item's names, numbers and rare words."""
    return mix64(words ^ mix64(items.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)))
