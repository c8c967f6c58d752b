"""Fast tests of the train/eval recipe, YAML generation, checkpoint selection, stage bookkeeping,
progress parsing, failure messages and report rendering. They run in the core install: nothing here
needs torch, LLaMA-Factory or lm-eval (tests that use their sources when present say so).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from datafactory.config.recipe import Recipe, load_recipe
from datafactory.errors import ConfigError, EvalFailed, Interrupted, NoCheckpoint, UnknownName, UserError
from datafactory.evaluate.lm_eval_runner import scores_from_results
from datafactory.evaluate.report import build_report, compare, render_markdown
from datafactory.proc import extras as check
from datafactory.proc.child import ProcResult, run_streaming
from datafactory.proc.failure import explain_failure
from datafactory.train import llamafactory_yaml
from datafactory.train.runner import LF_HINTS, StepProgress
from datafactory.train.select import select_best
from datafactory.train.stages import parse_stages

HAS_LF = importlib.util.find_spec("llamafactory") is not None


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    (d / "sft.json").write_text("[]", encoding="utf-8")
    (d / "pref.json").write_text("[]", encoding="utf-8")
    info = {"gsm8k_rephrase": {"file_name": "sft.json"},
            "gsm8k_preference": {"file_name": "pref.json", "ranking": True,
                                 "columns": {"prompt": "instruction", "chosen": "chosen",
                                             "rejected": "rejected"}}}
    (d / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return d


def write_recipe(tmp_path: Path, body: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


BASE = """\
model:
  name_or_path: Qwen/Qwen2.5-1.5B-Instruct
  template: qwen
data:
  dataset_dir: {data}
  datasets: [gsm8k_rephrase]
output_dir: {out}
"""


def recipe_text(data_dir: Path, tmp_path: Path, extra: str = "") -> str:
    return BASE.format(data=data_dir, out=tmp_path / "run") + textwrap.dedent(extra)


def load_err(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_recipe(write_recipe(tmp_path, text))
    return info.value


# ------------------------------------------------------------------------------ recipe
def test_minimal_recipe_gets_working_defaults(tmp_path: Path, data_dir: Path) -> None:
    r = load_recipe(write_recipe(tmp_path, recipe_text(data_dir, tmp_path)))
    assert (r.train.stage, r.train.method) == ("sft", "lora")
    assert r.train.learning_rate == 1e-4 and r.train.lora_alpha == 2 * r.train.lora_rank
    assert r.train.save_steps == r.train.eval_steps and r.train.save_steps % r.train.eval_steps == 0
    assert r.train.val_size > 0 and r.train.logging_steps <= r.train.eval_steps
    assert r.eval.tasks == ["gsm8k"] and r.eval.backend == "hf" and r.eval.offline_data is None
    assert r.output_dir == (tmp_path / "run").resolve() and r.output_dir.is_absolute()
    assert r.warnings == []


def _defaults(spec: type) -> dict[str, Any]:
    import dataclasses

    out = {}
    for f in dataclasses.fields(spec):
        if f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        elif f.default is not dataclasses.MISSING:
            out[f.name] = f.default
    return out


def test_each_recipe_default_lives_in_one_place(tmp_path: Path, data_dir: Path) -> None:
    """The key tables take their defaults from the spec dataclasses, the eval section from EvalJob, and
    the checker's result for a minimal recipe is what the dataclasses give on their own."""
    import dataclasses

    from datafactory.config import recipe as R
    from datafactory.evaluate.job import EvalJob

    for table, spec in ((R.SECTION_KEYS["model"], R.ModelSpec), (R.SECTION_KEYS["data"], R.DataSpec),
                        (R.SECTION_KEYS["train"], R.TrainSpec), (R.SECTION_KEYS["eval"], R.EvalSpec)):
        defaults = _defaults(spec)
        assert set(table) == {f.name for f in dataclasses.fields(spec)}, spec.__name__
        for name, checker in table.items():
            if checker.required:
                assert name not in defaults, f"{spec.__name__}.{name}"
            else:
                assert checker.default == defaults[name], f"{spec.__name__}.{name}"
    job = _defaults(EvalJob)
    for name, value in _defaults(R.EvalSpec).items():
        assert job[name] == value, f"EvalSpec.{name} = {value!r} but EvalJob.{name} = {job[name]!r}"
    r = load_recipe(write_recipe(tmp_path, recipe_text(data_dir, tmp_path)))
    assert r.train == R.TrainSpec() and r.eval == R.EvalSpec()
    assert R.TrainSpec(stage="dpo", method="full").learning_rate == R.DEFAULT_LR[("dpo", "full")]


