"""datafactory: concurrent, resumable LLM-API augmentation → LLaMA-Factory datasets → train + eval.

Library API (the CLI calls exactly these; each is imported on first use, so ``import datafactory``
and ``datafactory --help`` stay instant)::

    from datafactory import load_pipeline, augment, plan, build_info, train_eval, report

    pipe = load_pipeline("pipelines/gsm8k_rephrase.yaml", limit=100)
    print(plan(pipe).requests)      # what a run would send and cost; sends nothing (--dry-run)
    stats = augment(pipe)           # runs, resumes, never pays twice; returns Stats
    print(stats.to_json())
    build_info("runs/gsm8k_rephrase/data")                      # dataset_info.json for LLaMA-Factory
    train_eval("pipelines/train_qwen_gsm8k_lora.yaml")          # needs the [train] extra
    report(["runs/a", "runs/b"], output="compare.html")         # self-contained HTML, side by side

Functions:
    load_pipeline(path, **overrides) -> Pipeline   read and validate a pipeline YAML
    augment(pipe) -> Stats                         run (or resume) a pipeline
    augment_async(pipe) -> Stats                   the same, inside a running event loop
    plan(pipe) -> Plan                             rows, requests, token and cost estimate, sample prompts
    build_info(dir, ...) -> result                 write/merge LLaMA-Factory's dataset_info.json
    train_eval(recipe, ...) -> dict                train → select → merge → eval → report
    report(run_dirs, output=None) -> Path          HTML report of augment / train-eval run dirs

Classes: Pipeline, Stats, Plan, and DatafactoryError (the base of every error datafactory raises;
the whole tree is in :mod:`datafactory.errors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["load_pipeline", "augment", "augment_async", "plan", "build_info", "train_eval", "report", "Pipeline",
           "Stats", "Plan", "DatafactoryError", "__version__"]

_LAZY = {
    "load_pipeline": ("datafactory.config.pipeline", "load_pipeline"),
    "Pipeline": ("datafactory.config.pipeline", "Pipeline"),
    "augment": ("datafactory.engine.augment", "augment"),
    "augment_async": ("datafactory.engine.augment", "augment_async"),
    "plan": ("datafactory.engine.plan", "plan"),
    "Plan": ("datafactory.engine.plan", "Plan"),
    "Stats": ("datafactory.engine.stats", "Stats"),
    "build_info": ("datafactory.formats.dataset_info", "build_info"),
    "train_eval": ("datafactory.train.pipeline", "train_eval"),
    "report": ("datafactory.report.build", "report"),
    "DatafactoryError": ("datafactory.errors", "DatafactoryError"),
}

if TYPE_CHECKING:  # pragma: no cover
    from datafactory.config.pipeline import Pipeline, load_pipeline
    from datafactory.engine.augment import augment, augment_async
    from datafactory.engine.plan import Plan, plan
    from datafactory.engine.stats import Stats
    from datafactory.errors import DatafactoryError
    from datafactory.formats.dataset_info import build_info
    from datafactory.report.build import report
    from datafactory.train.pipeline import train_eval


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # later lookups (and help()) see the real object
        return value
    raise AttributeError(f"module 'datafactory' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API, dunders and the submodules imported so far: what tab completion and ``help()`` list."""
    names = {n for n, v in globals().items() if n.startswith("__") or n in __all__
             or (type(v) is type(__import__("sys")) and v.__name__.startswith("datafactory."))}
    return sorted(names | set(__all__))
