"""Text normalisation shared by the quality gates.

One definition of "the same words", used by exact dedup, near dedup and decontamination, so a
rephrase that only changes case, spacing, curly quotes or punctuation counts as unchanged:

1. Unicode NFKC (full-width digits, ligatures and non-breaking spaces become their plain forms),
2. lowercase,
3. delete punctuation: every Unicode ``P*`` character plus the ASCII symbols in
   ``string.punctuation`` (so ``$1,000.`` becomes ``1000`` and ``Janet's`` becomes ``janets``),
4. split on whitespace (``str.split`` rules) and join the words with one space.

:func:`normalize_text` / :func:`normalize_words` apply it to one string. :func:`tokenize_batch` is
the vectorised form the dedup gates use: it returns the same canonical text for each row plus a
64-bit hash per word, computed with numpy over the whole batch, because doing the work per row in
Python caps dedup near 20k rows/s. Rows that are not pure ASCII first go through
:func:`fold_unicode`, the same function the scalar path starts from, so both forms agree on every
input (the tests check this on random Unicode).
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
T = TypeVar("T", bound=np.generic)

_ASCII_TABLE = {ord(c): None for c in string.punctuation}
_ASCII_PUNCT = string.punctuation.encode()
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_DELETED_CATEGORIES = frozenset({"Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Cs"})


@functools.lru_cache(maxsize=1 << 16)
def _replacement(ch: str) -> str | None:
    """What a non-ASCII character becomes: deleted (punctuation, and lone surrogates, which JSON
    can carry but UTF-8 cannot encode), a space (whitespace NFKC leaves, e.g. U+2028), or itself."""
    if unicodedata.category(ch) in _DELETED_CATEGORIES:
        return ""
    return " " if ch.isspace() else None


def fold_unicode(text: str) -> str:
    """NFKC, lowercase, and the non-ASCII part of the punctuation and whitespace rules.

    ASCII punctuation and whitespace are left for the caller (``bytes.translate`` or the numpy
    byte map), which is why both the scalar and the batch path start from this function.
    """
    folded = unicodedata.normalize("NFKC", text).lower()
    # a text holds few distinct non-ASCII characters, so judge those rather than every character
    for ch in set("".join(_NON_ASCII.findall(folded))):
        new = _replacement(ch)
        if new is not None:
            folded = folded.replace(ch, new)
    return folded


def normalize_words(text: str) -> list[str]:
    """The normalised words of ``text`` (see the module docstring for the rules)."""
    if text.isascii():
        # NFKC is the identity on ASCII and translate has a C fast path for ASCII tables
        return text.lower().translate(_ASCII_TABLE).split()
    return fold_unicode(text).encode().translate(None, _ASCII_PUNCT).decode().split()


def normalize_text(text: str) -> str:
    """``text`` normalised: NFKC, lowercase, punctuation deleted, words joined by one space."""
    return " ".join(normalize_words(text))


# ------------------------------------------------------------------ vectorised batch form
_DELETE = 0xFF  # never occurs in UTF-8, so it can mark bytes to drop
_SPACE = 0x20


def _byte_map() -> npt.NDArray[np.uint8]:
    table = np.arange(256, dtype=np.uint8)
    table[ord("A") : ord("Z") + 1] += 32
    for ch in string.punctuation:
        table[ord(ch)] = _DELETE
    # exactly the ASCII characters str.split() treats as whitespace (includes \x1c-\x1f)
    for ch in "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f ":
        table[ord(ch)] = _SPACE
    return table


_BYTE_MAP = _byte_map()
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_LEN_SALT = np.uint64(0x9E3779B97F4A7C15)
# _LOW_BYTES[n] keeps the low n bytes of a little-endian uint64 window
_LOW_BYTES = np.array([(1 << (8 * n)) - 1 for n in range(9)], np.uint64)


def mix64(z: U64) -> U64:
    """splitmix64's finaliser, element-wise: a bijection on uint64 with good avalanche."""
    z = z ^ (z >> np.uint64(30))
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


