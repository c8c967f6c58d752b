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
from datafactory.evaluate.job import EvalJob
from datafactory.train.recipe_fields import Field, check_section, coerce, reject_unknown, show, with_defaults

STAGES = ("sft", "dpo")
METHODS = ("lora", "qlora", "full", "freeze")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
BACKENDS = ("hf", "vllm")

# learning rates that work out of the box (LLaMA-Factory's examples use the same orders of magnitude)
DEFAULT_LR = {("sft", "lora"): 1e-4, ("sft", "qlora"): 1e-4, ("sft", "full"): 1e-5, ("sft", "freeze"): 1e-5,
              ("dpo", "lora"): 5e-6, ("dpo", "qlora"): 5e-6, ("dpo", "full"): 1e-6, ("dpo", "freeze"): 1e-6}


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
    """Stage, method and hyper-parameters: the only home of their defaults.

    ``None`` in a derived field means "pick it from the others" (:meth:`__post_init__`): the learning
    rate from ``DEFAULT_LR`` by stage and method, ``lora_alpha`` = 2 × ``lora_rank``, the eval batch
    size = the train batch size, ``save_steps`` = ``eval_steps``, ``logging_steps`` = min(10, eval_steps).
    """

    stage: str = "sft"
    method: str = "lora"
    cutoff_len: int = 1024
    learning_rate: float | None = None
    num_train_epochs: float = 3.0
    max_steps: int | None = None
    per_device_train_batch_size: int = 1
    per_device_eval_batch_size: int | None = None
    gradient_accumulation_steps: int = 8
    lora_rank: int = 8
    lora_alpha: int | None = None
    lora_dropout: float = 0.0
    lora_target: list[str] = field(default_factory=lambda: ["all"])
    freeze_trainable_layers: int = 2
    quantization_bit: int = 4
    val_size: float = 0.1
    eval_steps: int = 50
    save_steps: int | None = None
    logging_steps: int | None = None
    save_total_limit: int | None = None
    warmup_ratio: float = 0.1
    lr_scheduler_type: str = "cosine"
    pref_beta: float = 0.1
    pref_loss: str = "sigmoid"
    seed: int = 42
    precision: str = "auto"
    deepspeed: Path | None = None

    def __post_init__(self) -> None:
        if self.learning_rate is None:
            self.learning_rate = DEFAULT_LR[(self.stage, self.method)]
        if self.lora_alpha is None:
            self.lora_alpha = 2 * self.lora_rank
        if self.per_device_eval_batch_size is None:
            self.per_device_eval_batch_size = self.per_device_train_batch_size
        if self.save_steps is None:
            self.save_steps = self.eval_steps
        if self.logging_steps is None:
            self.logging_steps = min(10, self.eval_steps)

    @property
    def uses_adapter(self) -> bool:
        """True for LoRA/QLoRA: the checkpoint is an adapter that must be merged into the base."""
        return self.method in ("lora", "qlora")


def _job_default(name: str) -> Any:
    """The default of :class:`EvalJob`'s field ``name``, as a dataclass field (its one home)."""
    f = EvalJob.__dataclass_fields__[name]
    if f.default_factory is not dataclasses.MISSING:
        return field(default_factory=f.default_factory)
    return field(default=f.default)


@dataclass
class EvalSpec:
    """lm-eval settings for the base-vs-tuned comparison; defaults are :class:`EvalJob`'s."""

    tasks: list[str] = _job_default("tasks")
    num_fewshot: int = _job_default("num_fewshot")
    limit: float | None = _job_default("limit")
    apply_chat_template: bool = _job_default("apply_chat_template")
    backend: str = _job_default("backend")
    batch_size: int | str = _job_default("batch_size")
    gen_kwargs: dict[str, Any] | None = _job_default("gen_kwargs")
    model_args: dict[str, Any] = _job_default("model_args")
    offline_data: dict[str, Path] | None = _job_default("offline_data")  # {"train": jsonl, "test": jsonl}
    device: str | None = _job_default("device")


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


# how each key is checked; the defaults come from the dataclasses above (with_defaults)
MODEL_FIELDS = with_defaults(ModelSpec, {
    "name_or_path": Field("str"),
    "template": Field("str"),
    "trust_remote_code": Field("bool"),
})
DATA_FIELDS = with_defaults(DataSpec, {
    "dataset_dir": Field("path"),
    "datasets": Field("strlist"),
    "max_samples": Field("int", minimum=1),
    "preprocessing_num_workers": Field("int", minimum=1),
})
TRAIN_FIELDS = with_defaults(TrainSpec, {
    "stage": Field("str", choices=STAGES),
    "method": Field("str", choices=METHODS),
    "cutoff_len": Field("int", minimum=16),
    "learning_rate": Field("float", minimum=0.0),
    "num_train_epochs": Field("float", minimum=0.0),
    "max_steps": Field("int", minimum=1),
    "per_device_train_batch_size": Field("int", minimum=1),
    "per_device_eval_batch_size": Field("int", minimum=1),
    "gradient_accumulation_steps": Field("int", minimum=1),
    "lora_rank": Field("int", minimum=1),
    "lora_alpha": Field("int", minimum=1),
    "lora_dropout": Field("float", minimum=0.0),
    "lora_target": Field("strlist"),
    "freeze_trainable_layers": Field("int"),
    "quantization_bit": Field("int", choices=(4, 8)),
    "val_size": Field("number", minimum=0.0),
    "eval_steps": Field("int", minimum=1),
    "save_steps": Field("int", minimum=1),
    "logging_steps": Field("int", minimum=1),
    "save_total_limit": Field("int", minimum=1),
    "warmup_ratio": Field("float", minimum=0.0),
    "lr_scheduler_type": Field("str"),
    "pref_beta": Field("float", minimum=0.0),
    "pref_loss": Field("str"),
    "seed": Field("int"),
    "precision": Field("str", choices=PRECISIONS),
    "deepspeed": Field("file"),
})
EVAL_FIELDS = with_defaults(EvalSpec, {
    "tasks": Field("strlist"),
    "num_fewshot": Field("int", minimum=0),
    "limit": Field("number", minimum=0.0),
    "apply_chat_template": Field("bool"),
    "backend": Field("str", choices=BACKENDS),
    "batch_size": Field("int_or_auto"),
    "gen_kwargs": Field("dict"),
    "model_args": Field("dict"),
    "offline_data": Field("dict"),
    "device": Field("str"),
})
TOP_FIELDS = {"model": MODEL_FIELDS, "data": DATA_FIELDS, "train": TRAIN_FIELDS, "eval": EVAL_FIELDS,
              "output_dir": Field("path"), "overrides": Field("dict", {})}
OPTIONAL_SECTIONS = ("train", "eval")
LORA_ONLY = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target")
DPO_ONLY = ("pref_beta", "pref_loss")


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
