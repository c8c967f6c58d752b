"""Gates as steps of the record flow: what they remove lands in rejects.jsonl with its reason, is
counted per reason in stats.json, and dedup memory survives a resume."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from datafactory.config.pipeline import load_pipeline
from datafactory.errors import ConfigError


def _qid(body: dict[str, Any]) -> int:
    return int(re.search(r"\[q(\d+)\]", body["messages"][-1]["content"]).group(1))


def test_language_and_empty_field_filters_reject_with_their_reasons(make_project, server):
    def responder(body: dict[str, Any], k: int) -> str:
        i = _qid(body)
        question = {1: "一个面包师早上做了十二个面包，下午又做了八个。他一共做了多少个？", 2: "            "}.get(
            i, f"Rephrased problem number {i}: how many apples are there now?")
        return json.dumps({"question": question, "answer": f"Add them.\n#### {i + 3}"})

    server.responder = responder
    proj = make_project(rows=6, quality={"language": {"fields": ["question"], "allowed": ["en"]},
                                         "empty_fields": {"fields": ["question", "answer"]}})
    stats = proj.augment()
    assert dict(stats.rejected) == {"wrong_language": 1, "empty_field": 1}
    assert proj.stats()["rejected"] == {"empty_field": 1, "wrong_language": 1}
    by_reason = proj.rejects_by_reason()
    assert by_reason["wrong_language"][0]["stage"] == "gate"
    proj.assert_accounted()


def test_near_duplicate_memory_survives_a_resume(make_project, server):
    same = "A farmer has many apples in the orchard and sells some of them at the market every single week"

    def responder(body: dict[str, Any], k: int) -> str:
        i = _qid(body)
        return json.dumps({"question": f"{same} (row {i})" if i in (0, 5) else f"Distinct question {i} " * 3,
                           "answer": f"Add.\n#### {i + 3}"})

    server.responder = responder
    proj = make_project(rows=5, quality={"near_dedup": {"fields": ["question"], "threshold": 0.8}})
    first = proj.augment()
    assert first.written == 5
    # a second invocation over more rows: row 5 is a near copy of row 0, written by the first run
    proj.set_rows(proj.rows + [{"qid": "q00005", "question": "Sam has 5 apples.", "answer": "5 + 3\n#### 8"}])
    second = proj.augment()
    assert dict(second.rejected) == {"near_duplicate": 1}
    assert server.requests == 6


def test_gate_option_typo_is_a_config_error_with_a_suggestion(make_project):
    proj = make_project(rows=1, quality={"near_dedup": {"fields": ["question"], "treshold": 0.8}})
    with pytest.raises(ConfigError) as err:
        load_pipeline(proj.pipeline)
    assert "quality.near_dedup.treshold" in str(err.value) and "threshold" in str(err.value)


def test_preference_without_answer_check_is_a_config_error(make_project):
    proj = make_project(rows=1, output={"format": "preference", "columns": {"instruction": "source.question"}})
    with pytest.raises(ConfigError, match="answer_check"):
        load_pipeline(proj.pipeline)


def test_dedup_on_a_renamed_property_survives_a_resume(make_project, server):
    """``near_dedup.fields: [question]`` names the model's property, which ``output.columns`` writes as
    ``instruction``: the gate reads that one column in the run and when a resume seeds it."""
    same = "A farmer has many apples in the orchard and sells some of them at the market every single week"

    def responder(body: dict[str, Any], k: int) -> str:
        i = _qid(body)
        return json.dumps({"question": f"{same} (row {i})", "answer": f"Add.\n#### {i + 3}"})

    server.responder = responder
    columns = {"instruction": "question", "question": None}  # base columns: qid, question, answer
    one_run = make_project(rows=2, quality={"near_dedup": {"fields": ["question"], "threshold": 0.8}},
                           output={"columns": columns})
    assert dict(one_run.augment().rejected) == {"near_duplicate": 1}

    rows = one_run.rows
    one_run.update(output={"dir": str(one_run.root / "run2")})
    one_run.set_rows(rows[:1])
    assert one_run.augment().written == 1
    one_run.set_rows(rows)
    second = one_run.augment()
    assert dict(second.rejected) == {"near_duplicate": 1}
    assert len(one_run.data()) == 1
