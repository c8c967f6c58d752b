"""The train/eval recipe: one YAML file, validated up front, before anything slow starts.

Layout (every key but ``model.name_or_path``, ``model.template``, ``data.*`` and ``output_dir`` has a
default that works)::

    model: {name_or_path: Qwen/Qwen2.5-1.5B-Instruct, template: qwen}
    data: {dataset_dir: runs/gsm8k_rephrase, datasets: [gsm8k_rephrase]}
    train: {stage: sft, method: lora, cutoff_len: 1024, learning_rate: 1.0e-4, ...}
    eval: {tasks: [gsm8k], num_fewshot: 5, limit: null, apply_chat_template: true, backend: hf}
    output_dir: runs/train-qwen-gsm8k-lora
    overrides: {}        # any other LLaMA-Factory train key, passed through unchanged

Relative paths are stored absolute. Like the augment pipelines, run directories (``data.dataset_dir``,
``output_dir``, a local ``model.name_or_path``) are resolved against the working directory, where
``runs/`` lives, and files that ship with the recipe (``train.deepspeed``, ``eval.offline_data``)
against the recipe file's folder. Mistakes raise :class:`~datafactory.errors.ConfigError` naming the
file, line and key (with a did-you-mean for typos); things that are probably wrong but legal (a
template that does not match the model) end up in ``Recipe.warnings``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datafactory.config.yamlio import Located, load_yaml
from datafactory.train.recipe_fields import Field, check_section, coerce, reject_unknown, show

STAGES = ("sft", "dpo")
METHODS = ("lora", "qlora", "full", "freeze")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
BACKENDS = ("hf", "vllm")

# learning rates that work out of the box (LLaMA-Factory's examples use the same orders of magnitude)
DEFAULT_LR = {("sft", "lora"): 1e-4, ("sft", "qlora"): 1e-4, ("sft", "full"): 1e-5, ("sft", "freeze"): 1e-5,
              ("dpo", "lora"): 5e-6, ("dpo", "qlora"): 5e-6, ("dpo", "full"): 1e-6, ("dpo", "freeze"): 1e-6}


MODEL_FIELDS = {
    "name_or_path": Field("str"),
    "template": Field("str"),
    "trust_remote_code": Field("bool", False),
}
DATA_FIELDS = {
    "dataset_dir": Field("path"),
    "datasets": Field("strlist"),
    "max_samples": Field("int", None, minimum=1),
    "preprocessing_num_workers": Field("int", None, minimum=1),
}
TRAIN_FIELDS = {
    "stage": Field("str", "sft", STAGES),
    "method": Field("str", "lora", METHODS),
    "cutoff_len": Field("int", 1024, minimum=16),
    "learning_rate": Field("float", None, minimum=0.0),
    "num_train_epochs": Field("float", 3.0, minimum=0.0),
    "max_steps": Field("int", None, minimum=1),
    "per_device_train_batch_size": Field("int", 1, minimum=1),
    "per_device_eval_batch_size": Field("int", None, minimum=1),
    "gradient_accumulation_steps": Field("int", 8, minimum=1),
    "lora_rank": Field("int", 8, minimum=1),
    "lora_alpha": Field("int", None, minimum=1),
    "lora_dropout": Field("float", 0.0, minimum=0.0),
    "lora_target": Field("strlist", ["all"]),
    "freeze_trainable_layers": Field("int", 2),
    "quantization_bit": Field("int", 4, (4, 8)),
    "val_size": Field("number", 0.1, minimum=0.0),
    "eval_steps": Field("int", 50, minimum=1),
    "save_steps": Field("int", None, minimum=1),
    "logging_steps": Field("int", None, minimum=1),
    "save_total_limit": Field("int", None, minimum=1),
    "warmup_ratio": Field("float", 0.1, minimum=0.0),
    "lr_scheduler_type": Field("str", "cosine"),
    "pref_beta": Field("float", 0.1, minimum=0.0),
    "pref_loss": Field("str", "sigmoid"),
    "seed": Field("int", 42),
    "precision": Field("str", "auto", PRECISIONS),
    "deepspeed": Field("file", None),
}
EVAL_FIELDS = {
    "tasks": Field("strlist", ["gsm8k"]),
    "num_fewshot": Field("int", 5, minimum=0),
    "limit": Field("number", None, minimum=0.0),
    "apply_chat_template": Field("bool", True),
    "backend": Field("str", "hf", BACKENDS),
    "batch_size": Field("int_or_auto", 8),
    "gen_kwargs": Field("dict", None),
    "model_args": Field("dict", {}),
    "offline_data": Field("dict", None),
    "device": Field("str", None),
}
TOP_FIELDS = {"model": MODEL_FIELDS, "data": DATA_FIELDS, "train": TRAIN_FIELDS, "eval": EVAL_FIELDS,
              "output_dir": Field("path"), "overrides": Field("dict", {})}
OPTIONAL_SECTIONS = ("train", "eval")
LORA_ONLY = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target")
DPO_ONLY = ("pref_beta", "pref_loss")


@dataclass
class ModelSpec:
    """The base model and its chat template."""

    name_or_path: str
    template: str
    trust_remote_code: bool = False


@dataclass
class DataSpec:
    """LLaMA-Factory datasets: names registered in ``<dataset_dir>/dataset_info.json``."""

    dataset_dir: Path
    datasets: list[str]
    max_samples: int | None = None
    preprocessing_num_workers: int | None = None


@dataclass
class TrainSpec:
    """Stage, method and hyper-parameters (see ``TRAIN_FIELDS`` for defaults)."""

    stage: str = "sft"
    method: str = "lora"
    cutoff_len: int = 1024
    learning_rate: float = 1e-4
    num_train_epochs: float = 3.0
    max_steps: int | None = None
    per_device_train_batch_size: int = 1
    per_device_eval_batch_size: int = 1
    gradient_accumulation_steps: int = 8
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target: list[str] = field(default_factory=lambda: ["all"])
    freeze_trainable_layers: int = 2
    quantization_bit: int = 4
    val_size: float = 0.1
    eval_steps: int = 50
    save_steps: int = 50
    logging_steps: int = 10
    save_total_limit: int | None = None
    warmup_ratio: float = 0.1
    lr_scheduler_type: str = "cosine"
    pref_beta: float = 0.1
    pref_loss: str = "sigmoid"
    seed: int = 42
    precision: str = "auto"
    deepspeed: Path | None = None

    @property
    def uses_adapter(self) -> bool:
        """True for LoRA/QLoRA: the checkpoint is an adapter that must be merged into the base."""
        return self.method in ("lora", "qlora")


@dataclass
class EvalSpec:
    """lm-eval settings for the base-vs-tuned comparison."""

    tasks: list[str] = field(default_factory=lambda: ["gsm8k"])
    num_fewshot: int = 5
    limit: float | None = None
    apply_chat_template: bool = True
    backend: str = "hf"
    batch_size: int | str = 8
    gen_kwargs: dict[str, Any] | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    offline_data: dict[str, Path] | None = None  # {"train": jsonl, "test": jsonl}: no Hub access
    device: str | None = None


@dataclass
class Recipe:
    """A validated recipe; paths are absolute."""

    model: ModelSpec
    data: DataSpec
    output_dir: Path
    train: TrainSpec = field(default_factory=TrainSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    overrides: dict[str, Any] = field(default_factory=dict)
    source: str = "<recipe>"
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (paths as strings), e.g. for hashing or ``recipe.resolved.yaml``."""
        skip = ("source", "warnings")
        raw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        return _plain(raw)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# ------------------------------------------------------------------------------------------ loading
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
    from datafactory.train import recipe_checks

    base = (base_dir or Path.cwd()).resolve()
    recipe_dir = Path(loc.file).resolve().parent if Path(loc.file).is_file() else base
    data = loc.data
    if not isinstance(data, dict):
        raise loc.error("", "a recipe must be a mapping with the keys: " + ", ".join(TOP_FIELDS))
    reject_unknown(loc, "", data, TOP_FIELDS)
    for name in TOP_FIELDS:
        spec = TOP_FIELDS[name]
        if isinstance(spec, dict) and name not in data and name not in OPTIONAL_SECTIONS:
            raise loc.error(name, f"missing required section '{name}' (keys: {', '.join(spec)})")
    sections: dict[str, dict[str, Any]] = {}
    for name in ("model", "data", "train", "eval"):
        raw = data.get(name)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise loc.error(name, f"must be a mapping, got {show(raw)}")
        fields = TOP_FIELDS[name]
        assert isinstance(fields, dict)
        sections[name] = check_section(loc, name, raw, fields, base, recipe_dir)
    if "output_dir" not in data:
        raise loc.error("output_dir", "missing required key 'output_dir' (the run directory)")
    output_dir = coerce(loc, "output_dir", data["output_dir"], Field("path"), base)
    overrides = coerce(loc, "overrides", data.get("overrides"), Field("dict", {}), base) or {}

    warnings: list[str] = []
    train = _finish_train(loc, sections["train"], data.get("train") or {}, warnings)
    ev = _finish_eval(loc, sections["eval"], recipe_dir)
    recipe = Recipe(model=ModelSpec(**sections["model"]), data=DataSpec(**sections["data"]),
                    output_dir=output_dir, train=train, eval=ev, overrides=dict(overrides),
                    source=loc.file, warnings=warnings)
    _model_path(loc, recipe, base)
    if check_environment:
        recipe_checks.check_all(loc, recipe)
    return recipe


