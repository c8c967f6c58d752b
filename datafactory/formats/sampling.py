"""Read the first rows of a dataset file the way LLaMA-Factory 0.9.5 will load it.

LLaMA-Factory hands a registered file to ``datasets.load_dataset`` with the builder named by the
file's extension (``json`` for .json and .jsonl, ``csv``, ``parquet``, ``arrow``). This module reads
a sample of rows for format detection, counts the rows when that is cheap, and turns everything
that would make that load fail (broken lines, wrapped JSON, unsupported extensions, multi-shard
``save_to_disk`` folders) into an ``Unfit`` with a reason that names the file and, where known, the
line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from datafactory.errors import InputError, Unfit
from datafactory.io.readers import BadRow, iter_rows

# extension -> how we read it (LLaMA-Factory's FILEEXT2TYPE: arrow, csv, json, jsonl, parquet, txt)
SUPPORTED_SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet",
                      ".arrow": "arrow"}
# extensions people use that LLaMA-Factory 0.9.5 refuses ("Allowed file types: ...") -> the one to use
UNSUPPORTED_SUFFIXES = {".ndjson": ".jsonl", ".pq": ".parquet"}
# files up to this size are read to the end: exact row count, broken lines anywhere are found
FULL_SCAN_BYTES = 256 * 2**20

# what pandas' read_csv (used by the datasets csv builder) turns into a number or a bool
_NUMERIC = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$|^(true|false|True|False|TRUE|FALSE)$")


@dataclass(slots=True)
class Sample:
    """The first rows of a file (each with where it sits, for messages) and what else was learned."""

    rows: list[tuple[str, dict[str, Any]]]
    total: int | None
    source: str
    warnings: list[str] = field(default_factory=list)
    # CSV only: columns whose every non-empty cell pandas would read as a number or bool
    numeric_columns: frozenset[str] = frozenset()


def is_save_to_disk_dir(path: Path) -> bool:
    """True for a folder written by ``datasets.Dataset.save_to_disk``."""
    return (path / "state.json").is_file() and (path / "dataset_info.json").is_file()


def save_to_disk_data_file(directory: Path) -> Path:
    """The single .arrow file of a ``save_to_disk`` folder, which is what LLaMA-Factory can load.

    LLaMA-Factory 0.9.5 loads a registered folder by passing *every* file in it to ``load_dataset``
    and refuses mixed extensions, and it never calls ``load_from_disk`` for registered datasets
    (only for ``tokenized_path``), so the entry has to name the .arrow file itself.
    """
    try:
        state = orjson.loads((directory / "state.json").read_bytes())
        files = [Path(f["filename"]).name for f in state["_data_files"]]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise Unfit(f"{directory}: unreadable save_to_disk state.json ({exc})") from None
    if not files:
        raise Unfit(f"{directory}: save_to_disk folder lists no data files")
    if len(files) > 1:
        raise Unfit(
            f"{directory}: save_to_disk folder with {len(files)} shards; a LLaMA-Factory 0.9.5 entry loads "
            "one file, or a folder of files that all have the same extension (this one also holds "
            "state.json and dataset_info.json) - re-save it with save_to_disk(path, num_shards=1) "
            "or export it with to_parquet()")
    data = directory / files[0]
    if not data.is_file():
        raise Unfit(f"{directory}: state.json names {files[0]}, which is missing")
    return data


def read_sample(path: Path, limit: int, *, label: str | None = None) -> Sample:
    """Read up to ``limit`` rows of ``path``; raise ``Unfit`` if LLaMA-Factory could not load it."""
    name = label or str(path)
    suffix = path.suffix.lower()
    if suffix in UNSUPPORTED_SUFFIXES:
        raise Unfit(f"{name}: LLaMA-Factory 0.9.5 does not load '{suffix}' files; rename it to "
                    f"'{UNSUPPORTED_SUFFIXES[suffix]}'")
    kind = SUPPORTED_SUFFIXES.get(suffix)
    if kind is None:
        raise Unfit(f"{name}: not a dataset file LLaMA-Factory loads (.json, .jsonl, .csv, .parquet, .arrow)")
    try:
        if kind in ("json", "jsonl"):
            return _read_json_like(path, kind, limit, name)
        if kind == "csv":
            return _read_csv(path, limit, name)
        if kind == "parquet":
            return _read_parquet(path, limit, name)
        return _read_arrow(path, limit, name)
    except InputError as exc:
        raise Unfit(str(exc)) from None
    except OSError as exc:
        raise Unfit(f"{name}: cannot read ({exc.strerror or exc})") from None


def _first_byte(path: Path) -> bytes | None:
    with path.open("rb") as fh:
        while chunk := fh.read(65536):
            stripped = chunk.lstrip()
            if stripped:
                return stripped[:1]
    return None


def _read_json_like(path: Path, kind: str, limit: int, name: str) -> Sample:
    head = _first_byte(path)
    if head is None:
        raise Unfit(f"{name}: empty file (no rows)")
    if head == b"[":
        sample = _read_json_array(path, limit, name)
        if kind == "jsonl":
            sample.warnings.append(
                f"{name} holds one JSON array, not JSON Lines; LLaMA-Factory reads it, but most tools "
                "expect one object per line in a .jsonl file - rename it to .json")
        return sample
    if head != b"{":
        raise Unfit(f"{name}: expected JSON Lines (one object per line) or a JSON array of objects")
    if kind == "json":
        try:
            data = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            data = None  # several objects: JSON Lines in a .json file
        if isinstance(data, dict):  # one object: LLaMA-Factory reads it as one row
            return Sample([(f"{name}:1", data)], 1, "json")
        sample = _read_jsonl(path, limit, name)
        if sample.total is None or sample.total > 1:
            sample.warnings.append(f"{name} holds JSON Lines; LLaMA-Factory reads it, but rename it to "
                                   ".jsonl so other tools do too")
        return sample
    return _read_jsonl(path, limit, name)


def _read_jsonl(path: Path, limit: int, name: str) -> Sample:
    full = path.stat().st_size <= FULL_SCAN_BYTES
    rows: list[tuple[str, dict[str, Any]]] = []
    total = 0
    for pos, row in iter_rows(path, fmt="jsonl"):
        if isinstance(row, BadRow):
            raise Unfit(f"{name}:{pos}: {row.error}; LLaMA-Factory cannot load a file with a broken line")
        total += 1
        if len(rows) < limit:
            rows.append((f"{name}:{pos}", row))
        elif not full:
            return Sample(rows, None, "jsonl")
    if not rows:
        raise Unfit(f"{name}: empty file (no rows)")
    return Sample(rows, total, "jsonl")


def _read_json_array(path: Path, limit: int, name: str) -> Sample:
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise Unfit(f"{name}: not valid JSON ({str(exc).splitlines()[0]})") from None
    if not data:
        raise Unfit(f"{name}: empty JSON array (no rows)")
    rows: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise Unfit(f"{name} item {i}: expected a JSON object, got {type(item).__name__}")
        if len(rows) < limit:
            rows.append((f"{name} item {i}", item))
    return Sample(rows, len(data), "json")


def _read_csv(path: Path, limit: int, name: str) -> Sample:
    full = path.stat().st_size <= FULL_SCAN_BYTES
    rows: list[tuple[str, dict[str, Any]]] = []
    numeric: dict[str, bool] = {}
    total = 0
    for pos, raw in iter_rows(path, fmt="csv"):
        if isinstance(raw, BadRow):  # pragma: no cover - the csv reader raises instead
            raise Unfit(f"{name}:{pos}: {raw.error}")
        if None in raw:
            raise Unfit(f"{name}:{pos}: more fields than the header has columns")
        total += 1
        # pandas reads an empty cell as NaN, which reaches LLaMA-Factory as None
        row: dict[str, Any] = {k: (v if v != "" else None) for k, v in raw.items()}
        for key, value in row.items():
            if value is not None:
                numeric[key] = numeric.get(key, True) and bool(_NUMERIC.match(value))
        if len(rows) < limit:
            rows.append((f"{name}:{pos}", row))
        elif not full:
            break
    if not rows:
        raise Unfit(f"{name}: empty file (no rows)")
    return Sample(rows, total if full else None, "csv",
                  numeric_columns=frozenset(k for k, v in numeric.items() if v))


def _read_parquet(path: Path, limit: int, name: str) -> Sample:
    import pyarrow.parquet as pq  # lazy: pyarrow is slow to import

    rows: list[tuple[str, dict[str, Any]]] = []
    for pos, row in iter_rows(path, fmt="parquet"):
        if isinstance(row, BadRow):  # pragma: no cover - parquet rows are always decoded
            raise Unfit(f"{name} row {pos}: {row.error}")
        rows.append((f"{name} row {pos}", row))
        if len(rows) >= limit:
            break
    if not rows:
        raise Unfit(f"{name}: empty file (no rows)")
    return Sample(rows, pq.ParquetFile(path).metadata.num_rows, "parquet")


def _read_arrow(path: Path, limit: int, name: str) -> Sample:
    import pyarrow as pa  # lazy: pyarrow is slow to import

    try:
        with pa.memory_map(str(path)) as source:
            try:
                table = pa.ipc.open_stream(source).read_all()
            except (OSError, pa.ArrowInvalid):
                source.seek(0)
                table = pa.ipc.open_file(source).read_all()
            head = table.slice(0, limit).to_pylist()
    except (OSError, pa.ArrowInvalid) as exc:
        raise Unfit(f"{name}: not a readable Arrow file ({exc})") from None
    if not head:
        raise Unfit(f"{name}: no rows")
    return Sample([(f"{name} row {i}", row) for i, row in enumerate(head, start=1)], table.num_rows, "arrow")