def test_val_size_of_one_is_refused(tmp_path: Path, data_dir: Path) -> None:
    # LLaMA-Factory reads 1 as the fraction 1.0: the split would leave nothing to train on
    err = load_err(tmp_path, recipe_text(data_dir, tmp_path, "train: {val_size: 1}\n"))
    assert err.key == "train.val_size" and ">= 2" in str(err)


def test_yaml_11_exponent_strings_are_numbers(tmp_path: Path, data_dir: Path) -> None:
    r = load_recipe(write_recipe(tmp_path, recipe_text(data_dir, tmp_path, "train: {learning_rate: 2e-5}\n")))
    assert r.train.learning_rate == pytest.approx(2e-5)


def test_unknown_key_has_did_you_mean_file_and_line(tmp_path: Path, data_dir: Path) -> None:
    extra = "train:\n  stage: sft\n  learning_rat: 1.0e-4\n"
    err = load_err(tmp_path, recipe_text(data_dir, tmp_path, extra))
    text = str(err)
    assert "recipe.yaml:10" in text and "train.learning_rat" in text and "'learning_rate'" in text
    assert "overrides" in text  # where other LLaMA-Factory keys go


def test_unknown_top_level_key(tmp_path: Path, data_dir: Path) -> None:
    err = load_err(tmp_path, recipe_text(data_dir, tmp_path, "evaluation: {}\n"))
    assert "'eval'" in str(err) and err.line == 8


@pytest.mark.parametrize(("extra", "needle"), [
    ("train: {cutoff_len: long}\n", "expected an integer"),
    ("train: {cutoff_len: true}\n", "expected an integer"),
    ("train: {learning_rate: fast}\n", "expected a number"),
    ("eval: {apply_chat_template: 'yes'}\n", "expected true/false"),
    ("train: {stage: sf}\n", "did you mean 'sft'"),
    ("train: {method: lorra}\n", "did you mean 'lora'"),
    ("eval: {backend: vllmm}\n", "did you mean 'vllm'"),
    ("train: {eval_steps: 0}\n", "must be >= 1"),
    ("train: {eval_steps: 10, save_steps: 25}\n", "multiple of eval_steps"),
    ("train: {val_size: 0}\n", "validation split"),
    ("train: {quantization_bit: 3}\n", "must be one of 4, 8"),
    ("overrides: [a, b]\n", "expected a mapping"),
    ("eval: {offline_data: {train: nope.jsonl}}\n", "missing 'test'"),
])
def test_bad_values_are_explained(tmp_path: Path, data_dir: Path, extra: str, needle: str) -> None:
    err = load_err(tmp_path, recipe_text(data_dir, tmp_path, extra))
    assert needle in str(err)
    assert "recipe.yaml:" in str(err)


def test_save_steps_suggests_a_multiple(tmp_path: Path, data_dir: Path) -> None:
    err = load_err(tmp_path, recipe_text(data_dir, tmp_path, "train: {eval_steps: 10, save_steps: 25}\n"))
    assert "try save_steps: 20" in str(err) or "try save_steps: 30" in str(err)


def test_missing_sections_and_keys(tmp_path: Path, data_dir: Path) -> None:
    err = load_err(tmp_path, f"data: {{dataset_dir: {data_dir}, datasets: [x]}}\noutput_dir: out\n")
    assert "missing required section 'model'" in str(err)
    err = load_err(tmp_path, recipe_text(data_dir, tmp_path).replace("  template: qwen\n", ""))
    assert "model.template" in str(err) and "missing" in str(err)


def test_dataset_dir_must_exist_and_hold_dataset_info(tmp_path: Path, data_dir: Path) -> None:
    err = load_err(tmp_path, recipe_text(tmp_path / "nowhere", tmp_path))
    assert "dataset directory not found" in str(err) and "data.dataset_dir" in str(err)
    (data_dir / "dataset_info.json").unlink()
    err = load_err(tmp_path, recipe_text(data_dir, tmp_path))
    assert "no dataset_info.json" in str(err)


