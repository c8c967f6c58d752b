"""Hashes of word runs: the shingles near dedup compares and the n-grams decontamination looks up.

Both start from a :class:`~datafactory.quality.normalize.TokenBatch`'s 64-bit word hashes, so
neither touches text again, and both hash a run from its words' hashes alone: the same run has the
same hash in every batch and process.
"""

from __future__ import annotations

import functools

import numpy as np

from datafactory.quality.normalize import I64, U64, TokenBatch, mix64


@functools.cache
def _position_weights(k: int) -> list[np.uint64]:
    # odd, so each word's contribution is a bijection of its hash; distinct, so order matters
    out, state = [], 0xA0761D6478BD642F
    for _ in range(k):
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        out.append(np.uint64(state | 1))
    return out


def shingle_hashes(batch: TokenBatch, k: int) -> tuple[U64, I64]:
    """64-bit hashes of each row's word k-grams, and per-row offsets into them.

    A row with fewer than ``k`` words (but at least one) gets one shingle of all its words, so
    short texts can still be compared; an empty row gets none. A shingle's hash is a weighted sum
    of its word hashes (mod 2**64) put through the finaliser. Without short rows the sums are
    taken over the batch's whole word array at once (``k`` shifted slices) and the runs that cross
    a row's end are dropped; that costs a third of gathering each shingle's words.
    """
    words, counts = batch.word_hashes, batch.word_counts()
    if ((counts > 0) & (counts < k)).any():
        return _shingle_hashes_gathered(batch, k)
    weights = _position_weights(k)
    m = max(len(words) - k + 1, 0)
    acc = words[:m] * weights[0]
    for t in range(1, k):
        acc += words[t : t + m] * weights[t]
    per_row = np.maximum(counts - (k - 1), 0)
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(per_row, out=offsets[1:])
    if k > 1 and m:
        # a run starting in the last k - 1 words of a row reaches into the next one
        valid = np.ones(m, np.bool_)
        ends = batch.word_offsets[1:][counts > 0]
        for t in range(1, k):
            at = ends - t
            valid[at[at < m]] = False
        acc = acc[valid]
    return mix64(acc), offsets


def _shingle_hashes_gathered(batch: TokenBatch, k: int) -> tuple[U64, I64]:
    """:func:`shingle_hashes` by gathering each shingle's words (handles rows shorter than ``k``)."""
    words, counts = batch.word_hashes, batch.word_counts()
    per_row = np.where(counts >= k, counts - (k - 1), np.minimum(counts, 1))
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(per_row, out=offsets[1:])
    begin = np.arange(offsets[-1]) + np.repeat(batch.word_offsets[:-1] - offsets[:-1], per_row)
    padded = np.concatenate([words, np.zeros(k, np.uint64)])
    short = bool(((counts > 0) & (counts < k)).any())
    size = np.repeat(np.minimum(counts, k), per_row) if short else None
    acc = np.zeros(len(begin), np.uint64)
    for t, weight in enumerate(_position_weights(k)):
        part = padded[begin + t]
        if size is not None:
            # a short row's shingle must not reach into the next row's words
            part[size <= t] = 0
        acc += part * weight
    return mix64(acc), offsets


# ------------------------------------------------------------------ n-grams of any length, rolling
_BASE = 0xD6E8FEB86659FD93  # odd, so it has an inverse mod 2**64
_BASE_INV = pow(_BASE, -1, 2**64)
_LEN_SALT = np.uint64(0xC2B2AE3D27D4EB4F)


class _Powers:
    """BASE**i and BASE**-i mod 2**64 for i < len, grown by doubling and shared by all callers."""

    def __init__(self) -> None:
        self.up, self.down = np.ones(1, np.uint64), np.ones(1, np.uint64)

    def get(self, size: int) -> tuple[U64, U64]:
        if size > len(self.up):
            n = 1 << max(size - 1, 1).bit_length()
            self.up = _pow(_BASE, n)
            self.down = _pow(_BASE_INV, n)
        return self.up, self.down


def _pow(base: int, n: int) -> U64:
    # numpy's unsigned products wrap mod 2**64, which is the arithmetic wanted here
    out = np.full(n, base, np.uint64)
    out[0] = 1
    return np.cumprod(out, dtype=np.uint64)


_POWERS = _Powers()


class WordRuns:
    """Hashes any run of consecutive words of a batch in O(1) numpy work per run, from prefix sums
    of ``word_hash[i] * BASE**i``: run (start, n) hashes to the finaliser of
    ``sum_t word_hash[start + t] * BASE**t`` salted with n, whatever its offset in the batch."""

    def __init__(self, batch: TokenBatch) -> None:
        words = batch.word_hashes
        up, self._down = _POWERS.get(len(words) + 1)
        self._prefix = np.zeros(len(words) + 1, np.uint64)
        np.cumsum(words * up[: len(words)], out=self._prefix[1:])
        self.batch = batch

    def hashes(self, starts: I64, lengths: I64 | int) -> U64:
        """Hash of the run of ``lengths`` words from flat word index ``starts`` (element-wise)."""
        spans = (self._prefix[starts + lengths] - self._prefix[starts]) * self._down[starts]
        return mix64(spans ^ (np.asarray(lengths, np.uint64) * _LEN_SALT))

    def ngrams(self, n: int, rows: I64 | None = None) -> tuple[U64, I64, I64]:
        """(hash, row, flat start) of every ``n``-word run inside one row (of ``rows`` if given),
        in row order then position order; rows shorter than ``n`` words have none."""
        offsets = self.batch.word_offsets
        counts = np.diff(offsets)
        pick = np.arange(len(counts)) if rows is None else rows
        per_row = np.maximum(counts[pick] - (n - 1), 0)
        ends = np.cumsum(per_row)
        total = int(ends[-1]) if len(ends) else 0
        row = np.repeat(pick, per_row)
        starts = np.arange(total) + np.repeat(offsets[pick] - (ends - per_row), per_row)
        return self.hashes(starts, n), row, starts
