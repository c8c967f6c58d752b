"""Global dedup by a Ray shuffle of keys (``ray_dedup: shuffle``), the kept set of the driver path.

The driver path (``engine/ray/collect.py``) runs exact and near dedup over every output record, in input
order, on the driver. This path moves the work that grows with the corpus off the driver, after
data-juicer's Ray MinHash dedup: signatures and LSH band keys are computed on the workers inside
``map_batches`` (``engine/ray/keys.py``, next to each output batch), the keys are grouped by a Ray
shuffle (``groupby(part).map_groups``, ``part = key mod parts``), and each group settles what it can.

What a group settles must be what the driver path decides, record for record, and that path is a greedy
pass in input order: a record is a duplicate when one of its keys is a key of an *earlier kept* record
(or of the dedup memory seeded before the run). So:

* exact keys: a group's first ordinal (input order) is kept and every later member is a ``duplicate``
  of it — equality is transitive, the group decides alone;
* near band keys: near-similarity is not transitive (A ~ B, B ~ C, A !~ C: the greedy pass keeps A and C,
  a union-find or a min-id-per-component keeps A only), so a group only names its members as
  *candidates*. The driver then runs the greedy pass over the candidates alone — the records sharing a
  band key with another record, a few percent of a corpus — and every other record is kept untouched.
  The exact duplicates are taken out of the candidates first (the near gate sees the exact gate's
  survivors, as in the flow).

The seeded memory (rows already written, input texts) goes into the shuffle as members with negative
ordinals, read from the driver's seeded gates: always kept, before every record. Details name the same
records the driver path names ("same normalised text as <id>", "similar to <id>").

Output batches are parked in the object store as they arrive (the driver keeps only their refs, the
workers' counters and the progress display as in the driver path); once the keys are resolved they
are committed in input order. Rows of a stopped run that arrived are resolved and committed as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import ray

from datafactory.engine.commit import CommitBatcher
from datafactory.engine.flow import now
from datafactory.engine.gate_batch import run_batch
from datafactory.engine.outcome import reject
from datafactory.engine.ray.collect import Collector
from datafactory.engine.ray.keys import EXACT, NEAR, Plan, candidates, passed, with_parts
from datafactory.engine.ray.worker import loads
from datafactory.engine.stats import Stats
from datafactory.quality.gate import Reject
from datafactory.record import Record

SEED_BASE = 1 << 62  # a seeded entry's ordinal is its place in the gate's memory minus this: < every record's
ROWS_PER_PART = 50_000


def parts_for(rows: int, workers: int) -> int:
    """Shuffle partitions: a few per worker, more when the run is big (a partition holds ~16 keys per row)."""
    return max(2 * workers, min(1024, rows // ROWS_PER_PART + 1))


def seed_rows(plan: Plan) -> dict[str, np.ndarray]:
    """The keys the driver's gates were seeded with, as shuffle members (ordinals below every record's)."""
    gs, keys, ords = [], [], []
    for j, gate in enumerate(plan.dedup):
        stored, places = gate.memory()  # the seeded memory itself: keys and the seeded rows they name
        keys.append(stored.astype(np.uint64))
        ords.append(places.astype(np.int64) - SEED_BASE)
        gs.append(np.full(len(stored), j, np.int8))
    if not gs:
        return {"g": np.zeros(0, np.int8), "key": np.zeros(0, np.uint64), "ord": np.zeros(0, np.int64)}
    return {"g": np.concatenate(gs), "key": np.concatenate(keys), "ord": np.concatenate(ords)}


def resolve_part(batch: dict[str, np.ndarray], kinds: Sequence[int]) -> dict[str, np.ndarray]:
    """One shuffle partition: exact groups → (ord rejected, by first ord); near groups of ≥ 2 → candidates."""
    g, key, ords = batch["g"], batch["key"].astype(np.uint64), batch["ord"].astype(np.int64)
    n = len(g)
    if n == 0:
        return _resolved([], [], [], [])
    order = np.lexsort((ords, key, g))
    g, key, ords = g[order], key[order], ords[order]
    new = np.ones(n, np.bool_)
    new[1:] = (g[1:] != g[:-1]) | (key[1:] != key[:-1])
    start = np.flatnonzero(new)
    size = np.diff(np.append(start, n))
    group = np.repeat(np.arange(len(start)), size)
    shared = size[group] >= 2
    first = ords[start][group]
    exact = np.asarray(kinds, np.int8)[g] == EXACT
    dup = exact & shared & (ords != first) & (ords >= 0)
    cand = ~exact & shared
    return _resolved([np.full(int(dup.sum()), EXACT, np.int8), np.full(int(cand.sum()), NEAR, np.int8)],
                     [ords[dup], ords[cand]], [first[dup], np.zeros(int(cand.sum()), np.int64)],
                     [np.zeros(int(dup.sum()), np.uint64), key[cand]])


def _resolved(kind: list[np.ndarray], ords: list[np.ndarray], by: list[np.ndarray],
              key: list[np.ndarray]) -> dict[str, np.ndarray]:
    def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return {"kind": cat(kind, np.int8), "ord": cat(ords, np.int64), "by": cat(by, np.int64),
            "key": cat(key, np.uint64)}


def shuffle(key_refs: list[Any], plan: Plan, parts: int) -> dict[str, np.ndarray]:
    """Group the parked key tables (and the seeds) by a Ray shuffle; every partition's settlements."""
    import pyarrow as pa

    seeds = seed_rows(plan)
    refs = list(key_refs)
    if len(seeds["key"]):
        refs.append(ray.put(pa.table(with_parts(seeds, parts))))
    if not refs:
        return _resolved([], [], [], [])
    ds = ray.data.from_arrow_refs(refs)
    out = ds.groupby("part", num_partitions=parts).map_groups(
        resolve_part, fn_args=(plan.kinds(),), batch_format="numpy")  # type: ignore[arg-type]
    chunks = list(out.iter_batches(batch_format="numpy", batch_size=None))
    if not chunks:
        return _resolved([], [], [], [])
    return {name: np.concatenate([c[name] for c in chunks]) for name in ("kind", "ord", "by", "key")}


