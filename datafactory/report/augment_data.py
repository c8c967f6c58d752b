"""What an augment run dir holds, read for the report: counters, samples, config, dataset_info.

Samples, never everything: the first written rows (by input position) beside the input row they came
from, and the first rejects of every reason. They come from the commit log in ``cache.sqlite`` (opened
read-only; indexed queries, so a 100k-row run costs milliseconds); a run dir without one falls back to
``data/*.jsonl`` and ``rejects.jsonl``. Source rows are read from the input file named in
``config.resolved.yaml`` — only up to the last sampled position, and only when that local file still
holds a row with the same content hash (the row key).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from datafactory import constants as C
from datafactory.io.jsonfile import read_json_object as _read_json
from datafactory.report.timeline import TIMELINE_FILE, read_timeline

WRITTEN_SAMPLES = 6
REJECTS_PER_REASON = 3


@dataclass
class WrittenSample:
    id: str
    row: Any
    source: dict[str, Any] | None = None
    position: int | None = None


@dataclass
class AugmentRun:
    path: Path
    name: str
    stats: dict[str, Any]
    config_text: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    dataset_info: dict[str, Any] | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    written: list[WrittenSample] = field(default_factory=list)
    rejects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reject_counts: dict[str, int] = field(default_factory=dict)
    samples_from: str = ""
    source_note: str = ""


def is_augment_run(path: Path) -> bool:
    return (path / C.STATS_FILE).is_file()


def load_augment(path: Path, *, fingerprint: str | None = None, written: int = WRITTEN_SAMPLES,
                 per_reason: int = REJECTS_PER_REASON) -> AugmentRun:
    stats = _read_json(path / C.STATS_FILE) or {}
    config_text = _read_text(path / C.RESOLVED_CONFIG)
    config: dict[str, Any] = {}
    if config_text:
        try:
            loaded = yaml.safe_load(config_text)
            config = loaded if isinstance(loaded, dict) else {}
        except yaml.YAMLError:
            config = {}
    run = AugmentRun(path=path, name=str(config.get("name") or path.name), stats=stats, config_text=config_text,
                     config=config, dataset_info=_read_json(path / C.DATASET_INFO),
                     timeline=read_timeline(path / TIMELINE_FILE))
    if (path / C.CACHE_DB).is_file() and _from_cache(run, path / C.CACHE_DB, fingerprint, written, per_reason):
        run.samples_from = C.CACHE_DB
        _attach_sources(run)
    else:
        _from_files(run, written, per_reason)
        run.samples_from = f"{C.DATA_DIR}/ and {C.REJECTS_FILE}"
    return run


# ---------------------------------------------------------------------------- from the commit log
def _from_cache(run: AugmentRun, db_path: Path, fingerprint: str | None, n_written: int, per_reason: int) -> bool:
    try:
        db = sqlite3.connect(db_path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        fp = fingerprint or _current_fingerprint(db)
        if fp is None:
            return False
        for key, seq, blob in db.execute("SELECT row_key, seq, payload FROM outcomes WHERE fingerprint = ? AND ok = 1 "
                                         "ORDER BY seq, sample LIMIT ?", (fp, n_written)):
            run.written.append(WrittenSample(id=str(key), row=orjson.loads(blob), position=int(seq)))
        counts = db.execute("SELECT reason, COUNT(*) FROM outcomes WHERE fingerprint = ? AND ok = 0 "
                            "GROUP BY reason ORDER BY COUNT(*) DESC, reason", (fp,)).fetchall()
        run.reject_counts = {str(r): int(n) for r, n in counts}
        for reason in run.reject_counts:
            rows = db.execute("SELECT payload FROM outcomes WHERE fingerprint = ? AND ok = 0 AND reason = ? "
                              "ORDER BY seq, sample LIMIT ?", (fp, reason, per_reason)).fetchall()
            run.rejects[reason] = [_as_dict(orjson.loads(b)) for (b,) in rows]
        return True
    except (sqlite3.Error, orjson.JSONDecodeError):
        return False
    finally:
        db.close()


def _current_fingerprint(db: sqlite3.Connection) -> str | None:
    """The configuration the last run used (the one stats.json describes)."""
    try:
        row = db.execute("SELECT fingerprint FROM configs ORDER BY last_used DESC LIMIT 1").fetchone()
    except sqlite3.Error:
        row = None
    if row is None:
        row = db.execute("SELECT fingerprint FROM outcomes GROUP BY fingerprint ORDER BY COUNT(*) DESC "
                         "LIMIT 1").fetchone()
    return str(row[0]) if row else None


def _attach_sources(run: AugmentRun) -> None:
    """The input row of each written sample, read from the local input file up to the last position."""
    from datafactory.errors import DatafactoryError
    from datafactory.io.readers import BadRow, iter_rows
    from datafactory.record import content_hash

    inp = run.config.get("input") or {}
    src = inp.get("path")
    if not run.written:
        return
    if not isinstance(src, str) or not Path(src).is_file():
        run.source_note = f"source rows not shown: the input {src!r} is not a local file here"
        return
    wanted: dict[int, list[WrittenSample]] = {}
    for s in run.written:
        if s.position is not None:
            wanted.setdefault(s.position, []).append(s)
    last = max(wanted, default=0)
    mismatched = 0
    try:
        rows = iter_rows(src, fmt=inp.get("format"), split=inp.get("split") or "train", subset=inp.get("subset"))
        for seq, (_, row) in enumerate(rows, 1):
            if seq > last:
                break
            if seq not in wanted or isinstance(row, BadRow):
                continue
            for s in wanted[seq]:
                if content_hash(row) == s.id.split("~")[0]:
                    s.source = row
                else:
                    mismatched += 1
    except (OSError, DatafactoryError, ValueError) as exc:
        run.source_note = f"source rows not shown: cannot read {src} ({exc})"
        return
    if mismatched:
        run.source_note = f"{mismatched} source row(s) not shown: {src} changed since the run"


# ---------------------------------------------------------------------------- from the files
def _from_files(run: AugmentRun, n_written: int, per_reason: int) -> None:
    data_dir = run.path / C.DATA_DIR
    for path in sorted(data_dir.glob("*.jsonl")) if data_dir.is_dir() else []:
        for row in _stream(path):
            if len(run.written) >= n_written:
                break
            run.written.append(WrittenSample(id=str(row.get("id", "")), row=row))
    counts: dict[str, int] = {}
    for rej in _stream(run.path / C.REJECTS_FILE):
        reason = str(rej.get("reason") or "unknown")
        counts[reason] = counts.get(reason, 0) + 1
        if len(run.rejects.setdefault(reason, [])) < per_reason:
            run.rejects[reason].append(rej)
    run.reject_counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _stream(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file, one at a time (bad lines skipped; no file: nothing)."""
    try:
        with path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    try:
                        yield _as_dict(orjson.loads(line))
                    except orjson.JSONDecodeError:
                        continue
    except OSError:
        return


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {"value": value}


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
