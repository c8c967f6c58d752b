"""Exact and near-duplicate gates.

Both normalise text one way (:mod:`datafactory.quality.normalize`), remember what they kept in
numpy hash tables and offer ``check_batch`` as the fast path (``check`` is a batch of one).
:class:`Dedup` runs both over one normalisation pass and is what a pipeline wants.

Why not datasketch here: its per-row path (``MinHash.update`` per shingle, ``MinHashLSH`` insert
per row) runs at 1-6k rows/s and peaked at 661 MiB for 100k rows in our measurements, while numpy
over a batch runs at ~45k rows/s on one core in ~0.35 GB per 1M rows (on the engine's micro-batches
of 64, exact + near: ~50k rows/s, ``benchmarks/engine_gates.py``). datasketch stays the
reference that ``benchmarks/dedup.py`` and the tests compare against.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice

import numpy as np
import xxhash

from datafactory.quality.gate import FieldSpec, Reject, field_names, field_texts
from datafactory.quality.hashtable import HashTable, Labels
from datafactory.quality.minhash import U32, Bool, MinHasher, choose_bands
from datafactory.quality.normalize import I64, U64, TokenBatch, tokenize_batch, tokens_for
from datafactory.record import Record

__all__ = ["Dedup", "ExactDedup", "NearDedup", "choose_bands", "fuse"]

BATCH = 1024  # rows per numpy pass when seeding; large enough to amortise numpy call overhead


class _TokenGate:
    """Plumbing shared by the dedup gates: records -> texts -> one TokenBatch -> check_tokens."""

    def __init__(self, fields: FieldSpec) -> None:
        self.fields = field_names(fields)
        self._seeded = 0
        self._table, self._labels = HashTable(), Labels()

    @property
    def nbytes(self) -> int:
        """Bytes held for what was kept so far."""
        return self._table.nbytes + self._labels.nbytes

    KEYS_PER_ROW = 1

    def reserve(self, rows: int) -> None:
        """Expect about ``rows`` more rows to keep: size the memory for them now (see HashTable.reserve)."""
        self._table.reserve(rows * self.KEYS_PER_ROW)

    def memory(self) -> tuple[U64, I64]:
        """Every key kept so far and the ordinal of the kept row it names (``label(ordinal)``)."""
        return self._table.items()

    def label(self, ordinal: int) -> str:
        """The name of kept row ``ordinal``: a record id, or ``input:N`` for a seeded row."""
        return self._labels[ordinal]

    def seed(self, texts: Iterable[str]) -> None:
        """Remember input texts (labelled ``input:N``), so output repeating one is rejected."""
        rest = iter(texts)
        while chunk := list(islice(rest, BATCH)):
            self.seed_tokens(tokenize_batch(chunk), [f"input:{self._seeded + i}" for i in range(len(chunk))])
            self._seeded += len(chunk)

    def check(self, record: Record) -> Reject | None:
        """A batch of one: ~0.2 ms, mostly numpy call overhead, so batch where you can."""
        return self.check_batch([record])[0]

    def check_batch(self, records: Sequence[Record]) -> list[Reject | None]:
        """Equal to ``[check(r) for r in records]``, in one numpy pass."""
        return self.check_texts(field_texts(records, self.fields), [r.id for r in records])

    def check_texts(self, texts: Sequence[str], labels: Sequence[str]) -> list[Reject | None]:
        """Judge raw texts in order; ``labels`` name the kept ones in later rejects' details."""
        return self.check_tokens(tokens_for(texts), labels)

    def seed_tokens(self, tokens: TokenBatch, labels: Sequence[str]) -> None:
        raise NotImplementedError

    def check_tokens(self, tokens: TokenBatch, labels: Sequence[str]) -> list[Reject | None]:
        raise NotImplementedError


