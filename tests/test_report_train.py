"""report.html of train-eval runs, from run dirs built by hand in the shapes LLaMA-Factory (trainer_state.json),
lm-eval (scores, logged samples) and the stage markers write — no training here — rendered in headless Chromium.
Plus: runs side by side (two recipes; a pipeline beside a recipe), and lm-eval's logged samples reaching
``eval/<model>.json`` through the real lm-eval code path with a stub model (needs the [train] extra).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from datafactory.errors import UserError
from datafactory.evaluate.report import compare
from datafactory.report import report
from datafactory.report.html import num
from datafactory.report.train_html import delta_text, pct
from datafactory.testing.browser import render, why_no_browser

pytestmark = pytest.mark.timeout(120)
needs_browser = pytest.mark.skipif(why_no_browser() is not None, reason=str(why_no_browser()))

HOSTILE = "<script>alert('tuned')</script> The answer is 18.\n#### 18"
STAGE_SECONDS = {"train": 812.25, "select": 0.02, "merge": 41.5, "eval": 305.75, "report": 0.4}


def screenshot_path(tmp_path: Path, name: str) -> Path:
    import os

    folder = os.environ.get("DATAFACTORY_SCREENSHOTS")
    return Path(folder) / name if folder else tmp_path / name


def _examples(which: str, n: int = 3) -> dict[str, list[dict[str, Any]]]:
    out = []
    for i in range(n):
        right = which == "tuned" or i == 0
        reply = HOSTILE if which == "tuned" and i == 1 else (f"So {16 + i} + 2 = {18 + i}.\n#### {18 + i}" if right
                                                              else f"I think it is {i}." if i == 1 else "\n" * 16)
        out.append({"doc_id": i, "question": f"Ana has {16 + i} apples and buys 2 more. How many now? <b>{i}</b>",
                    "target": f"{16 + i} + 2 = {18 + i}\n#### {18 + i}", "response": reply,
                    "filters": {"strict-match": {"answer": str(18 + i) if right else "[invalid]",
                                                 "exact_match": 1.0 if right else 0.0},
                                "flexible-extract": {"answer": str(18 + i) if right else str(i),
                                                     "exact_match": 1.0 if right else 0.0}}})
    return {"gsm8k": out}


def train_run_dir(root: Path, name: str = "sft_lora", *, strict: tuple[float, float] = (0.25, 0.5),
                  flexible: tuple[float, float] = (0.3, 0.55), best_step: int = 20, method: str = "lora") -> Path:
    """A finished train-eval run dir in the shapes LLaMA-Factory, lm-eval and the stages write."""
    run = root / name
    train = run / "train"
    for step in (10, 20, 30):
        (train / f"checkpoint-{step}").mkdir(parents=True)
    history: list[dict[str, Any]] = []
    for step in range(2, 31, 2):
        history.append({"epoch": step / 30, "grad_norm": 0.5, "learning_rate": 1e-4, "loss": 2.0 - step / 25,
                        "step": step})
        if step % 10 == 0:
            history.append({"epoch": step / 30, "eval_loss": {10: 1.4, 20: 1.1, 30: 1.25}[step], "eval_runtime": 1.0,
                            "step": step})
    history.append({"epoch": 1.0, "step": 30, "train_loss": 1.4, "train_runtime": 800.5})
    state = {"global_step": 30, "epoch": 1.0, "log_history": history,
             "best_model_checkpoint": str(train / f"checkpoint-{best_step}")}
    (train / "trainer_state.json").write_text(json.dumps(state))
    (run / "best_checkpoint.json").write_text(json.dumps(
        {"checkpoint": str(train / f"checkpoint-{best_step}"), "step": best_step, "eval_loss": 1.1,
         "reason": "lowest eval_loss", "evaluated_steps": 3}))
    settings = {"tasks": ["gsm8k"], "num_fewshot": 5, "limit": 40, "apply_chat_template": True, "backend": "hf"}
    (run / "eval").mkdir()
    for which, (s, f) in {"base": (strict[0], flexible[0]), "tuned": (strict[1], flexible[1])}.items():
        (run / "eval" / f"{which}.json").write_text(json.dumps(
            {"scores": {"gsm8k": {"strict-match": {"value": s, "stderr": 0.069},
                                  "flexible-extract": {"value": f, "stderr": 0.07}}},
             "samples": {"gsm8k": 40}, "model": which, "settings": settings, "examples": _examples(which),
             "job_hash": "x"}))
    (run / ".stages").mkdir()
    for stage, seconds in STAGE_SECONDS.items():
        (run / ".stages" / f"{stage}.json").write_text(json.dumps(
            {"stage": stage, "hash": "h", "finished_at": "2026-12-01T10:00:00+0000", "seconds": seconds,
             "outputs": {}, "paths": []}))
    recipe = {"model": {"name_or_path": "Qwen/Qwen2.5-1.5B-Instruct", "template": "qwen"},
              "data": {"dataset_dir": "runs/gsm8k_rephrase", "datasets": ["gsm8k_rephrase"]},
              "train": {"stage": "sft", "method": method, "learning_rate": 1e-4}, "output_dir": str(run)}
    (run / "recipe.resolved.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return run


def _visible_scores(text: str, run: Path) -> None:
    base = json.loads((run / "eval" / "base.json").read_text())
    tuned = json.loads((run / "eval" / "tuned.json").read_text())
    for flt, r in compare(base, tuned)["gsm8k"].items():
        row = (f"gsm8k\t{flt}\t{pct(r['base'], r['base_stderr'])}\t{pct(r['tuned'], r['tuned_stderr'])}\t"
               f"{delta_text(r['delta'])}")
        assert row in text, row


@needs_browser
def test_train_eval_report_shows_scores_losses_best_step_samples_and_stage_times(tmp_path):
    run = train_run_dir(tmp_path)
    path = report(run)
    assert path == run / "report.html"
    page = render(path, screenshot=screenshot_path(tmp_path, "train_eval.png"))
    assert page.errors == [] and page.dialogs == [] and page.scripts == 0
    assert page.requests == [path.resolve().as_uri()]
    text = page.text
    _visible_scores(text, run)
    assert "25.0% ± 6.9" in text and "+25.0 pts" in text
    assert "step 20, eval_loss 1.1000 (lowest eval_loss)" in text
    for stage, seconds in STAGE_SECONDS.items():
        assert f"{stage}\t{num(seconds)}\t" in text, stage
    # eval questions with both models' replies; model text is text
    assert "Ana has 17 apples and buys 2 more. How many now? <b>1</b>" in text
    assert HOSTILE.split("\n")[0] in text
    assert "I think it is 1." in text
    assert "(whitespace only: 16 characters, 16 line breaks)" in text  # what a tiny model often answers
    html = path.read_text()
    assert "best: step 20" in html and html.count("<polyline") >= 2 and "<circle" in html  # curves, best marked
    assert "<b>1</b>" not in html and "&lt;script&gt;alert(&#x27;tuned&#x27;)" in html


@needs_browser
def test_two_recipes_side_by_side_and_a_pipeline_beside_a_recipe(tmp_path):
    lora = train_run_dir(tmp_path, "sft_lora")
    full = train_run_dir(tmp_path, "sft_full", strict=(0.25, 0.6), flexible=(0.3, 0.65), best_step=30,
                         method="full")
    out = tmp_path / "recipes.html"
    report([lora, full], output=out)
    page = render(out, screenshot=screenshot_path(tmp_path, "train_compare.png"))
    assert page.errors == []
    assert "Side by side" in page.text
    assert "gsm8k strict-match tuned\t50.0% ± 6.9\t60.0% ± 6.9" in page.text
    assert "best step\t20\t30" in page.text
    differs = page.text.split("What differs in their configurations", 1)[1].split("sft_lora\ntrain-eval", 1)[0]
    assert "train.method\tlora\tfull" in differs and "model.name_or_path" not in differs  # only what differs
    _visible_scores(page.text, lora)
    _visible_scores(page.text, full)

    aug = tmp_path / "aug"
    (aug / "data").mkdir(parents=True)
    (aug / "stats.json").write_text(json.dumps({"rows_done": 3, "written": 2, "rejected": {"too_short": 1},
                                                "rejected_total": 1, "run_totals": {"written": 2,
                                                                                    "rejected": {"too_short": 1}}}))
    mixed = report([aug, lora], output=tmp_path / "mixed.html")
    page = render(mixed)
    assert page.errors == []
    assert "augment + train-eval" in page.text and "rejected: too_short\t1\t—" in page.text


def test_train_eval_writes_report_html_even_when_a_stage_cannot_run(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "sft.json").write_text("[]")
    (data / "dataset_info.json").write_text(json.dumps({"gsm8k_rephrase": {"file_name": "sft.json"}}))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model:\n  name_or_path: Qwen/Qwen2.5-1.5B-Instruct\n  template: qwen\ndata:\n"
                      f"  dataset_dir: {data}\n  datasets: [gsm8k_rephrase]\noutput_dir: {tmp_path / 'run'}\n")
    from datafactory.train.pipeline import train_eval

    with pytest.raises(UserError, match="stage 'train' has not run yet"):
        train_eval(recipe, stages="report", say=lambda _: None)
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Qwen/Qwen2.5-1.5B-Instruct" in html and "no eval results yet" in html


@pytest.mark.slow
@pytest.mark.train
def test_lm_eval_logged_samples_reach_the_eval_result_for_the_report(tmp_path):
    """The real lm-eval path with a stub model: the result holds questions, targets, replies and, per
    filter, the extracted answer and exact_match."""
    pytest.importorskip("lm_eval")
    from lm_eval.api.model import LM

    from datafactory.evaluate.lm_eval_runner import EvalJob, evaluate

    rows = [{"question": f"Tom has {a} pens and gets 3 more. How many pens?",
             "answer": f"{a} + 3 = {a + 3}\n#### {a + 3}"} for a in range(4, 10)]
    files = {}
    for split in ("train", "test"):
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(r) + "\n" for r in rows))

    class Stub(LM):
        def loglikelihood(self, requests: Any) -> Any:
            raise NotImplementedError

        def loglikelihood_rolling(self, requests: Any) -> Any:
            raise NotImplementedError

        def generate_until(self, requests: Any) -> list[str]:
            return [f"<script>x</script> so {r.doc['answer'].split('####')[-1].strip()}" for r in requests]

    job = EvalJob(model_path="stub", tasks=["gsm8k"], num_fewshot=0, limit=3, apply_chat_template=False,
                  offline_data={k: str(v) for k, v in files.items()}, task_dir=str(tmp_path / "tasks"))
    result = evaluate(job, lm=Stub())
    examples = result["examples"]["gsm8k"]
    assert len(examples) == 3
    first = examples[0]
    assert first["question"] == rows[0]["question"] and first["target"]
    assert first["response"] == "<script>x</script> so 7"
    assert first["filters"]["flexible-extract"] == {"answer": "7", "exact_match": 1.0}
    assert first["filters"]["strict-match"]["exact_match"] == 0.0
    json.dumps(result)  # what the child writes to eval/<model>.json
    shutil.rmtree(tmp_path / "tasks")
