"""``augment(..., engine="ray")``: the driver of a run on Ray Data.

1. Before any request, as the asyncio engine: config-change notice, dedup memory seeded from the rows
   already written (resume) and the input texts, the input read in order with the row keys
   (``engine/ray/feed.py``); rows with an outcome are skipped (a rerun of a finished run starts no worker).
2. The rows left go to the object store a block at a time (``engine/ray/feed.py``: the driver never holds
   the input) and become a Ray Dataset (``from_arrow_refs``, in input order), mapped by
   :class:`~datafactory.engine.ray.worker.RowWorker` on an actor pool of ``workers`` actors: request,
   parse, validate, shape, gates without memory, async gates — each response stored by the worker that
   got it, the moment it arrived.
3. The driver consumes the output *in input order* (``preserve_order``), runs the gates with memory
   (exact / near dedup) over it in micro-batches — one global memory, the verdicts of the asyncio
   engine for the same input order, whatever worker answered first — and commits every row's outcome
   to the run dir's commit log (``engine/cache.py``) in one transaction per output batch. Or
   (``ray_dedup``, :func:`dedup_mode`) the workers compute the dedup keys and a Ray shuffle decides the
   same verdicts (``engine/ray/shuffle.py``); the driver then only commits.
4. Export, stats.json (``engine``, ``workers``, ``ray``; the workers' counters added up as the asyncio
   engine's), dataset_info.json, report: ``engine/export.py``.

Kill -9 of the driver: a row is committed only after its responses were stored by its worker, so a
lost row has no outcome and the rerun redoes it from the stored responses (``engine/ray/responses.py``:
a worker looks in every worker's file); no row is counted twice (one outcome per row key).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import ray

from datafactory.config.pipeline import Pipeline
from datafactory.engine.augment import _announce_config_change, _seed_dedup, count_rows
from datafactory.engine.budget import Budget, budget_for
from datafactory.engine.cache import Cache
from datafactory.engine.commit import CommitBatcher
from datafactory.engine.config_change import fingerprint, fingerprint_parts
from datafactory.engine.export import finalize
from datafactory.engine.gates import build_gates
from datafactory.engine.input import release as release_input
from datafactory.engine.progress import Progress
from datafactory.engine.ray.collect import Collector
from datafactory.engine.ray.feed import blocks_to_do, put_block, rows_per_block
from datafactory.engine.ray.keys import Plan, plan_for
from datafactory.engine.ray.limiter import LimiterActor
from datafactory.engine.ray.responses import merge_into
from datafactory.engine.ray.shuffle import ShuffleCollector, parts_for
from datafactory.engine.ray.worker import RowWorker
from datafactory.engine.signals import routed
from datafactory.engine.stats import Stats
from datafactory.errors import BudgetExhausted, ConfigError, RayWorkersNotStarted, RequestsFailing, UserError
from datafactory.io.rundir import RunDir
from datafactory.report.timeline import record_timeline

log = logging.getLogger("datafactory")
SHUFFLE_FROM_ROWS = 5_000_000
# The actor pool starts in full before the first row goes out: every worker of ``--workers`` takes a share
# (Ray Data's default hands rows to whichever actor is up first, so a short run may use one worker only).
# A cluster that cannot start them all in this time (busy CPUs, nodes still joining) fails the run.
WORKERS_START_S = 600
STOPS = ("RequestsFailing", "BudgetExhausted")  # a worker stopped the run (stats.json ``stopped``)


def check_supported(pipe: Pipeline) -> None:
    """What the Ray engine does not do: a clear message naming the key, before anything runs. Batch mode
    (provider batches collected over hours, in passes) has nothing to spread over workers: the asyncio
    engine runs it."""
    if pipe.provider.mode == "batch":
        raise ConfigError("batch mode (provider.mode: batch / --batch) runs on the asyncio engine only; drop "
                          "--engine ray for it", key="provider.mode", file=pipe.source)


def dedup_mode(asked: str, plan: Plan | None, rows: int) -> str:
    """``driver`` or ``shuffle`` (``engine/ray/shuffle.py``) for ``ray_dedup`` ``asked``. ``auto``: the shuffle
    on a cluster of several nodes with at least ``SHUFFLE_FROM_ROWS`` rows to do, else the driver.

    Measured (benchmarks/ray_engine.py, 1M synthetic rows, one shared 2-core machine, the same kept set):
    driver 17k rows/s, shuffle 10k rows/s (keys streamed in 47 s, shuffle 16 s, commit pass 36 s). On one
    machine the driver's pass wins; what the shuffle takes off the driver is the dedup work and memory
    (~0.45 KB of band keys per kept row there: ~5 GB at 10M rows), which pays on a cluster for big runs.
    A chain of gates the shuffle does not decide (another gate with memory) runs on the driver."""
    if plan is None or not plan.dedup:
        if asked == "shuffle" and plan is None:
            log.warning("ray dedup: the gates with memory are not exact_dedup then near_dedup; deciding them on "
                        "the driver")
        return "driver"
    if asked == "auto":
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        return "shuffle" if nodes > 1 and rows >= SHUFFLE_FROM_ROWS else "driver"
    return asked


def start_ray(address: str | None) -> bool:
    """Connect to ``address`` (a cluster) or start a local Ray sized to the machine; True when this call
    started or connected it (and the run must shut it down)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    ray.init(address=address, **kwargs)
    return True