class ExactDedup(_TokenGate):
    """Rejects a record whose normalised text was kept or seeded before (reason ``duplicate``).

    The key is xxh3_64 of the normalised text, so a copy that only changes case, spacing or
    punctuation is not new data. Empty text is never judged here: two empty answers are a parse
    problem for EmptyFieldFilter to name, not duplicates. Memory: ~40 bytes per kept row (its
key and ordinal in the table, its label).
    """

    name = "exact_dedup"

    def keys(self, tokens: TokenBatch) -> tuple[I64, U64]:
        """(row, key) of each row with text: what this gate probes its memory with."""
        rows = np.flatnonzero(np.diff(tokens.text_offsets) > 0)  # empty text is never judged
        return rows, self._keys(tokens, rows)

    def _keys(self, tokens: TokenBatch, rows: I64) -> U64:
        text, offsets = tokens.text, tokens.text_offsets.tolist()
        hashes = (xxhash.xxh3_64_intdigest(text[offsets[i] : offsets[i + 1]]) for i in rows.tolist())
        return np.maximum(np.fromiter(hashes, np.uint64, len(rows)), np.uint64(1))

    def seed_tokens(self, tokens: TokenBatch, labels: Sequence[str]) -> None:
        rows = np.flatnonzero(np.diff(tokens.text_offsets) > 0)
        # every seeded row gets an ordinal; a repeated text keeps its first one's
        self._table.insert(self._keys(tokens, rows), len(self._labels) + np.arange(len(rows)))
        self._labels.extend(labels[i] for i in rows.tolist())

    def check_tokens(self, tokens: TokenBatch, labels: Sequence[str]) -> list[Reject | None]:
        out: list[Reject | None] = [None] * len(tokens)
        text, bounds = tokens.text, tokens.text_offsets.tolist()
        rows = [i for i in range(len(tokens)) if bounds[i + 1] > bounds[i]]  # empty text is never judged
        hashes = [xxhash.xxh3_64_intdigest(text[bounds[i] : bounds[i + 1]]) or 1 for i in rows]
        # the first row of the batch with each key (a batch is small: a dict beats np.unique here)
        first: dict[int, int] = {}
        earlier = [first.setdefault(h, j) for j, h in enumerate(hashes)]
        keys = np.array(hashes, np.uint64)
        stored = self._table.probe(keys).tolist()
        new = [s < 0 and e == j for j, (s, e) in enumerate(zip(stored, earlier, strict=True))]
        for j, fresh in enumerate(new):
            if not fresh:
                by = self._labels[stored[j]] if stored[j] >= 0 else labels[rows[earlier[j]]]
                out[rows[j]] = Reject("duplicate", f"same normalised text as {by}")
        kept = np.array(new, np.bool_)
        self._table.place(keys[kept], len(self._labels) + np.arange(int(kept.sum())))
        self._labels.extend(labels[rows[j]] for j, fresh in enumerate(new) if fresh)
        return out


class NearDedup(_TokenGate):
    """Rejects a record whose word shingles are about ``threshold`` Jaccard-similar to a kept or
    seeded record's (reason ``near_duplicate``), by MinHash signatures and LSH banding.

    Signatures and band keys: :class:`~datafactory.quality.minhash.MinHasher`.

    Banding: :func:`choose_bands` unless ``bands``/``rows`` are given (16 x 8 for 0.8/128;
    datasketch's default 9 x 13 caught only 79% of near copies in our measurements). A pair with
    Jaccard J becomes a candidate with probability 1 - (1 - J**rows)**bands: 0.95 at 0.8, 0.61 at
    0.7, 0.24 at 0.6, 0.06 at 0.5.

    No verification: a band collision rejects. Checking the estimated Jaccard first would spare
    pairs below the threshold but let through about half of the true near copies sitting at it (the
    estimate's standard deviation is ~0.035 at 128 functions), and for "is this output new data"
    recall matters more; raise ``threshold`` to reject less. It also means no signatures are kept:
    memory is the band keys, ~0.35 KB per kept row (16 keys at 17-26 bytes, ``nbytes``).
    """

    name = "near_dedup"

    def __init__(self, fields: FieldSpec, threshold: float = 0.8, num_perm: int = 128, shingle: int = 3,
                 seed: int = 1, bands: int | None = None, rows: int | None = None) -> None:
        super().__init__(fields)
        self.threshold, self.num_perm, self.shingle = threshold, num_perm, shingle
        self.bands, self.rows = choose_bands(threshold, num_perm)
        if bands or rows:
            self.bands = bands or num_perm // (rows or 1)
            self.rows = rows or num_perm // self.bands
        if shingle < 1 or self.bands < 1 or self.rows < 1 or self.bands * self.rows > num_perm:
            raise ValueError(f"need shingle >= 1 and 1 <= bands * rows <= num_perm, got "
                             f"shingle={shingle} bands={self.bands} rows={self.rows} num_perm={num_perm}")
        self._hasher = MinHasher(num_perm, shingle, seed, self.bands, self.rows)
        self.KEYS_PER_ROW = self.bands

    def signatures(self, tokens: TokenBatch) -> tuple[U32, Bool]:
        """MinHash signature per row (all 0xFFFFFFFF for rows without words) and which rows have one."""
        return self._hasher.signatures(tokens)

    def _band_keys(self, sig: U32) -> U64:
        return self._hasher.band_keys(sig)

    def keys(self, tokens: TokenBatch) -> tuple[I64, U64]:
        """(row, its ``bands`` LSH band keys) of each row with words: what this gate probes its memory with."""
        sig, has = self.signatures(tokens)
        rows = np.flatnonzero(has)
        return rows, self._band_keys(sig[rows])

    def seed_tokens(self, tokens: TokenBatch, labels: Sequence[str]) -> None:
        sig, has = self.signatures(tokens)
        rows = np.flatnonzero(has)
        keys = self._band_keys(sig[rows])
        self._table.insert(keys.ravel(), np.repeat(len(self._labels) + np.arange(len(rows)), self.bands))
        self._labels.extend(labels[i] for i in rows.tolist())

    def check_tokens(self, tokens: TokenBatch, labels: Sequence[str],
                     active: Bool | None = None) -> list[Reject | None]:
        """Judge a tokenised batch; rows where ``active`` is False are skipped (kept, not stored)."""
        out: list[Reject | None] = [None] * len(tokens)
        sig, has = self.signatures(tokens)
        rows = np.flatnonzero(has if active is None else has & active)
        keys = self._band_keys(sig[rows])
        hits = self._table.probe(keys.ravel()).reshape(keys.shape)
        keep: Bool = ~_shares_a_key(keys) & (hits < 0).all(axis=1)
        # rows that hit the store or share a band key with another row of the batch are settled
        # one by one, in order, so a batch gives exactly what the records checked singly would
        local: dict[int, int] = {}
        for j in np.flatnonzero(~keep).tolist():
            stored = hits[j][hits[j] >= 0]
            if len(stored):
                by = self._labels[int(stored.min())]
            else:
                row_keys = keys[j].tolist()
                match = min((local[k] for k in row_keys if k in local), default=None)
                if match is None:
                    keep[j] = True
                    local.update(dict.fromkeys(row_keys, j))
                    continue
                by = labels[int(rows[match])]
            out[int(rows[j])] = Reject("near_duplicate", f"similar to {by}")
        # kept rows share no band key with the store or each other: their keys are all new
        ordinals = np.repeat(len(self._labels) + np.arange(int(keep.sum())), self.bands)
        self._table.place(keys[keep].ravel(), ordinals)
        self._labels.extend(labels[i] for i in rows[keep].tolist())
        return out


