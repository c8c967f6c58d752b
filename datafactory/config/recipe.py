"""The train/eval recipe: one YAML file, validated up front, before anything slow starts.

Layout (every key but ``model.name_or_path``, ``model.template``, ``data.*`` and ``output_dir`` has a
default that works)::

    model: {name_or_path: Qwen/Qwen2.5-1.5B-Instruct, template: qwen}
    data: {dataset_dir: runs/gsm8k_rephrase, datasets: [gsm8k_rephrase]}
    train: {stage: sft, method: lora, cutoff_len: 1024, learning_rate: 1.0e-4, ...}
    eval: {tasks: [gsm8k], num_fewshot: 5, limit: null, apply_chat_template: true, backend: hf}
    output_dir: runs/train-qwen-gsm8k-lora
    overrides: {}        # any other LLaMA-Factory train key, passed through unchanged

The sections are the dataclasses of :mod:`datafactory.config.recipe_model` (their only schema and source
of defaults), checked by the same :func:`~datafactory.config.spec.check_section` as pipelines; in a
recipe ``key: null`` means the default. Relative paths are stored absolute: like the augment pipelines,
run directories (``data.dataset_dir``, ``output_dir``, a local ``model.name_or_path``) are resolved
against the working directory, where ``runs/`` lives, and files that ship with the recipe
(``train.deepspeed``, ``eval.offline_data``) against the recipe file's folder. Mistakes raise
:class:`~datafactory.errors.ConfigError` naming the file, line and key (with a did-you-mean for typos);
things that are probably wrong but legal (a template that does not match the model) end up in
``Recipe.warnings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datafactory.config.recipe_model import (
    DEFAULT_LR,
    METHODS,
    PRECISIONS,
    SECTIONS,
    STAGES,
    DataSpec,
    EvalSpec,
    ModelSpec,
    Recipe,
    TrainSpec,
)
from datafactory.config.spec import Key, check_section, keys_from, reject_unknown
from datafactory.config.yamlio import Located, load_yaml

__all__ = ["DEFAULT_LR", "METHODS", "PRECISIONS", "STAGES", "DataSpec", "EvalSpec", "ModelSpec", "Recipe",
           "TrainSpec", "SECTION_KEYS", "TOP_KEYS", "load_recipe", "recipe_from_dict", "recipe_from_located"]

# the YAML keys, derived from the dataclasses (types, defaults, docs, choices, checks)
SECTION_KEYS: dict[str, dict[str, Key]] = {name: keys_from(cls) for name, cls in SECTIONS.items()}
TOP_KEYS: dict[str, Key] = keys_from(Recipe, skip=("source", "warnings"))
OPTIONAL_SECTIONS = ("train", "eval")
LORA_ONLY = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target")
DPO_ONLY = ("pref_beta", "pref_loss")
_OVERRIDES_HINT = {"train": "; other LLaMA-Factory train keys go under 'overrides'"}


def load_recipe(path: str | Path, *, base_dir: Path | None = None, check_environment: bool = True) -> Recipe:
    """Read and validate a recipe YAML file (see the module docstring for the layout)."""
    return recipe_from_located(load_yaml(path), base_dir=base_dir, check_environment=check_environment)


def recipe_from_dict(data: dict[str, Any], *, source: str = "<recipe>", base_dir: Path | None = None,
                     check_environment: bool = True) -> Recipe:
    """Validate a recipe given as a dict (same layout as the YAML file)."""
    return recipe_from_located(Located(data=data, file=source), base_dir=base_dir,
                               check_environment=check_environment)


def recipe_from_located(loc: Located, *, base_dir: Path | None = None,
                        check_environment: bool = True) -> Recipe:
    """Validate loaded YAML; with ``check_environment`` also the files, datasets, template and GPU."""
    base = (base_dir or Path.cwd()).resolve()
    recipe_dir = Path(loc.file).resolve().parent if Path(loc.file).is_file() else base
    roots = {"cwd": base, "recipe": recipe_dir}
    data = loc.data
    if not isinstance(data, dict):
        raise loc.error("", "a recipe must be a mapping with the keys: " + ", ".join(TOP_KEYS))
    reject_unknown(loc, "", data, TOP_KEYS, hint=f"; known keys: {', '.join(TOP_KEYS)}")
    for name, keys in SECTION_KEYS.items():
        if name not in data and name not in OPTIONAL_SECTIONS:
            raise loc.error(name, f"missing required section '{name}' (keys: {', '.join(keys)})")
    if "output_dir" not in data:
        raise loc.error("output_dir", "missing required key 'output_dir' (the run directory)")
    top = check_section(loc, data, "", TOP_KEYS, null_is_default=True)
    sections = {name: _paths(check_section(loc, top[name], name, keys, null_is_default=True,
                                           unknown_hint=_OVERRIDES_HINT.get(name, "")), keys, roots)
                for name, keys in SECTION_KEYS.items()}
    top = _paths(top, TOP_KEYS, roots)

    warnings: list[str] = []
    train = _finish_train(loc, sections["train"], data.get("train") or {}, warnings)
    ev = _finish_eval(loc, sections["eval"], recipe_dir)
    recipe = Recipe(model=ModelSpec(**sections["model"]), data=DataSpec(**sections["data"]),
                    output_dir=top["output_dir"], train=train, eval=ev, overrides=dict(top["overrides"]),
                    source=loc.file, warnings=warnings)
    _model_path(loc, recipe, base)
    if check_environment:
        from datafactory.config import recipe_checks

        recipe_checks.check_all(loc, recipe)
    return recipe


def _paths(values: dict[str, Any], keys: dict[str, Key], roots: dict[str, Path]) -> dict[str, Any]:
    """Make the path keys (``metadata["path"]``) absolute against their root."""
    for name, key in keys.items():
        root = key.meta.get("path")
        if root is not None and isinstance(values[name], str):
            values[name] = (roots[root] / Path(values[name]).expanduser()).resolve()
    return values


def _model_path(loc: Located, recipe: Recipe, base: Path) -> None:
    """Make an existing local model path absolute; reject paths that clearly point nowhere."""
    name = recipe.model.name_or_path
    candidate = (base / Path(name).expanduser()).resolve()
    if candidate.exists():
        recipe.model.name_or_path = str(candidate)
        return
    # "models/tiny" with a models/ folder here is a local path that is missing, not a Hub id
    first = Path(name).parts[0] if Path(name).parts else ""
    looks_local = (name.startswith(("/", "./", "../", "~")) or name.count("/") > 1
                   or (name.count("/") == 1 and (base / first).is_dir()))
    if looks_local:
        raise loc.error("model.name_or_path", f"local model directory not found: {candidate} "
                        "(use a directory or a hub id like 'Qwen/Qwen2.5-1.5B-Instruct')")


def _finish_train(loc: Located, values: dict[str, Any], raw: dict[str, Any],
                  warnings: list[str]) -> TrainSpec:
    stage, method = values["stage"], values["method"]
    eval_steps = values["eval_steps"]
    if values["save_steps"] is not None and values["save_steps"] % eval_steps:
        good = max(eval_steps, round(values["save_steps"] / eval_steps) * eval_steps)
        raise loc.error("train.save_steps", f"must be a multiple of eval_steps ({eval_steps}) so every saved "
                        f"checkpoint has an eval_loss to compare; try save_steps: {good}")
    val = values["val_size"]
    # LLaMA-Factory reads 1 as the fraction 1.0 (everything), which the split refuses
    if val <= 0 or (val >= 1 and float(val) != int(val)) or val == 1:
        raise loc.error("train.val_size", f"must be a fraction in (0, 1) or a whole number of rows >= 2, "
                        f"got {val}; "
                        "a validation split is needed for eval_loss and picking the best checkpoint")
    if method not in ("lora", "qlora"):
        warnings += [f"train.{k} is ignored with method: {method}" for k in LORA_ONLY if k in raw]
    if stage != "dpo":
        warnings += [f"train.{k} is ignored with stage: {stage}" for k in DPO_ONLY if k in raw]
    return TrainSpec(**values)


_OFFLINE_KEYS = {split: Key(str, doc=f"GSM8K-format JSONL ({split} split)") for split in ("train", "test")}


def _finish_eval(loc: Located, values: dict[str, Any], recipe_dir: Path) -> EvalSpec:
    offline = values["offline_data"]
    if offline is not None:
        reject_unknown(loc, "eval.offline_data", offline, _OFFLINE_KEYS)
        paths = {}
        for split in _OFFLINE_KEYS:
            where = f"eval.offline_data.{split}"
            value = offline.get(split)
            if value is None:
                raise loc.error(where, f"missing '{split}' (a GSM8K-format JSONL file "
                                "with 'question' and 'answer'; train is used for few-shot examples)")
            if not isinstance(value, str) or not value.strip():
                raise loc.error(where, f"expected a non-empty string, got {value!r}")
            paths[split] = (recipe_dir / Path(value.strip()).expanduser()).resolve()
        values["offline_data"] = paths
    limit = values["limit"]
    if limit is not None and isinstance(limit, float) and limit >= 1 and limit != int(limit):
        raise loc.error("eval.limit", f"must be a whole number of rows or a fraction below 1, got {limit}")
    return EvalSpec(**values)
