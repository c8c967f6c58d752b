"""The end of every run: data + rejects from the commit log, stats.json, dataset_info.json, report.html.

The data files never lose rows because a run failed or stopped. A run exports under its own
configuration (fingerprint); after a configuration change that export starts smaller than what
``data/`` holds. It replaces ``data/`` (and ``rejects.jsonl``, ``dataset_info.json``) only when it has
at least as many rows, or when the run finished: every row looked at, nothing stopped it, and no row
waits to be asked again (setup or transient rejects). Until then the previous files stay as they are
and ``stats.json`` says so (``export_kept``). Rows of an earlier configuration are never deleted from
``cache.sqlite``: rerunning that configuration exports them again without a request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datafactory.config.pipeline import Pipeline
from datafactory.constants import DATASET_INFO
from datafactory.engine.cache import Cache
from datafactory.engine.stats import Stats
from datafactory.errors import DatasetNotRegistered
from datafactory.formats.writers import dataset_names, write_datasets
from datafactory.io.rundir import RunDir


def finalize(run: RunDir, cache: Cache, pipe: Pipeline, fp: str, stats: Stats, *, complete: bool) -> None:
    """Export, stats.json, dataset_info.json (:func:`export`); then ``report.html``, which never fails the run."""
    export(run, cache, pipe, fp, stats, complete=complete)
    from datafactory.report import write_run_report

    write_run_report(run.path, fingerprint=fp)


def export(run: RunDir, cache: Cache, pipe: Pipeline, fp: str, stats: Stats, *, complete: bool) -> None:
    """Export (atomically), unless that would shrink ``data/`` after an unfinished run; then stats.json."""
    stats.total_written, stats.total_rejected = cache.totals(fp)
    kept = held_back(run, cache, pipe, fp, stats.total_written, complete=complete)
    if kept is not None:
        stats.export_kept = kept
        stats.datasets = existing_rows(run.data_dir, pipe)
        run.write_stats(stats.to_json())
        return
    present: dict[str, set[str]] = {}
    counts = write_datasets(run.data_dir, pipe.output, cache.iter_outcomes_with_keys(fp, ok=True), present)
    stats.datasets = counts
    run.export_jsonl(run.rejects, cache.iter_outcomes(fp, ok=False))
    cache.mark_exported(fp)
    run.write_stats(stats.to_json())
    if pipe.output.format != "jsonl":
        register_datasets(run, pipe, counts, present)


def held_back(run: RunDir, cache: Cache, pipe: Pipeline, fp: str, rows: int, *,
              complete: bool) -> dict[str, Any] | None:
    """Why this run's export must not replace ``data/`` (None: it may)."""
    if cache.last_exported() == fp:
        return None     # data/ holds this configuration's rows: an export of it only ever grows
    before = sum(existing_rows(run.data_dir, pipe).values())
    if rows >= before:
        return None
    pending = cache.pending(fp)
    if complete and pending == 0:
        return None     # a finished run of the new configuration: its rows are the data now
    why = ("the run did not finish" if not complete
           else f"{pending} row{'s' if pending != 1 else ''} wait to be asked again")
    return {"rows_in_data": before, "rows_this_configuration": rows, "why": why}


def existing_rows(data_dir: Path, pipe: Pipeline) -> dict[str, int]:
    """Rows in the run dir's data files now, by dataset name (files that exist only)."""
    out = {}
    for name in dataset_names(pipe.output).values():
        path = data_dir / f"{name}.jsonl"
        if path.is_file():
            out[name] = _count_lines(path)
    return out


def _count_lines(path: Path) -> int:
    n = 0
    last = b"\n"
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def register_datasets(run: RunDir, pipe: Pipeline, counts: dict[str, int],
                      present: dict[str, set[str]]) -> None:
    """One dataset_info.json entry per dataset written (an empty one is not a dataset), under the
    dataset's own name (the JSONL file; a Parquet twin is the same data). The entry comes from the
    output format (:mod:`datafactory.formats.entries`); one that cannot be made is an error."""
    from datafactory.formats.dataset_info import is_valid_name, register
    from datafactory.formats.entries import dataset_entry

    entries = {}
    for name, rows in counts.items():
        if not rows:
            continue
        entry = dataset_entry(pipe.output, frozenset(present.get(name, ())))
        if entry is None or not is_valid_name(name):
            why = ("LLaMA-Factory dataset names may only hold letters, digits, '_', '.' and '-'"
                   if entry is not None else f"format '{pipe.output.format}' has no LLaMA-Factory entry")
            raise DatasetNotRegistered(f"cannot register dataset '{name}' in {DATASET_INFO}: {why}",
                                       dataset=name, format=pipe.output.format)
        entries[name] = {**entry, "file_name": f"{run.data_dir.name}/{name}.jsonl"}
    if entries:
        # the run dir's dataset_info.json is ours: a changed format replaces its entry
        register(entries, run.path / DATASET_INFO, force=True)
