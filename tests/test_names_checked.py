"""Names checked before paying: input columns, gate fields, the source fields a gate reads; --dry-run
explains its unusable rows; ``validate`` checks train-eval recipes too."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from conftest import assert_no_traceback, line_of, make_rows, run_cli

from datafactory.config.pipeline import load_pipeline
from datafactory.errors import ConfigError

pytestmark = pytest.mark.timeout(60)



def _typo_project(make_project):
    return make_project(rows=6, input={"fields": {"qid": "qid", "question": "questoin", "answer": "answer"}})


# ---------------------------------------------------------------------- input columns
def test_validate_names_an_input_field_whose_column_is_not_in_the_input(make_project):
    proj = _typo_project(make_project)
    res = run_cli("validate", str(proj.pipeline))
    assert res.returncode == 1
    line = line_of(proj.pipeline, "question: questoin")
    assert (f"{proj.pipeline}:{line}: input.fields.question: column 'questoin' is not in the input "
            f"({proj.input}, first 100 rows: answer, qid, question) (did you mean 'question'?)") in res.stderr
    assert_no_traceback(res.stderr)


def test_augment_with_a_misspelt_input_column_sends_nothing_and_exits_1(make_project, server):
    proj = _typo_project(make_project)
    res = run_cli("augment", str(proj.pipeline), "--quiet")
    assert res.returncode == 1
    assert "input.fields.question: column 'questoin' is not in the input" in res.stderr
    assert server.requests == 0
    assert not proj.data_file.exists()


def test_dry_run_with_a_misspelt_input_column_is_an_error_too(make_project, server):
    proj = _typo_project(make_project)
    res = run_cli("augment", str(proj.pipeline), "--dry-run")
    assert res.returncode == 1
    assert "did you mean 'question'?" in res.stderr
    assert server.requests == 0


# ---------------------------------------------------------------------- gate field names
@pytest.mark.parametrize(("gate", "cfg", "key", "expected"), [
    ("length", {"fields": ["question", "anwser"]}, "quality.length.fields[1]", "answer"),
    ("exact_dedup", {"fields": "questoin"}, "quality.exact_dedup.fields", "question"),
    ("answer_check", {"output_field": "answr"}, "quality.answer_check.output_field", "answer"),
    ("answer_check", {"output_field": "answer", "source_field": "answr"}, "quality.answer_check.source_field",
     "answer"),
    ("exact_dedup", {"fields": "question", "against_input": ["questin"]}, "quality.exact_dedup.against_input[0]",
     "question"),
])
def test_gate_field_that_no_record_has_is_an_error_with_did_you_mean(make_project, gate, cfg, key, expected):
    # schema properties, output columns and mapped input fields are all fine...
    proj = make_project(rows=1, quality={"length": {"fields": ["question", "qid"]},
                                         "answer_check": {"output_field": "answer", "source_field": "answer"}})
    load_pipeline(proj.pipeline)
    # ...a name no record has is not
    proj.update(quality={"length": None, "answer_check": None})
    proj.update(quality={gate: cfg})
    with pytest.raises(ConfigError) as info:
        load_pipeline(proj.pipeline)
    err = info.value
    assert err.key == key and err.suggestion == expected
    assert err.file == str(proj.pipeline) and err.line is not None


# ---------------------------------------------------------------------- dry run explains unusable rows
def test_dry_run_counts_unusable_rows_by_cause_with_a_first_example(make_project, server):
    # rows lacking a column the other rows have are unusable one by one, not an up-front error
    rows = make_rows(5)
    del rows[1]["answer"]
    rows[2]["answer"] = ""
    proj = make_project(rows=rows)
    with proj.input.open("a", encoding="utf-8") as fh:
        fh.write("this is not json\n")
    res = run_cli("augment", str(proj.pipeline), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "rows: 3 (+3 unusable)" in res.stdout
    assert (f"unusable, missing_field: 2 rows, e.g. {proj.input}:2: input column 'answer' (for {{{{ answer }}}}) "
            "is missing or empty") in res.stdout
    assert f"unusable, bad_input: 1 rows, e.g. {proj.input}:6: not valid JSON" in res.stdout
    assert server.requests == 0


# ---------------------------------------------------------------------- recipes
def _recipe(tmp_path, extra: str = "") -> object:
    data = tmp_path / "ds"
    data.mkdir()
    (data / "sft.json").write_text("[]", encoding="utf-8")
    (data / "dataset_info.json").write_text(json.dumps({"gsm8k_rephrase": {"file_name": "sft.json"}}),
                                            encoding="utf-8")
    model = tmp_path / "tiny-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2"}), encoding="utf-8")
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent(f"""\
        model:
          name_or_path: {model}
          template: qwen
        data:
          dataset_dir: {data}
          datasets: [gsm8k_rephrase]
        output_dir: {tmp_path / "run"}
        """) + textwrap.dedent(extra), encoding="utf-8")
    return path


def test_validate_accepts_a_train_eval_recipe_without_importing_training_libraries(tmp_path):
    path = _recipe(tmp_path)
    code = ("import sys; from datafactory.cli import main; rc = main(['validate', sys.argv[1]]); "
            "heavy = [m for m in ('torch', 'transformers', 'llamafactory', 'lm_eval') if m in sys.modules]; "
            "print('heavy:', heavy); raise SystemExit(rc)")
    import subprocess

    from conftest import cli_env

    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         env=cli_env(), cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.stderr
    assert f"ok: {path} (train-eval recipe" in res.stdout
    assert "sft/lora" in res.stdout and "unknown key" not in res.stdout + res.stderr
    assert "heavy: []" in res.stdout


def test_validate_reports_a_recipe_typo_with_file_line_and_suggestion(tmp_path):
    path = _recipe(tmp_path, "train:\n  learning_rat: 1.0e-4\n")
    res = run_cli("validate", str(path), cwd=tmp_path)
    assert res.returncode == 1
    line = line_of(path, "learning_rat:")
    assert f"{path}:{line}: train.learning_rat: unknown key" in res.stderr
    assert "did you mean 'learning_rate'?" in res.stderr
    assert_no_traceback(res.stderr)