def _shares_a_key(keys: U64) -> Bool:
    """Per row of ``keys``: does any of its keys occur elsewhere in ``keys``?"""
    flat = keys.ravel()
    order = np.argsort(flat)  # equal keys end up adjacent in any order: no need for a stable sort
    ordered = flat[order]
    same = ordered[1:] == ordered[:-1]
    marked = np.zeros(len(flat), np.bool_)
    marked[order[1:][same]] = True
    marked[order[:-1][same]] = True
    return np.asarray(marked.reshape(keys.shape).any(axis=1))


class Dedup(_TokenGate):
    """Exact, then near-duplicate dedup over one normalisation pass: the gate a pipeline wants.

    Rows the exact check rejects (``duplicate``) never reach the MinHash index; the others may be
    rejected as ``near_duplicate``. ``near=False`` keeps only the exact check.
    """

    name = "dedup"

    def __init__(self, fields: FieldSpec, near: bool = True, threshold: float = 0.8, num_perm: int = 128,
                 shingle: int = 3, seed: int = 1, bands: int | None = None, rows: int | None = None) -> None:
        super().__init__(fields)
        self.exact = ExactDedup(fields)
        self.near = NearDedup(fields, threshold, num_perm, shingle, seed, bands, rows) if near else None

    @property
    def nbytes(self) -> int:
        """Bytes held for what was kept so far."""
        return self.exact.nbytes + (self.near.nbytes if self.near else 0)

    def reserve(self, rows: int) -> None:
        self.exact.reserve(rows)
        if self.near:
            self.near.reserve(rows)

    def seed_tokens(self, tokens: TokenBatch, labels: Sequence[str]) -> None:
        self.exact.seed_tokens(tokens, labels)
        if self.near:
            self.near.seed_tokens(tokens, labels)

    def check_tokens(self, tokens: TokenBatch, labels: Sequence[str]) -> list[Reject | None]:
        out = self.exact.check_tokens(tokens, labels)
        if self.near is None:
            return out
        fresh = np.fromiter((r is None for r in out), np.bool_, len(out))
        near = self.near.check_tokens(tokens, labels, fresh)
        return [e if e is not None else n for e, n in zip(out, near, strict=True)]


class _ExactThenNear:
    """An ExactDedup and the NearDedup after it on the same fields, as one gate over one tokenisation:
    the verdicts of running them in turn (the near gate sees only the exact gate's survivors)."""

    def __init__(self, exact: ExactDedup, near: NearDedup) -> None:
        self.exact, self.near = exact, near
        self.name, self.fields = f"{exact.name}+{near.name}", exact.fields

    def check(self, record: Record) -> Reject | None:
        return self.check_batch([record])[0]

    def reserve(self, rows: int) -> None:
        self.exact.reserve(rows)
        self.near.reserve(rows)

    def check_batch(self, records: Sequence[Record]) -> list[Reject | None]:
        tokens = tokens_for(field_texts(records, self.fields))
        labels = [r.id for r in records]
        out = self.exact.check_tokens(tokens, labels)
        fresh = np.fromiter((r is None for r in out), np.bool_, len(out))
        near = self.near.check_tokens(tokens, labels, fresh)
        return [e if e is not None else n for e, n in zip(out, near, strict=True)]


def fuse(gates: Sequence[object]) -> list[object]:
    """``gates`` with each ExactDedup that is directly followed by a NearDedup on the same fields run
    as one gate (one text extraction, one tokenisation, one call per batch; same verdicts)."""
    out: list[object] = []
    for gate in gates:
        last = out[-1] if out else None
        if (isinstance(gate, NearDedup) and isinstance(last, ExactDedup) and type(last) is ExactDedup
                and last.fields == gate.fields):
            out[-1] = _ExactThenNear(last, gate)
        else:
            out.append(gate)
    return out