@dataclass(frozen=True, slots=True)
class TokenBatch:
    """Normalised words of a batch of texts, as flat numpy arrays.

    Row ``i`` has canonical text ``text[text_offsets[i]:text_offsets[i+1]]`` (UTF-8, equal to
    ``normalize_text(texts[i]).encode()``) and words ``word_hashes[word_offsets[i]:word_offsets[i+1]]``.
    A word hash depends only on the word's bytes, so it is the same in every batch and process.
    """

    text: bytes
    text_offsets: I64
    word_hashes: U64
    word_offsets: I64

    def __len__(self) -> int:
        return len(self.text_offsets) - 1

    def row_text(self, i: int) -> str:
        return self.text[self.text_offsets[i] : self.text_offsets[i + 1]].decode("utf-8")

    def word_counts(self) -> I64:
        return np.diff(self.word_offsets)

    def select(self, rows: I64) -> TokenBatch:
        """The batch of just ``rows`` (in that order): what tokenising those texts would give."""
        text, text_offsets = _gather(np.frombuffer(self.text, np.uint8), self.text_offsets, rows)
        words, word_offsets = _gather(self.word_hashes, self.word_offsets, rows)
        return TokenBatch(text.tobytes(), text_offsets, words, word_offsets)


def _gather(flat: npt.NDArray[T], offsets: I64, rows: I64) -> tuple[npt.NDArray[T], I64]:
    """The ragged rows ``rows`` of ``flat`` (row i is ``flat[offsets[i]:offsets[i+1]]``), packed."""
    sizes = offsets[rows + 1] - offsets[rows]
    out_offsets = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(sizes, out=out_offsets[1:])
    index = np.arange(out_offsets[-1]) + np.repeat(offsets[rows] - out_offsets[:-1], sizes)
    return flat[index], out_offsets


def _hash_words(buf: npt.NDArray[np.uint8], starts: I64, lengths: I64) -> U64:
    """Hash each word 8 bytes at a time through unaligned uint64 windows over ``buf``.

    Hashing whole words (≈60 per row) instead of bytes (≈400 per row) is what keeps this cheap;
    ``buf`` must have 8 spare bytes after its last word.
    """
    windows = np.ndarray((max(len(buf) - 7, 0),), dtype="<u8", buffer=buf, strides=(1,))
    head = windows[starts] & _LOW_BYTES[np.minimum(lengths, 8)]
    hashes = mix64(head ^ (lengths.astype(np.uint64) * _LEN_SALT))
    chunk = 8
    longer = np.flatnonzero(lengths > chunk)
    while len(longer):
        part = windows[starts[longer] + chunk] & _LOW_BYTES[np.minimum(lengths[longer] - chunk, 8)]
        hashes[longer] = mix64(hashes[longer] ^ part)
        chunk += 8
        longer = longer[lengths[longer] > chunk]
    return hashes


# _BYTE_MAP for bytes.translate (its punctuation entries unused: translate deletes those bytes first)
_TRANSLATE = _BYTE_MAP.tobytes()


def _mapped_bytes(joined: str, rows: int) -> tuple[npt.NDArray[np.uint8], I64, int]:
    """``joined`` (rows joined by NUL) as mapped bytes in a buffer with 8 spare bytes, where each row
    starts, and the mapped size. One C pass (``bytes.translate``) instead of a numpy map and compress;
    the NULs between rows are then turned into spaces, so no word runs across two rows."""
    if not joined.isascii():
        joined = "\x00".join(t if t.isascii() else fold_unicode(t) for t in joined.split("\x00"))
    data = joined.encode().translate(_TRANSLATE, _ASCII_PUNCT)
    size = len(data)
    buf = np.zeros(size + 8, np.uint8)
    buf[:size] = np.frombuffer(data, np.uint8)
    row_start = np.zeros(rows + 1, np.int64)
    row_start[1:-1] = np.flatnonzero(buf[:size] == 0)
    row_start[1:] += 1
    row_start[-1] = size + 1
    buf[row_start[1:-1] - 1] = _SPACE
    return buf, row_start, size


