"""The tokens of recently seen texts, so the gates of one run tokenise each text once.

The engine runs the gates without memory (decontamination among them) on micro-batches in arrival
order and the dedup gates later on micro-batches in input order, each gate on the survivors of the one
before, and they usually read the same field. :func:`recent_tokens` (what
:func:`~datafactory.quality.normalize.tokens_for` calls) keeps the tokens of about the last ``KEEP``
texts in one set of flat buffers, each text at a row: a batch whose texts were all seen is one gather
from those buffers, whichever batches they were tokenised in; the texts not seen are tokenised (once
each) and appended. Tokens depend only on a text's content, so a gathered row is exactly what
tokenising the text again gives.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from datafactory.quality.normalize import I64, T, TokenBatch, tokenize_batch


def _spans(flat: npt.NDArray[np.generic], starts: I64, sizes: I64) -> tuple[npt.NDArray[np.generic], I64]:
    """``flat[starts[i] : starts[i] + sizes[i]]`` for each i, packed, with the packed offsets."""
    offsets = np.zeros(len(starts) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    index = np.arange(offsets[-1]) + np.repeat(starts - offsets[:-1], sizes)
    return flat[index], offsets


class _Recent(threading.local):
    """Per thread (gates are called from one thread; a second thread gets its own cache)."""

    KEEP = 2048  # texts (up to twice that held): the ordered gates mostly see a record within the rows in
                 # flight after decontamination did; a text forgotten sooner is only tokenised again

    def __init__(self) -> None:  # runs once in each thread that touches it
        self.row_of: dict[str, int] = {}   # text -> its row (counted from the first ever added)
        self.texts: list[str] = []         # the held rows' texts, oldest first
        self.canon: list[bytes] = []       # their canonical texts (a join of a few bytes objects is the
        self.first = 0                     # cheapest gather of text); row number of texts[0]
        self.words: npt.NDArray[np.uint64] = np.zeros(1 << 13, np.uint64)
        self.spans = np.zeros((2, 1 << 10), np.int64)  # per held row: where its words start, how many
        self.words_used = 0

    def add(self, texts: list[str], tokens: TokenBatch) -> None:
        """Append a tokenised batch of distinct texts that are not held."""
        held, n = len(self.texts), len(texts)
        word_size = int(tokens.word_offsets[-1])
        self.words = _fit(self.words, self.words_used, word_size)
        if held + n > self.spans.shape[1]:
            grown = np.zeros((2, 2 * (held + n)), np.int64)
            grown[:, :held] = self.spans[:, :held]
            self.spans = grown
        self.words[self.words_used : self.words_used + word_size] = tokens.word_hashes
        part = self.spans[:, held : held + n]
        part[0] = tokens.word_offsets[:-1] + self.words_used
        part[1] = np.diff(tokens.word_offsets)
        self.words_used += word_size
        text, bounds = tokens.text, tokens.text_offsets.tolist()
        self.canon.extend(text[bounds[i] : bounds[i + 1]] for i in range(n))
        start = self.first + held
        self.row_of.update(zip(texts, range(start, start + n), strict=True))
        self.texts.extend(texts)

    def trim(self) -> None:
        """Past twice ``KEEP`` texts, forget the oldest down to ``KEEP`` and move the rest to the front."""
        held = len(self.texts)
        if held <= 2 * self.KEEP:
            return
        n = held - self.KEEP
        row_of = self.row_of
        for text in self.texts[:n]:
            del row_of[text]
        del self.texts[:n], self.canon[:n]
        self.first += n
        spans = self.spans
        word_from = int(spans[0, n])
        self.words[: self.words_used - word_from] = self.words[word_from : self.words_used].copy()
        self.words_used -= word_from
        spans[:, : held - n] = spans[:, n:held].copy()
        spans[0, : held - n] -= word_from

    def gather(self, rows: list[int]) -> TokenBatch:
        """The batch of held rows ``rows`` (absolute row numbers), in that order."""
        first, canon = self.first, self.canon
        picked = [canon[r - first] for r in rows]
        text_offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, picked), np.int64, len(picked)), out=text_offsets[1:])
        at = self.spans[:, np.array(rows, np.int64) - first]
        words, word_offsets = _spans(self.words, at[0], at[1])
        return TokenBatch(b"".join(picked), text_offsets, np.asarray(words, np.uint64), word_offsets)


def _fit(buf: npt.NDArray[T], used: int, extra: int) -> npt.NDArray[T]:
    if used + extra <= len(buf):
        return buf
    grown = np.zeros(max(used + extra, 2 * len(buf)), buf.dtype)
    grown[:used] = buf[:used]
    return grown


_RECENT = _Recent()


def recent_tokens(texts: Sequence[str]) -> TokenBatch:
    """``tokenize_batch(texts)``, gathering the texts seen lately from the cache (module docstring)."""
    recent = _RECENT
    row_of = recent.row_of
    rows = [row_of.get(text, -1) for text in texts]
    try:
        if rows and min(rows) < 0:
            fresh = list(dict.fromkeys(t for t, r in zip(texts, rows, strict=True) if r < 0))
            tokens = tokenize_batch(fresh)
            recent.add(fresh, tokens)
            if len(fresh) == len(texts):
                return tokens
            rows = [row_of[text] for text in texts]
        return recent.gather(rows)
    finally:
        recent.trim()  # after the gather: the rows just looked up stay held until then