def _model_path(loc: Located, recipe: Recipe, base: Path) -> None:
    """Make an existing local model path absolute; reject paths that clearly point nowhere."""
    name = recipe.model.name_or_path
    candidate = (base / Path(name).expanduser()).resolve()
    if candidate.exists():
        recipe.model.name_or_path = str(candidate)
        return
    looks_local = name.startswith(("/", "./", "../", "~")) or name.count("/") > 1
    if looks_local:
        raise loc.error("model.name_or_path", f"local model directory not found: {candidate} "
                        "(use a directory or a hub id like 'Qwen/Qwen2.5-1.5B-Instruct')")


def _finish_train(loc: Located, values: dict[str, Any], raw: dict[str, Any],
                  warnings: list[str]) -> TrainSpec:
    stage, method = values["stage"], values["method"]
    if values["learning_rate"] is None:
        values["learning_rate"] = DEFAULT_LR[(stage, method)]
    if values["lora_alpha"] is None:
        values["lora_alpha"] = 2 * values["lora_rank"]
    if values["per_device_eval_batch_size"] is None:
        values["per_device_eval_batch_size"] = values["per_device_train_batch_size"]
    eval_steps = values["eval_steps"]
    if values["save_steps"] is None:
        values["save_steps"] = eval_steps
    elif values["save_steps"] % eval_steps:
        good = max(eval_steps, round(values["save_steps"] / eval_steps) * eval_steps)
        raise loc.error("train.save_steps", f"must be a multiple of eval_steps ({eval_steps}) so every saved "
                        f"checkpoint has an eval_loss to compare; try save_steps: {good}")
    if values["logging_steps"] is None:
        values["logging_steps"] = min(10, eval_steps)
    val = values["val_size"]
    if val <= 0 or (val >= 1 and float(val) != int(val)):
        raise loc.error("train.val_size", f"must be a fraction in (0, 1) or a whole number of rows >= 1, "
                        f"got {val}; "
                        "a validation split is needed for eval_loss and picking the best checkpoint")
    if method not in ("lora", "qlora"):
        warnings += [f"train.{k} is ignored with method: {method}" for k in LORA_ONLY if k in raw]
    if stage != "dpo":
        warnings += [f"train.{k} is ignored with stage: {stage}" for k in DPO_ONLY if k in raw]
    return TrainSpec(**values)


def _finish_eval(loc: Located, values: dict[str, Any], recipe_dir: Path) -> EvalSpec:
    offline = values["offline_data"]
    if offline is not None:
        reject_unknown(loc, "eval.offline_data", offline, {"train": None, "test": None})
        paths = {}
        for split in ("train", "test"):
            if split not in offline:
                raise loc.error(f"eval.offline_data.{split}", f"missing '{split}' (a GSM8K-format JSONL file "
                                "with 'question' and 'answer'; train is used for few-shot examples)")
            paths[split] = coerce(loc, f"eval.offline_data.{split}", offline[split], Field("file"),
                                  recipe_dir)
        values["offline_data"] = paths
    limit = values["limit"]
    if limit is not None and isinstance(limit, float) and limit >= 1 and limit != int(limit):
        raise loc.error("eval.limit", f"must be a whole number of rows or a fraction below 1, got {limit}")
    return EvalSpec(**values)
