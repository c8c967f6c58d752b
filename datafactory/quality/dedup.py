"""Exact and near-duplicate gates.

Both normalise text one way (:mod:`datafactory.quality.normalize`), remember what they kept in
numpy hash tables and offer ``check_batch`` as the fast path (``check`` is a batch of one).
:class:`Dedup` runs both over one normalisation pass and is what a pipeline wants.

Why not datasketch here: its per-row path (``MinHash.update`` per shingle, ``MinHashLSH`` insert
per row) runs at 1-6k rows/s and peaked at 661 MiB for 100k rows in our measurements, while numpy
over a batch runs at 50k+ rows/s on one core in ~0.45 GB per 1M rows. datasketch stays the
reference that ``benchmarks/dedup.py`` and the tests compare against.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from itertools import accumulate, islice

import numpy as np
import numpy.typing as npt
import xxhash

from datafactory.quality.gate import FieldSpec, Reject, field_names, field_texts
from datafactory.quality.normalize import I64, U64, TokenBatch, mix64, shingle_hashes, tokenize_batch
from datafactory.record import Record

U32 = npt.NDArray[np.uint32]
Bool = npt.NDArray[np.bool_]
BATCH = 1024  # rows per numpy pass when seeding; large enough to amortise numpy call overhead


class _Table:
    """uint64 key -> row ordinal by linear probing in two flat arrays, vectorised over many keys:
    12 bytes a slot (17-34 per entry at its 0.35-0.7 load) against ~100 for a dict of ints.
    Key 0 marks an empty slot, so callers never store it (their keys map 0 to 1)."""

    MAX_LOAD = 0.7
    GROW_CHUNK = 1 << 20

    def __init__(self, bits: int = 12) -> None:
        self._bits, self.size = bits, 0
        self.keys: U64 = np.zeros(1 << bits, np.uint64)
        self.values: npt.NDArray[np.int32] = np.zeros(1 << bits, np.int32)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes

    def _home(self, keys: U64) -> I64:  # keys are mixed hashes: their top bits are a uniform slot
        return (keys >> np.uint64(64 - self._bits)).astype(np.int64)

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more keys now, so slots from :meth:`probe` stay valid."""
        if self.size + extra > self.MAX_LOAD * len(self.keys):
            self._grow(self.size + extra)

    def probe(self, keys: U64) -> tuple[I64, I64]:
        """(ordinal or -1, slot) per key: the slot holding the key, or the empty slot where an
        insert of it would go (handing that to :meth:`place` saves probing twice). Makes room for
        all the keys first, so those slots stay valid until they are placed."""
        self.reserve(len(keys))
        found, end = np.full(len(keys), -1, np.int64), self._home(keys)
        pending, slot, mask = np.arange(len(keys)), end.copy(), len(self.keys) - 1
        while len(pending):
            stored = self.keys[slot]
            hit = stored == keys[pending]
            found[pending[hit]] = self.values[slot[hit]]
            go_on = ~hit & (stored != 0)  # linear probing: an empty slot ends the key's run
            end[pending[~go_on]] = slot[~go_on]
            pending, slot = pending[go_on], (slot[go_on] + 1) & mask
        return found, end

    def insert(self, keys: U64, values: I64) -> None:
        """Store the keys not stored yet; the first of repeated keys wins."""
        fresh = np.zeros(len(keys), np.bool_)
        fresh[np.unique(keys, return_index=True)[1]] = True
        found, slot = self.probe(keys)
        fresh &= found < 0
        self.place(keys[fresh], values[fresh], slot[fresh])

    def place(self, keys: U64, values: I64, slot: I64) -> None:
        """Store distinct, absent keys, probing from ``slot`` (their probe() slot)."""
        self.size += len(keys)
        mask = len(self.keys) - 1
        while len(keys):
            free = np.flatnonzero(self.keys[slot] == 0)
            # keys racing for one free slot all write it; reading back tells who won (keys are
            # distinct, so exactly one), the others probe on
            self.keys[slot[free]] = keys[free]
            won = np.zeros(len(keys), np.bool_)
            won[free] = self.keys[slot[free]] == keys[free]
            self.values[slot[won]] = values[won]
            keys, values, slot = keys[~won], values[~won], (slot[~won] + 1) & mask

    def _grow(self, need: int) -> None:
        used = self.keys != 0
        old, values = self.keys[used], self.values[used]
        # growing is the memory peak of a run: free the old table before making the new one
        self.keys, self.values = np.zeros(0, np.uint64), np.zeros(0, np.int32)
        by_key = np.argsort(old, kind="stable")  # slot order is nearly key order: timsort is quick
        old, values = old[by_key], values[by_key]
        del by_key, used
        while need > self.MAX_LOAD * (1 << self._bits):
            self._bits += 1
        self.keys = np.zeros(1 << self._bits, np.uint64)
        self.values = np.zeros(1 << self._bits, np.int32)
        # with homes ascending, linear probing puts key i at max(home_i, slot_{i-1} + 1), which is
        # i + the running maximum of home_i - i: no probing loop; done in chunks to keep the
        # temporaries small next to the new table
        self.size, best, wrapped = 0, np.iinfo(np.int64).min, []
        for lo in range(0, len(old), self.GROW_CHUNK):
            keys = old[lo : lo + self.GROW_CHUNK]
            offset = np.arange(lo, lo + len(keys))
            slot = self._home(keys) - offset
            np.maximum.accumulate(slot, out=slot)
            np.maximum(slot, best, out=slot)
            best = int(slot[-1])
            slot += offset
            inside = slot < len(self.keys)
            self.keys[slot[inside]], self.values[slot[inside]] = keys[inside], values[offset[inside]]
            self.size += int(inside.sum())
            wrapped.append(offset[~inside])
        # the few keys pushed past the last slot wrap around to the first empty slots from 0
        rest = np.concatenate(wrapped) if wrapped else np.zeros(0, np.int64)
        self.place(old[rest], values[rest].astype(np.int64), np.zeros(len(rest), np.int64))


