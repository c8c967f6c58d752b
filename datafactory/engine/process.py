"""One input row through the record flow, as a list of steps over :class:`~datafactory.record.Record`:

    input → request → parse/validate (re-ask) → shape (row formats) | sample tags (preference/KTO)
          → gates (micro-batches) → async gates → pair (preference/KTO)

``process`` returns the row's outcome records — the rejected ones marked (``engine/outcome.py``), the
others candidates for the gates with memory, which run after it in input order (``engine/ordered.py``)
before the row is committed. The steps live in :mod:`datafactory.steps`; this module wires them and
counts, per step, the records in, the rejects and the time spent (``engine/flow.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from datafactory.config.pipeline import Pipeline
from datafactory.engine.flow import StepStats, now
from datafactory.engine.gate_batch import GateBatcher
from datafactory.engine.gates import Gates, build_gates
from datafactory.engine.outcome import is_rejected, reject
from datafactory.engine.requester import Requester
from datafactory.quality.gate import Gate
from datafactory.record import Record
from datafactory.steps.pair import PairStep, SampleStep
from datafactory.steps.parse import ParseStep
from datafactory.steps.request import RequestStep
from datafactory.steps.shape import ShapeStep
from datafactory.steps.source import SourceStep


@dataclass(slots=True)
class Staged:
    """A row between :meth:`RowProcessor.stage` and :meth:`RowProcessor.finish`."""

    row: Record
    samples: list[Record]
    out: list[Record]


class RowProcessor:
    def __init__(self, pipe: Pipeline, requester: Requester, gates: Gates | None = None) -> None:
        self.pipe = pipe
        self.req = requester
        self.steps = build_gates(pipe) if gates is None else gates
        self.gates: list[Gate] = self.steps.gates
        self.counts = StepStats(requester.stats)
        params = dict(pipe.provider.params)
        self.source = SourceStep(pipe.input.fields, self.steps.source)
        self.request = RequestStep(pipe.prompt.render, requester, params)
        self.parse = ParseStep(pipe.schema, requester, params, pipe.quality.reask)
        self.paired = pipe.output.format in ("preference", "kto")
        self.shape = None if self.paired else ShapeStep(pipe.output, self.steps.needs_object)
        self.sample = SampleStep(pipe) if self.paired else None
        self.pair = PairStep(pipe) if self.paired else None
        self.batcher = GateBatcher(self.steps.batch, counts=self.counts)
        self.has_gates = bool(self.batcher.gates or self.steps.asynchronous)
        # ``finish`` sends requests only through async gates; without them it just waits for a gate batch
        self.finish_sends = bool(self.steps.asynchronous)

    async def process(self, row: Record) -> list[Record]:
        staged = await self.stage(row)
        return staged if isinstance(staged, list) else await self.finish(staged)

    async def stage(self, row: Record) -> list[Record] | Staged:
        """The steps up to the gates: the row's outcome records when nothing is left to decide, else the
        :class:`Staged` row for :meth:`finish` (which only waits for the gates' micro-batch when
        ``self.finish_sends`` is False: the scheduler's worker hands it over and takes the next row)."""
        counts = self.counts
        if "mapped" not in row.meta:  # the scheduler runs the input step on its batches (input_batch)
            t0 = now()
            ok = self.source(row)
            counts.add("input", 1, not ok, t0)
            if not ok:
                return [row]
        elif is_rejected(row):
            return [row]
        samples = await self.request(row)
        counts.count("request", 1, is_rejected(samples[0]))
        if is_rejected(samples[0]):
            return samples
        for rec in samples:
            good = await self.parse(rec)
            counts.count("parse", 1, not good)
        if self.paired:
            out = [r for r in samples if not is_rejected(r)]
            t0 = now()
            for rec in out:
                self.sample(rec)  # type: ignore[misc]
            counts.add("shape", len(out), 0, t0)
        else:
            t0 = now()
            shaped = [[rec] if is_rejected(rec) else self.shape(rec) for rec in samples]  # type: ignore[misc]
            out = [r for group in shaped for r in group]
            parsed = sum(not is_rejected(rec) for rec in samples)
            counts.add("shape", parsed, sum(is_rejected(r) for r in out) - (len(samples) - parsed), t0)
        staged = Staged(row, samples, out)
        if not self.paired and (not self.has_gates or all(is_rejected(r) for r in out)):
            return out  # no gate to wait for
        return staged

    async def finish(self, staged: Staged) -> list[Record]:
        """The gates without memory (micro-batched), the async gates, the pairing: the row's outcome records."""
        row, samples, out = staged.row, staged.samples, staged.out
        await self._gates([r for r in out if not is_rejected(r)])
        if self.paired:
            t0 = now()
            made = self.pair(row, samples)  # type: ignore[misc]
            self.counts.add("pair", len(samples), sum(is_rejected(r) for r in made), t0)
            return [*made, *(r for r in samples if is_rejected(r))]
        return out

    def input_batch(self, rows: list[Record]) -> None:
        """The input step over a batch of rows read (before they are queued): mapped, source gates once."""
        t0 = now()
        rejected = self.source.batch(rows)
        for row in rows:
            row.meta["mapped"] = True
        self.counts.add("input", len(rows), rejected, t0)

    def publish_steps(self) -> dict:
        """The per-step counts for stats.json (once, at the end of the run), with the time the async
        steps measured in their synchronous parts."""
        self.counts.time("request", self.request.seconds)
        self.counts.time("parse", self.parse.seconds)
        return self.counts.publish()

    async def _gates(self, records: list[Record]) -> None:
        """The gates without memory (micro-batched), then the async gates, on ``records``."""
        if not records:
            return
        if self.batcher.gates:
            verdicts = await self.batcher.check_many(records)
            for rec, verdict in zip(records, verdicts, strict=True):
                if verdict is not None:
                    reject(rec, "gate", verdict.reason, verdict.detail)
        for gate in self.steps.asynchronous:
            alive = [r for r in records if not is_rejected(r)]
            for rec in alive:
                verdict = await gate.acheck(rec, self.req.ask)
                if verdict is not None:
                    reject(rec, "gate", verdict.reason, verdict.detail)
            self.counts.count("async_gates", len(alive), sum(is_rejected(r) for r in alive))