def test_unknown_dataset_lists_registered_names(tmp_path: Path, data_dir: Path) -> None:
    text = recipe_text(data_dir, tmp_path).replace("[gsm8k_rephrase]", "[gsm8k_rephrased]")
    err = load_err(tmp_path, text)
    assert "registered: gsm8k_preference, gsm8k_rephrase" in str(err)
    assert "did you mean 'gsm8k_rephrase'" in str(err)


def test_dataset_file_must_exist(tmp_path: Path, data_dir: Path) -> None:
    (data_dir / "sft.json").unlink()
    assert "does not exist" in str(load_err(tmp_path, recipe_text(data_dir, tmp_path)))


def test_stage_and_dataset_kind_must_match(tmp_path: Path, data_dir: Path) -> None:
    err = load_err(tmp_path, recipe_text(data_dir, tmp_path, "train: {stage: dpo}\n"))
    assert "preference dataset" in str(err)
    text = recipe_text(data_dir, tmp_path).replace("[gsm8k_rephrase]", "[gsm8k_preference]")
    assert "stage: dpo" in str(load_err(tmp_path, text))
    dpo = load_recipe(write_recipe(tmp_path, text + "train: {stage: dpo}\n"))
    assert dpo.train.learning_rate == 5e-6


@pytest.mark.skipif(check.cuda_available(), reason="this machine has a CUDA GPU")
def test_qlora_without_gpu_is_refused(tmp_path: Path, data_dir: Path) -> None:
    err = load_err(tmp_path, recipe_text(data_dir, tmp_path, "train: {method: qlora}\n"))
    assert "CUDA GPU" in str(err) and "method: lora" in str(err)
    err = load_err(tmp_path, recipe_text(data_dir, tmp_path, "train: {precision: bf16}\n"))
    assert "CUDA GPU" in str(err)


def test_local_model_paths(tmp_path: Path, data_dir: Path) -> None:
    text = recipe_text(data_dir, tmp_path).replace("Qwen/Qwen2.5-1.5B-Instruct", "./models/x")
    err = load_err(tmp_path, text)
    assert "local model directory not found" in str(err)
    model = tmp_path / "llama_model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    r = load_recipe(write_recipe(tmp_path, recipe_text(data_dir, tmp_path).replace(
        "Qwen/Qwen2.5-1.5B-Instruct", str(model))))
    assert r.model.name_or_path == str(model.resolve())
    assert any("'llama' model but the template is 'qwen'" in w for w in r.warnings)


def test_offline_files_resolve_against_the_recipe_folder(tmp_path: Path, data_dir: Path) -> None:
    sub = tmp_path / "recipes"
    (sub / "gsm").mkdir(parents=True)
    for split in ("train", "test"):
        (sub / "gsm" / f"{split}.jsonl").write_text("{}\n", encoding="utf-8")
    extra = "eval: {offline_data: {train: gsm/train.jsonl, test: gsm/test.jsonl}}\n"
    r = load_recipe(write_recipe(sub, recipe_text(data_dir, tmp_path, extra)))
    assert r.eval.offline_data == {"train": sub / "gsm" / "train.jsonl", "test": sub / "gsm" / "test.jsonl"}
    err = load_err(tmp_path, recipe_text(data_dir, tmp_path, extra))
    assert "file not found" in str(err)
    extra2 = "eval: {tasks: [gsm8k, mmlu], offline_data: {train: gsm/train.jsonl, test: gsm/test.jsonl}}\n"
    with pytest.raises(ConfigError, match="mmlu"):
        load_recipe(write_recipe(sub, recipe_text(data_dir, tmp_path, extra2)))


@pytest.mark.skipif(not HAS_LF, reason="template names come from the installed LLaMA-Factory")
def test_unknown_template_and_override_keys(tmp_path: Path, data_dir: Path) -> None:
    err = load_err(tmp_path, recipe_text(data_dir, tmp_path).replace("template: qwen", "template: qwenn"))
    assert "unknown LLaMA-Factory template 'qwenn'" in str(err) and "did you mean 'qwen" in str(err)
    err = load_err(tmp_path, recipe_text(data_dir, tmp_path, "overrides: {gradient_checkpointin: true}\n"))
    assert "overrides.gradient_checkpointin" in str(err) and "'gradient_checkpointing'" in str(err)
    r = load_recipe(write_recipe(tmp_path, recipe_text(data_dir, tmp_path).replace("template: qwen",
                                                                                  "template: llama3")))
    assert any("registers Qwen/Qwen2.5-1.5B-Instruct with template 'qwen'" in w for w in r.warnings)


