"""The driver's side of the map: the workers' output, in input order, through the gates with memory
into the commit log.

Ray Data hands the output over in input order (``preserve_order``), so the gates with memory (exact
and near dedup, built and seeded once on the driver) see every record of the run in input order, in
micro-batches (their vectorised path, ``engine/gate_batch.run_batch``): one global memory across all
workers, and the same verdicts as the asyncio engine's ``engine/ordered.py`` for the same input.
Each output batch is then committed in one transaction (``engine/commit.py``); every response a row
used was stored by its worker before the row left it.

The workers' counters arrive with their output (a cumulative snapshot per worker; the newest counts):
they are summed into the run's ``Stats`` as they come, so the progress display and stats.json show
requests, cache hits, retries, tokens and the per-step counts of the whole pool.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from datafactory.engine.augment import _add_counts
from datafactory.engine.commit import CommitBatcher
from datafactory.engine.flow import STEP_ORDER, StepCount, now
from datafactory.engine.gate_batch import run_batch
from datafactory.engine.outcome import is_rejected, reject
from datafactory.engine.ray.worker import COUNTERS, loads
from datafactory.engine.stats import Stats
from datafactory.quality.gate import Gate
from datafactory.record import Record

MAX_GATE_BATCH = 256


class Collector:
    def __init__(self, gates: Sequence[Gate], commits: CommitBatcher, stats: Stats) -> None:
        self.gates, self.commits, self.stats = list(gates), commits, stats
        self.ordered = StepCount()
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.halted: dict[str, Any] | None = None
        self.no_outcome = 0          # rows a stopping worker left without an outcome (the rerun does them)
        self.out_of_order = 0        # output rows that came after a later row (0 with preserve_order)
        self._last_seq = 0

    def take(self, batch: dict[str, np.ndarray]) -> None:
        """One output batch of the workers: decide the gates with memory, commit its rows."""
        self.watch(batch)
        self.commit([loads(blob) for blob in batch["out"] if len(blob)])

    def watch(self, batch: dict[str, np.ndarray]) -> None:
        """The workers' counters and the order and outcomes of a batch's rows (not its records)."""
        for seq, blob, snap in zip(batch["seq"], batch["out"], batch["stats"], strict=True):
            if len(snap):
                self._snapshot(loads(snap))
            if int(seq) < self._last_seq:
                self.out_of_order += 1
            self._last_seq = max(self._last_seq, int(seq))
            if not len(blob):
                self.no_outcome += 1

    def commit(self, ready: list[tuple[Record, list[Record]]]) -> None:
        """Decide the gates with memory over rows' outcomes (in input order), then commit them."""
        for start in range(0, len(ready), MAX_GATE_BATCH):
            self._decide(ready[start:start + MAX_GATE_BATCH])
        for row, outcomes in ready:
            self.commits.add_row(row, outcomes)
        self.commits.flush()

    def _decide(self, ready: list[tuple[Record, list[Record]]]) -> None:
        records = [r for _, outs in ready for r in outs if not is_rejected(r)]
        if not self.gates or not records:
            return
        t0 = now()
        verdicts = run_batch(self.gates, records)
        for rec, verdict in zip(records, verdicts, strict=True):
            if verdict is not None:
                reject(rec, "gate", verdict.reason, verdict.detail)
                self.ordered.rejected += 1
        self.ordered.taken += len(records)
        self.ordered.seconds += now() - t0

    def _snapshot(self, snap: dict[str, Any]) -> None:
        old = self.snapshots.get(snap["worker"])
        if old is None or snap["version"] > old["version"]:
            self.snapshots[snap["worker"]] = snap
        if snap.get("halted") and self.halted is None:
            self.halted = snap["halted"]
        s = self.stats
        for name in COUNTERS:
            setattr(s, name, sum(v["counters"][name] for v in self.snapshots.values()))
        costs = [v["cost_usd"] for v in self.snapshots.values() if v["cost_usd"] is not None]
        s.cost_usd = sum(costs) if costs else None

    def publish(self) -> None:
        """The per-step counts of all workers plus the driver's ordered gates → ``stats.sections["steps"]``."""
        steps: dict[str, dict[str, Any]] = {}
        merged: dict[str, Any] = {}
        for snap in self.snapshots.values():
            for name, c in snap["steps"].items():
                acc = steps.setdefault(name, {"in": 0, "rejected": 0, "seconds": 0.0})
                acc["in"] += c["in"]
                acc["rejected"] += c["rejected"]
                acc["seconds"] += c["seconds"]
        if self.ordered.taken:
            steps["ordered_gates"] = self.ordered.to_json()
            steps["ordered_gates"]["out_of_order"] = self.out_of_order
        for snap in self.snapshots.values():  # the workers' gate reports, their counters added up
            for section, report in snap.get("reports", {}).items():
                if section in merged:
                    _add_counts(merged[section], report)
                else:
                    merged[section] = copy.deepcopy(report)
        self.stats.sections.update(merged)
        ordered = {n: {**steps[n], "seconds": round(steps[n]["seconds"], 4)} for n in STEP_ORDER if n in steps}
        self.stats.sections["steps"] = ordered
        ray_block = self.stats.sections.setdefault("ray", {})
        ray_block["workers_seen"] = len(self.snapshots)
        ray_block["nodes_seen"] = len({snap.get("node") for snap in self.snapshots.values()})
        ray_block["rows_without_outcome"] = self.no_outcome
