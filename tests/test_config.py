"""Pipeline config: precise errors (file:line, key path, did-you-mean), CLI overrides, validate,
--dry-run and the missing-API-key message."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import assert_no_traceback, cli_env, line_of, qid_of, run_cli

from datafactory.config.pipeline import load_pipeline
from datafactory.errors import ConfigError

pytestmark = pytest.mark.timeout(60)



def _rename_key(proj, section: str, old: str, new: str) -> None:
    proj.config[section][new] = proj.config[section].pop(old)
    proj.write()


# ---------------------------------------------------------------------- errors in the YAML
def test_misspelt_provider_key_names_file_line_key_path_and_suggestion(make_project):
    proj = make_project(rows=1)
    _rename_key(proj, "provider", "model", "modle")
    with pytest.raises(ConfigError) as info:
        load_pipeline(proj.pipeline)
    err = info.value
    assert err.file == str(proj.pipeline)
    assert err.line == line_of(proj.pipeline, "modle:")
    assert err.key == "provider.modle"
    assert err.suggestion == "model"
    assert f"{proj.pipeline}:{err.line}: provider.modle: unknown key (did you mean 'model'?)" in str(err)


def test_validate_command_reports_the_typo_with_exit_1_and_no_traceback(make_project):
    proj = make_project(rows=1)
    _rename_key(proj, "limits", "concurrency", "concurency")
    res = run_cli("validate", str(proj.pipeline))
    assert res.returncode == 1
    line = line_of(proj.pipeline, "concurency:")
    assert f"{proj.pipeline}:{line}: limits.concurency: unknown key (did you mean 'concurrency'?)" in res.stderr
    assert_no_traceback(res.stderr)


def test_unknown_top_level_key_suggests_the_section(make_project):
    proj = make_project(rows=1)
    proj.config["qualty"] = proj.config.pop("quality")
    proj.write()
    with pytest.raises(ConfigError, match=r"qualty: unknown key \(did you mean 'quality'\?\)"):
        load_pipeline(proj.pipeline)


def test_misspelt_generation_parameter_is_rejected_with_suggestion(make_project):
    proj = make_project(rows=1, provider={"params": {"temperatur": 0.5}})
    with pytest.raises(ConfigError) as info:
        load_pipeline(proj.pipeline)
    assert info.value.key == "provider.params.temperatur"
    assert info.value.suggestion == "temperature"


@pytest.mark.parametrize(("section", "key", "value", "expected"), [
    ("limits", "concurrency", "many", "limits.concurrency: expected a positive integer or auto, got 'many'"),
    ("limits", "rpm", True, "limits.rpm: expected a number or null, got True"),
    ("limits", "timeout_s", 0, "limits.timeout_s: must be greater than 0"),
    ("input", "limit", -3, "input.limit: must be greater than 0"),
    ("quality", "reask", -1, "quality.reask: must be 0 or more"),
    ("provider", "transport", "grpc", "provider.transport: must be one of http, sdk"),
    ("output", "format", "sharegtp", "output.format: must be one of alpaca, sharegpt"),
])
def test_bad_value_types_and_ranges_name_the_key_and_line(make_project, section, key, value, expected):
    proj = make_project(rows=1)
    proj.config[section][key] = value
    proj.write()
    with pytest.raises(ConfigError) as info:
        load_pipeline(proj.pipeline)
    assert expected in str(info.value)
    assert info.value.line == line_of(proj.pipeline, f"{key}:")
    if value == "sharegtp":
        assert info.value.suggestion == "sharegpt"


def test_unknown_provider_kind_lists_choices_and_suggests(make_project):
    proj = make_project(rows=1, provider={"kind": "openia"})
    with pytest.raises(ConfigError) as info:
        load_pipeline(proj.pipeline)
    assert "provider.kind: must be one of openai, zhipuai" in str(info.value)
    assert info.value.suggestion == "openai"


def test_template_placeholder_not_mapped_in_input_fields_is_an_error(make_project):
    proj = make_project(rows=1)
    del proj.config["input"]["fields"]["answer"]
    proj.write()
    with pytest.raises(ConfigError) as info:
        load_pipeline(proj.pipeline)
    assert info.value.key == "input.fields"
    assert "uses {{ answer }} but input.fields does not map it" in str(info.value)


def test_output_column_referring_to_unknown_schema_property_suggests_one(make_project):
    proj = make_project(rows=1, output={"columns": {"answer": "answr"}})
    with pytest.raises(ConfigError) as info:
        load_pipeline(proj.pipeline)
    assert info.value.key == "output.columns.answer"
    assert info.value.suggestion == "answer"


def test_output_column_referring_to_unmapped_source_field_is_an_error(make_project):
    proj = make_project(rows=1, output={"columns": {"qid": "source.quid"}})
    with pytest.raises(ConfigError, match=r"'source.quid' is not a mapped input field.*did you mean 'qid'"):
        load_pipeline(proj.pipeline)


@pytest.mark.parametrize(("key", "expected_key"), [("template", "prompt.template"), ("schema", "schema")])
def test_missing_template_or_schema_file_names_the_key_and_path(make_project, tmp_path, key, expected_key):
    proj = make_project(rows=1)
    if key == "template":
        proj.config["prompt"]["template"] = "nope.yaml"
    else:
        proj.config["schema"] = "nope.json"
    proj.write()
    with pytest.raises(ConfigError) as info:
        load_pipeline(proj.pipeline)
    assert info.value.key == expected_key
    assert f"file not found: {tmp_path / ('nope.yaml' if key == 'template' else 'nope.json')}" in str(info.value)


def test_missing_pipeline_file_is_a_clear_error(tmp_path):
    res = run_cli("validate", str(tmp_path / "absent.yaml"))
    assert res.returncode == 1
    assert f"error: {tmp_path / 'absent.yaml'}: file not found" in res.stderr
    assert_no_traceback(res.stderr)


def test_schema_that_is_not_json_is_reported(make_project, tmp_path):
    proj = make_project(rows=1)
    (tmp_path / "bad.json").write_text("{not json")
    proj.config["schema"] = "bad.json"
    proj.write()
    with pytest.raises(ConfigError, match="bad.json is not valid JSON"):
        load_pipeline(proj.pipeline)


def test_invalid_yaml_reports_the_line(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("name: x\ninput:\n  path: [unclosed\n  fields: {}\n")
    with pytest.raises(ConfigError) as info:
        load_pipeline(p)
    assert info.value.line is not None and info.value.line >= 3
    assert "invalid YAML" in str(info.value)


def test_validate_accepts_a_good_pipeline(make_project):
    proj = make_project(rows=1)
    res = run_cli("validate", str(proj.pipeline))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"ok: {proj.pipeline}")


def test_validate_reports_a_missing_input_file(make_project):
    proj = make_project(rows=1)
    proj.input.unlink()
    res = run_cli("validate", str(proj.pipeline))
    assert res.returncode == 1
    assert "input file not found" in res.stderr and str(proj.input) in res.stderr
    assert_no_traceback(res.stderr)


def test_shipped_example_pipeline_validates():
    from conftest import REPO

    res = run_cli("validate", str(REPO / "pipelines" / "gsm8k_rephrase.yaml"))
    assert res.returncode == 0, res.stderr


# ---------------------------------------------------------------------- CLI overrides
def test_cli_overrides_replace_the_yaml_values(make_project, server, tmp_path):
    # the YAML points at a dead port, a missing input and another run dir: only the flags make it work
    proj = make_project(rows=1, provider={"base_url": "http://127.0.0.1:9/v1"})
    other_input = tmp_path / "other.jsonl"
    from conftest import make_rows, write_jsonl
    rows = make_rows(6, start=100)
    write_jsonl(other_input, rows)
    out = tmp_path / "other_run"
    res = run_cli("augment", str(proj.pipeline), "--input", str(other_input), "--output", str(out),
                  "--limit", "4", "--concurrency", "2", "--rpm", "6000", "--tpm", "900000",
                  "--provider", "openai", "--model", "override-model", "--base-url", server.base_url, "--quiet")
    assert res.returncode == 0, res.stderr
    assert server.requests == 4
    assert server.max_in_flight <= 2
    assert {e.body["model"] for e in server.log} == {"override-model"}
    assert sorted(qid_of(e.body) for e in server.log) == [r["qid"] for r in rows[:4]]
    resolved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert resolved["input"]["path"] == str(other_input) and resolved["input"]["limit"] == 4
    assert resolved["limits"]["concurrency"] == 2
    assert resolved["limits"]["rpm"] == 6000 and resolved["limits"]["tpm"] == 900000
    assert resolved["provider"]["model"] == "override-model"
    assert resolved["provider"]["base_url"] == server.base_url
    assert len((out / "data" / "out.jsonl").read_text().splitlines()) == 4
    assert not proj.run_dir.exists()


def test_provider_override_switches_to_that_providers_key_variable(make_project):
    proj = make_project(rows=1)
    pipe = load_pipeline(proj.pipeline, provider="zhipuai")
    assert pipe.provider.kind == "zhipuai"
    assert pipe.provider.api_key_env == "ZHIPUAI_API_KEY"


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--limit", "0", "--limit must be a positive integer, got 0"),
    ("--concurrency", "0", "--concurrency must be a positive integer, got 0"),
    ("--rpm", "-5", "--rpm must be a finite number greater than 0, got -5.0"),
    ("--provider", "openia", "unknown provider 'openia'"),
])
def test_bad_override_values_fail_with_exit_1_before_any_request(make_project, server, flag, value, message):
    proj = make_project(rows=2)
    res = run_cli("augment", str(proj.pipeline), flag, value)
    assert res.returncode == 1
    assert message in res.stderr
    assert_no_traceback(res.stderr)
    assert server.requests == 0


# ---------------------------------------------------------------------- dry run and API key
def test_dry_run_sends_nothing_and_prints_prompts_rows_tokens_cost(make_project, server):
    proj = make_project(rows=7)
    env = cli_env()
    del env["OPENAI_API_KEY"]  # a dry run needs no key
    res = run_cli("augment", str(proj.pipeline), "--dry-run", env=env)
    assert res.returncode == 0, res.stderr
    assert server.requests == 0
    out = res.stdout
    assert "--- prompt 1 ---" in out and "[q00000] Rephrase this problem" in out
    assert "rows: 7 (+0 unusable)  requests: 7" in out
    assert "estimated tokens:" in out and "estimated cost: $" in out
    assert "dry run: nothing was sent" in out
    assert not proj.run_dir.exists()


def test_dry_run_counts_unusable_rows_and_honours_limit(make_project, server):
    rows = [{"qid": "q1", "question": "What is 1 + 1 here?", "answer": "#### 2"},
            {"qid": "q2", "question": "", "answer": "#### 3"}]
    proj = make_project(rows=rows)
    with proj.input.open("a") as fh:
        fh.write("not json\n")
    from datafactory.engine.plan import plan

    result = plan(proj.pipeline)
    assert (result.rows, result.bad_rows) == (1, 2)
    assert plan(proj.pipeline, limit=1).rows == 1
    assert server.requests == 0


def test_dry_run_with_unknown_model_says_cost_is_unknown(make_project, server):
    proj = make_project(rows=2, provider={"model": "my-own-finetune"})
    res = run_cli("augment", str(proj.pipeline), "--dry-run")
    assert res.returncode == 0
    assert "estimated cost: unknown (no price for 'my-own-finetune'" in res.stdout


@pytest.mark.parametrize("key_env", [None, "MY_GATEWAY_KEY"])
def test_missing_api_key_names_the_variable_and_suggests_base_url_and_dry_run(make_project, server, key_env):
    proj = make_project(rows=2)
    if key_env:
        proj.update(provider={"api_key_env": key_env})
    env = cli_env()
    del env["OPENAI_API_KEY"]
    res = run_cli("augment", str(proj.pipeline), env=env)
    assert res.returncode == 1
    assert f"set the environment variable {key_env or 'OPENAI_API_KEY'}" in res.stderr
    assert "--base-url" in res.stderr and "--dry-run" in res.stderr
    assert_no_traceback(res.stderr)
    assert server.requests == 0
    assert not proj.run_dir.exists()


def test_blank_api_key_counts_as_missing(make_project, server):
    proj = make_project(rows=1)
    res = run_cli("augment", str(proj.pipeline), env=cli_env(OPENAI_API_KEY="   "))
    assert res.returncode == 1
    assert "OPENAI_API_KEY" in res.stderr
    assert server.requests == 0


def test_library_and_cli_resolve_relative_paths_against_the_pipeline_file(make_project, tmp_path):
    proj = make_project(rows=1)
    pipe = load_pipeline(proj.pipeline)
    assert pipe.input.path == str(tmp_path / "input.jsonl")
    assert pipe.prompt.path == str(tmp_path / "prompt.yaml")
    # the resolved config is plain data that round-trips through JSON (no objects, no secrets)
    json.dumps(pipe.resolved())
