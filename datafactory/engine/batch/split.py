"""Splitting queued requests into provider batches: at most ``max_requests`` lines and ``max_bytes``
bytes (newlines included) per input file, in the order the requests were asked."""

from __future__ import annotations

from collections.abc import Iterable


def split(items: Iterable[tuple[str, int]], max_requests: int, max_bytes: int
          ) -> tuple[list[tuple[list[str], int]], list[str]]:
    """``(chunks, too_big)``: each chunk is ``(keys, file bytes)``; ``too_big`` are keys whose single line
    is over ``max_bytes`` (no batch can hold them)."""
    chunks: list[tuple[list[str], int]] = []
    too_big: list[str] = []
    keys: list[str] = []
    size = 0
    for key, nbytes in items:
        line = nbytes + 1
        if line > max_bytes:
            too_big.append(key)
            continue
        if keys and (len(keys) >= max_requests or size + line > max_bytes):
            chunks.append((keys, size))
            keys, size = [], 0
        keys.append(key)
        size += line
    if keys:
        chunks.append((keys, size))
    return chunks, too_big
