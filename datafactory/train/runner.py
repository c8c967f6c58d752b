"""Run ``llamafactory-cli train/export`` as a child process with a progress bar and clear failures.

The child is ``<this python> -m llamafactory.cli``, i.e. the LLaMA-Factory installed next to
datafactory (an activated venv is not required). Its output goes to a log file in the run
directory; the progress bar follows the trainer's tqdm bar (``12/40 [``) once the HF Trainer has
printed ``Total optimization steps = 40``, and shows the latest loss / eval_loss.
Failures are mapped to messages that say what to change (out of memory, unknown template,
missing files, a key LLaMA-Factory does not accept, the torchvision install trap).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path

from datafactory.errors import TrainFailed
from datafactory.proc.child import ProcResult, child_env, run_streaming
from datafactory.proc.failure import COMMON_HINTS, Hint, explain_failure
from datafactory.proc.progress import LineProgress, progress_display

_TOTAL = re.compile(r"Total optimization steps = ([\d,]+)")
_BAR = re.compile(r"^\W*\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[")
_METRIC = re.compile(r"'(loss|eval_loss)': '?([-\d.eE+]+)'?")


class StepProgress(LineProgress):
    """Parses trainer output into (completed, total) and a short status text (latest losses)."""

    def __init__(self) -> None:
        super().__init__()
        self._metrics: dict[str, str] = {}

    def feed(self, line: str) -> bool:
        """Consume one output line; True when the progress or status changed."""
        changed = False
        if (m := _TOTAL.search(line)) is not None:
            self.total, changed = int(m.group(1).replace(",", "")), True
        elif (b := _BAR.match(line)) is not None and self.total is not None and int(b.group(2)) == self.total:
            done = int(b.group(1))
            if done > self.completed:  # an eval bar with the same total can never move it back
                self.completed, changed = done, True
        for key, value in _METRIC.findall(line):
            self._metrics[key] = value
            changed = True
        if changed and self._metrics:
            self.status = "  ".join(f"{k} {v}" for k, v in sorted(self._metrics.items(), reverse=True))
        elif self.total is None and ">> " in line:  # no step bar (export, loading): the latest log message
            self.status, changed = line.rsplit(">> ", 1)[1].strip()[:60], True
        return changed


def llamafactory_command(subcommand: str, yaml_path: Path) -> list[str]:
    """``[python, -m, llamafactory.cli, train|export, yaml]`` for the current interpreter."""
    return [sys.executable, "-m", "llamafactory.cli", subcommand, str(yaml_path)]


def run_llamafactory(subcommand: str, yaml_path: Path, *, log_path: Path, cuda: bool,
                     show_progress: bool = True, env: Mapping[str, str] | None = None) -> ProcResult:
    """Run ``llamafactory-cli <subcommand> <yaml>``; raise :class:`TrainFailed` with a hint on failure.

    ``env`` is added to the children's environment (e.g. ``HF_HUB_OFFLINE=1``)."""
    from datafactory.proc.extras import require_train_extra

    require_train_extra(("torch", "llamafactory"), purpose=f"llamafactory-cli {subcommand}")
    label = {"train": "training", "export": "merging"}.get(subcommand, subcommand)
    parser = StepProgress()
    what = f"llamafactory-cli {subcommand}"
    with progress_display(label, parser, enabled=show_progress) as on_line:
        result = run_streaming(llamafactory_command(subcommand, yaml_path), log_path=log_path,
                               env=child_env(cuda=cuda, extra=env), on_line=on_line, what=what)
    if not result.ok:
        raise TrainFailed(explain_failure(result, f"{what} {yaml_path}", LF_HINTS), command=what,
                          returncode=result.returncode, log_path=result.log_path)
    return result


# ------------------------------------------------------------------------------ failure messages
_LF_HINTS: list[Hint] = [
    (re.compile(r"Template (\S+) does not exist"),
     "LLaMA-Factory does not know template {0}: fix model.template (e.g. qwen, qwen3, llama3, mistral)"),
    (re.compile(r"Some keys are not used by the HfArgumentParser: (.*)"),
     "LLaMA-Factory rejected the keys {0}: fix or remove them in the recipe's overrides"),
    (re.compile(r"Undefined dataset (\S+) in"),
     "dataset {0} is not registered in data.dataset_dir/dataset_info.json"),
    (re.compile(r"File (\S+) not found"),
     "data file {0} is missing; check data.dataset_dir and dataset_info.json"),
    (re.compile(r"Cannot open (\S+) due to"), "cannot read {0}; check data.dataset_dir"),
    (re.compile(r"Cannot find (?:sufficient|valid) samples"),
     "no usable training rows: check the dataset format (columns in dataset_info.json) and cutoff_len"),
    (re.compile(r"The dataset is not applicable in the current training stage"),
     "dpo needs a preference dataset (\"ranking\": true) and sft a non-preference one"),
]
# out of memory first (its message can quote anything), then LLaMA-Factory's own, then the rest
LF_HINTS: list[Hint] = [*COMMON_HINTS[:1], *_LF_HINTS, *COMMON_HINTS[1:]]
