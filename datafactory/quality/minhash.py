"""MinHash signatures and LSH band keys for near dedup, over a whole batch in a few numpy calls.

Signatures: word shingles hashed to 32 bits, then ``num_perm`` functions h_i(x) = a_i * x mod 2**32
with odd a_i derived from ``seed`` by splitmix64 (same seed, same signatures on any machine or numpy
version), minimum per function. On already-mixed shingle hashes this multiply-only family matched
MinHash's theoretical variance and band-collision curve in our checks, and costs one numpy multiply
and one minimum per shingle and function.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from datafactory.quality.normalize import U64, TokenBatch, mix64
from datafactory.quality.shingle import shingle_hashes

U32 = npt.NDArray[np.uint32]
_BAND_BASE = 0x9E3779B97F4A7C15
Bool = npt.NDArray[np.bool_]


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


class MinHasher:
    """Signatures of ``shingle``-word shingles under ``num_perm`` functions, and their
    ``bands`` x ``rows`` LSH band keys."""

    # shingles per numpy pass: the (num_perm, CHUNK) product stays inside L2 (2 MiB at 128 x 4096)
    CHUNK = 4096

    def __init__(self, num_perm: int, shingle: int, seed: int, bands: int, rows: int) -> None:
        self.num_perm, self.shingle, self.bands, self.rows = num_perm, shingle, bands, rows
        # splitmix64's sequence for ``seed``: fixed forever, unlike numpy's generator streams
        steps = np.arange(1, num_perm + bands + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        randoms = mix64(steps + np.uint64(seed % 2**64))
        self._mult = ((randoms[:num_perm] >> np.uint64(32)).astype(np.uint32) | np.uint32(1))[:, None]
        self._band_salt = randoms[num_perm:]
        self._band_weights = np.array([pow(_BAND_BASE, rows - 1 - i, 2**64) for i in range(rows)], np.uint64)

    def signatures(self, tokens: TokenBatch) -> tuple[U32, Bool]:
        """MinHash signature per row (all 0xFFFFFFFF for rows without words) and which rows have one."""
        shingles, offsets = shingle_hashes(tokens, self.shingle)
        x = (shingles >> np.uint64(32)).astype(np.uint32)
        counts = np.diff(offsets)
        rows = np.flatnonzero(counts)
        sig = np.full((len(counts), self.num_perm), 0xFFFFFFFF, np.uint32)
        # functions along the rows of the product and shingles along its columns: reduceat then
        # takes row-wise minima over contiguous runs, ~4x faster than the transposed layout.
        # Rows go in groups whose shingles fit one chunk (a longer row is a group by itself).
        lo = 0
        while lo < len(rows):
            first = int(offsets[rows[lo]])
            hi = max(int(np.searchsorted(offsets[rows + 1], first + self.CHUNK, side="right")), lo + 1)
            group = rows[lo:hi]
            end = int(offsets[group[-1] + 1])
            product = self._mult * x[None, first:end]
            sig[group] = np.minimum.reduceat(product, offsets[group] - first, axis=1).T
            lo = hi
        return sig, counts > 0

    def band_keys(self, sig: U32) -> U64:
        """(rows, bands) keys, never 0 (the hash table's empty mark): per band the polynomial
        sum_i v_i * C**(rows-1-i) mod 2**64 of its values, finalised. One integer matmul computes
        every band's polynomial (numpy's uint64 products and sums wrap mod 2**64), where a loop over
        the band's rows took 2 numpy calls a row."""
        bands = sig[:, : self.bands * self.rows].reshape(len(sig), self.bands, self.rows)
        acc = bands.astype(np.uint64) @ self._band_weights
        return np.maximum(mix64(acc ^ self._band_salt), np.uint64(1))