def default_workers() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_ray(pipe: Pipeline, api_key: str, progress: Progress, *, address: str | None = None,
            workers: int | None = None, dedup: str = "auto", handle_signals: bool = True) -> Stats:
    run = RunDir(pipe.output.dir)
    try:
        check_supported(pipe)
        run.acquire()
    except BaseException:
        release_input(pipe)
        raise
    stats = Stats(rows_total=count_rows(pipe))
    progress = record_timeline(progress, run.path)
    cache: Cache | None = None
    started = False
    try:
        run.write_resolved_config(pipe.resolved())
        cache = Cache(run.cache)
        fp = fingerprint(pipe)
        _announce_config_change(cache, pipe, fp, fingerprint_parts(pipe), stats)
        budget = None
        if pipe.limits.max_cost_usd is not None:  # what the run dir cost so far: the workers' files count too
            merge_into(cache, run.path)
            budget = budget_for(pipe, cache.usage_by_model())
        gates = build_gates(pipe)
        seen = _seed_dedup(SimpleNamespace(steps=gates, gates=gates.gates), cache, fp, pipe)  # type: ignore[arg-type]
        if stats.rows_total is None and seen is not None:
            stats.rows_total = seen if pipe.input.limit is None else min(seen, pipe.input.limit)
        size = [1]  # the first row alone: whether there is anything to do, before Ray starts
        feed = blocks_to_do(pipe, cache, fp, stats, size)
        commits = CommitBatcher(cache, fp, stats, max_wait_s=0, stored_props=gates.stored_props)
        collect: Collector = Collector(gates.ordered, commits, stats)
        stop: list[int] = []
        stats.sections["ray"] = {"address": address, "workers": 0}
        with routed(stop.append, enabled=handle_signals):
            progress.start(stats)
            complete = False
            try:
                first = next(feed, None)
                if first is not None:
                    started = start_ray(address)
                    n = workers or default_workers()
                    stats.sections.update(engine="ray", workers=n)
                    size[0] = rows_per_block(stats.rows_total, n)
                    refs, rows = [put_block(first)], len(first)
                    for block in feed:  # the input into the object store, a block at a time
                        refs.append(put_block(block))
                        rows += len(block)
                        if stop:
                            break
                    plan = plan_for(gates.ordered)
                    mode = dedup_mode(dedup, plan, rows)
                    parts = parts_for(rows, n) if mode == "shuffle" else None
                    if parts is not None and plan is not None:
                        collect = ShuffleCollector(plan, commits, stats, parts)
                    stats.sections["ray"].update(dedup=mode, shuffle_parts=parts, blocks=len(refs),
                                                 rows_per_block=size[0])
                    if not stop:
                        _map(pipe, api_key, run, refs, n, collect, stats, progress, stop, parts, budget)
                else:
                    stats.sections.update(engine="ray", workers=0)
                complete = not stop and collect.halted is None and not collect.no_outcome
            finally:
                commits.close()
                stats.finished = time.monotonic()
                stats.interrupted = stats.interrupted or bool(stop)
                stats.stop_signal = stop[0] if stop else None
                collect.publish()
                if collect.halted is not None and collect.halted["kind"] in STOPS:
                    stats.stopped = collect.halted["kind"]
                if budget is not None and stats.spent_usd is None:
                    stats.spent_usd = budget.spent_usd
                stats.sections["ray"]["responses_merged"] = merge_into(cache, run.path)
                stats.top_rejects = cache.reject_examples(fp)
                finalize(run, cache, pipe, fp, stats, complete=complete)
                progress.stop(stats)
        if collect.halted is not None:
            raise _stop_error(collect.halted, stats)
        return stats
    finally:
        if cache is not None:
            cache.close()
        release_input(pipe)
        run.release()
        if started:
            ray.shutdown()


