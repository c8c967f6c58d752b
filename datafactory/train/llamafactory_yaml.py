"""Recipe → LLaMA-Factory YAML files (train and export), written into the run directory.

The files are plain LLaMA-Factory configs, so a user can rerun a step by hand::

    llamafactory-cli train  <run>/train.yaml
    llamafactory-cli export <run>/export.yaml

Best-checkpoint selection relies on ``load_best_model_at_end`` + ``metric_for_best_model: eval_loss``
(every saved checkpoint has an eval loss because ``save_steps`` is a multiple of ``eval_steps``).
Mixed precision is only switched on with a CUDA GPU: ``bf16: true`` fails on CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from datafactory.config.recipe import Recipe
from datafactory.io.atomic import atomic_write_text

EXPORT_SIZE_GB = 5


def precision_flags(precision: str, *, cuda: bool, bf16_ok: bool) -> dict[str, bool]:
    """``{"bf16": True}``, ``{"fp16": True}`` or ``{}`` (fp32) for the recipe's precision setting."""
    if precision == "bf16" or (precision == "auto" and cuda and bf16_ok):
        return {"bf16": True}
    if precision == "fp16" or (precision == "auto" and cuda):
        return {"fp16": True}
    return {}


def train_args(recipe: Recipe, *, train_dir: Path, cuda: bool, bf16_ok: bool = False) -> dict[str, Any]:
    """The ``llamafactory-cli train`` arguments for ``recipe``; ``recipe.overrides`` win."""
    t, m, d = recipe.train, recipe.model, recipe.data
    args: dict[str, Any] = {
        "model_name_or_path": m.name_or_path,
        "template": m.template,
        "trust_remote_code": m.trust_remote_code,
        "stage": t.stage,
        "do_train": True,
        "finetuning_type": t.finetuning_type,
    }
    if t.uses_adapter:
        args.update(lora_rank=t.lora_rank, lora_alpha=t.lora_alpha, lora_dropout=t.lora_dropout,
                    lora_target=",".join(t.lora_target))
    if t.method == "qlora":
        args.update(quantization_bit=t.quantization_bit, quantization_method="bnb")
    if t.method == "freeze":
        args["freeze_trainable_layers"] = t.freeze_trainable_layers
    if t.stage == "dpo":
        args.update(pref_beta=t.pref_beta, pref_loss=t.pref_loss)
    if t.deepspeed is not None:
        args["deepspeed"] = str(t.deepspeed)
    args.update({
        "dataset": ",".join(d.datasets),
        "dataset_dir": str(d.dataset_dir),
        "cutoff_len": t.cutoff_len,
        "overwrite_cache": True,
        "output_dir": str(train_dir),
        "logging_steps": t.logging_steps,
        "save_strategy": "steps",
        "save_steps": t.save_steps,
        "plot_loss": True,
        "report_to": "none",
        "per_device_train_batch_size": t.per_device_train_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "learning_rate": t.learning_rate,
        "num_train_epochs": t.num_train_epochs,
        "lr_scheduler_type": t.lr_scheduler_type,
        "warmup_ratio": t.warmup_ratio,
        "seed": t.seed,
        "val_size": t.val_size,
        "per_device_eval_batch_size": t.per_device_eval_batch_size,
        "eval_strategy": "steps",
        "eval_steps": t.eval_steps,
        "load_best_model_at_end": True,
        "metric_for_best_model": "eval_loss",
        "greater_is_better": False,
    })
    if d.max_samples is not None:
        args["max_samples"] = d.max_samples
    if d.preprocessing_num_workers is not None:
        args["preprocessing_num_workers"] = d.preprocessing_num_workers
    if t.max_steps is not None:
        args["max_steps"] = t.max_steps
    if t.save_total_limit is not None:
        args["save_total_limit"] = t.save_total_limit
    args.update(precision_flags(t.precision, cuda=cuda, bf16_ok=bf16_ok))
    args.update(recipe.overrides)
    return args


def export_args(recipe: Recipe, *, checkpoint: Path, export_dir: Path) -> dict[str, Any]:
    """The ``llamafactory-cli export`` arguments: merge the adapter (or copy the full model).

    QLoRA adapters are merged into the unquantized base model (LLaMA-Factory cannot merge into a
    4-bit one), so the export never sets ``quantization_bit``.
    """
    m = recipe.model
    args: dict[str, Any] = {"template": m.template, "trust_remote_code": m.trust_remote_code}
    if recipe.train.uses_adapter:
        args.update(model_name_or_path=m.name_or_path, adapter_name_or_path=str(checkpoint),
                    finetuning_type="lora")
    else:
        args.update(model_name_or_path=str(checkpoint), finetuning_type="full")
    args.update(export_dir=str(export_dir), export_size=EXPORT_SIZE_GB, export_device="cpu",
                export_legacy_format=False)
    return args


def render(args: dict[str, Any], *, header: str) -> str:
    """YAML text with a comment header; key order is kept so the file reads like LLaMA-Factory's examples."""
    lines = "".join(f"# {line}\n" for line in header.splitlines())
    return lines + yaml.safe_dump(args, sort_keys=False, allow_unicode=True, default_flow_style=False)


def write_train_yaml(recipe: Recipe, path: Path, *, train_dir: Path, cuda: bool,
                     bf16_ok: bool = False) -> str:
    """Write ``train.yaml`` into the run directory; returns its text (hashed to detect changes)."""
    text = render(train_args(recipe, train_dir=train_dir, cuda=cuda, bf16_ok=bf16_ok),
                  header=f"Generated by datafactory from {recipe.source}; rerun by hand with:\n"
                         f"  llamafactory-cli train {path}")
    atomic_write_text(path, text)
    return text


def write_export_yaml(recipe: Recipe, path: Path, *, checkpoint: Path, export_dir: Path) -> str:
    """Write ``export.yaml`` (merge of the selected checkpoint) into the run directory; returns its text."""
    text = render(export_args(recipe, checkpoint=checkpoint, export_dir=export_dir),
                  header=f"Generated by datafactory from {recipe.source} (checkpoint {checkpoint.name});\n"
                         f"rerun by hand with:\n  llamafactory-cli export {path}")
    atomic_write_text(path, text)
    return text
