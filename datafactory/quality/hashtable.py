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
    """uint64 key -> row ordinal by linear probing in two flat arrays, vectorised over many keys:
    12 bytes a slot (17-34 per entry at its 0.35-0.7 load) against ~100 for a dict of ints.
    Key 0 marks an empty slot, so callers never store it (their keys map 0 to 1)."""

    MAX_LOAD = 0.7
    WINDOW = 8
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
        mask = len(self.keys) - 1
        # most keys settle at their home slot (it holds them, or it is empty): one gather for all
        end = self._home(keys)
        stored = self.keys[end]
        found = np.full(len(keys), -1, np.int64)
        hit = stored == keys
        if hit.any():
            found[hit] = self.values[end[hit]]
        rest = np.flatnonzero(~hit & (stored != 0))
        if len(rest):
            found[rest], end[rest] = self._probe_on(keys[rest], (end[rest] + 1) & mask)
        return found, end

    def _probe_on(self, keys: U64, slot: I64) -> tuple[I64, I64]:
        """``probe`` for keys whose chain goes on from ``slot``."""
        found, end = np.full(len(keys), -1, np.int64), slot.copy()
        pending, mask = np.arange(len(keys)), len(self.keys) - 1
        # look at WINDOW slots per key per pass: chains at 0.7 load are often longer than one slot,
        # and a pass of numpy calls costs more than the slots it reads
        window = np.arange(self.WINDOW)
        while len(pending):
            at = (slot[:, None] + window) & mask
            stored = self.keys[at]
            stop = (stored == keys[pending, None]) | (stored == 0)  # linear probing: empty ends a run
            done = stop.any(axis=1)
            where = at[done, stop[done].argmax(axis=1)]
            hit = self.keys[where] != 0
            found[pending[done][hit]] = self.values[where[hit]]
            end[pending[done]] = where
            pending, slot = pending[~done], (slot[~done] + self.WINDOW) & mask
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
        encoded = [label.encode("utf-8") for label in labels]
        self._ends.extend(islice(accumulate(map(len, encoded), initial=len(self._blob)), 1, None))
        self._blob += b"".join(encoded)

    @property
    def nbytes(self) -> int:
        return len(self._blob) + self._ends.itemsize * len(self._ends)
