"""The Ray worker: an async callable class run by ``map_batches`` on an actor pool, one per worker.

Each worker is one process with the asyncio engine's record flow (``engine/process.py``
``RowProcessor``: input → request → parse/validate/re-ask → shape → gates without memory → async gates)
over its own provider (its own aiohttp session), its own in-flight limit (``limits.concurrency``
requests at once per worker) and its own response file (``engine/ray/responses.py``: every response
durable the moment it arrives). RPM/TPM and the 429 pause are the limiter actor's
(``engine/ray/limiter.py``), shared by all workers.

``__call__`` is an async generator: it takes a batch of input records (pickled ``Record``s with their
input position ``seq``), runs the input step once over the batch (source gates, e.g. decontamination,
see a batch at once), processes the rows concurrently and yields one output row per input row:
``seq``, ``out`` (the pickled ``(row, outcome records)``; empty when the row got no outcome because the
run stopped) and ``stats`` (on the batch's last row: this worker's cumulative counters, newest
``version`` wins on the driver). Gates with memory (dedup) are *not* run here: the driver runs them over
all workers' output in input order (``engine/ray/driver.py``), so dedup is global.
"""

from __future__ import annotations

import asyncio
import copy
import os
import pickle  # noqa: S403 — records between our own processes (Ray pickles everything anyway)
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import ray

from datafactory.config.pipeline import Pipeline
from datafactory.engine.breaker import breaker_for
from datafactory.engine.process import RowProcessor
from datafactory.engine.ray.keys import Plan, key_rows, plan_for, with_parts
from datafactory.engine.ray.limiter import RemoteLimits
from datafactory.engine.ray.responses import open_worker_cache
from datafactory.engine.requester import Requester
from datafactory.engine.stats import Stats
from datafactory.errors import BudgetExhausted, RequestsFailing, RunStopped, UserError
from datafactory.providers.registry import create_provider
from datafactory.record import Record
from datafactory.secrets import register_secret

REQUEST_SECTIONS = ("structured_output", "endpoints", "adaptive_concurrency")
COUNTERS = ("requests_sent", "cache_hits", "retries", "rate_limited", "failed_requests", "reasks",
            "prompt_tokens", "completion_tokens")


def dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def loads(blob: bytes) -> Any:
    return pickle.loads(blob)  # noqa: S301 — written by this run's own driver / workers


def halt_info(exc: UserError) -> dict[str, Any]:
    """A stop, as plain values (the error classes take keyword-only arguments and do not unpickle)."""
    info: dict[str, Any] = {"kind": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, RequestsFailing):
        info.update(failures=exc.failures, hint=exc.hint)
    if isinstance(exc, BudgetExhausted):
        info.update(budget_usd=exc.budget_usd, spent_usd=exc.spent_usd)
    return info


class RowWorker:
    def __init__(self, pipe: Pipeline, api_key: str, run_dir: str, limiter: Any, key_parts: int | None = None) -> None:
        register_secret(api_key)  # redacted from anything this process writes
        self.pipe, self._key, self._limiter = pipe, api_key, limiter
        self.key_parts = key_parts  # the shuffle dedup: this worker computes its records' dedup keys
        self.plan: Plan | None = None
        self.slot, self._lock, self.cache = open_worker_cache(Path(run_dir))
        self.node = ray.get_runtime_context().get_node_id()
        self.stats = Stats()
        self.version = 0
        self.halted: dict[str, Any] | None = None
        self.processor: RowProcessor | None = None
        self._slots: asyncio.Semaphore | None = None

    def _start(self) -> RowProcessor:
        """The provider and the flow, built on the actor's event loop (the aiohttp session binds to it)."""
        pipe = self.pipe
        provider = create_provider(pipe.provider, api_key=self._key, timeout_s=pipe.limits.timeout_s,
                                   concurrency=pipe.limits.concurrency)
        requester = Requester(pipe, provider, self.cache, RemoteLimits(self._limiter), self.stats,
                              breaker=breaker_for(pipe))
        requester.breaker.on_trip = self._halt
        self._slots = asyncio.Semaphore(pipe.limits.concurrency)
        self.processor = RowProcessor(pipe, requester)
        if self.key_parts is not None:
            self.plan = plan_for(self.processor.steps.ordered)
        return self.processor

    def _halt(self, exc: UserError) -> None:
        if self.halted is None:
            self.halted = halt_info(exc)

    async def __call__(self, batch: dict[str, np.ndarray]) -> AsyncIterator[dict[str, np.ndarray]]:
        processor = self.processor or self._start()
        rows: list[Record] = [loads(blob) for blob in batch["rec"]]
        processor.input_batch(rows)  # the input step once over the batch (source gates)
        outcomes = await asyncio.gather(*(self._one(processor, row) for row in rows))
        outs = [b"" if o is None else dumps((row, o)) for row, o in zip(rows, outcomes, strict=True)]
        self.version += 1
        stats = [b""] * len(rows)
        stats[-1] = dumps(self.snapshot())
        out = {"seq": np.asarray(batch["seq"]), "out": np.array(outs, dtype=object),
               "stats": np.array(stats, dtype=object)}
        if self.key_parts is not None:
            keys = [b""] * len(rows)
            if self.plan is not None:
                done = [(row.meta["seq"], o) for row, o in zip(rows, outcomes, strict=True) if o is not None]
                keys[-1] = dumps(with_parts(key_rows(self.plan, done), self.key_parts))
            out["keys"] = np.array(keys, dtype=object)
        yield out

    async def _one(self, processor: RowProcessor, row: Record) -> list[Record] | None:
        assert self._slots is not None
        async with self._slots:
            if self.halted is not None:  # the run stops: no outcome, the rerun does the row
                return None
            try:
                return await processor.process(row)
            except RunStopped as exc:  # the breaker tripped (or the budget is reached) on this worker
                self._halt(exc)
                return None
            except UserError as exc:  # a wrong key, disk full: the whole run stops (driver raises it)
                self._halt(exc)
                return None

    def snapshot(self) -> dict[str, Any]:
        """This worker's cumulative counters (the driver keeps the newest per worker and sums them)."""
        s = self.stats
        steps: dict[str, dict[str, Any]] = {}
        if self.processor is not None:
            extra = {"request": self.processor.request.seconds, "parse": self.processor.parse.seconds}
            for name, c in self.processor.counts.counts.items():
                if c.taken:
                    steps[name] = {"in": c.taken, "rejected": c.rejected,
                                   "seconds": c.seconds + extra.get(name, 0.0)}
        # gates that keep counters for stats.json (decontamination per eval set): this worker's copy
        reports = {} if self.processor is None else {
            g.stats_section: copy.deepcopy(g.report) for g in self.processor.gates  # type: ignore[attr-defined]
            if getattr(g, "stats_section", None) is not None}
        # the request layer's own stats.json blocks (structured output, endpoints, adaptive concurrency)
        reports.update({name: copy.deepcopy(s.sections[name]) for name in REQUEST_SECTIONS if name in s.sections})
        return {"worker": f"{self.slot}:{os.getpid()}", "slot": self.slot, "version": self.version, "node": self.node,
                "reports": reports,
                "counters": {name: getattr(s, name) for name in COUNTERS}, "cost_usd": s.cost_usd,
                "steps": steps, "halted": self.halted}
