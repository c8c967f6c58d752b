"""Rephrase-robust look-up of eval items: masked word n-gram containment through an inverted index.

A rephrased benchmark item keeps most of its wording but not its 13-word runs: the names are swapped,
the numbers changed, the sentences reordered, a few words replaced by synonyms. So both sides are
*masked* first — every word that is not in the eval sets' ordinary vocabulary (a word the eval texts
write in lower case somewhere; so names, numbers and rare words are out) and every number word becomes
one placeholder — and an eval item is scored by **containment**: the share of its distinct masked word
n-grams that the candidate also has. Reordering sentences loses only the n-grams across a sentence
boundary, a synonym only the n grams over it, so with short n-grams (3 words) a rephrasing keeps most
of an item while an unrelated question of the same genre shares a few stock phrases.

Retrieval and scoring are one step: the index maps each n-gram (64-bit hash) to the items that have it
(CSR postings; keys found through :class:`KeyTable`, a linear-probing table laid out at build time), so
a batch's distinct n-grams are looked up at once and every (text, item) pair's shared weight falls out
of one ``bincount`` over the postings — exact idf-weighted containment, not a MinHash estimate, at the
cost of a few postings per n-gram. N-grams that many items share ("how many does") say nothing about
which item a text came from: those in more than ``max_df`` of the items are left out of the index and
of the items' denominators. How the containments are combined: :mod:`datafactory.quality.decontam_score`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from datafactory.quality.normalize import I64, U64, TokenBatch, tokenize_batch
from datafactory.quality.shingle import WordRuns

MASK = np.uint64(0x5D1F_0A6C_93B2_E147)  # the placeholder word's hash
# function words that questions mostly write capitalised at a sentence start
_FUNCTION_WORDS = ("a an the how what which who whom whose when where why if then so and but or of in on at to "
                   "for from by with as is are was were be been do does did can could will would shall should "
                   "may might must he she it they we you i his her its their our your this that these those "
                   "there here after before each every all some any no not one")
NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
                "hundred thousand million billion half halves third thirds quarter quarters twice thrice double "
                "triple dozen dozens first second fifth")


def _hashes(words: str) -> U64:
    return np.unique(tokenize_batch([words]).word_hashes)


_NUMBER_HASHES = _hashes(NUMBER_WORDS)
_FUNCTION_HASHES = _hashes(_FUNCTION_WORDS)


# an ASCII text's whitespace-split words that start with no capital and hold no digit, in one C pass (for
# ASCII, ``str.isupper``/``str.isdigit`` of a character are exactly [A-Z]/[0-9]; regex ``\s`` is ``str.isspace``)
_PLAIN_ASCII = re.compile(r"(?<!\S)[^\sA-Z0-9][^\s0-9]*(?!\S)")


def _plain(text: str) -> str:
    if text.isascii():
        return " ".join(_PLAIN_ASCII.findall(text))
    return " ".join(t for t in text.split() if not t[:1].isupper() and not any(map(str.isdigit, t)))


def ordinary_words(texts: Sequence[str]) -> U64:
    """Sorted hashes of the words ``texts`` write not capitalised and without digits (names and numbers out)."""
    plain = [_plain(text) for text in texts]
    words = np.unique(tokenize_batch(plain).word_hashes) if plain else np.zeros(0, np.uint64)
    words = np.union1d(words, _FUNCTION_HASHES)
    return np.setdiff1d(words, _NUMBER_HASHES, assume_unique=True)


def mask_tokens(tokens: TokenBatch, inside: npt.NDArray[np.bool_], keep: bool = True) -> TokenBatch:
    """``tokens`` with every word where ``inside`` is False replaced by the placeholder; with
    ``keep=False`` the other way round: only those words (names, numbers, rare words) are kept."""
    masked = np.where(inside == keep, tokens.word_hashes, MASK)
    return TokenBatch(tokens.text, tokens.text_offsets, masked, tokens.word_offsets)


_SLOT = np.dtype([("key", "<u8"), ("value", "<i8")])


class KeyTable:
    """A static set of distinct uint64 keys -> their index, by linear probing laid out at build time:
    a look-up is a few vectorised gathers into a table 4x the keys (a binary search over tens of
    thousands of keys costs several times more, one cache miss per level)."""

    def __init__(self, keys: U64) -> None:
        self.bits = max(4, (len(keys) * 4).bit_length())
        self.shift = np.uint64(64 - self.bits)
        home = (keys >> self.shift).astype(np.int64)
        order = np.argsort(home, kind="stable")
        ranks = np.arange(len(keys))
        # the i-th key in home order goes to max(home, previous slot + 1): linear probing, no wrap-around
        slot = ranks + np.maximum.accumulate(home[order] - ranks) if len(keys) else ranks
        self.probes = int((slot - home[order]).max()) + 1 if len(keys) else 0
        size = (1 << self.bits) + self.probes + 1
        # key and value side by side: one look-up reads one 16-byte slot (one cache line), not two arrays
        self.slots = np.zeros((size, 2), np.uint64)
        self.slots[:, 1] = np.uint64(0xFFFF_FFFF_FFFF_FFFF)  # value -1: empty
        self.slots[slot, 0] = keys[order]
        self.slots[slot, 1] = order.astype(np.uint64)
        self.keys = self.slots[:, 0]
        self.values = self.slots[:, 1].view(np.int64)
        self.empty = not len(keys)
        # the same slots as one record array: a gather of records is one numpy call of 16-byte items (indexing
        # the 2-D ``slots`` by rows costs ~7x more)
        self._records = self.slots.view(_SLOT).reshape(-1)
        self._steps = np.arange(1, max(self.probes, 2), dtype=np.intp)[:, None]

    def find(self, queries: U64) -> I64:
        """Index of each query among the keys, -1 where absent. At load 1/4 most queries end at their
        home slot (found, or empty); only the rest probe on, so a look-up costs about one gather."""
        if self.empty or not len(queries):
            return np.full(len(queries), -1, np.int64)
        at = (queries >> self.shift).astype(np.intp)
        home = self._records.take(at)
        value = home["value"]
        hit = home["key"] == queries
        out = np.where(hit, value, -1)
        # an occupied home slot holding another key: look at the rest of its run, all slots at once; keys are
        # distinct, so a query matches at most one slot of its window
        rest = np.flatnonzero(~hit & (value >= 0))
        if len(rest) and self.probes > 1:
            # (probes - 1, rest) so that numpy's inner loops run along the long axis
            window = self._records.take(self._steps + at.take(rest))
            match = np.flatnonzero(window["key"] == queries.take(rest))
            if len(match):
                out[rest[match % len(rest)]] = window["value"].reshape(-1).take(match)
        return out


class GramIndex:
    """Inverted index of the masked word ``n``-grams of eval items (see the module docstring)."""

    def __init__(self, n: int, max_df: float = 0.01, min_grams: int = 4, weighted: bool = True) -> None:
        self.n, self.max_df, self.min_grams, self.weighted = n, max_df, min_grams, weighted
        self.keys: U64 = np.zeros(0, np.uint64)
        self.offsets: I64 = np.zeros(1, np.int64)
        self.items: I64 = np.zeros(0, np.int64)
        self.table = KeyTable(self.keys)
        self.sizes = np.zeros(0, np.float64)  # weight of each item's indexed grams (the containment denominator)
        self.counts: I64 = np.zeros(0, np.int64)  # indexed grams per item

    def _grams(self, tokens: TokenBatch, runs: WordRuns | None = None) -> tuple[U64, I64]:
        """Each row's n-gram hashes (for n = 1 the word hashes themselves) and their rows."""
        if self.n == 1:
            return tokens.word_hashes, np.repeat(np.arange(len(tokens)), tokens.word_counts())
        grams, rows, _ = (runs or WordRuns(tokens)).ngrams(self.n)
        return grams, rows

    def build(self, tokens: TokenBatch) -> None:
        """Index every row of ``tokens`` (already masked) as eval item ``row``."""
        grams, rows = self._grams(tokens)
        grams, rows = _distinct_pairs(grams, rows.astype(np.int64))  # distinct (gram, item), by gram
        keys, df = np.unique(grams, return_counts=True)
        cap = max(2, int(self.max_df * len(tokens)))
        keep = df <= cap
        kept_rows = np.repeat(keep, df)
        self.keys = keys[keep]
        self.table = KeyTable(self.keys)
        self.offsets = np.zeros(len(self.keys) + 1, np.int64)
        np.cumsum(df[keep], out=self.offsets[1:])
        self.items = rows[kept_rows]
        self.counts = np.bincount(self.items, minlength=len(tokens)).astype(np.int64)
        # a gram's weight: its inverse document frequency (rare grams tell more), or 1
        df_kept = df[keep].astype(np.float64)
        self.weights = np.log((len(tokens) + 1) / df_kept) if self.weighted else np.ones(len(df_kept))
        self.post_weights = np.repeat(self.weights, df[keep])
        self.sizes = np.bincount(self.items, weights=self.post_weights, minlength=len(tokens)).astype(np.float64)
        # 1 / size, 0 for items with too few indexed grams to judge (they score 0)
        self.inv_sizes = np.where(self.counts >= self.min_grams, 1.0 / np.maximum(self.sizes, 1e-9), 0.0)
        # what each posting adds to its item's containment
        self.post_share = self.post_weights * self.inv_sizes[self.items]

    def dense(self, tokens: TokenBatch) -> npt.NDArray[np.float32]:
        """Containment of every eval item (columns) in every row of ``tokens`` (masked): a float32 matrix."""
        return self.dense_both(tokens, reverse=False)[0]

    def postings(self, tokens: TokenBatch, runs: WordRuns | None = None,
                 at: I64 | None = None) -> tuple[I64 | None, I64, I64]:
        """For every distinct (row, indexed gram) of ``tokens`` and every item holding that gram:
        the cell ``row * items + item``, the posting's position and the row (None: nothing shared).
        ``runs``: the tokens' :class:`WordRuns` if already made; ``at``: each gram's key index if looked up."""
        none = np.zeros(0, np.int64)
        if not len(self.keys) or not len(tokens):
            return None, none, none
        grams, rows = self._grams(tokens, runs)
        if at is None:
            at = self.table.find(grams)
        found = np.flatnonzero(at >= 0)
        codes = np.sort(rows[found] * len(self.keys) + at[found])
        codes = codes[np.concatenate((codes[:1] == codes[:1], codes[1:] != codes[:-1]))]  # distinct (row, gram)
        rows, at = codes // len(self.keys), codes % len(self.keys)
        lens = self.offsets[at + 1] - self.offsets[at]
        flat = np.arange(int(lens.sum())) + np.repeat(self.offsets[at] - (np.cumsum(lens) - lens), lens)
        rows = np.repeat(rows, lens)
        return rows * len(self.sizes) + self.items[flat], flat, rows

    def dense_both(self, tokens: TokenBatch, reverse: bool = True) -> tuple[npt.NDArray[np.float32],
                                                                             npt.NDArray[np.float32]]:
        """(containment of each item in each row, and with ``reverse`` the share of each row's n-grams
        that the item has — low when a long text merely contains a short item's stock phrases)."""
        rows_n, items_n = len(tokens), len(self.sizes)
        pair, flat, _ = self.postings(tokens)
        if pair is None:
            empty = np.zeros((rows_n, items_n), np.float32)
            return empty, empty
        shared = np.bincount(pair, weights=self.post_share[flat], minlength=rows_n * items_n)
        forward = shared.reshape(rows_n, items_n).astype(np.float32)
        if not reverse:
            return forward, forward
        per_row = np.maximum(tokens.word_counts() - (self.n - 1), 1).astype(np.float32)
        count = np.bincount(pair, minlength=rows_n * items_n).reshape(rows_n, items_n).astype(np.float32)
        return forward, count / per_row[:, None]


