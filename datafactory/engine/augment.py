"""``augment``: the library function behind ``datafactory augment`` (the CLI only parses flags)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from datafactory.config.names import SAMPLE_ROWS, check_input_columns
from datafactory.config.pipeline import Pipeline, as_pipeline
from datafactory.engine.breaker import breaker_for
from datafactory.engine.budget import budget_for
from datafactory.engine.cache import Cache
from datafactory.engine.config_change import detect as detect_config_change
from datafactory.engine.config_change import fingerprint, fingerprint_parts
from datafactory.engine.export import finalize
from datafactory.engine.input import input_for
from datafactory.engine.input import release as release_input
from datafactory.engine.process import RowProcessor
from datafactory.engine.progress import NoProgress, Progress, auto_progress
from datafactory.engine.ratelimit import Limits
from datafactory.engine.requester import Requester, expected_completion_tokens
from datafactory.engine.runloop import loop_name, paced_gc, running_loop_name
from datafactory.engine.runloop import run as run_loop
from datafactory.engine.scheduler import Scheduler
from datafactory.engine.signals import routed
from datafactory.engine.stats import Stats
from datafactory.errors import InputError, RunStopped
from datafactory.io.readers import BadRow, detect_format
from datafactory.io.rundir import RunDir
from datafactory.providers.registry import api_key_for, create_provider
from datafactory.record import Record
from datafactory.report.timeline import record_timeline
from datafactory.secrets import register_secret

log = logging.getLogger("datafactory")


def count_rows(pipe: Pipeline) -> int | None:
    """Cheap row count for the progress bar (None when it would need a full parse)."""
    inp = pipe.input
    fmt = inp.format or detect_format(inp.path)
    path = Path(inp.path)
    n: int | None = None
    if fmt == "jsonl" and path.is_file():
        n = 0
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                n += chunk.count(b"\n")
            # a last line without a newline still counts
        if path.stat().st_size and not _ends_with_newline(path):
            n += 1
    elif fmt == "parquet" and path.is_file():
        import pyarrow.parquet as pq

        with contextlib.suppress(Exception):
            n = pq.ParquetFile(path).metadata.num_rows
    if n is not None and inp.limit is not None:
        n = min(n, inp.limit)
    return n if n is not None else inp.limit


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"


def _preflight_input(pipe: Pipeline) -> None:
    """Fail before any request when the input cannot be opened at all, or lacks a mapped column; both
    from the first rows of the stream the run goes on reading (``engine/input.py``)."""
    head = input_for(pipe).head(SAMPLE_ROWS)
    if not head:
        raise InputError("input has no rows", file=pipe.input.path)
    check_input_columns(pipe, head=head)  # a typo in input.fields would cost every row in requests


def _prepare(pipeline: Pipeline | str | Path, overrides: dict[str, Any]) -> tuple[Pipeline, str]:
    """Everything checked before any work: config, API key (registered for redaction), input."""
    pipe = as_pipeline(pipeline, overrides)
    key = api_key_for(pipe.provider)
    register_secret(key)
    try:
        _preflight_input(pipe)
    except BaseException:
        release_input(pipe)
        raise
    return pipe, key


def augment(pipeline: Pipeline | str | Path, *, progress: Progress | None = None, quiet: bool = True,
            engine: str = "asyncio", ray_address: str | None = None, workers: int | None = None,
            ray_dedup: str = "auto", **overrides: Any) -> Stats:
    """Run a pipeline: every input row ends in ``data/`` or ``rejects.jsonl`` of the run dir.

    Rerunning (or resuming after a crash or Ctrl-C) sends no request whose response is already stored.
    Returns the run's ``Stats`` (also written to ``stats.json``); ``stats.interrupted`` is True when a
    signal stopped it early. ``overrides`` are the CLI flags: input, output, limit, concurrency, rpm, tpm,
    provider, model, base_url. ``engine="ray"``: the same flow on Ray Data (``engine/ray``; ``ray_address``
    an existing cluster, else a local Ray; ``workers`` actors, default one per CPU; ``ray_dedup`` where global
    dedup is decided: ``driver``, ``shuffle`` (a Ray shuffle of the workers' keys) or ``auto``).
    """
    if engine != "asyncio":  # Ray Data: rows on an actor pool, dedup and commits on this driver
        from datafactory.engine.ray import run_ray

        return run_ray(pipeline, overrides, progress or (NoProgress() if quiet else auto_progress()),
                       engine=engine, address=ray_address, workers=workers, dedup=ray_dedup)
    loop = loop_name()  # uvloop when installed (DATAFACTORY_LOOP: engine/runloop.py)
    pipe, key = _prepare(pipeline, overrides)
    coro = _run(pipe, key, progress or (NoProgress() if quiet else auto_progress()))
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_loop(coro, loop)
    # called from inside a running event loop (Jupyter, an async ETL job): run on a private loop in a
    # worker thread rather than failing; ``augment_async`` is the way to await it instead
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="datafactory") as pool:
        return pool.submit(run_loop, coro, loop).result()


async def augment_async(pipeline: Pipeline | str | Path, *, progress: Progress | None = None,
                        **overrides: Any) -> Stats:
    """``augment`` for async callers: runs on the caller's event loop (no signal handling)."""
    pipe, key = await asyncio.to_thread(_prepare, pipeline, overrides)
    return await _run(pipe, key, progress or NoProgress(), handle_signals=False)


async def _run(pipe: Pipeline, api_key: str, progress: Progress, *, handle_signals: bool = True) -> Stats:
    run = RunDir(pipe.output.dir)
    run.acquire()
    stats = Stats(rows_total=count_rows(pipe))
    progress = record_timeline(progress, run.path)  # RUN_DIR/timeline.jsonl for report.html (report/timeline.py)
    cache: Cache | None = None
    provider = None
    try:
        run.write_resolved_config(pipe.resolved())
        cache = Cache(run.cache)
        parts = fingerprint_parts(pipe)
        fp = fingerprint(pipe)
        _announce_config_change(cache, pipe, fp, parts, stats)
        limits = Limits(pipe.limits.rpm, pipe.limits.tpm, max_completion=expected_completion_tokens(pipe))
        provider = create_provider(pipe.provider, api_key=api_key, timeout_s=pipe.limits.timeout_s,
                                   concurrency=pipe.limits.concurrency)
        breaker = breaker_for(pipe)
        budget = budget_for(pipe, cache.usage_by_model()) if pipe.limits.max_cost_usd is not None else None
        requester = Requester(pipe, provider, cache, limits, stats, breaker=breaker, budget=budget)
        sched: Any = _scheduler(pipe, requester, cache, fp, stats, progress)
        if pipe.provider.mode == "batch":  # misses go to provider batches, the flow runs in passes (engine/batch)
            from datafactory.engine.batch.driver import BatchDriver

            sched = BatchDriver(pipe, api_key, run, cache, requester, stats, progress, sched,
                                lambda: _scheduler(pipe, requester, cache, fp, stats, progress))
        loop = asyncio.get_running_loop()
        # signals stay ours until the export, stats.json and dataset_info.json are written
        with routed(lambda signum: loop.call_soon_threadsafe(sched.request_stop, signum), enabled=handle_signals):
            progress.start(stats)
            stats.sections["runtime"] = {"event_loop": running_loop_name()}
            complete = False
            try:
                with paced_gc():  # the young generations are collected less often (engine/runloop.py)
                    await sched.run()
                complete = not stats.interrupted and not stats.rows_deferred  # batch mode: rows wait
            except RunStopped as exc:
                stats.stopped = type(exc).__name__
                exc.stats = stats
                raise
            finally:
                stats.finished = time.monotonic()
                stats.stop_signal = sched.stop_signal
                if budget is not None:
                    stats.spent_usd = budget.spent_usd
                stats.top_rejects = cache.reject_examples(fp)
                finalize(run, cache, pipe, fp, stats, complete=complete)
                progress.stop(stats)
        return stats
    finally:
        if provider is not None:
            await provider.aclose()
        if cache is not None:
            cache.close()
        release_input(pipe)
        run.release()


def _scheduler(pipe: Pipeline, requester: Requester, cache: Cache, fp: str, stats: Stats,
               progress: Progress) -> Scheduler:
    """The record flow over the input: one per run (batch mode: one per pass, each seeded afresh)."""
    processor = RowProcessor(pipe, requester)
    _gate_reports(processor, stats)
    seen = _seed_dedup(processor, cache, fp, pipe)
    if stats.rows_total is None and seen is not None:  # no cheap count (hub, CSV, JSON): the seeding pass's
        stats.rows_total = seen if pipe.input.limit is None else min(seen, pipe.input.limit)
    sched = Scheduler(pipe, processor, cache, stats, progress, fp)
    requester.breaker.on_trip = sched.halt
    return sched


def _gate_reports(processor: RowProcessor, stats: Stats) -> None:
    """Gates that keep counters for stats.json (``stats_section``: decontamination per eval set) report into
    it. Batch mode builds the gates once per pass: the counts of earlier passes are added to the new gate's."""
    for gate in processor.gates:
        section = getattr(gate, "stats_section", None)
        if section is None:
            continue
        earlier = stats.sections.get(section)
        if isinstance(earlier, dict):
            _add_counts(gate.report, earlier)  # type: ignore[attr-defined]
        stats.sections[section] = gate.report  # type: ignore[attr-defined]  # kept current by the gate


def _add_counts(into: dict[str, Any], earlier: dict[str, Any]) -> None:
    """Add the integer counters of ``earlier`` into ``into`` (nested dicts alike; other values stay)."""
    for key, value in earlier.items():
        current = into.get(key)
        if isinstance(value, dict):
            into[key] = current if isinstance(current, dict) else {}
            _add_counts(into[key], value)
        elif isinstance(value, int) and not isinstance(value, bool) and key != "items":
            into[key] = (current if isinstance(current, int) else 0) + value


def _announce_config_change(cache: Cache, pipe: Pipeline, fp: str, parts: dict[str, Any], stats: Stats) -> None:
    """Before any request: say so when this run redoes rows finished under another configuration."""
    change = detect_config_change(cache, pipe, fp, parts)
    cache.record_config(fp, parts)
    if change is not None:
        stats.config_change = change.to_json()
        log.warning("%s", change.describe())


def _seed_dedup(processor: RowProcessor, cache: Cache, fp: str, pipe: Pipeline) -> int | None:
    """Dedup memory = rows already written (resume) + the input texts (exact dedup's against_input).
    A resume seeds each gate from what it read during the run (``steps/reads.py``).
    Returns the input's row count when that meant reading the input (so the count needs no pass of its own)."""
    from datafactory.quality.dedup import ExactDedup
    from datafactory.quality.gate import SeedableGate, field_names, field_text

    exact = pipe.quality.get("exact_dedup")
    against = exact.against_input if exact is not None else None
    view = processor.steps.context.stored
    stored_props = processor.steps.stored_props
    counted: list[int] = []
    for gate in processor.gates:
        if not isinstance(gate, SeedableGate):
            continue
        names = field_names(getattr(gate, "fields", ()) or ())
        if stored_props:  # properties no column carries: stored beside each written row (gate_reads)
            gate.seed(field_text(Record(id="", source={}, fields={**(orjson.loads(extra) if extra else {}),
                                                                  **view(orjson.loads(blob))}), names)
                      for blob, extra in cache.iter_written_with_reads(fp))
        else:
            gate.seed(field_text(Record(id="", source={}, fields=view(orjson.loads(blob))), names)
                      for blob in cache.iter_outcomes(fp, ok=True))
        if against and isinstance(gate, ExactDedup):
            gate.seed(_input_texts(pipe, against, counted))
    return sum(counted) if counted else None


def _input_texts(pipe: Pipeline, variables: list[str], counted: list[int]) -> Iterator[str]:
    """The input texts of ``variables``; appends the number of rows read to ``counted`` at the end."""
    inp = pipe.input
    n = 0
    for _, row in input_for(pipe).rows():
        n += 1
        if isinstance(row, BadRow):
            continue
        for var in variables:
            value = row.get(inp.fields.get(var, var))
            if isinstance(value, str) and value:
                yield value
    counted.append(n)