def near_verdicts(ords: np.ndarray, keys: np.ndarray, dropped: np.ndarray) -> dict[int, int]:
    """The greedy pass over the near candidates in input order: ordinal → the earliest kept one it shares
    a band key with (seeds are kept whatever they share); ``dropped`` (exact duplicates) never take part."""
    live = ~np.isin(ords, dropped)
    ords, keys = ords[live], keys[live]
    order = np.argsort(ords, kind="stable")
    ords, keys = ords[order].tolist(), keys[order].tolist()
    taken: dict[int, int] = {}
    out: dict[int, int] = {}
    i, n = 0, len(ords)
    while i < n:
        o = ords[i]
        j = i
        while j < n and ords[j] == o:
            j += 1
        mine = keys[i:j]
        if o < 0:
            for k in mine:
                taken.setdefault(k, o)
        else:
            hits = [taken[k] for k in mine if k in taken]
            if hits:
                out[o] = min(hits)
            else:
                for k in mine:
                    taken[k] = o
        i = j
    return out


class Verdicts:
    """Every dedup reject of the run, from the shuffle: ordinal → (gate index in the plan, by ordinal)."""

    def __init__(self, plan: Plan, resolved: dict[str, np.ndarray]) -> None:
        self.plan = plan
        self.kinds = kinds = plan.kinds()
        self.rejects: dict[int, tuple[int, int]] = {}
        exact = resolved["kind"] == EXACT
        if EXACT in kinds:
            j = kinds.index(EXACT)
            self.rejects.update((o, (j, b)) for o, b in zip(resolved["ord"][exact].tolist(),
                                                            resolved["by"][exact].tolist(), strict=True))
        if NEAR in kinds:
            j = kinds.index(NEAR)
            near = near_verdicts(resolved["ord"][~exact], resolved["key"][~exact], resolved["ord"][exact])
            self.rejects.update((o, (j, b)) for o, b in near.items())
        self.wanted = {b for _, b in self.rejects.values() if b >= 0}
        self.labels: dict[int, str] = {}

    def decide(self, records: Sequence[Record], ords: Sequence[int]) -> list[Reject | None]:
        """The verdicts of ``records`` (in input order, each after every earlier one)."""
        out: list[Reject | None] = [None] * len(records)
        for i, (rec, o) in enumerate(zip(records, ords, strict=True)):
            if o in self.wanted:  # named by a later reject (kept by exact dedup, maybe dropped by near)
                self.labels[o] = rec.id
            hit = self.rejects.get(o)
            if hit is None:
                continue
            j, by = hit
            gate = self.plan.dedup[j]
            label = gate.label(by + SEED_BASE) if by < 0 else self.labels[by]
            out[i] = (Reject("duplicate", f"same normalised text as {label}") if self.kinds[j] == EXACT
                      else Reject("near_duplicate", f"similar to {label}"))
        return out


