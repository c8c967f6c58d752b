"""Checks of a recipe against the world: dataset files, template names, GPU, optional packages.

Split from :mod:`datafactory.config.recipe` (which checks the shape of the YAML) so that each stays
small. Everything here is cheap: LLaMA-Factory facts come from :mod:`lf_introspect` (no import), and
torch is imported only when the recipe asks for a GPU-only feature.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datafactory.config.suggest import closest
from datafactory.config.yamlio import Located
from datafactory.constants import DATASET_INFO, STATS_FILE
from datafactory.proc import extras as check
from datafactory.train import lf_introspect

if TYPE_CHECKING:
    from datafactory.config.recipe import Recipe

_REMOTE_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
# model_type (config.json) family → template family; only used for a warning
_FAMILIES = ("qwen", "llama", "mistral", "gemma", "phi", "glm", "deepseek", "baichuan", "yi", "internlm")


def check_all(loc: Located, recipe: Recipe) -> None:
    """Run every environment check; errors raise ConfigError, doubts go to ``recipe.warnings``."""
    check_datasets(loc, recipe)
    check_template(loc, recipe)
    check_hardware(loc, recipe)
    check_eval(loc, recipe)
    check_overrides(loc, recipe)
    if recipe.output_dir.exists() and not recipe.output_dir.is_dir():
        raise loc.error("output_dir", f"{recipe.output_dir} exists and is not a directory")


def read_dataset_info(loc: Located, dataset_dir: Path) -> dict[str, Any]:
    """Parse ``<dataset_dir>/dataset_info.json``; a missing or broken file is a ConfigError."""
    if not dataset_dir.is_dir():
        raise loc.error("data.dataset_dir", f"dataset directory not found: {dataset_dir}. It must hold "
                        f"{DATASET_INFO}: the run directory of `datafactory augment` (its output.dir, not the "
                        f"data/ folder inside it){_augment_hint(loc, dataset_dir)}, or a folder registered with "
                        "`datafactory build-info`")
    info_path = dataset_dir / DATASET_INFO
    if not info_path.is_file():
        raise loc.error("data.dataset_dir", _why_no_info(loc, dataset_dir))
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise loc.error("data.dataset_dir", f"cannot read {info_path}: {exc}") from None
    if not isinstance(info, dict):
        raise loc.error("data.dataset_dir", f"{info_path} must hold a JSON object of dataset names")
    return info


def _augment_hint(loc: Located, dataset_dir: Path) -> str:
    """``; run `datafactory augment pipelines/x.yaml` first`` when a pipeline next to the recipe writes it."""
    pipeline = Path(loc.file).resolve().parent / f"{dataset_dir.name}.yaml"
    if pipeline.is_file():
        return f"; run  datafactory augment {pipeline}  first"
    return ""


def _why_no_info(loc: Located, dataset_dir: Path) -> str:
    """Why a folder has no dataset_info.json, as far as its contents tell: an augment run that wrote
    nothing, the run's data/ folder instead of the run dir, or data that was never registered."""
    stats_path = dataset_dir / STATS_FILE
    if stats_path.is_file():
        try:
            stats = json.loads(stats_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            stats = {}
        totals = stats.get("run_totals") if isinstance(stats, dict) else None
        written = (totals or {}).get("written", stats.get("written") if isinstance(stats, dict) else None)
        if written == 0:
            rejected = (totals or {}).get("rejected", stats.get("rejected_total"))
            reasons = stats.get("rejected") if isinstance(stats.get("rejected"), dict) else {}
            top = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
            return (f"the augment run in {dataset_dir} wrote 0 rows ({rejected} rejected"
                    f"{'; ' + top if top else ''}), so it registered no dataset and there is nothing to train "
                    f"on. See {dataset_dir / 'rejects.jsonl'}, fix the pipeline and run `datafactory augment` "
                    "again")
        return (f"the augment run in {dataset_dir} registered no dataset (output.format: jsonl is not "
                f"registered); register its files with  datafactory build-info {dataset_dir / 'data'} "
                f"--output {dataset_dir / DATASET_INFO}")
    if (dataset_dir.parent / DATASET_INFO).is_file():
        return (f"no {DATASET_INFO} in {dataset_dir}, but its parent has one: set data.dataset_dir: "
                f"{dataset_dir.parent}")
    return (f"no {DATASET_INFO} in {dataset_dir}; register the datasets first: `datafactory augment` writes "
            f"one into its run directory{_augment_hint(loc, dataset_dir)}, `datafactory build-info "
            f"{dataset_dir}` registers other files")


def check_datasets(loc: Located, recipe: Recipe) -> None:
    """Every dataset name is registered, its file exists and its kind fits the stage."""
    info = read_dataset_info(loc, recipe.data.dataset_dir)
    names = sorted(info)
    for i, name in enumerate(recipe.data.datasets):
        key = f"data.datasets[{i}]" if loc.line(f"data.datasets[{i}]") else "data.datasets"
        if name not in info:
            listed = ", ".join(names) if names else "(none)"
            raise loc.error(key, f"dataset '{name}' is not in {recipe.data.dataset_dir / DATASET_INFO}; "
                            f"registered: {listed}", closest(name, names))
        entry = info[name]
        if not isinstance(entry, dict):
            raise loc.error(key, f"entry '{name}' in {DATASET_INFO} is not an object")
        file_name = entry.get("file_name")
        remote = any(k in entry for k in _REMOTE_KEYS)
        if isinstance(file_name, str) and not remote and "://" not in file_name:
            path = recipe.data.dataset_dir / file_name
            if not path.exists():
                raise loc.error(key, f"dataset '{name}' points to {path}, which does not exist")
        ranking = bool(entry.get("ranking", False))
        if recipe.train.stage == "dpo" and not ranking:
            raise loc.error(key, "stage: dpo needs a preference dataset (\"ranking\": true with "
                            f"chosen/rejected "
                            f"columns in {DATASET_INFO}); '{name}' is not one")
        if recipe.train.stage == "sft" and ranking:
            raise loc.error(key, f"'{name}' is a preference dataset (\"ranking\": true); use it with "
                            "stage: dpo "
                            "or pick an SFT dataset")


def check_template(loc: Located, recipe: Recipe) -> None:
    """Unknown template → error with did-you-mean; template not matching the model → warning."""
    template, model = recipe.model.template, recipe.model.name_or_path
    known = lf_introspect.template_names()
    if known is not None and template not in known:
        raise loc.error("model.template", f"unknown LLaMA-Factory template '{template}' "
                        f"({len(known)} known, e.g. qwen, qwen3, llama3, mistral, gemma, default)",
                        closest(template, known))
    table = lf_introspect.default_templates() or {}
    expected = table.get(model) or table.get(Path(model).name)
    if expected and expected != template:
        recipe.warnings.append(f"model.template: LLaMA-Factory registers {model} with template '{expected}', "
                               f"the recipe says '{template}'; a wrong template trains the wrong chat format")
        return
    model_type = _local_model_type(model)
    if model_type:
        fam_model, fam_template = _family(model_type), _family(template)
        if fam_model and fam_template and fam_model != fam_template:
            recipe.warnings.append(f"model.template: the local model is a '{model_type}' model but the "
                                   "template "
                                   f"is '{template}'; check that this is intended")


def _local_model_type(model: str) -> str | None:
    config = Path(model) / "config.json"
    if not config.is_file():
        return None
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _family(name: str) -> str | None:
    head = re.match(r"[a-z]+", name.lower())
    word = head.group(0) if head else ""
    return next((f for f in _FAMILIES if word.startswith(f)), None)


def check_hardware(loc: Located, recipe: Recipe) -> None:
    """qlora, bf16/fp16 and DeepSpeed need a CUDA GPU (and their packages)."""
    train = recipe.train
    if train.method == "qlora":
        if not check.cuda_available():
            raise loc.error("train.method", "qlora quantizes the base model with bitsandbytes, which needs a "
                            "CUDA GPU, and none was found (torch.cuda.is_available() is False); "
                            "use method: lora "
                            "on this machine")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise loc.error("train.method", "qlora needs bitsandbytes: pip install bitsandbytes")
    if train.precision in ("bf16", "fp16") and not check.cuda_available():
        raise loc.error("train.precision", f"{train.precision} training needs a CUDA GPU and none was found; "
                        "use precision: auto (fp32 on CPU)")
    if train.precision == "bf16" and not check.bf16_available():
        raise loc.error("train.precision", "this GPU does not support bf16; use precision: fp16 or auto")
    if train.deepspeed is not None:
        if not train.deepspeed.is_file():
            raise loc.error("train.deepspeed", f"DeepSpeed config not found: {train.deepspeed}")
        if importlib.util.find_spec("deepspeed") is None:
            raise loc.error("train.deepspeed", "a DeepSpeed config is set but deepspeed is not installed: "
                            "pip install deepspeed (or remove train.deepspeed)")


def check_eval(loc: Located, recipe: Recipe) -> None:
    """vLLM backend installed when asked for; offline GSM8K files exist and fit the tasks."""
    ev = recipe.eval
    if ev.backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise loc.error("eval.backend", "backend: vllm but vllm is not installed; pip install vllm, or use "
                        "backend: hf")
    if ev.offline_data is not None:
        for split, path in ev.offline_data.items():
            if not path.is_file():
                raise loc.error(f"eval.offline_data.{split}", f"file not found: {path}")
        others = [t for t in ev.tasks if not t.startswith("gsm8k")]
        if others:
            raise loc.error("eval.tasks", "offline_data provides GSM8K data only; "
                            f"cannot run {', '.join(others)} "
                            "offline (drop eval.offline_data to use the Hugging Face Hub)")


def check_overrides(loc: Located, recipe: Recipe) -> None:
    """Override keys must be LLaMA-Factory train arguments (checked when LLaMA-Factory is installed)."""
    known = lf_introspect.train_argument_names()
    for key in recipe.overrides:
        if not isinstance(key, str):
            raise loc.error("overrides", f"keys must be strings, got {key!r}")
        if known is not None and key not in known:
            raise loc.error(f"overrides.{key}", "not a LLaMA-Factory train argument (llamafactory-cli would "
                            "refuse it: 'Some keys are not used by the HfArgumentParser')",
                            closest(key, known))
