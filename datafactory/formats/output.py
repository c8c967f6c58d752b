"""Model JSON object (+ source row) → one output row in the configured format.

``output.columns`` maps an output column to a property of the model's object (``question``) or to a
mapped input field (``source.question``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datafactory.config.pipeline import OutputConfig


def _pick(ref: str, obj: dict[str, Any], source: dict[str, Any]) -> Any:
    if ref.startswith("source."):
        return source.get(ref[len("source."):])
    return obj.get(ref)


def alpaca(cfg: OutputConfig, obj: dict[str, Any], source: dict[str, Any], row_id: str) -> dict[str, Any]:
    row = {col: _pick(ref, obj, source) for col, ref in cfg.columns.items()}
    row.setdefault("input", "")
    ordered: dict[str, Any] = {k: row.pop(k) for k in ("instruction", "input", "output") if k in row}
    ordered.update(row)
    return ordered


def jsonl(cfg: OutputConfig, obj: dict[str, Any], source: dict[str, Any], row_id: str) -> dict[str, Any]:
    if cfg.columns:
        return {"id": row_id, **{col: _pick(ref, obj, source) for col, ref in cfg.columns.items()}}
    return {"id": row_id, "source": source, "output": obj}


FORMATS: dict[str, Callable[[OutputConfig, dict[str, Any], dict[str, Any], str], dict[str, Any]]] = {
    "alpaca": alpaca, "jsonl": jsonl,
}
