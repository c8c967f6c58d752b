"""Batch mode: the online record flow run in passes, its cache misses sent as provider batches.

A pass is the normal run over the input (rows done are skipped, dedup seeded from stored outcomes) with
``Requester.on_miss`` set here: a miss queues its request (``RequestDeferred``, the row waits) instead of
sending it. After the pass the queued requests are split into batches, submitted (``submit.py``), waited
for, and every answer is stored in the cache under its custom_id (= the cache key); the next pass then
finishes those rows from the cache through the same parse / validate / gates / writers. Re-asks and the
lines that failed become the next batch; a request gives up after ``limits.max_attempts`` failed
attempts (``on_miss`` raises ``RequestFailed``: the usual reject with its reason). The loop ends when a
pass defers nothing, or after submitting with ``--no-wait`` (a rerun collects), or on Ctrl-C (the
batches keep running on the provider; a rerun collects them, ``--cancel-batches`` cancels them).

``BatchDriver`` has the Scheduler's interface (run, request_stop, halt, stop_signal), so ``augment``
runs it in the scheduler's place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from datafactory import constants as C
from datafactory.config.pipeline import Pipeline
from datafactory.engine.batch.collect import read_lines
from datafactory.engine.batch.store import BatchRow, BatchStore, Settle
from datafactory.engine.batch.submit import Submitter
from datafactory.engine.cache import Cache
from datafactory.engine.progress import Progress
from datafactory.engine.requester import Requester, estimate_tokens, expected_completion_tokens
from datafactory.engine.retry import with_retries
from datafactory.engine.scheduler import Scheduler
from datafactory.engine.stats import Stats
from datafactory.errors import (
    BudgetExhausted,
    FatalRequestError,
    ProviderError,
    RequestDeferred,
    RequestFailed,
    RunStopped,
    ServerError,
)
from datafactory.io.rundir import RunDir
from datafactory.providers.base import Completion
from datafactory.providers.batch_base import BatchClient, BatchInfo, create_batch_client
from datafactory.providers.pricing import batch_cost, cost

SHOWN_BATCHES = 200     # stats.json lists at most this many batches of the run dir
# a batch refused because the model's enqueued-token cap is reached (OpenAI): not the rows' fault
TOKEN_LIMIT = "token_limit_exceeded"  # noqa: S105 — an error code, not a secret


def batch_client(pipe: Pipeline, api_key: str) -> BatchClient:
    cfg = pipe.provider
    base_url = cfg.base_url or (os.environ.get("OPENAI_BASE_URL") or None if cfg.kind == "openai" else None)
    return create_batch_client(cfg.kind, api_key=api_key, base_url=base_url, timeout_s=pipe.limits.timeout_s)


class BatchDriver:
    def __init__(self, pipe: Pipeline, api_key: str, run: RunDir, cache: Cache, requester: Requester,
                 stats: Stats, progress: Progress, first: Scheduler, make: Callable[[], Scheduler]) -> None:
        self.pipe, self.api_key, self.run_dir, self.cache = pipe, api_key, run, cache
        self.requester, self.stats, self.progress = requester, stats, progress
        self.first, self.make = first, make
        self.stop_signal: int | None = None
        self._stop = asyncio.Event()
        self._current: Scheduler | None = None
        self._skipped0 = 0
        self._states: dict[str, str] = {}
        self._live: dict[str, BatchInfo] = {}
        self.section: dict[str, Any] = {
            "provider": pipe.provider.kind, "passes": 0, "submitted_batches": 0, "submitted_requests": 0,
            "requests_per_batch": [], "collected": 0, "errored_lines": 0, "missing": 0, "gave_up": 0,
            "token_limit_waits": 0, "cost_usd": 0.0, "online_cost_usd": 0.0, "running": [], "waiting": False,
            "batches": []}
        self._cooldown = False
        self._reserved: dict[str, float] = {}   # key → its worst case, held against limits.max_cost_usd
        self._halted: RunStopped | None = None
        # keys whose failure a pass already turned into a reject: later passes leave that reject as it is
        self._reported: set[str] = set()
        self._failing: set[str] = set()
        self._left_as_rejected = 0
        stats.sections["batch"] = self.section

    # ------------------------------------------------------------------ the Scheduler's interface
    def request_stop(self, signum: int) -> None:
        self.stop_signal = signum
        self.stats.interrupted = True
        if self._current is not None:
            self._current.request_stop(signum)
        self._stop.set()

    def halt(self, error: Any, grace_s: float | None = None) -> None:
        if self._current is not None:
            self._current.halt(error, grace_s)

    async def run(self) -> None:
        self.store = BatchStore(self.run_dir.path / C.BATCH_DB)
        self.client = batch_client(self.pipe, self.api_key)
        self.sub = Submitter(self.pipe, self.store, self.client, self._retry)
        self.store.start_invocation()
        budget = self.requester.budget
        if budget is not None:  # requests already in batches (an earlier invocation) hold their worst case
            self._reserved = self.store.estimates("assigned")
            budget.reserved_usd += sum(self._reserved.values())
        self.requester.on_miss = self._on_miss
        try:
            await self._loop()
        finally:
            self.requester.on_miss = None
            with contextlib.suppress(Exception):
                self._report()
            await self.client.aclose()
            self.store.close()

    # ------------------------------------------------------------------ the loop of passes
    async def _loop(self) -> None:
        for row in self.store.batches("intent", "uploaded"):  # submissions a kill interrupted
            if self._stop.is_set():
                return
            await self._submitted(await self.sub.advance(row, fresh=False), row)
        await self._look()  # whatever finished while nobody watched
        sched: Scheduler | None = self.first
        while not self._stop.is_set():
            self._halted = None
            try:
                await self._pass(sched or self.make())
            except BudgetExhausted as exc:  # the cost limit: what was queued before it still goes (it fits)
                self._halted = exc
            sched = None
            if self._stop.is_set() or self.stats.rows_deferred == 0:
                if self._halted is not None:
                    raise self._halted
                return
            refused_before = len(self.sub.errors)
            planned, too_big = self.sub.plan_queued()
            if self._halted is not None and not planned and not self.store.batches("submitted"):
                raise self._halted
            if too_big:
                limit = self.pipe.provider.batch.bytes_for(self.client.name)
                err = FatalRequestError(f"the request is larger than a batch file may be ({limit} bytes, "
                                        "provider.batch.max_bytes)", status=None)
                self.sub.errors.update(dict.fromkeys(too_big, err))
                self.store.fail(too_big, str(err))
                self.section["gave_up"] += len(too_big)
            if self._cooldown:  # the enqueued-token cap refused a batch: give the provider a moment
                self._cooldown = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.pipe.provider.batch.poll_s)
            for row in self.store.batches("intent", "uploaded"):
                if self._stop.is_set():
                    return
                await self._submitted(await self.sub.advance(row, fresh=False), row)
            if not self.store.batches("submitted"):
                if len(self.sub.errors) > refused_before:
                    continue  # nothing to wait for (requests refused for good): the next pass rejects them
                return
            if not self.pipe.provider.batch.wait:
                return
            await self._wait_all()

    async def _pass(self, sched: Scheduler) -> None:
        s = self.stats
        first = self.section["passes"] == 0
        self.section["passes"] += 1
        s.rows_deferred = 0
        if not first:  # rows finished by earlier passes are skipped again: not "done by an earlier run"
            s.rows_skipped_done = self._skipped0 - s.rows_done
        self._states = self.store.states()
        self._current = sched
        self._failing, self._left_as_rejected = set(), 0
        try:
            await sched.run()
        finally:
            self._current = None
            self.store.flush()
            self._reported |= self._failing
            s.rows_deferred -= self._left_as_rejected
            if first:
                self._skipped0 = s.rows_skipped_done
            else:
                s.rows_skipped_done = self._skipped0
            if sched.stop_signal is not None:
                self.stop_signal = sched.stop_signal

    def _on_miss(self, key: str, messages: list[dict[str, str]], params: dict[str, Any]) -> None:
        state = self._states.get(key)
        if state == "failed":
            if key in self._reported:  # its row was rejected by an earlier pass: not again (nor counted twice)
                self._left_as_rejected += 1
                raise RequestDeferred(key)
            self._failing.add(key)
            err = self.sub.errors.get(key) or ServerError("the request failed in its batches", status=None)
            raise RequestFailed(err, max(1, self.store.attempts(key)))
        if state is None:
            est = self._reserve(messages)
            body = self.client.body(self.pipe.provider.model, messages, self._sent_params(params))
            line = orjson.dumps({"custom_id": key, "method": "POST", "url": self.client.url, "body": body})
            request = orjson.dumps({"model": self.pipe.provider.model, "messages": messages, "params": params})
            self.store.queue(key, line, request, est)
            self._reserved[key] = est
            self._states[key] = "queued"
        raise RequestDeferred(key)

    def _reserve(self, messages: list[dict[str, str]]) -> float:
        """With a cost limit: hold this request's worst case at the batch price, or raise BudgetExhausted
        (the pass stops there, what was queued before is still submitted)."""
        budget = self.requester.budget
        if budget is None:
            return 0.0
        pipe = self.pipe
        amount = batch_cost(pipe.provider.model, pipe.pricing, estimate_tokens(messages),
                            expected_completion_tokens(pipe)) or 0.0
        return budget.hold(amount, held_by="requests in batches")

    def _release(self, key: str, actual: float | None) -> None:
        budget = self.requester.budget
        if budget is not None:
            budget.settle(self._reserved.pop(key, 0.0), actual)

    def _stepped_down(self, key: str, exc: ProviderError) -> bool:
        """A line refused for the response_format it carried: structured output steps down a level, as it
        does online (providers/structured.py), and the request is built again by the next pass."""
        prov = self.requester.provider
        formats, refused = getattr(prov, "formats", None), getattr(prov, "_refused", None)
        line = self.store.line_of(key) if formats and refused is not None else None
        if line is None or refused is None:
            return False
        sent = (line.get("body") or {}).get("response_format")
        level = next((i for i, f in enumerate(formats or []) if f == sent), None)
        return level is not None and bool(refused(exc, level))

    def _sent_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """The params as the online provider would send them: with the run's structured-output
        response_format (providers/structured.py) when the requester's provider adds one."""
        formats = getattr(self.requester.provider, "formats", None)
        if not formats or "response_format" in params:
            return params
        fmt = formats[getattr(self.requester.provider, "level", 0)]
        return params if fmt is None else {**params, "response_format": fmt}

    # ------------------------------------------------------------------ waiting and collecting
    async def _wait_all(self) -> None:
        self.section["waiting"] = True
        try:
            while not self._stop.is_set():
                await self._look()
                if not self.store.batches("submitted") or self._stop.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.pipe.provider.batch.poll_s)
        finally:
            self.section["waiting"] = False

    async def _look(self) -> None:
        """One look at every submitted batch; the finished ones are collected."""
        for row in self.store.batches("submitted"):
            info = await self.sub.retrieve(row)
            self._live[row.local_id] = info
            if info.status != row.status:
                self.store.set_status(row.local_id, info.status)
            if info.final:
                await self._collect(row, info)
            self._report()
            if self._stop.is_set():
                return

    async def _collect(self, row: BatchRow, info: BatchInfo) -> None:
        results: dict[str, Completion | ProviderError] = {}
        for fid in (info.error_file_id, info.output_file_id):  # an answer wins over an error line
            if fid:
                data: bytes = await self._retry(lambda f=fid: self.client.content(f))  # type: ignore[misc]
                results.update(read_lines(data))
        max_attempts = self.pipe.limits.max_attempts
        settles: list[Settle] = []
        sec = self.section
        capped = info.status == "failed" and TOKEN_LIMIT in info.error_codes
        if capped:
            self._cooldown = True
            sec["token_limit_waits"] += 1
            if any(r.local_id != row.local_id for r in self.store.batches("submitted")):
                # our own running batches hold the cap: these rows go again once those are done, no attempt
                self.store.settle(row.local_id, info.status, [Settle(k, "requeue") for k in
                                                              self.store.member_keys(row.local_id)], max_attempts)
                self._live.pop(row.local_id, None)
                return
        for key in self.store.member_keys(row.local_id):
            res = results.get(key)
            if isinstance(res, Completion):
                self.cache.put(key, self.store.request_of(key) or {}, res.to_json())
                self._release(key, self._account(res))
                settles.append(Settle(key, "collected"))
                continue
            if res is None:
                if info.status == "cancelled":
                    settles.append(Settle(key, "requeue"))
                    sec["missing"] += 1
                    continue
                res = (ServerError(f"batch {info.id} refused: {info.errors} (lower provider.batch.max_requests "
                                   "to send smaller batches)", status=None) if capped else
                       FatalRequestError(f"batch {info.id} failed: {info.errors or 'no reason given'}", status=400)
                       if info.status == "failed" else
                       ServerError(f"batch {info.id} ended ({info.status}) without answering this request",
                                   status=None))
                sec["missing"] += 1
            else:
                sec["errored_lines"] += 1
                if self._stepped_down(key, res):  # the server refused our response_format: ask without it
                    settles.append(Settle(key, "forget"))
                    continue
            fatal = isinstance(res, FatalRequestError)
            if fatal or self.store.attempts(key) + 1 >= max_attempts:
                self.sub.errors[key] = res
                sec["gave_up"] += 1
                self._release(key, None)
            settles.append(Settle(key, "failed" if fatal else "retry", str(res)))
        self.store.settle(row.local_id, info.status, settles, max_attempts)
        self._live.pop(row.local_id, None)

    def _account(self, comp: Completion) -> float | None:
        s, pipe = self.stats, self.pipe
        s.requests_sent += 1
        s.prompt_tokens += comp.prompt_tokens
        s.completion_tokens += comp.completion_tokens
        price = batch_cost(pipe.provider.model, pipe.pricing, comp.prompt_tokens, comp.completion_tokens)
        online = cost(pipe.provider.model, pipe.pricing, comp.prompt_tokens, comp.completion_tokens)
        s.add_cost(price)
        self.section["collected"] += 1
        if price is not None and online is not None:
            self.section["cost_usd"] += price
            self.section["online_cost_usd"] += online
        return price

    async def _submitted(self, info: BatchInfo | None, row: BatchRow) -> None:
        if info is not None:
            self.section["submitted_batches"] += 1
            self.section["submitted_requests"] += row.requests
            self.section["requests_per_batch"].append(row.requests)
            self._live[row.local_id] = info
            self._report()

    async def _retry(self, call: Callable[[], Awaitable[Any]]) -> Any:
        lim = self.pipe.limits
        return await with_retries(call, max_attempts=lim.max_attempts, gate=self.requester.limits.gate,
                                  stats=self.stats, rate_limit_wait_s=lim.rate_limit_wait_s)

    def _report(self) -> None:
        """The stats.json block and what the progress display shows."""
        rows = self.store.batches()
        running = [r for r in rows if r.state in ("intent", "uploaded", "submitted")]
        sec = self.section
        sec["running"] = [{"id": r.batch_id, "status": r.status, "requests": r.requests,
                           "completed": (self._live[r.local_id].completed if r.local_id in self._live else 0)}
                          for r in running]
        sec["batches"] = [r.to_json() for r in rows[-SHOWN_BATCHES:]]
        sec["cost_usd"] = round(sec["cost_usd"], 8)
        sec["online_cost_usd"] = round(sec["online_cost_usd"], 8)
        self.progress.update(self.stats)
