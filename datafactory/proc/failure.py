"""A failed child process → one user-facing message: the matching hint, the error line, the log path.

Each caller passes its own hint table (LLaMA-Factory's in :mod:`datafactory.train.runner`); the hints
every child of the ``[train]`` stack can hit (out of memory, disk full, the torchvision install trap,
a missing module, a model that cannot be loaded) are :data:`COMMON_HINTS`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from datafactory.proc.child import ProcResult

Hint = tuple[re.Pattern[str], str]

COMMON_HINTS: list[Hint] = [
    (re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED"),
     "the GPU ran out of memory: lower train.per_device_train_batch_size (raise "
     "gradient_accumulation_steps to keep the effective batch), lower train.cutoff_len, "
     "or use method: qlora"),
    (re.compile(r"torchvision::nms does not exist|Could not import module 'PreTrainedModel'"),
     "the torchvision/torchaudio install trap: run  python -m datafactory.train.install_fix"),
    (re.compile(r"Could not load this library: .*torchaudio"),
     "torchaudio's CUDA extension cannot load: run  python -m datafactory.train.install_fix"),
    (re.compile(r"(?:OSError|HFValidationError|RepositoryNotFoundError|LocalEntryNotFoundError).*?"
                r"(?:is not a local folder|not a valid model identifier|offline mode|Can't load)"),
     "the model could not be loaded: model.name_or_path must be a local directory or a hub id that is "
     "reachable (or already in the Hugging Face cache when offline)"),
    (re.compile(r"No space left on device"), "the disk is full (checkpoints and merged models are large)"),
    (re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'"),
     "Python module {0} is missing: pip install -e \".[train]\" && python -m datafactory.train.install_fix"),
]


def find_hint(lines: Sequence[str], hints: Sequence[Hint]) -> str | None:
    """The first hint whose pattern matches: exception lines first, then the whole tail."""
    errors = [ln.strip() for ln in lines if re.match(r"^\s*[A-Za-z_][\w.]*(Error|Exception)\b", ln)]
    # exception lines first: traceback source lines quote the same messages as unformatted f-strings
    for text in ("\n".join(errors), "\n".join(lines)):
        for pattern, message in hints:
            m = pattern.search(text)
            if m is not None:
                return message.format(*(g.strip() for g in m.groups()))
    return None


def explain_failure(result: ProcResult, what: str, hints: Sequence[Hint] = COMMON_HINTS) -> str:
    """A user-facing message for a failed child: the matching hint, the error line and the log path."""
    errors = [ln.strip() for ln in result.tail if re.match(r"^\s*[A-Za-z_][\w.]*(Error|Exception)\b", ln)]
    hint = find_hint(result.tail, hints)
    last = errors[-1] if errors else (result.tail[-1].strip() if result.tail else "(no output)")
    if result.returncode < 0:
        last = f"killed by signal {-result.returncode} (out of memory?); last output: {last}"
    parts = [f"{what} failed (exit {result.returncode})"]
    if hint:
        parts.append(f"hint: {hint}")
    parts.append(f"error: {last[:500]}")
    parts.append(f"full log: {result.log_path}")
    return "\n  ".join(parts)
