"""The train-eval recipe's dataclasses: each section's only schema, source of defaults and documentation.

The YAML keys (types, defaults, choices, checks, the README key tables) are derived from these fields by
:func:`datafactory.config.spec.keys_from`; :mod:`datafactory.config.recipe` loads and cross-checks them.
``metadata["path"]`` marks a path resolved against the working directory (``"cwd"``: run directories)
or the recipe file's folder (``"recipe"``: files shipped with the recipe).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datafactory.config.spec import as_float, at_least, doc, names, non_empty, number, stripped
from datafactory.evaluate.job import BACKENDS, EvalJob

# method → LLaMA-Factory ``finetuning_type`` (the registry the method choices come from)
FINETUNING_TYPES = {"lora": "lora", "qlora": "lora", "full": "full", "freeze": "freeze"}
ADAPTER_METHODS = ("lora", "qlora")  # the checkpoint is an adapter merged into the base
# learning rates that work out of the box (LLaMA-Factory's examples use the same orders of magnitude);
# its stages are the stage choices
DEFAULT_LR = {("sft", "lora"): 1e-4, ("sft", "qlora"): 1e-4, ("sft", "full"): 1e-5, ("sft", "freeze"): 1e-5,
              ("dpo", "lora"): 5e-6, ("dpo", "qlora"): 5e-6, ("dpo", "full"): 1e-6, ("dpo", "freeze"): 1e-6}
STAGES = tuple(dict.fromkeys(stage for stage, _ in DEFAULT_LR))
METHODS = tuple(FINETUNING_TYPES)
PRECISIONS = ("auto", "bf16", "fp16", "fp32")

_NAME = {"convert": stripped, "check": non_empty}
_NAMES = {"convert": names, "check": non_empty}


def _auto_or_int(value: Any) -> str | None:
    return None if value == "auto" or isinstance(value, int) else f"expected an integer or 'auto', got {value!r}"


@dataclass
class ModelSpec:
    """The base model and its chat template."""

    name_or_path: str = field(metadata=doc("Hub id or local model directory (relative: the working "
                                           "directory)", **_NAME))
    template: str = field(metadata=doc("LLaMA-Factory chat template (`qwen`, `llama3`, …)", **_NAME))
    trust_remote_code: bool = field(default=False, metadata=doc("let transformers run the model's own code"))


@dataclass
class DataSpec:
    """LLaMA-Factory datasets: names registered in ``<dataset_dir>/dataset_info.json``."""

    dataset_dir: Path = field(metadata=doc("folder with `dataset_info.json`: the augment run dir (not its "
                                           "`data/`)", path="cwd", **_NAME))
    datasets: list[str] = field(metadata=doc("dataset names registered there (a list or `a,b`)", **_NAMES))
    max_samples: int | None = field(default=None, metadata=doc("use at most N rows per dataset",
                                                               check=at_least(1)))
    preprocessing_num_workers: int | None = field(default=None, metadata=doc("tokenizer worker processes",
                                                                             check=at_least(1)))


def _train(default: Any, text: str, **more: Any) -> Any:
    return field(default=default, metadata=doc(text, **more))


@dataclass
class TrainSpec:
    """Stage, method and hyper-parameters: the only home of their defaults.

    ``None`` in a derived field means "pick it from the others" (:meth:`__post_init__`): the learning
    rate from ``DEFAULT_LR`` by stage and method, ``lora_alpha`` = 2 × ``lora_rank``, the eval batch
    size = the train batch size, ``save_steps`` = ``eval_steps``, ``logging_steps`` = min(10, eval_steps).
    """

    stage: str = _train("sft", "`sft` on an SFT dataset, `dpo` on a preference one", choices=STAGES)
    method: str = _train("lora", "finetuning method", choices=METHODS)
    cutoff_len: int = _train(1024, "max tokens per sample", check=at_least(16))
    learning_rate: float | None = _train(None, "none: by stage and method (1e-4 sft lora … 1e-6 dpo full)",
                                         convert=as_float, check=at_least(0))
    num_train_epochs: float = _train(3.0, "epochs", convert=as_float, check=at_least(0))
    max_steps: int | None = _train(None, "stop after N optimizer steps (wins over epochs)", check=at_least(1))
    per_device_train_batch_size: int = _train(1, "train batch size per device", check=at_least(1))
    per_device_eval_batch_size: int | None = _train(None, "none: the train batch size", check=at_least(1))
    gradient_accumulation_steps: int = _train(8, "steps per optimizer update", check=at_least(1))
    lora_rank: int = _train(8, "LoRA rank (lora/qlora)", check=at_least(1))
    lora_alpha: int | None = _train(None, "none: 2 × lora_rank", check=at_least(1))
    lora_dropout: float = _train(0.0, "LoRA dropout", convert=as_float, check=at_least(0))
    lora_target: list[str] = field(default_factory=lambda: ["all"],
                                   metadata=doc("modules LoRA adapts (`all` or names)", **_NAMES))
    freeze_trainable_layers: int = _train(2, "trainable layers (freeze)")
    quantization_bit: int = _train(4, "qlora: bits of the quantized base", choices=(4, 8))
    val_size: int | float = _train(0.1, "validation split: a fraction in (0, 1) or a row count >= 2",
                                   convert=number, check=at_least(0))
    eval_steps: int = _train(50, "eval_loss every N steps", check=at_least(1))
    save_steps: int | None = _train(None, "none: eval_steps (must be a multiple of it)", check=at_least(1))
    logging_steps: int | None = _train(None, "none: min(10, eval_steps)", check=at_least(1))
    save_total_limit: int | None = _train(None, "keep at most N checkpoints", check=at_least(1))
    warmup_ratio: float = _train(0.1, "warm-up share of the steps", convert=as_float, check=at_least(0))
    lr_scheduler_type: str = _train("cosine", "transformers scheduler name", **_NAME)
    pref_beta: float = _train(0.1, "dpo: beta", convert=as_float, check=at_least(0))
    pref_loss: str = _train("sigmoid", "dpo: loss (`sigmoid`, `ipo`, …)", **_NAME)
    seed: int = _train(42, "random seed")
    precision: str = _train("auto", "`auto`: bf16/fp16 on a CUDA GPU, fp32 on CPU", choices=PRECISIONS)
    deepspeed: Path | None = _train(None, "DeepSpeed config file (relative: the recipe's folder)",
                                    path="recipe", **_NAME)

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
        return self.method in ADAPTER_METHODS

    @property
    def finetuning_type(self) -> str:
        """LLaMA-Factory's ``finetuning_type`` for the method."""
        return FINETUNING_TYPES[self.method]


