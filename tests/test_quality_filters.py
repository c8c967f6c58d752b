"""Length, empty-field and script filters, and the gate protocol helpers."""

from __future__ import annotations

import pytest

from datafactory.quality.filters import (
    EmptyFieldFilter,
    LanguageFilter,
    LengthFilter,
    language_script,
    script_of,
)
from datafactory.quality.gate import Gate, Reject, check_all, field_names, field_text
from datafactory.record import Record


def rec(**fields: object) -> Record:
    return Record(id="r", source={}, fields=dict(fields))


def test_length_filter_rejects_short_and_long_text_and_keeps_the_rest() -> None:
    gate = LengthFilter(["question", "answer"], min_chars=10, max_chars=40)
    assert gate.check(rec(question="How many?", answer="#### 18")) is None
    short = gate.check(rec(question=" ok ", answer=""))
    assert short is not None and short.reason == "too_short" and short.detail.startswith("2 chars")
    long = gate.check(rec(question="x" * 50))
    assert long is not None and long.reason == "too_long" and "max_chars=40" in long.detail


def test_length_filter_defaults_reject_only_empty_output() -> None:
    gate = LengthFilter("answer")
    assert gate.check(rec(answer="   ")) == Reject("too_short", "0 chars in answer, fewer than min_chars=1")
    assert gate.check(rec(answer="7")) is None
    with pytest.raises(ValueError):
        LengthFilter("answer", min_chars=5, max_chars=4)


def test_empty_field_filter_names_the_missing_or_blank_field() -> None:
    gate = EmptyFieldFilter(["question", "answer"])
    assert gate.check(rec(question="q", answer="a")) is None
    assert gate.check(rec(question="q")) == Reject("empty_field", "'answer' is missing")
    assert gate.check(rec(question="q", answer=" \n")) == Reject("empty_field", "'answer' is empty")
    assert gate.check(rec(question=None, answer="a")) == Reject("empty_field", "'question' is empty")
    verdict = EmptyFieldFilter("messages").check(rec(messages=[]))
    assert verdict is not None and verdict.reason == "empty_field"
    assert EmptyFieldFilter("n").check(rec(n=0)) is None  # zero is a value, not an empty field


def test_language_filter_keeps_english_and_rejects_another_script() -> None:
    gate = LanguageFilter("answer")
    assert gate.check(rec(answer="Janet’s ducks lay 16 eggs per day.")) is None
    assert gate.check(rec(answer="16 - 3 - 4 = 9")) is None  # no letters at all
    chinese = gate.check(rec(answer="珍妮特的鸭子每天下16个蛋。"))
    assert chinese is not None and chinese.reason == "wrong_language" and "cjk" in chinese.detail
    assert gate.check(rec(answer="Привет, как дела?")) is not None
    assert gate.check(rec(answer="The answer (答案) is 18 because nine times two is eighteen.")) is None


def test_language_filter_accepts_other_allowed_languages_and_scripts() -> None:
    assert LanguageFilter("a", allowed=("zh",)).check(rec(a="珍妮特的鸭子每天下蛋")) is None
    assert LanguageFilter("a", allowed=("zh",)).check(rec(a="plain English")) is not None
    assert LanguageFilter("a", allowed=("en", "ru")).check(rec(a="Привет")) is None
    assert language_script("cjk") == "cjk" and language_script("FR") == "latin"
    assert [script_of(c) for c in "aé字カ한ж"] == ["latin", "latin", "cjk", "cjk", "cjk", "cyrillic"]
    with pytest.raises(ValueError):
        language_script("english please")
    with pytest.raises(ValueError):
        LanguageFilter("a", min_share=0)


def test_gate_helpers_join_fields_and_run_any_gate() -> None:
    assert field_names("a") == ("a",) and field_names(["a", "b"]) == ("a", "b")
    with pytest.raises(ValueError):
        field_names([])
    record = rec(a="x", b=None, c=[1, {"k": 2}])
    assert field_text(record, ("a", "b", "c", "missing")) == 'x\n\n[1,{"k":2}]\n'
    gates: list[Gate] = [LengthFilter("a"), EmptyFieldFilter("a"), LanguageFilter("a")]
    for gate in gates:
        assert isinstance(gate, Gate)
        assert check_all(gate, [record, rec(a="")]) == [None, gate.check(rec(a=""))]
