"""datafactory: concurrent, resumable LLM-API augmentation → LLaMA-Factory datasets → train + eval.

Library API (the CLI calls exactly these)::

    from datafactory import load_pipeline, augment, plan, build_info

    pipe = load_pipeline("pipelines/gsm8k_rephrase.yaml", limit=100)
    stats = augment(pipe)            # runs, resumes, never pays twice; returns Stats
    print(stats.to_json())

Heavy libraries are imported lazily so ``datafactory --help`` stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["load_pipeline", "augment", "augment_async", "plan", "build_info", "train_eval", "Pipeline", "Stats", "Plan",
           "DatafactoryError", "__version__"]

_LAZY = {
    "load_pipeline": ("datafactory.config.pipeline", "load_pipeline"),
    "Pipeline": ("datafactory.config.pipeline", "Pipeline"),
    "augment": ("datafactory.engine.augment", "augment"),
    "augment_async": ("datafactory.engine.augment", "augment_async"),
    "plan": ("datafactory.engine.augment", "plan"),
    "Plan": ("datafactory.engine.augment", "Plan"),
    "Stats": ("datafactory.engine.stats", "Stats"),
    "build_info": ("datafactory.formats.dataset_info", "build_info"),
    "train_eval": ("datafactory.train.pipeline", "train_eval"),
    "DatafactoryError": ("datafactory.errors", "DatafactoryError"),
}

if TYPE_CHECKING:  # pragma: no cover
    from datafactory.config.pipeline import Pipeline, load_pipeline
    from datafactory.engine.augment import Plan, augment, augment_async, plan
    from datafactory.engine.stats import Stats
    from datafactory.errors import DatafactoryError


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'datafactory' has no attribute {name!r}")
