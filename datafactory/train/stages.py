"""Stage bookkeeping for a train/eval run: the run directory layout, input hashes and done-markers.

The stages run in a fixed order (train → select → merge → eval → report). When a stage finishes,
``<run>/.stages/<stage>.json`` records the hash of its inputs; each hash includes the hash of the
stage before it, so changing the training data reruns everything after it, while changing only
``eval.limit`` reruns eval and report. A stage whose marker matches (and whose outputs still exist)
is skipped on rerun.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

from datafactory.config.suggest import closest
from datafactory.errors import UnknownName
from datafactory.io.atomic import atomic_write_text

STAGES = ("train", "select", "merge", "eval", "report")
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class RunLayout:
    """Where everything lives inside the run directory (``recipe.output_dir``)."""

    root: Path

    @property
    def train_yaml(self) -> Path:
        return self.root / "train.yaml"

    @property
    def export_yaml(self) -> Path:
        return self.root / "export.yaml"

    @property
    def train_dir(self) -> Path:  # LLaMA-Factory's output_dir: checkpoints, trainer_state.json
        return self.root / "train"

    @property
    def merged_dir(self) -> Path:
        return self.root / "merged"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def stages_dir(self) -> Path:
        return self.root / ".stages"

    @property
    def best_json(self) -> Path:
        return self.root / "best_checkpoint.json"

    @property
    def resolved_recipe(self) -> Path:
        return self.root / "recipe.resolved.yaml"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def loss_png(self) -> Path:
        return self.root / "loss.png"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def log(self, name: str) -> Path:
        """``<run>/logs/<name>.log``."""
        return self.logs_dir / f"{name}.log"

    def marker(self, stage: str) -> Path:
        return self.stages_dir / f"{stage}.json"


def parse_stages(stages: str | Iterable[str] | None) -> list[str]:
    """Normalise ``"train,eval"`` / ``["train", "eval"]`` / None (all) to known stages in run order."""
    if stages is None:
        return list(STAGES)
    raw = stages.split(",") if isinstance(stages, str) else [str(s) for s in stages]
    items = [s.strip() for s in raw]
    items = [s for s in items if s]
    if not items or items == ["all"]:
        return list(STAGES)
    for name in items:
        if name not in STAGES:
            hint = closest(name, STAGES)
            raise UnknownName(f"unknown stage '{name}'; stages: {', '.join(STAGES)}"
                              + (f" (did you mean '{hint}'?)" if hint else ""))
    return [s for s in STAGES if s in items]


# ---------------------------------------------------------------------------------------- hashing
def hash_values(*parts: Any) -> str:
    """Stable hash of JSON-able values (dict key order does not matter)."""
    h = xxhash.xxh3_128()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def hash_file(path: Path) -> str:
    """Content hash of one file."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(path: Path, *, content: bool) -> Any:
    """A file's or directory's identity: content hashes (datasets) or names, sizes and mtimes (models)."""
    if path.is_file():
        if content:
            return hash_file(path)
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return {str(p.relative_to(path)): fingerprint(p, content=content) for p in files}
    return None  # a hub id or a missing path: the name itself is hashed by the caller


# ---------------------------------------------------------------------------------------- markers
def read_marker(layout: RunLayout, stage: str) -> dict[str, Any] | None:
    """The stage's done-marker, or None when it is missing, unreadable or its outputs are gone."""
    path = layout.marker(stage)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    for output in data.get("paths") or []:
        if not Path(output).exists():
            return None
    return data


def write_marker(layout: RunLayout, stage: str, input_hash: str, *, seconds: float,
                 outputs: dict[str, Any], paths: Sequence[Path] = ()) -> dict[str, Any]:
    """Record that ``stage`` finished for ``input_hash``; ``paths`` must exist for the marker to count."""
    data = {"stage": stage, "hash": input_hash, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(seconds, 3), "outputs": outputs, "paths": [str(p) for p in paths]}
    atomic_write_text(layout.marker(stage), json.dumps(data, indent=2, default=str))
    return data


def clear_marker(layout: RunLayout, stage: str) -> None:
    """Forget that ``stage`` finished (before rerunning it)."""
    layout.marker(stage).unlink(missing_ok=True)
