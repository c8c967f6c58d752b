"""Train/eval: one recipe → LLaMA-Factory SFT or DPO, best checkpoint, merge, lm-eval report.

Nothing here imports torch, LLaMA-Factory or lm-eval at import time: they belong to the optional
``[train]`` extra and are only needed by the subprocesses this package starts.
"""

from __future__ import annotations

from typing import Any

__all__ = ["train_eval"]


def train_eval(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run the train → select → merge → eval → report stages.

    See :func:`datafactory.train.pipeline.train_eval` for the arguments.
    """
    from datafactory.train.pipeline import train_eval as _train_eval

    return _train_eval(*args, **kwargs)
