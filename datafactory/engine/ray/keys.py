"""The worker's half of the shuffle dedup (``engine/ray/shuffle.py``): each output record's dedup keys.

With ``ray_dedup: shuffle`` a worker does not leave the gates with memory to the driver's input-order
pass; it computes, next to each output batch, the keys those gates would look up:

* exact dedup: the xxh3 key of the normalised text (``ExactDedup.keys``);
* near dedup: the ``bands`` LSH band keys of the MinHash signature (``NearDedup.keys``) — the same
  shingles, permutations, bands and threshold as the asyncio engine, by the same code, so the shuffle
  finds exactly the candidates the driver's hash table would.

A record is named by its *ordinal* ``seq << ORD_SHIFT | index`` (input position of its row, place among
the row's outcome records): the order the driver path decides in. Gates of the ordered chain without
memory (a preference run's pair-column gates) run first, as on the driver: only their survivors have
keys. The output is three flat columns per gate key (``g`` the gate's place in the plan, ``key``,
``ord``) — what the shuffle groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datafactory.engine.gate_batch import run_batch
from datafactory.engine.outcome import is_rejected
from datafactory.quality.dedup import ExactDedup, NearDedup
from datafactory.quality.gate import Gate, SeedableGate, field_texts
from datafactory.quality.normalize import tokens_for
from datafactory.record import Record

ORD_SHIFT = 20  # up to 2**20 outcome records per row
EXACT, NEAR = 0, 1


def ordinal(seq: int, index: int) -> int:
    return (int(seq) << ORD_SHIFT) | index


@dataclass
class Plan:
    """The ordered gates as the shuffle path runs them: ``pre`` (no memory) then ``dedup`` in flow order
    (an exact gate, then a near one, each optional)."""

    pre: list[Gate] = field(default_factory=list)
    dedup: list[ExactDedup | NearDedup] = field(default_factory=list)

    def kinds(self) -> list[int]:
        return [EXACT if isinstance(g, ExactDedup) else NEAR for g in self.dedup]


def plan_for(ordered: Sequence[Gate]) -> Plan | None:
    """The plan, or None when the chain is not "gates without memory, then exact, then near dedup" (another
    gate with memory, or dedup gates in another order: only the driver path decides those)."""
    plan = Plan()
    for g in ordered:
        if type(g) in (ExactDedup, NearDedup):
            if plan.dedup and (type(g) is ExactDedup or type(plan.dedup[-1]) is NearDedup):
                return None
            plan.dedup.append(g)  # type: ignore[arg-type]
        elif isinstance(g, SeedableGate) or plan.dedup:
            return None
        else:
            plan.pre.append(g)
    return plan


def candidates(outcomes: Iterable[tuple[int, Sequence[Record]]]) -> tuple[list[Record], list[int]]:
    """The records of ``(seq, outputs)`` pairs that no step rejected, and their ordinals."""
    records: list[Record] = []
    ords: list[int] = []
    for seq, outs in outcomes:
        for i, rec in enumerate(outs):
            if not is_rejected(rec):
                records.append(rec)
                ords.append(ordinal(seq, i))
    return records, ords


def passed(records: list[Record], ords: list[int], verdicts: Sequence[object | None]) -> tuple[list[Record], list[int]]:
    """The records (and ordinals) whose verdict is None."""
    keep = [i for i, v in enumerate(verdicts) if v is None]
    return [records[i] for i in keep], [ords[i] for i in keep]


def survivors(plan: Plan, outcomes: Sequence[tuple[int, Sequence[Record]]]) -> tuple[list[Record], list[int]]:
    """The records that reach the dedup gates (not rejected before, passed ``pre``) and their ordinals."""
    records, ords = candidates(outcomes)
    if plan.pre and records:
        records, ords = passed(records, ords, run_batch(plan.pre, records))
    return records, ords


def gate_keys(gate: ExactDedup | NearDedup, records: Sequence[Record]) -> tuple[np.ndarray, np.ndarray]:
    """(record index, key) pairs: one key per record with text (exact), ``bands`` per record with words
    (near) — what the gate would probe its memory with (its own ``keys``)."""
    rows, keys = gate.keys(tokens_for(field_texts(records, gate.fields)))
    if keys.ndim == 2:
        return np.repeat(rows, keys.shape[1]), keys.ravel()
    return rows, keys


def key_rows(plan: Plan, outcomes: Sequence[tuple[int, Sequence[Record]]]) -> dict[str, Any]:
    """The key columns (``g``, ``key``, ``ord``) of a batch of rows' outcomes."""
    records, ords = survivors(plan, outcomes)
    ord_arr = np.asarray(ords, np.int64)
    gs, keys, out_ords = [], [], []
    if records:
        for j, gate in enumerate(plan.dedup):
            rows, k = gate_keys(gate, records)
            gs.append(np.full(len(k), j, np.int8))
            keys.append(k.astype(np.uint64))
            out_ords.append(ord_arr[rows])
    if not gs:
        return empty_keys()
    return {"g": np.concatenate(gs), "key": np.concatenate(keys), "ord": np.concatenate(out_ords)}


def empty_keys() -> dict[str, Any]:
    return {"g": np.zeros(0, np.int8), "key": np.zeros(0, np.uint64), "ord": np.zeros(0, np.int64)}


def with_parts(keys: dict[str, Any], parts: int) -> dict[str, Any]:
    """The keys with their shuffle partition (``part``: the key mod ``parts``; keys are mixed hashes)."""
    return {**keys, "part": (keys["key"] % np.uint64(parts)).astype(np.int32)}
