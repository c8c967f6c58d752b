"""The memory of the dedup gates: which keys were kept, and the names of the kept rows.

Both are flat numpy/array buffers rather than dicts and lists of str, because a dedup gate holds
one entry per kept row (16 per row for near dedup's band keys) for the whole run.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from itertools import accumulate, islice

import numpy as np
import numpy.typing as npt

from datafactory.quality.normalize import I64, U64


class HashTable:
    """uint64 key -> row ordinal in buckets of ``SLOTS`` keys (a 64-byte cache line), vectorised over
    many keys.

    A key lives in its home bucket (multiply-shift of its top 32 bits, so any bucket count is
    uniform) or, when that bucket was full, in a dict (``spill``: at most ~4% of the keys, at the
    highest load; only buckets marked as having spilled are looked up there). A probe of many keys is
    one gather of their buckets and one comparison — a fixed handful of numpy calls — where linear
    probing needed a loop of passes over the longer chains. Memory: 12 bytes a slot, 17-26 bytes a key
    at its 0.47-0.7 load (``GROWTH`` 1.5). A run of known size ``reserve``s once; otherwise growing
    rehashes in place, from the last bucket down, in the reallocated arrays (a key's new home is at or
    after its old one), so no second table is built beside the first.
    Key 0 marks an empty slot, so callers never store it (their keys map 0 to 1)."""

    SLOTS = 8
    SPILLED = SLOTS + 1  # a bucket's fill once a key of its spilled: only those are looked up in the dict
    MAX_LOAD = 0.7
    GROWTH = 1.5
    GROW_CHUNK = 8192  # buckets rehashed per numpy pass: temporaries stay ~2 MB
    MAX_RESERVE = 1 << 21  # buckets (200 MB, ~1.2M rows of near dedup): what reserve() takes ahead at most

    def __init__(self, buckets: int = 64) -> None:
        self.size = 0
        self.keys: U64 = np.zeros((buckets, self.SLOTS), np.uint64)
        self.values: npt.NDArray[np.int32] = np.zeros((buckets, self.SLOTS), np.int32)
        self.fill: npt.NDArray[np.uint8] = np.zeros(buckets, np.uint8)
        self.spill: dict[int, int] = {}

    @property
    def nbytes(self) -> int:
        # a dict entry with its two ints: ~100 bytes
        return self.keys.nbytes + self.values.nbytes + self.fill.nbytes + 100 * len(self.spill)

    @property
    def buckets(self) -> int:
        return len(self.fill)

    def _home(self, keys: U64, buckets: int | None = None) -> I64:
        n = np.uint64(self.buckets if buckets is None else buckets)
        return (((keys >> np.uint64(32)) * n) >> np.uint64(32)).astype(np.int64)

    def probe(self, keys: U64) -> I64:
        """The ordinal stored for each key, or -1."""
        home = self._home(keys)
        # take, not fancy indexing: several times faster for rows
        same = self.keys.take(home, axis=0) == keys[:, None]
        col = same.argmax(axis=1)
        flat = home * self.SLOTS + col
        found = self.values.ravel().take(flat).astype(np.int64)
        found[self.keys.ravel().take(flat) != keys] = -1
        if self.spill:  # a key not in its full bucket may have spilled
            rest = np.flatnonzero((found < 0) & (self.fill.take(home) > self.SLOTS))
            if len(rest):
                spill = self.spill
                found[rest] = [spill.get(k, -1) for k in keys[rest].tolist()]
        return found

    def items(self) -> tuple[U64, I64]:
        """Every stored key and its ordinal (bucket order, then the spilled ones)."""
        used = self.keys != 0
        keys = np.concatenate([self.keys[used], np.fromiter(self.spill, np.uint64, len(self.spill))])
        values = np.concatenate([self.values[used].astype(np.int64),
                                 np.fromiter(self.spill.values(), np.int64, len(self.spill))])
        return keys, values

    def insert(self, keys: U64, values: I64) -> None:
        """Store the keys not stored yet; the first of repeated keys wins."""
        fresh = np.zeros(len(keys), np.bool_)
        fresh[np.unique(keys, return_index=True)[1]] = True
        fresh &= self.probe(keys) < 0
        self.place(keys[fresh], values[fresh])

    def place(self, keys: U64, values: I64) -> None:
        """Store distinct keys that are not stored yet."""
        if not len(keys):
            return
        if self.size + len(keys) > self.MAX_LOAD * self.SLOTS * self.buckets:
            self._grow(self.size + len(keys))
        self._put(keys, values, self._home(keys))
        self.size += len(keys)

    def _put(self, keys: U64, values: npt.NDArray[np.integer], home: I64) -> None:
        """Append distinct keys to their home buckets, spilling what does not fit."""
        kflat, vflat = self.keys.reshape(-1), self.values.reshape(-1)
        while len(keys):
            slot = self.fill.take(home)
            room = slot < self.SLOTS
            if not room.all():
                self.spill.update(zip(keys[~room].tolist(), values[~room].tolist(), strict=True))
                self.fill[home[~room]] = self.SPILLED
                keys, values, home, slot = keys[room], values[room], home[room], slot[room]
            # keys of one bucket race for its next free slot: all write it, reading back says who won
            # (keys are distinct, so exactly one); the others go again with the bucket's new fill
            flat = home * self.SLOTS + slot
            kflat[flat] = keys
            won = kflat.take(flat) == keys
            vflat[flat[won]] = values[won]
            self.fill[home[won]] += 1
            if won.all():
                return
            keys, values, home = keys[~won], values[~won], home[~won]

    def _put_sorted(self, keys: U64, values: npt.NDArray[np.integer], home: I64) -> None:
        """``_put`` for many keys a bucket (rehashing): each key's slot from its rank in its bucket."""
        order = np.argsort(home, kind="stable")
        home, keys, values = home[order], keys[order], values[order]
        first = np.flatnonzero(np.diff(home, prepend=np.int64(-1)))
        sizes = np.diff(first, append=len(home))
        slot = self.fill.take(home) + (np.arange(len(home)) - np.repeat(first, sizes))
        fits = slot < self.SLOTS
        flat = home[fits] * self.SLOTS + slot[fits]
        self.keys.reshape(-1)[flat] = keys[fits]
        self.values.reshape(-1)[flat] = values[fits]
        if not fits.all():
            self.spill.update(zip(keys[~fits].tolist(), values[~fits].tolist(), strict=True))
        end = slot[first] + sizes
        self.fill[home[first]] = np.where(end > self.SLOTS, self.SPILLED, end)

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more keys now (at most ``MAX_RESERVE`` buckets' worth), so a run
        whose size is known grows its table once, before the first key, instead of rehashing as it
        fills: no rehash CPU, and the memory is taken at the start (flat) rather than in steps."""
        need = min(self.size + extra, int(self.MAX_RESERVE * self.SLOTS * self.MAX_LOAD))
        if need > self.MAX_LOAD * self.SLOTS * self.buckets:
            self._resize(int(need / (self.MAX_LOAD * self.SLOTS)) + 1)

    def _grow(self, need: int) -> None:
        self._resize(max(int(need * self.GROWTH / (self.MAX_LOAD * self.SLOTS)) + 1, self.buckets + 1))

    def _resize(self, new: int) -> None:
        old = self.buckets
        # the arrays grow in place (realloc, zero-filled at the end): old buckets keep their rows
        self.keys.resize((new, self.SLOTS), refcheck=False)
        self.values.resize((new, self.SLOTS), refcheck=False)
        self.fill.resize(new, refcheck=False)
        # a key's new home is at or after its old bucket, so going down from the last bucket only
        # ever writes buckets already rehashed or the chunk being rehashed
        for hi in range(old, 0, -self.GROW_CHUNK):
            lo = max(hi - self.GROW_CHUNK, 0)
            used = self.keys[lo:hi] != 0
            keys, values = self.keys[lo:hi][used], self.values[lo:hi][used]
            self.keys[lo:hi], self.values[lo:hi], self.fill[lo:hi] = 0, 0, 0
            self._put_sorted(keys, values, self._home(keys))
        if self.spill:
            spilled, self.spill = self.spill, {}
            keys = np.fromiter(spilled, np.uint64, len(spilled))
            self._put_sorted(keys, np.fromiter(spilled.values(), np.int64, len(spilled)), self._home(keys))


class Labels:
    """Names of the kept rows (record id, or ``input:N`` for seeded rows) in one bytearray:
    ~20 bytes a label instead of ~70 for a list of str kept alive after their records."""

    def __init__(self) -> None:
        self._blob, self._ends = bytearray(), array("q")

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i: int) -> str:
        return self._blob[self._ends[i - 1] if i else 0 : self._ends[i]].decode("utf-8")

    def extend(self, labels: Iterable[str]) -> None:
        labels = list(labels)
        joined = "".join(labels)
        if joined.isascii():  # record ids are: one encode, lengths of the str themselves
            self._ends.extend(islice(accumulate(map(len, labels), initial=len(self._blob)), 1, None))
            self._blob += joined.encode("ascii")
            return
        encoded = [label.encode("utf-8") for label in labels]
        self._ends.extend(islice(accumulate(map(len, encoded), initial=len(self._blob)), 1, None))
        self._blob += b"".join(encoded)

    @property
    def nbytes(self) -> int:
        return len(self._blob) + self._ends.itemsize * len(self._ends)
