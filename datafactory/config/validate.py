"""``datafactory validate FILE``: check a pipeline or a train-eval recipe without running anything.

The kind is told from the top-level keys (a pipeline has ``input``/``prompt``/``provider``, a recipe
``model``/``data``/``output_dir``), so one command checks both. A pipeline is checked as ``augment``
would check it before its first request (config, input file, input columns, gate field names); a
recipe as ``train-eval`` would before it starts (layout, files, datasets, template), without importing
LLaMA-Factory, torch or lm-eval. Problems raise the usual ConfigError / InputError (file:line: key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datafactory.config.yamlio import load_yaml

PIPELINE_KEYS = ("input", "prompt", "provider", "schema")
RECIPE_KEYS = ("model", "data", "output_dir", "train", "eval", "overrides")


@dataclass
class Validated:
    """What ``validate`` found: the kind of file, a one-line summary and any warnings."""

    kind: str  # "pipeline" | "recipe"
    summary: str
    warnings: list[str] = field(default_factory=list)


def kind_of(data: Any) -> str:
    """"recipe" when the top-level keys are a recipe's, else "pipeline" (whose errors then apply)."""
    if isinstance(data, dict) and not any(k in data for k in PIPELINE_KEYS) \
            and any(k in data for k in RECIPE_KEYS):
        return "recipe"
    return "pipeline"


def validate_file(path: str | Path) -> Validated:
    """Check ``path`` (pipeline or recipe); raise the first problem, return a summary when fine."""
    loc = load_yaml(path)
    if kind_of(loc.data) == "recipe":
        return _validate_recipe(loc)
    return _validate_pipeline(path)


def _validate_pipeline(path: str | Path) -> Validated:
    from datafactory.config.names import check_input_columns
    from datafactory.config.pipeline import load_pipeline
    from datafactory.errors import InputError
    from datafactory.io.readers import is_local

    pipe = load_pipeline(path)
    # a typo in input.path would otherwise only show up when the run starts
    if is_local(pipe.input.path) and not Path(pipe.input.path).is_file():
        raise InputError("input file not found (input.path)", file=pipe.input.path)
    check_input_columns(pipe)
    return Validated("pipeline", f"pipeline '{pipe.name}', {pipe.provider.kind}:{pipe.provider.model}, "
                                 f"input {pipe.input.path}, output {pipe.output.dir}")


def _validate_recipe(loc: Any) -> Validated:
    from datafactory.config.recipe import recipe_from_located

    recipe = recipe_from_located(loc)
    t = recipe.train
    return Validated("recipe", f"train-eval recipe, model {recipe.model.name_or_path} "
                               f"(template {recipe.model.template}), {t.stage}/{t.method}, datasets "
                               f"{', '.join(recipe.data.datasets)} in {recipe.data.dataset_dir}, "
                               f"output {recipe.output_dir}", list(recipe.warnings))
