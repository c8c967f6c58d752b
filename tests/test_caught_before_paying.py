"""Mistakes caught before paying: inputs read as users save them (BOM, Parquet types), duplicate YAML
keys, generation parameters of the wrong type, limits that are not numbers."""

from __future__ import annotations

import csv
import datetime
import decimal

import pytest
from conftest import assert_no_traceback, line_of, make_rows, run_cli

from datafactory.config.pipeline import load_pipeline
from datafactory.errors import ConfigError

pytestmark = pytest.mark.timeout(60)



# ---------------------------------------------------------------------- inputs
def test_csv_with_utf8_byte_order_mark_is_read_with_every_field(make_project, server, tmp_path):
    rows = make_rows(5)
    proj = make_project(rows=rows, input={"path": "rows.csv"})
    with (tmp_path / "rows.csv").open("w", newline="", encoding="utf-8-sig") as fh:  # Excel's "CSV UTF-8"
        writer = csv.DictWriter(fh, fieldnames=["qid", "question", "answer"])
        writer.writeheader()
        writer.writerows(rows)
    assert (tmp_path / "rows.csv").read_bytes().startswith(b"\xef\xbb\xbfqid,")
    proj.augment()
    assert server.requests == 5
    assert [r["qid"] for r in proj.data()] == [r["qid"] for r in rows]
    assert proj.rejects() == []


def test_parquet_decimal_binary_and_timestamp_columns_become_json_safe_values(make_project, server, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = make_rows(3)
    table = pa.table({
        "qid": [r["qid"] for r in rows],
        "question": [r["question"].encode() for r in rows],                 # binary holding UTF-8 text
        "answer": [r["answer"] for r in rows],
        "price": pa.array([decimal.Decimal("12.50")] * 3, pa.decimal128(10, 2)),
        "when": pa.array([datetime.datetime(2024, 5, 1, 12, 30)] * 3, pa.timestamp("us")),
        "day": pa.array([datetime.date(2024, 5, 1)] * 3, pa.date32()),
        "blob": pa.array([b"\xff\xfe\x00"] * 3, pa.binary()),              # not UTF-8
    })
    fields = {"qid": "qid", "question": "question", "answer": "answer", "price": "price", "when": "when",
              "day": "day", "blob": "blob"}
    columns = {"qid": "source.qid", "question": "question", "answer": "answer", "price": "source.price",
               "when": "source.when", "day": "source.day", "blob": "source.blob"}
    proj = make_project(rows=rows, input={"path": "rows.parquet", "fields": fields}, output={"columns": columns})
    pq.write_table(table, tmp_path / "rows.parquet")  # after make_project, which writes the rows as JSONL
    proj.augment()
    data = proj.data()
    assert len(data) == 3, proj.rejects()
    first = data[0]
    assert first["price"] == "12.50"                  # exact, as text
    assert first["when"] == "2024-05-01T12:30:00"     # ISO 8601
    assert first["day"] == "2024-05-01"
    assert first["blob"] == "//4A"                    # base64 when the bytes are not UTF-8
    # binary UTF-8 text went into the prompt as text
    assert "Sam has 0 apples" in server.log[0].body["messages"][1]["content"]


# ---------------------------------------------------------------------- the YAML itself
def test_duplicate_section_in_pipeline_yaml_is_an_error_naming_both_lines(make_project):
    proj = make_project(rows=1)
    text = proj.pipeline.read_text() + "limits:\n  concurrency: 99\n"
    proj.pipeline.write_text(text)
    first, second = line_of(proj.pipeline, "limits:"), line_of(proj.pipeline, "limits:", 2)
    with pytest.raises(ConfigError) as info:
        load_pipeline(proj.pipeline)
    err = info.value
    assert err.line == second and err.key == "limits"
    assert f"{proj.pipeline}:{second}: limits: duplicate key 'limits' (first at line {first}" in str(err)


def test_duplicate_nested_key_is_an_error_too(make_project):
    proj = make_project(rows=1)
    text = proj.pipeline.read_text().replace("    max_tokens: 256\n", "    max_tokens: 256\n    max_tokens: 16\n")
    proj.pipeline.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_pipeline(proj.pipeline)
    assert info.value.key == "provider.params.max_tokens"
    assert info.value.line == line_of(proj.pipeline, "max_tokens: 16")


@pytest.mark.parametrize(("param", "value", "expected"), [
    ("temperature", "hot", "expected a number from 0 to 2, got 'hot'"),
    ("temperature", 3.5, "must be from 0 to 2, got 3.5"),
    ("top_p", 1.5, "must be from 0 to 1"),
    ("max_tokens", "lots", "expected an integer, got 'lots'"),
    ("max_tokens", 0, "must be 1 or more"),
    ("n", 2.5, "expected an integer"),
    ("presence_penalty", -3, "must be from -2 to 2"),
    ("frequency_penalty", True, "expected a number"),
    ("seed", "abc", "expected an integer"),
    ("stop", 5, "expected a string or a list of strings"),
    ("response_format", {"type": "json"}, "type must be one of text, json_object, json_schema"),
    ("extra_body", "top_k=5", "expected a mapping"),
])
def test_generation_params_of_the_wrong_type_or_range_fail_validate_with_file_line(make_project, param, value,
                                                                                   expected):
    proj = make_project(rows=1, provider={"params": {param: value}})
    res = run_cli("validate", str(proj.pipeline))
    assert res.returncode == 1
    line = line_of(proj.pipeline, f"    {param}:")
    assert f"{proj.pipeline}:{line}: provider.params.{param}: {expected}" in res.stderr
    assert_no_traceback(res.stderr)


def test_server_specific_params_pass_through_to_the_request(make_project, server):
    proj = make_project(rows=1, provider={"params": {"top_k": 20, "min_p": 0.05, "my_server_knob": "x"}})
    proj.augment()
    body = server.log[0].body
    assert body["top_k"] == 20 and body["min_p"] == 0.05 and body["my_server_knob"] == "x"


# ---------------------------------------------------------------------- limits
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_rpm_that_is_not_a_finite_number_is_rejected_in_yaml(make_project, value):
    proj = make_project(rows=1)
    text = proj.pipeline.read_text().replace("  concurrency: 4\n", f"  concurrency: 4\n  rpm: {value}\n")
    proj.pipeline.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_pipeline(proj.pipeline)
    assert info.value.key == "limits.rpm"
    assert "limits.rpm: must be a finite number greater than 0" in str(info.value)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_rpm_and_tpm_flags_that_are_not_finite_positive_numbers_are_rejected(make_project, server, value):
    proj = make_project(rows=1)
    for flag in ("--rpm", "--tpm"):
        res = run_cli("augment", str(proj.pipeline), flag, value, "--dry-run")
        assert res.returncode == 1, res.stdout
        assert f"{flag} must be a finite number greater than 0" in res.stderr
        assert_no_traceback(res.stderr)
    assert server.requests == 0
