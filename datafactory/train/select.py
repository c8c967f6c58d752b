"""Pick the checkpoint with the lowest eval loss from the trainer's ``trainer_state.json``.

The HF Trainer's ``log_history`` has one entry per evaluation (``{"eval_loss": .., "step": ..}``) and
each save writes ``checkpoint-<step>``. The best checkpoint is the saved step with the lowest
eval loss; when no evaluated step has a checkpoint directory left (``save_total_limit`` deleted
them), the trainer's own ``best_model_checkpoint`` is used.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from datafactory.errors import NoCheckpoint

TRAINER_STATE = "trainer_state.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class Selection:
    """The chosen checkpoint and why."""

    checkpoint: str
    step: int
    eval_loss: float | None
    reason: str  # "lowest eval_loss" | "best_model_checkpoint"
    evaluated_steps: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_trainer_state(train_dir: Path) -> dict[str, Any]:
    """``<train_dir>/trainer_state.json``, falling back to the newest checkpoint's copy."""
    candidates = [train_dir / TRAINER_STATE] + [c / TRAINER_STATE for c in reversed(checkpoints(train_dir))]
    for path in candidates:
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise NoCheckpoint(f"cannot read {path}: {exc}", train_dir=train_dir) from None
            if isinstance(data, dict):
                return data
    raise NoCheckpoint(f"no {TRAINER_STATE} in {train_dir}; did training finish? (run the train stage)",
                       train_dir=train_dir)


def checkpoints(train_dir: Path) -> list[Path]:
    """``checkpoint-<step>`` directories, sorted by step."""
    if not train_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in train_dir.iterdir() if p.is_dir() and (m := _CKPT.match(p.name))]
    return [p for _, p in sorted(found)]


def eval_losses(state: dict[str, Any]) -> dict[int, float]:
    """step → eval_loss from ``log_history`` (the last value wins if a step was evaluated twice)."""
    out: dict[int, float] = {}
    for entry in state.get("log_history") or []:
        if not isinstance(entry, dict):
            continue
        loss, step = entry.get("eval_loss"), entry.get("step")
        if isinstance(loss, (int, float)) and isinstance(step, int) and math.isfinite(loss):
            out[step] = float(loss)
    return out


def select_best(train_dir: Path, state: dict[str, Any] | None = None) -> Selection:
    """The saved checkpoint with the lowest eval_loss; see the module docstring for the fallback."""
    state = read_trainer_state(train_dir) if state is None else state
    losses = eval_losses(state)
    saved = {int(p.name.split("-")[1]): p for p in checkpoints(train_dir)}
    scored = [(loss, step) for step, loss in losses.items() if step in saved]
    if scored:
        loss, step = min(scored)  # ties: the earlier step
        return Selection(str(saved[step]), step, loss, "lowest eval_loss", len(losses))
    best = state.get("best_model_checkpoint")
    if isinstance(best, str) and best:
        path = Path(best)
        if not path.is_absolute():
            path = train_dir / path.name
        if not path.is_dir():  # the run dir may have moved since training
            path = train_dir / Path(best).name
        if path.is_dir():
            m = _CKPT.match(path.name)
            step = int(m.group(1)) if m else int(state.get("best_global_step") or 0)
            metric = state.get("best_metric")
            return Selection(str(path), step, float(metric) if isinstance(metric, (int, float)) else None,
                             "best_model_checkpoint", len(losses))
    if not saved:
        raise NoCheckpoint(f"training wrote no checkpoint-<step> directory in {train_dir}; "
                           "lower train.save_steps "
                           "(or raise max_steps / num_train_epochs) so at least one checkpoint is saved",
                           train_dir=train_dir)
    raise NoCheckpoint(f"no checkpoint in {train_dir} has an eval_loss (evaluated steps: "
                       f"{sorted(losses) or 'none'}, saved: {sorted(saved)}); set train.val_size > 0 "
                       "and make "
                       "save_steps a multiple of eval_steps", train_dir=train_dir)