class ShuffleCollector(Collector):
    """The collector of the shuffle path: parks each output batch and its keys, decides at :meth:`finish`."""

    def __init__(self, plan: Plan, commits: CommitBatcher, stats: Stats, parts: int) -> None:
        super().__init__([*plan.pre, *plan.dedup], commits, stats)
        self.plan, self.parts = plan, parts
        self.parked: list[tuple[int, Any]] = []  # (first seq, ref) per output batch
        self.key_refs: list[Any] = []
        self.verdicts: Verdicts | None = None
        self.shuffle_s = 0.0

    def take(self, batch: dict[str, np.ndarray]) -> None:
        import pyarrow as pa

        self.watch(batch)
        if len(batch["seq"]):
            self.parked.append((int(batch["seq"][0]), ray.put({"seq": batch["seq"], "out": batch["out"]})))
        keys = [loads(blob) for blob in batch["keys"] if len(blob)]
        if keys:
            cols = {name: np.concatenate([k[name] for k in keys]) for name in ("g", "key", "ord", "part")}
            if len(cols["key"]):
                self.key_refs.append(ray.put(pa.table(cols)))

    def finish(self) -> None:
        """Resolve every parked key, then commit the parked rows in input order."""
        if not self.parked:
            return
        t0 = now()
        self.verdicts = Verdicts(self.plan, shuffle(self.key_refs, self.plan, self.parts))
        self.key_refs.clear()
        self.shuffle_s = now() - t0
        self.ordered.seconds += self.shuffle_s
        # in input order (the order they arrive in with preserve_order; sorted all the same: a record's
        # label must be known before a later record's reject names it)
        parked = [ref for _, ref in sorted(self.parked, key=lambda p: p[0])]
        self.parked = []
        for i, ref in enumerate(parked):
            chunk = ray.get(ref)
            parked[i] = None  # the object store frees it as soon as it is committed
            ready = [loads(blob) for blob in chunk["out"] if len(blob)]
            self.commit(ready)

    def _decide(self, ready: list[tuple[Record, list[Record]]]) -> None:
        assert self.verdicts is not None
        records, ords = candidates((row.meta["seq"], outs) for row, outs in ready)
        if not records:
            return
        t0 = now()
        self.ordered.taken += len(records)
        if self.plan.pre:
            verdicts = run_batch(self.plan.pre, records)
            for rec, v in zip(records, verdicts, strict=True):
                if v is not None:
                    reject(rec, "gate", v.reason, v.detail)
                    self.ordered.rejected += 1
            records, ords = passed(records, ords, verdicts)
        for rec, v in zip(records, self.verdicts.decide(records, ords), strict=True):
            if v is not None:
                reject(rec, "gate", v.reason, v.detail)
                self.ordered.rejected += 1
        self.ordered.seconds += now() - t0