def _job(name: str, text: str, **more: Any) -> Any:
    """:class:`EvalJob`'s field ``name`` with its default (its one home) and this recipe key's docs."""
    f = EvalJob.__dataclass_fields__[name]
    if f.default_factory is not dataclasses.MISSING:
        return field(default_factory=f.default_factory, metadata=doc(text, **more))
    return field(default=f.default, metadata=doc(text, **more))


@dataclass
class EvalSpec:
    """lm-eval settings for the base-vs-tuned comparison; defaults are :class:`EvalJob`'s."""

    tasks: list[str] = _job("tasks", "lm-eval tasks", **_NAMES)
    num_fewshot: int = _job("num_fewshot", "few-shot examples", check=at_least(0))
    limit: int | float | None = _job("limit", "rows per task: a count or a fraction below 1 (`--limit`)",
                                     convert=number, check=at_least(0))
    apply_chat_template: bool = _job("apply_chat_template", "prompt in the model's chat format")
    backend: str = _job("backend", "`vllm` when installed", choices=BACKENDS)
    batch_size: int | str = _job("batch_size", "an integer or `auto`", check=_auto_or_int)
    gen_kwargs: dict[str, Any] | None = _job("gen_kwargs", "generation arguments for lm-eval")
    model_args: dict[str, Any] = _job("model_args", "extra lm-eval model arguments")
    offline_data: dict[str, Path] | None = _job("offline_data", "`{train, test}` GSM8K JSONL files: no Hub")
    device: str | None = _job("device", "e.g. `cuda:0`; none: lm-eval's choice")


@dataclass
class Recipe:
    """A validated recipe; paths are absolute."""

    model: ModelSpec = field(metadata=doc("the base model", type=dict))
    data: DataSpec = field(metadata=doc("the datasets", type=dict))
    output_dir: Path = field(metadata=doc("the train-eval run directory", path="cwd", **_NAME))
    train: TrainSpec = field(default_factory=TrainSpec, metadata=doc("stage, method, hyper-parameters",
                                                                     type=dict | None, default=None))
    eval: EvalSpec = field(default_factory=EvalSpec, metadata=doc("lm-eval settings", type=dict | None,
                                                                                default=None))
    overrides: dict[str, Any] = field(default_factory=dict,
                                      metadata=doc("any other LLaMA-Factory train key, passed through"))
    source: str = "<recipe>"
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (paths as strings), e.g. for hashing or ``recipe.resolved.yaml``."""
        skip = ("source", "warnings")
        raw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        return _plain(raw)


SECTIONS: dict[str, type] = {"model": ModelSpec, "data": DataSpec, "train": TrainSpec, "eval": EvalSpec}


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
