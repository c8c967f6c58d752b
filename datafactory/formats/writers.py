"""Final dataset files from the commit log: JSONL (always) and Parquet (optional), atomically.

Rows come in input order. With ``validation_split`` each row goes to ``<name>_validation`` when the
hash of its id and the seed falls under the split fraction — deterministic, streaming, and stable
under resume (a row never changes sides between two runs).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import xxhash

from datafactory.config.pipeline import OutputConfig
from datafactory.io.atomic import atomic_open

PARQUET_BATCH = 5000


def split_of(row_id: str, fraction: float, seed: int) -> str:
    if fraction <= 0:
        return "train"
    bucket = xxhash.xxh3_64_intdigest(row_id.encode(), seed=seed) / 2**64
    return "validation" if bucket < fraction else "train"


def dataset_names(cfg: OutputConfig) -> dict[str, str]:
    """split → dataset (file stem) name."""
    if cfg.validation_split > 0:
        return {"train": f"{cfg.name}_train", "validation": f"{cfg.name}_validation"}
    return {"train": cfg.name}


def write_datasets(data_dir: Path, cfg: OutputConfig, rows: Iterable[tuple[str, bytes]],
                   present: dict[str, set[str]] | None = None) -> dict[str, int]:
    """Write ``(row_id, json bytes)`` rows into the split files; return dataset name → row count.

    ``present`` (filled in when given): dataset name → which of the format's optional top-level
    columns (:attr:`~datafactory.formats.entries.FormatEntry.maybe`) some row of it holds.
    """
    from datafactory.formats.entries import FORMAT_ENTRIES

    names = dataset_names(cfg)
    counts = dict.fromkeys(names.values(), 0)
    spec = FORMAT_ENTRIES.get(cfg.format)
    maybe = [(key, b'"%s":' % key.encode()) for key in (spec.maybe(cfg) if spec else ())]
    seen: dict[str, set[str]] = {name: set() for name in names.values()}
    files = {split: data_dir / f"{name}.jsonl" for split, name in names.items()}
    with atomic_open(files["train"]) as train, _maybe_open(files.get("validation")) as val:
        for row_id, blob in rows:
            side = split_of(row_id, cfg.validation_split, cfg.seed)
            fh = val if side == "validation" and val is not None else train
            fh.write(blob)
            fh.write(b"\n")
            name = names[side] if side in names else names["train"]
            counts[name] += 1
            for key, needle in maybe:
                # the byte test skips parsing almost every row; the parse makes sure it is top-level
                if key not in seen[name] and needle in blob and key in orjson.loads(blob):
                    seen[name].add(key)
    if cfg.parquet:
        for name in names.values():
            jsonl_to_parquet(data_dir / f"{name}.jsonl", data_dir / f"{name}.parquet")
    if present is not None:
        present.update(seen)
    return counts


class _NullCtx:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _maybe_open(path: Path | None) -> Any:
    return atomic_open(path) if path is not None else _NullCtx()


def _read_batches(path: Path) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    with path.open("rb") as fh:
        for line in fh:
            batch.append(orjson.loads(line))
            if len(batch) >= PARQUET_BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def jsonl_to_parquet(src: Path, dst: Path) -> None:
    """Stream a JSONL file into Parquet; the schema is inferred from the rows (all batches unified)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # infer one schema over everything first: a column that is null in the first batch and a string
    # later must not break the writer halfway through
    schemas = [pa.Table.from_pylist(b).schema for b in _read_batches(src)]
    if not schemas:
        with atomic_open(dst) as fh:
            pq.write_table(pa.table({}), fh)
        return
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    with atomic_open(dst) as fh:
        writer = pq.ParquetWriter(fh, schema)
        try:
            for b in _read_batches(src):
                writer.write_table(pa.Table.from_pylist(b, schema=schema))
        finally:
            writer.close()
