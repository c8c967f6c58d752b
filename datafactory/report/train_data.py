"""What a train-eval run dir holds, read for the report (see :mod:`datafactory.train.pipeline`).

Loss points from ``train/trainer_state.json`` (LLaMA-Factory's HF Trainer ``log_history``), the best
step from ``best_checkpoint.json``, base and tuned scores (and a few logged samples) from
``eval/base.json`` / ``eval/tuned.json``, stage times from the ``.stages/<stage>.json`` markers, and the
recipe from ``recipe.resolved.yaml``. Whatever a partial run has not written yet is simply absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from datafactory.io.jsonfile import read_json_object

RECIPE_FILE = "recipe.resolved.yaml"
STAGES_DIR = ".stages"


@dataclass
class TrainRun:
    path: Path
    name: str
    recipe_text: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    train_loss: list[tuple[int, float]] = field(default_factory=list)
    eval_loss: list[tuple[int, float]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)
    tuned: dict[str, Any] = field(default_factory=dict)
    results: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)


def is_train_run(path: Path) -> bool:
    return (path / RECIPE_FILE).is_file() or (path / STAGES_DIR).is_dir()


def load_train(path: Path) -> TrainRun:
    from datafactory.errors import NoCheckpoint
    from datafactory.evaluate.report import compare, loss_series
    from datafactory.train.select import read_trainer_state
    from datafactory.train.stages import STAGES

    run = TrainRun(path=path, name=path.name)
    try:
        run.recipe_text = (path / RECIPE_FILE).read_text(encoding="utf-8")
        loaded = yaml.safe_load(run.recipe_text)
        run.recipe = loaded if isinstance(loaded, dict) else {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        pass
    try:
        run.state = read_trainer_state(path / "train")
    except NoCheckpoint:
        run.state = {}
    run.train_loss, run.eval_loss = loss_series(run.state)
    run.selection = _read_json(path / "best_checkpoint.json")
    run.base = _read_json(path / "eval" / "base.json")
    run.tuned = _read_json(path / "eval" / "tuned.json")
    if run.base or run.tuned:
        run.results = compare(run.base, run.tuned)
    for stage in STAGES:
        marker = _read_json(path / STAGES_DIR / f"{stage}.json")
        if marker:
            run.stages.append({"stage": stage, "seconds": marker.get("seconds"),
                               "finished_at": marker.get("finished_at")})
    return run


def paired_examples(run: TrainRun, limit: int = 8) -> list[dict[str, Any]]:
    """Eval questions both models answered (by task and doc id), the base and tuned entry side by side."""
    base, tuned = run.base.get("examples") or {}, run.tuned.get("examples") or {}
    out = []
    for task in dict.fromkeys([*tuned, *base]):
        by_doc = {e.get("doc_id"): e for e in base.get(task) or [] if isinstance(e, dict)}
        seen = set()
        for t in tuned.get(task) or []:
            if not isinstance(t, dict):
                continue
            out.append({"task": task, "doc_id": t.get("doc_id"), "base": by_doc.get(t.get("doc_id")), "tuned": t})
            seen.add(t.get("doc_id"))
            if len(out) >= limit:
                return out
        for doc_id, b in by_doc.items():
            if doc_id not in seen:
                out.append({"task": task, "doc_id": doc_id, "base": b, "tuned": None})
                if len(out) >= limit:
                    return out
    return out


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path) or {}