class _Labels:
    """Names of the kept rows (record id, or ``input:N`` for seeded rows) in one bytearray:
    ~20 bytes a label instead of ~70 for a list of str kept alive after their records."""

    def __init__(self) -> None:
        self._blob, self._ends = bytearray(), array("q")

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i: int) -> str:
        return self._blob[self._ends[i - 1] if i else 0 : self._ends[i]].decode("utf-8")

    def extend(self, labels: Iterable[str]) -> None:
        encoded = [label.encode("utf-8") for label in labels]
        self._ends.extend(islice(accumulate(map(len, encoded), initial=len(self._blob)), 1, None))
        self._blob += b"".join(encoded)

    @property
    def nbytes(self) -> int:
        return len(self._blob) + self._ends.itemsize * len(self._ends)


def choose_bands(threshold: float, num_perm: int, min_recall: float = 0.9) -> tuple[int, int]:
    """(bands, rows) for LSH: the most rows per band (fewest false candidates) whose chance of
    making a pair at exactly ``threshold`` a candidate, 1 - (1 - t**r)**b, is still ≥ ``min_recall``."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        if 1.0 - (1.0 - threshold**rows) ** (num_perm // rows) >= min_recall:
            best = (num_perm // rows, rows)
    return best


class _TokenGate:
    """Plumbing shared by the dedup gates: records -> texts -> one TokenBatch -> check_tokens."""

    def __init__(self, fields: FieldSpec) -> None:
        self.fields = field_names(fields)
        self._seeded = 0
        self._table, self._labels = _Table(), _Labels()

    @property
    def nbytes(self) -> int:
        """Bytes held for what was kept so far."""
        return self._table.nbytes + self._labels.nbytes

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
        return self.check_tokens(tokenize_batch(texts), labels)

    def seed_tokens(self, tokens: TokenBatch, labels: Sequence[str]) -> None:
        raise NotImplementedError

    def check_tokens(self, tokens: TokenBatch, labels: Sequence[str]) -> list[Reject | None]:
        raise NotImplementedError


class ExactDedup(_TokenGate):
    """Rejects a record whose normalised text was kept or seeded before (reason ``duplicate``).

    The key is xxh3_64 of the normalised text, so a copy that only changes case, spacing or
    punctuation is not new data. Empty text is never judged here: two empty answers are a parse
    problem for EmptyFieldFilter to name, not duplicates. Memory: ~40 bytes per kept row.
    """

    name = "exact_dedup"

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
        rows = np.flatnonzero(np.diff(tokens.text_offsets) > 0)
        keys = self._keys(tokens, rows)
        stored, slots = self._table.probe(keys)
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        earlier = first[inverse]
        new = (stored < 0) & (earlier == np.arange(len(rows)))
        for j in np.flatnonzero(~new).tolist():
            by = self._labels[int(stored[j])] if stored[j] >= 0 else labels[int(rows[earlier[j]])]
            out[int(rows[j])] = Reject("duplicate", f"same normalised text as {by}")
        self._table.place(keys[new], len(self._labels) + np.arange(int(new.sum())), slots[new])
        self._labels.extend(labels[i] for i in rows[new].tolist())
        return out


class NearDedup(_TokenGate):
    """Rejects a record whose word shingles are about ``threshold`` Jaccard-similar to a kept or
    seeded record's (reason ``near_duplicate``), by MinHash signatures and LSH banding.

    Signatures: ``shingle``-word shingles hashed to 32 bits, then ``num_perm`` functions
    h_i(x) = a_i * x mod 2**32 with odd a_i derived from ``seed`` by splitmix64 (same seed, same
    signatures on any machine or numpy version), minimum per function. On already-mixed shingle
    hashes this multiply-only family matched MinHash's theoretical variance and band-collision
    curve in our checks, and costs one numpy multiply and one minimum per shingle and function.

    Banding: :func:`choose_bands` unless ``bands``/``rows`` are given (16 x 8 for 0.8/128;
    datasketch's default 9 x 13 caught only 79% of near copies in our measurements). A pair with
    Jaccard J becomes a candidate with probability 1 - (1 - J**rows)**bands: 0.95 at 0.8, 0.61 at
    0.7, 0.24 at 0.6, 0.06 at 0.5.

    No verification: a band collision rejects. Checking the estimated Jaccard first would spare
    pairs below the threshold but let through about half of the true near copies sitting at it (the
    estimate's standard deviation is ~0.035 at 128 functions), and for "is this output new data"
    recall matters more; raise ``threshold`` to reject less. It also means no signatures are kept:
    memory is the band keys, ~0.45 KB per kept row at 1M rows (``nbytes``).
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
        # splitmix64's sequence for ``seed``: fixed forever, unlike numpy's generator streams
        steps = np.arange(1, num_perm + self.bands + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        randoms = mix64(steps + np.uint64(seed % 2**64))
        self._mult = (randoms[:num_perm] >> np.uint64(32)).astype(np.uint32) | np.uint32(1)
        self._tile = np.tile(self._mult, (self.CHUNK, 1))
        self._band_salt = randoms[num_perm:]

    def signatures(self, tokens: TokenBatch) -> tuple[U32, Bool]:
        """MinHash signature per row (all 0xFFFFFFFF for rows without words) and which rows have one."""
        shingles, offsets = shingle_hashes(tokens, self.shingle)
        x = (shingles >> np.uint64(32)).astype(np.uint32)
        counts = np.diff(offsets)
        rows = np.flatnonzero(counts)
        if len(rows) <= 16:
            # few rows (the per-record path): one product matrix beats a loop of numpy calls
            acc = np.minimum.reduceat(x[:, None] * self._mult, offsets[rows], axis=0)
        else:
            rows = rows[np.argsort(-counts[rows], kind="stable")]
            acc = self._column_minimum(x, offsets[rows], counts[rows])
        sig = np.full((len(counts), self.num_perm), 0xFFFFFFFF, np.uint32)
        sig[rows] = acc
        return sig, counts > 0

    CHUNK = 512

    def _column_minimum(self, x: U32, starts: I64, ordered: I64) -> U32:
        # rows come sorted by shingle count, longest first, so step s works on a prefix of the
        # rows: each numpy call covers many rows and no work goes into padding short ones. Chunks
        # keep the (rows, num_perm) buffers inside L2. Broadcasting the shingle into a buffer and
        # multiplying two contiguous arrays is faster than numpy's scalar-broadcast multiply.
        out = np.empty((len(starts), self.num_perm), np.uint32)
        tile = self._tile[: len(starts)]
        buf = np.empty_like(tile)
        for lo in range(0, len(starts), self.CHUNK):
            part = slice(lo, lo + self.CHUNK)
            first, counts, acc = starts[part], ordered[part], out[part]
            acc[...] = x[first][:, None]
            np.multiply(acc, tile[: len(first)], out=acc)
            active = len(first) - np.searchsorted(counts[::-1], np.arange(int(counts[0])), side="right")
            for step in range(1, int(counts[0])):
                n = int(active[step])
                buf[:n] = x[first[:n] + step][:, None]
                np.multiply(buf[:n], tile[:n], out=buf[:n])
                np.minimum(acc[:n], buf[:n], out=acc[:n])
        return out

    def _band_keys(self, sig: U32) -> U64:
        bands = sig[:, : self.bands * self.rows].reshape(len(sig), self.bands, self.rows)
        acc = np.zeros((len(sig), self.bands), np.uint64)
        for r in range(self.rows):
            acc = acc * np.uint64(0x9E3779B97F4A7C15) + bands[:, :, r]
        return np.maximum(mix64(acc ^ self._band_salt), np.uint64(1))

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
        hits, slots = (a.reshape(keys.shape) for a in self._table.probe(keys.ravel()))
        ordered = np.sort(keys, axis=None)
        shared = np.isin(keys, ordered[1:][ordered[1:] == ordered[:-1]]).any(axis=1)
        keep: Bool = np.asarray(~shared & (hits < 0).all(axis=1))
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
        # kept rows share no band key with the store or each other, so their keys go straight
        # into the empty slots the probe found
        ordinals = np.repeat(len(self._labels) + np.arange(int(keep.sum())), self.bands)
        self._table.place(keys[keep].ravel(), ordinals, slots[keep].ravel())
        self._labels.extend(labels[i] for i in rows[keep].tolist())
        return out


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