class MergedGrams(GramIndex):
    """Several built :class:`GramIndex` (n-gram sizes) read as one: one key look-up, one (row, gram)
    de-duplication and one posting expansion per batch for all of them. ``first_of[i]``: where index
    ``i``'s postings start in the merged posting arrays."""

    def __init__(self, parts: Sequence[GramIndex]) -> None:
        super().__init__(0)
        self.parts = list(parts)
        self.keys = np.concatenate([p.keys for p in parts])
        offsets, self.first_of = [np.zeros(1, np.int64)], []
        for p in parts:
            self.first_of.append(int(offsets[-1][-1]))
            offsets.append(p.offsets[1:] + offsets[-1][-1])
        self.offsets = np.concatenate(offsets)
        self.items = np.concatenate([p.items for p in parts])
        self.sizes = parts[0].sizes if parts else np.zeros(0, np.float64)
        self.table = KeyTable(self.keys)

    def _grams(self, tokens: TokenBatch, runs: WordRuns | None = None) -> tuple[U64, I64]:
        runs = runs or WordRuns(tokens)
        pieces = [p._grams(tokens, runs) for p in self.parts]
        return np.concatenate([g for g, _ in pieces]), np.concatenate([r for _, r in pieces])


def word_lcs(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common subsequence of two word sequences (bit-parallel, Hyyrö 2004)."""
    if len(a) < len(b):
        a, b = b, a
    masks: dict[int, int] = {}
    for i, word in enumerate(b):
        masks[word] = masks.get(word, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full
    for word in a:
        m = masks.get(word)
        if m is not None:
            u = v & m
            v = ((v + u) | (v - u)) & full
    return len(b) - bin(v).count("1")


def lcs_ratio(a: Sequence[int], b: Sequence[int]) -> float:
    """2·LCS / (len a + len b): the indel similarity of two word sequences (1.0 = equal)."""
    total = len(a) + len(b)
    return 2.0 * word_lcs(a, b) / total if total else 0.0


def row_words(tokens: TokenBatch, row: int) -> list[int]:
    """The (masked) word hashes of one row as Python ints, for :func:`lcs_ratio`."""
    lo, hi = int(tokens.word_offsets[row]), int(tokens.word_offsets[row + 1])
    return tokens.word_hashes[lo:hi].tolist()


class WordIndex:
    """Inverted index of eval items' single words, split in two kinds by ``inside`` (ordinary words, and
    the rest: names, numbers, rare words), each scored by idf-weighted containment — one look-up for both."""

    def __init__(self, max_df: float = 0.05) -> None:
        self.max_df = max_df
        self.grams = GramIndex(1, max_df=max_df, min_grams=1)

    def build(self, tokens: TokenBatch, ordinary: U64) -> None:
        """Index every row of ``tokens`` (not masked) as an item; ``ordinary``: sorted hashes of ordinary words."""
        grams = self.grams
        grams.build(tokens)
        self.ordinary_key = np.isin(grams.keys, ordinary)
        post_kind = np.repeat(self.ordinary_key, np.diff(grams.offsets))
        items = len(tokens)
        self.post_ord = np.where(post_kind, grams.post_weights, 0.0)
        self.post_name = np.where(post_kind, 0.0, grams.post_weights)
        self.post_count = post_kind.astype(np.float64)
        inv_ord = _inverse(np.bincount(grams.items, weights=self.post_ord, minlength=items).astype(np.float64))
        inv_name = _inverse(np.bincount(grams.items, weights=self.post_name, minlength=items).astype(np.float64))
        self.share_ord = self.post_ord * inv_ord[grams.items]  # what a posting adds to each containment
        self.share_name = self.post_name * inv_name[grams.items]

    def dense3(self, tokens: TokenBatch) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32],
                                                  npt.NDArray[np.float32]]:
        """(ordinary-word containment of each item, its names' containment, share of the row's words
        that are the item's ordinary words) for every row of ``tokens`` (not masked) and item."""
        rows_n, items_n = len(tokens), len(self.grams.sizes)
        pair, flat, _ = self.grams.postings(tokens)
        if pair is None:
            empty = np.zeros((rows_n, items_n), np.float32)
            return empty, empty, empty
        size = rows_n * items_n
        c1 = np.bincount(pair, weights=self.share_ord[flat], minlength=size).reshape(rows_n, items_n)
        cn = np.bincount(pair, weights=self.share_name[flat], minlength=size).reshape(rows_n, items_n)
        count = np.bincount(pair, weights=self.post_count[flat], minlength=size).reshape(rows_n, items_n)
        per_row = np.maximum(tokens.word_counts(), 1)[:, None]
        return c1.astype(np.float32), cn.astype(np.float32), (count / per_row).astype(np.float32)


def _distinct_pairs(grams: U64, rows: I64) -> tuple[U64, I64]:
    """The distinct (gram, row) pairs sorted by gram, then row: ``np.unique(np.stack(...), axis=1)``'s
    answer by one lexsort (unique along an axis sorts structured rows, several times slower)."""
    order = np.lexsort((rows, grams))
    grams, rows = grams[order], rows[order]
    first = np.ones(len(grams), np.bool_)
    first[1:] = (grams[1:] != grams[:-1]) | (rows[1:] != rows[:-1])
    return grams[first], rows[first]


def _inverse(sizes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.where(sizes > 0, 1.0 / np.maximum(sizes, 1e-12), 0.0)
