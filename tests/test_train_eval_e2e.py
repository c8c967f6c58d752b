"""End to end: the real LLaMA-Factory and lm-eval on a tiny local Qwen2 (no Hub), through
``train_eval``: SFT LoRA, SFT full and DPO LoRA → best checkpoint → merge → offline GSM8K (base vs
tuned) → report. Plus the scoring path with a stub LM that answers correctly / loosely / wrongly.

Run with the [train] extra:  .venv-train/bin/python -m pytest -m train tests/test_train_eval_e2e.py
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llamafactory")
pytest.importorskip("lm_eval")

from datafactory.config.recipe import load_recipe  # noqa: E402
from datafactory.errors import TrainFailed  # noqa: E402
from datafactory.train import train_eval  # noqa: E402
from datafactory.train.select import eval_losses, read_trainer_state  # noqa: E402

pytestmark = [pytest.mark.train, pytest.mark.slow]
FILTERS = ("strict-match", "flexible-extract")


def _problem(rng: random.Random) -> tuple[str, str, int]:
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    name = rng.choice(["Tom", "Ana", "Li", "Sara"])
    q = f"{name} has {a} apples and buys {b} more. How many apples does {name} have now?"
    return q, f"{name} has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} apples.\n#### {a + b}", a + b


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tiny_models import build_tiny_model

    root = tmp_path_factory.mktemp("train_assets")
    model = build_tiny_model(root / "tiny_qwen2")
    rng = random.Random(7)
    data = root / "data"
    data.mkdir()
    sft, pref = [], []
    for _ in range(40):
        q, a, n = _problem(rng)
        sft.append({"instruction": q, "input": "", "output": a})
        pref.append({"instruction": q, "input": "", "chosen": a, "rejected": f"About {n + 3}.\n#### {n + 3}"})
    (data / "gsm8k_rephrase.json").write_text(json.dumps(sft), encoding="utf-8")
    (data / "gsm8k_preference.json").write_text(json.dumps(pref), encoding="utf-8")
    info = {"gsm8k_rephrase": {"file_name": "gsm8k_rephrase.json"},
            "gsm8k_preference": {"file_name": "gsm8k_preference.json", "ranking": True,
                                 "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen",
                                             "rejected": "rejected"}}}
    (data / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    gsm = root / "gsm8k"
    gsm.mkdir()
    for split in ("train", "test"):
        rows = [dict(zip(("question", "answer"), _problem(rng)[:2], strict=True)) for _ in range(10)]
        (gsm / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {"root": root, "model": model, "data": data, "gsm_train": gsm / "train.jsonl",
            "gsm_test": gsm / "test.jsonl"}


def _recipe(assets: dict[str, Path], out: Path, *, stage: str = "sft", method: str = "lora",
            dataset: str = "gsm8k_rephrase", **train: Any) -> dict[str, Any]:
    return {
        "model": {"name_or_path": str(assets["model"]), "template": "qwen"},
        "data": {"dataset_dir": str(assets["data"]), "datasets": [dataset]},
        "train": {"stage": stage, "method": method, "cutoff_len": 256, "learning_rate": 5e-3, "max_steps": 8,
                  "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "lora_rank": 4,
                  "val_size": 0.2, "eval_steps": 4, "logging_steps": 2, **train},
        "eval": {"tasks": ["gsm8k"], "num_fewshot": 1, "limit": 2, "batch_size": 1,
                 "apply_chat_template": True, "gen_kwargs": {"max_gen_toks": 16},
                 "offline_data": {"train": str(assets["gsm_train"]), "test": str(assets["gsm_test"])}},
        "output_dir": str(out),
    }


def _check_run(run: Path, result: dict[str, Any]) -> dict[str, Any]:
    assert result["stages"] == dict.fromkeys(("train", "select", "merge", "eval", "report"), "ran")
    report = json.loads((run / "report.json").read_text())
    assert result["report"] == report
    for which in ("base", "tuned"):
        for flt in FILTERS:
            value = report["eval"]["results"]["gsm8k"][flt][which]
            assert isinstance(value, float) and 0.0 <= value <= 1.0
    assert report["eval"]["samples"] == {"gsm8k": 2}
    # the selected checkpoint is the saved one with the lowest eval_loss in trainer_state.json
    losses = eval_losses(read_trainer_state(run / "train"))
    saved = {s: v for s, v in losses.items() if (run / "train" / f"checkpoint-{s}").is_dir()}
    best_step = min(saved, key=lambda s: (saved[s], s))
    assert report["training"]["best_step"] == best_step
    assert report["training"]["best_eval_loss"] == pytest.approx(saved[best_step])
    assert report["training"]["wall_seconds"] > 0
    assert (run / "merged" / "model.safetensors").is_file() and (run / "merged" / "config.json").is_file()
    assert (run / "loss.png").stat().st_size > 1000
    md = (run / "report.md").read_text()
    assert "| gsm8k | strict-match |" in md and "| gsm8k | flexible-extract |" in md
    for name in ("train.yaml", "export.yaml", "recipe.resolved.yaml", "logs/train.log", "logs/export.log"):
        assert (run / name).is_file(), name
    # report.html: scores, the loss curve and lm-eval's logged samples of both models
    assert result["report_html"] == str(run / "report.html")
    html = (run / "report.html").read_text()
    assert "gsm8k" in html and "best: step" in html and "no logged eval samples" not in html
    assert "base reply" in html and "tuned reply" in html
    return report


def test_sft_lora_end_to_end_and_rerun_skips(assets: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "sft_lora"
    recipe = _recipe(assets, run)
    result = train_eval(recipe, show_progress=False)
    report = _check_run(run, result)
    assert report["training"]["method"] == "lora"
    assert (run / "train" / "checkpoint-4" / "adapter_model.safetensors").is_file()
    assert "llamafactory-cli train" in (run / "train.yaml").read_text()

    again = train_eval(recipe, show_progress=False)
    assert set(again["stages"].values()) == {"skipped"}
    # a new eval limit reruns eval + report only
    partial = train_eval(recipe, stages="eval,report", limit=3, show_progress=False)
    assert partial["stages"]["eval"] == "ran" and partial["stages"]["train"] == "done earlier"
    assert partial["report"]["eval"]["samples"] == {"gsm8k": 3}


def test_sft_full_end_to_end(assets: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "sft_full"
    report = _check_run(run, train_eval(_recipe(assets, run, method="full", learning_rate=1e-3),
                                        show_progress=False))
    assert report["training"]["method"] == "full"
    export = (run / "export.yaml").read_text()
    assert "adapter_name_or_path" not in export and "checkpoint-" in export


def test_dpo_lora_end_to_end(assets: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "dpo_lora"
    recipe = _recipe(assets, run, stage="dpo", dataset="gsm8k_preference", learning_rate=1e-3, pref_beta=0.1)
    report = _check_run(run, train_eval(recipe, show_progress=False))
    assert report["training"]["stage"] == "dpo"
    assert "pref_beta: 0.1" in (run / "train.yaml").read_text()


def test_llamafactory_failure_is_explained(assets: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "bad"
    path = tmp_path / "recipe.yaml"
    import yaml

    bad = _recipe(assets, run)
    bad["model"]["template"] = "no_such_template"
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    recipe = load_recipe(path, check_environment=False)  # let LLaMA-Factory itself refuse it
    with pytest.raises(TrainFailed) as info:
        train_eval(recipe, stages="train", show_progress=False)
    text = str(info.value)
    assert "does not know template no_such_template" in text and str(run / "logs" / "train.log") in text


def test_scoring_path_reads_strict_and_flexible(assets: dict[str, Path], tmp_path: Path) -> None:
    """A stub LM proves the two filters are read from the right keys: the reference answer scores
    1.0 on both; a bare number without '####' only passes flexible-extract; a wrong one neither."""
    from lm_eval.api.model import LM

    from datafactory.evaluate.lm_eval_runner import EvalJob, evaluate

    class Stub(LM):
        def __init__(self, mode: str) -> None:
            super().__init__()
            self.mode = mode

        def loglikelihood(self, requests: Any) -> Any:
            raise NotImplementedError

        def loglikelihood_rolling(self, requests: Any) -> Any:
            raise NotImplementedError

        def generate_until(self, requests: Any) -> list[str]:
            out = []
            for req in requests:
                number = req.doc["answer"].split("####")[-1].strip()
                out.append({"exact": req.doc["answer"], "loose": f"So the result is {number}.",
                            "wrong": "#### 999999"}[self.mode])
            return out

    job = EvalJob(model_path="stub", tasks=["gsm8k"], num_fewshot=2, limit=3, apply_chat_template=False,
                  offline_data={"train": str(assets["gsm_train"]), "test": str(assets["gsm_test"])},
                  task_dir=str(tmp_path / "tasks"))
    expected = {"exact": (1.0, 1.0), "loose": (0.0, 1.0), "wrong": (0.0, 0.0)}
    for mode, (strict, flexible) in expected.items():
        scores = evaluate(job, lm=Stub(mode))
        got = scores["scores"]["gsm8k"]
        assert (got["strict-match"]["value"], got["flexible-extract"]["value"]) == (strict, flexible), mode
        assert scores["samples"] == {"gsm8k": 3}
    task_yaml = (tmp_path / "tasks" / "gsm8k.yaml").read_text()
    assert "dataset_path: json" in task_yaml and "strict-match" in task_yaml
    shutil.rmtree(tmp_path / "tasks")


def test_augment_run_dir_trains_directly(assets: dict[str, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The hand-off users rely on: `augment` writes data + dataset_info.json, and a recipe pointing
    `dataset_dir` at that run dir trains on it with no manual registration."""
    import re

    from datafactory import augment, load_pipeline
    from datafactory.testing.loopback import LoopbackServer

    repo = Path(__file__).resolve().parents[1]
    rng = random.Random(11)
    rows = [dict(zip(("question", "answer"), _problem(rng)[:2], strict=True)) for _ in range(24)]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def responder(body: dict[str, Any], k: int) -> str:
        user = body["messages"][-1]["content"]
        problem = user.split("Problem:\n", 1)[1].split("\n\n", 1)[0].strip()
        total = re.findall(r"####\s*(\d+)", user)[0]
        return json.dumps({"question": f"Put differently, {problem.lower()}",
                           "answer": f"Adding the two amounts gives {total}.\n#### {total}"})

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    aug_dir = tmp_path / "aug"
    with LoopbackServer(responder=responder) as server:
        stats = augment(load_pipeline(repo / "pipelines" / "gsm8k_rephrase.yaml", input=str(inp),
                                      output=str(aug_dir), base_url=server.base_url))
    assert stats.written >= 20
    recipe = _recipe(assets, tmp_path / "run")
    recipe["data"]["dataset_dir"] = str(aug_dir)
    result = train_eval(recipe, stages="train,select", show_progress=False)
    assert result["stages"]["train"] == "ran" and result["stages"]["select"] == "ran"
    state = read_trainer_state(tmp_path / "run" / "train")
    assert eval_losses(state), "LLaMA-Factory trained and evaluated on the augment output"
