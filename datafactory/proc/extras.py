"""Is the optional ``[train]`` extra installed and usable? Cheap checks, no heavy imports.

The core datafactory install must not need torch, LLaMA-Factory or lm-eval, so these checks look
for the packages with ``importlib.util.find_spec`` (nothing is imported) and only import torch when
the caller really needs to know whether a CUDA GPU is present.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from datafactory.errors import TrainExtraMissing

INSTALL_COMMAND = 'pip install -e ".[train]" && python -m datafactory.train.install_fix'
TRAIN_MODULES = {"torch": "torch", "llamafactory": "llamafactory", "lm_eval": "lm-eval"}


def package_dir(name: str) -> Path | None:
    """Directory of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_train_modules(modules: tuple[str, ...] = ("torch", "llamafactory", "lm_eval")) -> list[str]:
    """The distribution names (``lm-eval``, not ``lm_eval``) of the given modules that are not installed."""
    return [TRAIN_MODULES.get(m, m) for m in modules if not _has(m)]


def require_train_extra(modules: tuple[str, ...] = ("torch", "llamafactory", "lm_eval"), *,
                        purpose: str = "datafactory train-eval") -> None:
    """Raise :class:`TrainExtraMissing` naming the exact install command when a module is missing."""
    missing = missing_train_modules(modules)
    if missing:
        raise TrainExtraMissing(
            f"{purpose} needs the optional [train] extra, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed in this environment. "
            f"Install it from the datafactory checkout with:\n    {INSTALL_COMMAND}", missing=missing)


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA GPU (imports torch, once)."""
    if not _has("torch"):
        return False
    try:
        import torch
    except Exception:  # a broken torch install is "no GPU" here; install_fix reports the rest
        return False
    return bool(torch.cuda.is_available())


@functools.lru_cache(maxsize=1)
def bf16_available() -> bool:
    """True when the CUDA GPU supports bfloat16."""
    if not cuda_available():
        return False
    import torch

    return bool(torch.cuda.is_bf16_supported())
