"""Run ``llamafactory-cli train/export`` as a child process with a progress bar and clear failures.

The child is ``<this python> -m llamafactory.cli``, i.e. the LLaMA-Factory installed next to
datafactory (an activated venv is not required). Its output goes to a log file in the run
directory; the progress bar follows the trainer's tqdm bar (``12/40 [``) once the HF Trainer has
printed ``Total optimization steps = 40``, and shows the latest loss / eval_loss.
Failures are mapped to messages that say what to change (out of memory, unknown template,
missing files, a key LLaMA-Factory does not accept, the torchvision install trap).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from datafactory.errors import UserError
from datafactory.train.subproc import ProcResult, run_streaming

_TOTAL = re.compile(r"Total optimization steps = ([\d,]+)")
_BAR = re.compile(r"^\W*\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[")
_METRIC = re.compile(r"'(loss|eval_loss)': '?([-\d.eE+]+)'?")
_REQUESTS = re.compile(r"Running (\w+) requests?:?\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)")


class TrainFailed(UserError):
    """``llamafactory-cli`` (or the lm-eval child) exited with an error."""


class StepProgress:
    """Parses trainer output into (completed, total) and a short status text (latest losses)."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.completed = 0
        self.status = ""
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


class RequestProgress(StepProgress):
    """lm-eval's ``Running generate_until requests: 40%|...| 2/5`` bars."""

    def feed(self, line: str) -> bool:
        m = _REQUESTS.search(line)
        if m is None:
            return False
        self.total, self.completed, self.status = int(m.group(3)), int(m.group(2)), m.group(1)
        return True


@contextmanager
def progress_display(description: str, parser: StepProgress, *,
                     enabled: bool) -> Iterator[Callable[[str], None]]:
    """A rich progress bar driven by ``parser``; yields the ``on_line`` callback for :func:`run_streaming`."""
    if not enabled:

        def feed_only(line: str) -> None:
            parser.feed(line)

        yield feed_only
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=None, status="starting")

        def on_line(line: str) -> None:
            if parser.feed(line):
                progress.update(task, total=parser.total, completed=parser.completed, status=parser.status)

        yield on_line


def child_env(*, cuda: bool, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for the children: one OpenMP thread on CPU (unless set), unbuffered output."""
    env = dict(os.environ)
    if not cuda:
        # measured: 2 threads on a busy 2-core box made a 20-step tiny-model SFT 14x slower
        env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    env.update(extra or {})
    return env


def llamafactory_command(subcommand: str, yaml_path: Path) -> list[str]:
    """``[python, -m, llamafactory.cli, train|export, yaml]`` for the current interpreter."""
    return [sys.executable, "-m", "llamafactory.cli", subcommand, str(yaml_path)]


def run_llamafactory(subcommand: str, yaml_path: Path, *, log_path: Path, cuda: bool,
                     show_progress: bool = True) -> ProcResult:
    """Run ``llamafactory-cli <subcommand> <yaml>``; raise :class:`TrainFailed` with a hint on failure."""
    from datafactory.train.check import require_train_extra

    require_train_extra(("torch", "llamafactory"), purpose=f"llamafactory-cli {subcommand}")
    label = {"train": "training", "export": "merging"}.get(subcommand, subcommand)
    parser = StepProgress()
    with progress_display(label, parser, enabled=show_progress) as on_line:
        result = run_streaming(llamafactory_command(subcommand, yaml_path), log_path=log_path,
                               env=child_env(cuda=cuda), on_line=on_line,
                               what=f"llamafactory-cli {subcommand}")
    if not result.ok:
        raise TrainFailed(explain_failure(result, f"llamafactory-cli {subcommand} {yaml_path}"))
    return result


# ------------------------------------------------------------------------------ failure messages
_HINTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED"),
     "the GPU ran out of memory: lower train.per_device_train_batch_size (raise "
     "gradient_accumulation_steps to keep the effective batch), lower train.cutoff_len, "
     "or use method: qlora"),
    (re.compile(r"Template (\S+) does not exist"),
     "LLaMA-Factory does not know template {0}: fix model.template (e.g. qwen, qwen3, llama3, mistral)"),
    (re.compile(r"Some keys are not used by the HfArgumentParser: (.*)"),
     "LLaMA-Factory rejected the keys {0}: fix or remove them in the recipe's overrides"),
    (re.compile(r"Undefined dataset (\S+) in"),
     "dataset {0} is not registered in data.dataset_dir/dataset_info.json"),
    (re.compile(r"File (\S+) not found"),
     "data file {0} is missing; check data.dataset_dir and dataset_info.json"),
    (re.compile(r"Cannot open (\S+) due to"), "cannot read {0}; check data.dataset_dir"),
    (re.compile(r"torchvision::nms does not exist|Could not import module 'PreTrainedModel'"),
     "the torchvision/torchaudio install trap: run  python -m datafactory.train.install_fix"),
    (re.compile(r"Could not load this library: .*torchaudio"),
     "torchaudio's CUDA extension cannot load: run  python -m datafactory.train.install_fix"),
    (re.compile(r"(?:OSError|HFValidationError|RepositoryNotFoundError|LocalEntryNotFoundError).*?"
                r"(?:is not a local folder|not a valid model identifier|offline mode|Can't load)"),
     "the model could not be loaded: model.name_or_path must be a local directory or a hub id that is "
     "reachable (or already in the Hugging Face cache when offline)"),
    (re.compile(r"Cannot find (?:sufficient|valid) samples"),
     "no usable training rows: check the dataset format (columns in dataset_info.json) and cutoff_len"),
    (re.compile(r"The dataset is not applicable in the current training stage"),
     "dpo needs a preference dataset (\"ranking\": true) and sft a non-preference one"),
    (re.compile(r"No space left on device"), "the disk is full (checkpoints and merged models are large)"),
    (re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'"),
     "Python module {0} is missing: pip install -e \".[train]\" && python -m datafactory.train.install_fix"),
]


def explain_failure(result: ProcResult, what: str) -> str:
    """A user-facing message for a failed child: the matching hint, the error line and the log path."""
    errors = [ln.strip() for ln in result.tail if re.match(r"^\s*[A-Za-z_][\w.]*(Error|Exception)\b", ln)]
    hint = None
    # exception lines first: traceback source lines quote the same messages as unformatted f-strings
    for text in ("\n".join(errors), "\n".join(result.tail)):
        for pattern, message in _HINTS:
            m = pattern.search(text)
            if m is not None:
                hint = message.format(*(g.strip() for g in m.groups()))
                break
        if hint:
            break
    last = errors[-1] if errors else (result.tail[-1].strip() if result.tail else "(no output)")
    if result.returncode < 0:
        last = f"killed by signal {-result.returncode} (out of memory?); last output: {last}"
    parts = [f"{what} failed (exit {result.returncode})"]
    if hint:
        parts.append(f"hint: {hint}")
    parts.append(f"error: {last[:500]}")
    parts.append(f"full log: {result.log_path}")
    return "\n  ".join(parts)