def _mapped_bytes_by_length(texts: Sequence[str]) -> tuple[npt.NDArray[np.uint8], I64, int]:
    """:func:`_mapped_bytes` for texts that may hold NUL: rows found by their lengths."""
    pieces = [t if t.isascii() else fold_unicode(t) for t in texts]
    lens = np.fromiter((len(p) if p.isascii() else len(p.encode()) for p in pieces), np.int64, len(pieces))
    # rows are joined by a space, so no word can run across two rows
    mapped = _BYTE_MAP.take(np.frombuffer(" ".join(pieces).encode(), np.uint8))
    row_start = np.zeros(len(pieces) + 1, np.int64)
    np.cumsum(lens + 1, out=row_start[1:])
    dropped = np.flatnonzero(mapped == _DELETE)
    size = len(mapped) - len(dropped)
    buf = np.zeros(size + 8, np.uint8)
    if len(dropped):
        row_start -= np.searchsorted(dropped, row_start)
        np.compress(mapped != _DELETE, mapped, out=buf[:size])
    else:
        buf[:size] = mapped
    return buf, row_start, size


def tokenize_batch(texts: Sequence[str]) -> TokenBatch:
    """Normalise and split many texts at once (see :class:`TokenBatch`)."""
    joined = "\x00".join(texts)
    if texts and joined.count("\x00") == len(texts) - 1:
        buf, row_start, size = _mapped_bytes(joined, len(texts))
    else:  # a text holding NUL: the rows cannot be told apart by it
        buf, row_start, size = _mapped_bytes_by_length(texts)
    # word bytes as 1 between two 0s; a word starts where that steps up and ends where it steps
    # down, and steps alternate, so one nonzero() finds both
    padded = np.zeros(size + 2, np.int8)
    np.not_equal(buf[:size], _SPACE, out=padded[1:-1].view(np.bool_))
    steps = np.flatnonzero(padded[1:] - padded[:-1])
    starts, ends = steps[0::2], steps[1::2]
    word_offsets = np.searchsorted(starts, row_start).astype(np.int64)
    word_offsets[-1] = len(starts)
    lengths = ends - starts
    hashes = _hash_words(buf, starts, lengths)

    # canonical text: the word bytes plus one separating space after every word but a row's last
    counts = np.diff(word_offsets)
    keep = padded[1:-1].view(np.bool_)  # the word bytes (padded is not needed after this)
    last = np.zeros(len(starts), np.bool_)
    last[word_offsets[1:][counts > 0] - 1] = True
    keep[ends[~last]] = True
    length_sum = np.zeros(len(starts) + 1, np.int64)
    np.cumsum(lengths, out=length_sum[1:])
    row_len = length_sum[word_offsets[1:]] - length_sum[word_offsets[:-1]] + np.maximum(counts - 1, 0)
    text_offsets = np.zeros(len(texts) + 1, np.int64)
    np.cumsum(row_len, out=text_offsets[1:])
    return TokenBatch(np.compress(keep, buf[:size]).tobytes(), text_offsets, hashes, word_offsets)


def tokens_for(texts: Sequence[str]) -> TokenBatch:
    """``tokenize_batch(texts)``, reusing the tokens of texts tokenised lately (by any gate).

    Decontamination, exact and near dedup usually read the same field: the first gate that sees a
    text tokenises it and the others gather its tokens (:mod:`datafactory.quality.token_cache`), which
    is what makes the three cost about one tokenisation, on the engine path too, where the dedup gates
    see the records in other batches (input order) than decontamination (arrival order).
    """
    from datafactory.quality.token_cache import recent_tokens

    return recent_tokens(texts)