def _map(pipe: Pipeline, api_key: str, run: RunDir, refs: list[Any], workers: int, collect: Collector,
         stats: Stats, progress: Progress, stop: list[int], parts: int | None, budget: Budget | None) -> None:
    """The rows through the actor pool; their outcomes through the collector, in input order."""
    from ray.data import ActorPoolStrategy, DataContext

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its INFO plan lines and notices are not ours
    ctx = DataContext.get_current()
    ctx.execution_options.preserve_order = True  # the output in input order: dedup decides as asyncio does
    ctx.enable_progress_bars = False
    ctx.wait_for_min_actors_s = WORKERS_START_S
    limiter = LimiterActor.options(num_cpus=0, max_concurrency=10_000).remote(
        pipe.limits.rpm, pipe.limits.tpm, _max_completion(pipe), budget)
    cpus = float(ray.cluster_resources().get("CPU", 1))
    batch = max(1, min(pipe.limits.concurrency, 64))
    ds = ray.data.from_arrow_refs(refs)
    out = ds.map_batches(RowWorker, fn_constructor_args=(pipe, api_key, str(run.path), limiter, parts),
                         batch_size=batch, batch_format="numpy", compute=ActorPoolStrategy(size=workers),
                         num_cpus=min(1.0, cpus / workers), zero_copy_batch=True)
    stats.sections["ray"].update(address=ray.get_runtime_context().gcs_address, workers=workers, batch_size=batch)
    t0 = time.monotonic()
    chunks = iter(out.iter_batches(batch_size=None, batch_format="numpy"))
    try:
        for chunk in _started(chunks, workers):
            # the actor pool's start (processes, imports, gates built): what a short run mostly waits for
            stats.sections["ray"].setdefault("first_output_s", round(time.monotonic() - t0, 3))
            collect.take(chunk)
            progress.update(stats)
            if stop or collect.halted is not None:
                break
        if isinstance(collect, ShuffleCollector):  # the rows that arrived (all of them unless stopped)
            collect.finish()
            stats.sections["ray"]["shuffle_s"] = round(collect.shuffle_s, 3)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:  # a stop: end the streaming execution now, not when the iterator is collected
            close()
        try:
            report = stats.sections["ray"]["limiter"] = ray.get(limiter.report.remote(), timeout=10)
            if budget is not None:
                stats.spent_usd = report["spent_usd"]
        except Exception:  # noqa: BLE001 — the report is informative; a dead actor must not fail the export
            stats.sections["ray"]["limiter"] = None
        ray.kill(limiter)


def _started(chunks: Iterator[Any], workers: int) -> Iterator[Any]:
    """The output batches; the pool's start timing out (``WORKERS_START_S``) as a user error."""
    try:
        yield from chunks
    except ray.exceptions.GetTimeoutError as exc:
        raise RayWorkersNotStarted(
            f"the Ray cluster did not start {workers} workers within {WORKERS_START_S} s: fewer free CPUs than "
            "--workers, or nodes that have not joined; pass a smaller --workers or free the cluster",
            workers=workers, waited_s=WORKERS_START_S) from exc


def _max_completion(pipe: Pipeline) -> int:
    from datafactory.engine.requester import expected_completion_tokens

    return expected_completion_tokens(pipe)


def _stop_error(info: dict[str, Any], stats: Stats) -> UserError:
    """The stop a worker reported, raised by the driver after the export (as the asyncio engine does)."""
    exc: UserError
    if info["kind"] == "RequestsFailing":
        exc = RequestsFailing(info["message"], error=None, failures=info["failures"], hint=info["hint"])
        exc.stats = stats
    elif info["kind"] == "BudgetExhausted":
        exc = BudgetExhausted(info["message"], budget_usd=info["budget_usd"], spent_usd=info["spent_usd"])
        exc.stats = stats
    else:
        exc = UserError(info["message"])
    return exc
