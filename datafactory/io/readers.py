"""Stream input rows from local files (JSONL, JSON, CSV, Parquet) or a `datasets` hub id.

Rows are yielded one at a time with their position (1-based line for JSONL/CSV, row number
otherwise) so memory stays flat on large inputs and errors can name file:line. A row that
cannot be decoded is yielded as a ``BadRow`` so the caller can reject it and go on, instead of
losing the whole run to one broken line.
"""

from __future__ import annotations

import base64
import csv
import datetime
import decimal
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from datafactory.errors import InputError

LOCAL_FORMATS = ("jsonl", "json", "csv", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
             ".parquet": "parquet", ".pq": "parquet"}


@dataclass(slots=True)
class BadRow:
    """A row that could not be decoded; ``line`` is where it sits in the file."""

    line: int
    error: str
    raw: str


def detect_format(path: str | Path) -> str | None:
    """The local format of ``path`` from its suffix, or None."""
    return _SUFFIXES.get(Path(path).suffix.lower())


def is_local(source: str) -> bool:
    return Path(source).exists() or detect_format(source) is not None


def iter_rows(source: str | Path, *, fmt: str | None = None, split: str = "train",
              subset: str | None = None) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    """Yield ``(position, row)`` from a local file or, if ``source`` is no local path, a hub dataset."""
    src = str(source)
    kind = fmt or detect_format(src)
    if kind is None and not Path(src).exists():
        yield from _iter_hub(src, split=split, subset=subset)
        return
    path = Path(src)
    if not path.is_file():
        raise InputError("input file not found" if not path.exists() else "input is not a file", file=src)
    if kind == "jsonl":
        yield from _iter_jsonl(path)
    elif kind == "json":
        yield from _iter_json(path)
    elif kind == "csv":
        yield from _iter_csv(path)
    elif kind == "parquet":
        yield from _iter_parquet(path)
    else:
        raise InputError(f"unknown input format (use one of {', '.join(LOCAL_FORMATS)})", file=src)


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield lineno, BadRow(lineno, f"not valid JSON ({_short(exc)})", _preview(raw))
                continue
            if not isinstance(row, dict):
                yield lineno, BadRow(lineno, f"expected a JSON object, got {type(row).__name__}", _preview(raw))
                continue
            yield lineno, row


def _iter_json(path: Path) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        # a JSONL file saved as .json is a common mix-up: say so
        hint = " (is it JSON Lines? rename it to .jsonl)" if b"\n{" in path.read_bytes()[:1_000_000] else ""
        raise InputError(f"not valid JSON: {_short(exc)}{hint}", file=str(path)) from None
    if isinstance(data, dict):
        # {"data": [...]} / {"train": [...]}: take the single list value
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise InputError("expected a JSON array of objects", file=str(path))
        data = lists[0]
    if not isinstance(data, list):
        raise InputError("expected a JSON array of objects", file=str(path))
    for i, row in enumerate(data, start=1):
        if isinstance(row, dict):
            yield i, row
        else:
            yield i, BadRow(i, f"item {i} is not a JSON object", _preview(orjson.dumps(row)))


def _iter_csv(path: Path) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    # utf-8-sig: Excel and many Windows tools start CSV files with a byte-order mark, which would
    # otherwise become part of the first column's name (and every row would miss that field)
    with path.open("r", encoding="utf-8-sig", newline="", errors="strict") as fh:
        reader = csv.DictReader(fh)
        try:
            for row in reader:
                yield reader.line_num, dict(row)
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text near line {reader.line_num + 1}: {exc.reason}",
                             file=str(path)) from None
        except csv.Error as exc:
            raise InputError(str(exc), file=str(path), line=reader.line_num) from None


def _iter_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    import pyarrow.parquet as pq  # lazy: pyarrow is slow to import

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError variants
        raise InputError(f"not a readable Parquet file: {exc}", file=str(path)) from None
    convert = [f.name for f in pf.schema_arrow if _needs_conversion(f.type)]
    n = 0
    for batch in pf.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            n += 1
            for name in convert:
                row[name] = json_safe(row[name])
            yield n, row


def _needs_conversion(t: Any) -> bool:
    """Arrow types whose Python values JSON cannot hold (decimal, binary, temporal), nested too."""
    import pyarrow.types as pt

    if pt.is_decimal(t) or pt.is_binary(t) or pt.is_large_binary(t) or pt.is_fixed_size_binary(t):
        return True
    if pt.is_temporal(t):
        return True
    if pt.is_list(t) or pt.is_large_list(t) or pt.is_fixed_size_list(t):
        return _needs_conversion(t.value_type)
    if pt.is_struct(t):
        return any(_needs_conversion(t.field(i).type) for i in range(t.num_fields))
    return bool(pt.is_map(t))  # to_pylist gives a list of (key, value) tuples


def json_safe(value: Any) -> Any:
    """A Parquet value as JSON-safe data: Decimal → str (exact, no float rounding), bytes → UTF-8
    text (base64 when it is not UTF-8), date/time/timestamp → ISO 8601 str, duration → seconds."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(p, tuple) and len(p) == 2 for p in value):
            return {str(k): json_safe(v) for k, v in value}  # an Arrow map
        return [json_safe(v) for v in value]
    return str(value)  # anything else Arrow may give (pandas Timestamp for ns, ...)


def _iter_hub(name: str, *, split: str, subset: str | None) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    # The real hub path: streaming so a large dataset never has to fit in memory or on disk.
    import datasets

    try:
        ds = datasets.load_dataset(name, subset, split=split, streaming=True)
    except Exception as exc:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ...)
        raise InputError(f"cannot load dataset '{name}' (split {split}): {exc}") from None
    for i, row in enumerate(ds, start=1):
        yield i, dict(row)


def _short(exc: Exception) -> str:
    return str(exc).split("\n", 1)[0][:200]


def _preview(raw: bytes) -> str:
    return io.TextIOWrapper(io.BytesIO(raw[:2000]), encoding="utf-8", errors="replace").read().rstrip("\n")