def test_shipped_recipes_parse(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    for name in ("train_qwen_gsm8k_lora.yaml", "train_qwen_gsm8k_dpo.yaml"):
        r = load_recipe(repo / "pipelines" / name, check_environment=False)
        assert r.model.template == "qwen" and r.train.save_steps % r.train.eval_steps == 0
    dpo = load_recipe(repo / "pipelines" / "train_qwen_gsm8k_dpo.yaml", check_environment=False)
    assert dpo.train.stage == "dpo"


# ------------------------------------------------------------------------------ LLaMA-Factory YAML
def _recipe(tmp_path: Path, data_dir: Path, extra: str = "") -> Recipe:
    return load_recipe(write_recipe(tmp_path, recipe_text(data_dir, tmp_path, extra)))


def test_train_yaml_has_best_checkpoint_settings_and_no_mixed_precision_on_cpu(tmp_path: Path,
                                                                              data_dir: Path) -> None:
    r = _recipe(tmp_path, data_dir, "overrides: {gradient_checkpointing: true, cutoff_len: 77}\n")
    args = llamafactory_yaml.train_args(r, train_dir=tmp_path / "t", cuda=False)
    assert args["load_best_model_at_end"] is True and args["metric_for_best_model"] == "eval_loss"
    assert args["plot_loss"] is True and args["eval_strategy"] == "steps"
    assert "bf16" not in args and "fp16" not in args
    assert args["cutoff_len"] == 77 and args["gradient_checkpointing"] is True  # overrides win
    assert args["finetuning_type"] == "lora" and args["lora_target"] == "all"
    assert args["dataset_dir"] == str(data_dir.resolve())
    assert llamafactory_yaml.train_args(r, train_dir=tmp_path, cuda=True, bf16_ok=True)["bf16"] is True
    assert llamafactory_yaml.train_args(r, train_dir=tmp_path, cuda=True, bf16_ok=False)["fp16"] is True
    text = llamafactory_yaml.write_train_yaml(r, tmp_path / "train.yaml", train_dir=tmp_path / "t",
                                              cuda=False)
    assert text.startswith("# Generated by datafactory") and "llamafactory-cli train" in text


def test_export_yaml_lora_vs_full(tmp_path: Path, data_dir: Path) -> None:
    ckpt = tmp_path / "checkpoint-4"
    out = tmp_path / "m"
    lora = llamafactory_yaml.export_args(_recipe(tmp_path, data_dir), checkpoint=ckpt, export_dir=out)
    assert lora["adapter_name_or_path"] == str(ckpt) and lora["finetuning_type"] == "lora"
    assert lora["model_name_or_path"] == "Qwen/Qwen2.5-1.5B-Instruct" and "quantization_bit" not in lora
    full = llamafactory_yaml.export_args(_recipe(tmp_path, data_dir, "train: {method: full}\n"),
                                         checkpoint=ckpt, export_dir=out)
    assert full["model_name_or_path"] == str(ckpt) and "adapter_name_or_path" not in full


# ------------------------------------------------------------------------------ checkpoint selection
def _state(tmp_path: Path, evals: dict[int, float], saved: list[int], best: int | None = None) -> Path:
    train = tmp_path / "train"
    for step in saved:
        (train / f"checkpoint-{step}").mkdir(parents=True)
    history: list[dict[str, Any]] = []
    for step, loss in evals.items():
        history += [{"loss": loss + 0.5, "step": step}, {"eval_loss": loss, "step": step}]
    state: dict[str, Any] = {"log_history": history, "global_step": max(evals or {0: 0})}
    if best is not None:
        state["best_model_checkpoint"] = f"/elsewhere/train/checkpoint-{best}"
    train.mkdir(exist_ok=True)
    (train / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")
    return train


def test_select_lowest_eval_loss_among_saved_checkpoints(tmp_path: Path) -> None:
    train = _state(tmp_path, {10: 2.0, 20: 1.5, 30: 1.2, 40: 1.6}, saved=[10, 20, 40])
    sel = select_best(train)  # step 30 has the lowest loss but its checkpoint was deleted
    assert (sel.step, sel.eval_loss, Path(sel.checkpoint).name) == (20, 1.5, "checkpoint-20")
    assert sel.reason == "lowest eval_loss" and sel.evaluated_steps == 4


def test_select_falls_back_to_best_model_checkpoint(tmp_path: Path) -> None:
    train = _state(tmp_path, {}, saved=[8], best=8)
    sel = select_best(train)
    assert sel.reason == "best_model_checkpoint" and sel.checkpoint == str(train / "checkpoint-8")


def test_select_explains_missing_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(NoCheckpoint, match="save_steps"):
        select_best(_state(tmp_path, {5: 1.0}, saved=[]))
    with pytest.raises(NoCheckpoint, match="trainer_state.json"):
        select_best(tmp_path / "nothing")


# ------------------------------------------------------------------------------ stages, extra, install
def test_parse_stages() -> None:
    assert parse_stages(None) == ["train", "select", "merge", "eval", "report"]
    assert parse_stages("report, train") == ["train", "report"]
    assert parse_stages(["all"]) == parse_stages(None)
    with pytest.raises(UnknownName, match="did you mean 'merge'"):
        parse_stages("merg")


def test_require_train_extra_names_the_install_command() -> None:
    with pytest.raises(UserError) as info:
        check.require_train_extra(("torch", "surely_not_a_module_xyz"))
    assert 'pip install -e ".[train]" && python -m datafactory.train.install_fix' in str(info.value)
    assert "surely_not_a_module_xyz" in str(info.value)


def test_later_stage_needs_earlier_ones(tmp_path: Path, data_dir: Path) -> None:
    from datafactory.train.pipeline import train_eval

    with pytest.raises(UserError, match="stage 'train' has not run yet"):
        train_eval(write_recipe(tmp_path, recipe_text(data_dir, tmp_path)), stages="report",
                   say=lambda _: None)


@pytest.mark.skipif(HAS_LF, reason="the [train] extra is installed here")
def test_train_stage_without_extra_says_what_to_install(tmp_path: Path, data_dir: Path) -> None:
    from datafactory.train.pipeline import train_eval

    with pytest.raises(UserError, match=r'pip install -e "\.\[train\]"'):
        train_eval(write_recipe(tmp_path, recipe_text(data_dir, tmp_path)), say=lambda _: None)
    from datafactory.train.install_fix import main

    assert main([]) == 1


def test_core_import_does_not_pull_heavy_packages() -> None:
    code = ("import sys, datafactory.train, datafactory.train.pipeline, datafactory.config.recipe, "
            "datafactory.evaluate.report, datafactory.evaluate.lm_eval_runner\n"
            "heavy = [m for m in ('torch', 'llamafactory', 'lm_eval', 'transformers', 'matplotlib') "
            "if m in sys.modules]\nprint(heavy)\nsys.exit(1 if heavy else 0)")
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_evaluate_does_not_depend_on_train() -> None:
    code = ("import sys, datafactory.evaluate.lm_eval_runner, datafactory.evaluate.report, "
            "datafactory.evaluate.gsm8k_offline, datafactory.evaluate.job\n"
            "train = sorted(m for m in sys.modules if m.startswith('datafactory.train'))\n"
            "print(train)\nsys.exit(1 if train else 0)")
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------ progress, failures, child
TRAINER_LINES = [
    "Running tokenizer on dataset: 100%|██████████| 32/32 [00:00<00:00, 1717.42 examples/s]",
    "[INFO|trainer.py:1478] 2026-11-23 16:32:52,246 >>   Total optimization steps = 10",
    " 20%|██        | 2/10 [00:00<00:00, 21.43it/s]",
    "{'loss': '5.738', 'grad_norm': '0.3574', 'learning_rate': '0.0009', 'epoch': '0.125'}",
    " 40%|████      | 4/10 [00:00<00:00, 25.70it/s][INFO|trainer.py:2668] 2026-11-23 16:32:52,389 >> ",
    "100%|██████████| 4/4 [00:00<00:00, 202.91it/s]\x1b[A",
    "[A{'eval_loss': '5.641', 'eval_runtime': '0.0289', 'epoch': '0.25'}",
]


def test_step_progress_follows_the_training_bar_only() -> None:
    p = StepProgress()
    for line in TRAINER_LINES:
        p.feed(line)
    assert (p.completed, p.total) == (4, 10)
    assert "loss 5.738" in p.status and "eval_loss 5.641" in p.status


@pytest.mark.parametrize(("line", "needle"), [
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "method: qlora"),
    ("ValueError: Template qwenn does not exist.", "does not know template qwenn"),
    ("ValueError: Some keys are not used by the HfArgumentParser: ['foo']", "['foo']"),
    ("RuntimeError: operator torchvision::nms does not exist", "install_fix"),
    ("ValueError: File /x/data.json not found.", "data file /x/data.json is missing"),
])
def test_failures_are_mapped_to_hints(tmp_path: Path, line: str, needle: str) -> None:
    result = ProcResult(1, 1.0, tmp_path / "train.log", ["Traceback ...", line])
    msg = explain_failure(result, "llamafactory-cli train", LF_HINTS)
    assert needle in msg and str(tmp_path / "train.log") in msg and "exit 1" in msg


def test_run_streaming_splits_carriage_returns_and_logs(tmp_path: Path) -> None:
    code = "import sys\nfor i in range(3): sys.stdout.write(f'\\r{i}/3 [')\nprint()\nprint('done')"
    seen: list[str] = []
    res = run_streaming([sys.executable, "-c", code], log_path=tmp_path / "x.log", on_line=seen.append)
    assert res.ok and seen == ["0/3 [", "1/3 [", "2/3 [", "done"]
    assert "done" in (tmp_path / "x.log").read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_the_child(tmp_path: Path, sig: signal.Signals) -> None:
    pid_file = tmp_path / "pid"
    code = (f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
            "while True:\n    print('tick', flush=True)\n    time.sleep(0.2)")

    def interrupt() -> None:
        for _ in range(100):
            if pid_file.exists():
                break
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(os.getpid(), sig)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(Interrupted, match="Run the same command again") as info:
        run_streaming([sys.executable, "-c", code], log_path=tmp_path / "c.log")
    assert info.value.signum == sig and info.value.log_path == tmp_path / "c.log"
    assert not str(info.value).startswith("interrupted")  # the CLI adds that prefix once
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


# ------------------------------------------------------------------------------ scores and report
def _lm_eval_results(strict: float, flexible: float) -> dict[str, Any]:
    return {"results": {"gsm8k": {"alias": "gsm8k", "exact_match,strict-match": strict,
                                  "exact_match_stderr,strict-match": 0.01,
                                  "exact_match,flexible-extract": flexible,
                                  "exact_match_stderr,flexible-extract": "N/A"}},
            "n-samples": {"gsm8k": {"original": 1319, "effective": 3}}}


def test_scores_are_read_per_filter() -> None:
    out = scores_from_results(_lm_eval_results(0.25, 0.5), ["gsm8k"])
    assert out["scores"]["gsm8k"]["strict-match"] == {"value": 0.25, "stderr": 0.01}
    assert out["scores"]["gsm8k"]["flexible-extract"] == {"value": 0.5, "stderr": None}
    assert out["samples"] == {"gsm8k": 3}
    broken = _lm_eval_results(0.1, 0.2)
    del broken["results"]["gsm8k"]["exact_match,flexible-extract"]
    with pytest.raises(EvalFailed, match="flexible-extract"):
        scores_from_results(broken, ["gsm8k"])


def test_report_table_has_both_filters_and_deltas(tmp_path: Path, data_dir: Path) -> None:
    base = scores_from_results(_lm_eval_results(0.25, 0.5), ["gsm8k"])
    tuned = scores_from_results(_lm_eval_results(0.5, 0.625), ["gsm8k"])
    cmp = compare(base, tuned)
    assert cmp["gsm8k"]["strict-match"]["delta"] == pytest.approx(0.25)
    state = {"global_step": 20, "epoch": 1.0, "log_history": [
        {"loss": 2.0, "step": 10}, {"eval_loss": 1.5, "step": 10},
        {"train_runtime": 12.5, "train_loss": 1.9, "step": 20}]}
    report = build_report(recipe=_recipe(tmp_path, data_dir).to_dict(), run_dir=tmp_path / "run",
                          selection={"step": 10, "checkpoint": "c-10", "eval_loss": 1.5,
                                     "reason": "lowest eval_loss"},
                          state=state, train_seconds=30.0, base=base, tuned=tuned, tuned_model="merged",
                          loss_png=None)
    md = render_markdown(report)
    assert "| gsm8k | strict-match | 25.0% ± 1.0 | 50.0% ± 1.0 | +25.0 pts |" in md
    assert "| gsm8k | flexible-extract | 50.0% | 62.5% | +12.5 pts |" in md
    assert report["training"]["train_runtime_seconds"] == 12.5 and report["training"]["best_step"] == 10
    json.dumps(report)  # serialisable
