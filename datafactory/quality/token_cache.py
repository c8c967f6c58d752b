"""The tokens of recently seen texts, so the gates of one run tokenise each text once.

The engine runs the gates without memory (decontamination among them) on micro-batches in arrival
order and the dedup gates later on micro-batches in input order, each gate on the survivors of the one
before, and they usually read the same field. :func:`recent_tokens` (what
:func:`~datafactory.quality.normalize.tokens_for` calls) keeps the tokens of the last ``KEEP`` to
``2 * KEEP`` texts, each row's canonical text and word hashes as two small bytes objects: a batch whose
texts were all seen is two ``bytes.join`` calls, whichever batches they were tokenised in (about a tenth
of a numpy gather's cost at 64 rows); the texts not seen are tokenised (once each) and added. Tokens
depend only on a text's content, so a gathered row is exactly what tokenising the text again gives.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from datafactory.quality.normalize import TokenBatch, tokenize_batch


class _Recent(threading.local):
    """Per thread (gates are called from one thread; a second thread gets its own cache)."""

    KEEP = 2048  # texts (up to twice that held): the ordered gates mostly see a record within the rows in
                 # flight after decontamination did; a text forgotten sooner is only tokenised again

    def __init__(self) -> None:  # runs once in each thread that touches it
        self.row_of: dict[str, int] = {}   # text -> its row (counted from the first ever added)
        self.texts: list[str] = []         # the held rows' texts, oldest first; row number of texts[0]:
        self.first = 0
        self.canon: list[bytes] = []       # their canonical texts (UTF-8)
        self.words: list[bytes] = []       # their word hashes (uint64, native order)

    def add(self, texts: list[str], tokens: TokenBatch) -> None:
        """Add a tokenised batch of distinct texts that are not held."""
        text, bounds = tokens.text, tokens.text_offsets.tolist()
        words, at = tokens.word_hashes.tobytes(), (tokens.word_offsets * 8).tolist()
        n = len(texts)
        self.canon.extend(text[bounds[i] : bounds[i + 1]] for i in range(n))
        self.words.extend(words[at[i] : at[i + 1]] for i in range(n))
        start = self.first + len(self.texts)
        self.row_of.update(zip(texts, range(start, start + n), strict=True))
        self.texts.extend(texts)

    def trim(self) -> None:
        """Past twice ``KEEP`` texts, forget the oldest down to ``KEEP``."""
        n = len(self.texts) - self.KEEP
        if n <= self.KEEP:
            return
        row_of = self.row_of
        for text in self.texts[:n]:
            del row_of[text]
        del self.texts[:n], self.canon[:n], self.words[:n]
        self.first += n

    def gather(self, rows: list[int]) -> TokenBatch:
        """The batch of held rows ``rows`` (absolute row numbers), in that order."""
        first, canon, words = self.first, self.canon, self.words
        texts = [canon[r - first] for r in rows]
        hashes = [words[r - first] for r in rows]
        text_offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, texts), np.int64, len(rows)), out=text_offsets[1:])
        word_offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, hashes), np.int64, len(rows)), out=word_offsets[1:])
        word_offsets //= 8
        # a bytearray, so the word hashes are a writable array like tokenize_batch's
        word_hashes = np.frombuffer(bytearray().join(hashes), np.uint64)
        return TokenBatch(b"".join(texts), text_offsets, word_hashes, word_offsets)


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
