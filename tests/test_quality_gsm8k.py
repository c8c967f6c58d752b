"""GSM8K answer extraction, comparison and the answer-check gate."""

from __future__ import annotations

import json

import pytest

from datafactory.quality.decontam import builtin_eval_set
from datafactory.quality.gate import Gate, Reject
from datafactory.quality.gsm8k import AnswerCheck, answers_match, extract_answer, parse_number
from datafactory.record import Record


def rec(output: object, reference: object = "Janet sells 9 eggs at $2.\n#### 18") -> Record:
    return Record(id="r", source={"answer": reference}, fields={"answer": output})


def test_final_answer_after_hashes_is_extracted() -> None:
    assert extract_answer("She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18") == "18"
    assert extract_answer("####18") == "18"
    assert extract_answer("Step 1: 20 - 2 = 18\n#### 18 (eighteen dollars)\nLater I said 20.") == "18"
    assert extract_answer("#### −7") == "-7"


def test_answer_with_dollar_comma_and_trailing_period_matches() -> None:
    assert extract_answer("#### $1,234.50 dollars.") == "1234.5"
    assert extract_answer("#### $70,000.") == "70000"
    assert answers_match("#### $70,000.", "70000")
    assert answers_match("The house made a profit.\n#### $70,000.00", "#### 70000")


def test_boxed_answer_is_extracted() -> None:
    assert extract_answer("So the total is \\boxed{18}.") == "18"
    assert extract_answer("First \\boxed{3}, corrected: \\boxed{{18}}") == "18"
    assert extract_answer("\\boxed{\\frac{3}{4}}") == "0.75"
    assert extract_answer("\\boxed{\\dfrac{1}{3}}") == "1/3"
    assert extract_answer("\\boxed{\\$1{,}000}") == "1000"
    assert extract_answer("\\boxed{18 \\text{ dollars}}") == "18"
    assert extract_answer("\\boxed{50\\%}") == "50"


def test_hashes_win_over_boxed_and_bare_numbers_count() -> None:
    assert extract_answer("\\boxed{20}\n#### 18") == "18"
    assert extract_answer("18") == "18"
    assert extract_answer(" $18. ") == "18"
    assert extract_answer("12 apples") == "12"


def test_text_without_a_final_answer_gives_none() -> None:
    assert extract_answer("The answer is probably eighteen.") is None
    assert extract_answer("She had 5 apples and 6 pears.") is None
    assert extract_answer("#### eighteen") is None
    assert extract_answer("\\boxed{18") is None
    assert extract_answer("") is None


@pytest.mark.parametrize("other", ["18.0", "$18", "18.00", "#### 18", "\\boxed{18}", "18 dollars", "36/2"])
def test_numeric_forms_of_eighteen_match(other: str) -> None:
    assert answers_match("18", other)


def test_fractions_decimals_and_rounding() -> None:
    assert answers_match("0.75", "3/4")
    assert answers_match("0.33", "1/3") and answers_match("#### 0.67", "2/3")
    assert not answers_match("0.3", "1/3")  # one decimal place is not a rounding of 1/3
    assert not answers_match("18.01", "18")
    assert not answers_match("18", "20")
    assert not answers_match("no number", "18")
    assert parse_number("3/0") is None


def test_every_gsm8k_test_answer_is_extracted() -> None:
    for line in builtin_eval_set("gsm8k").open():
        answer = json.loads(line)["answer"]
        written = answer.rsplit("####", 1)[1].strip().replace(",", "")
        assert extract_answer(answer) == written


def test_answer_check_keeps_a_matching_answer_and_names_a_mismatch() -> None:
    gate = AnswerCheck()
    assert isinstance(gate, Gate) and gate.name == "answer_check"
    assert gate.check(rec("She sells 9 eggs for $2 each.\n#### $18.00")) is None
    assert gate.check(rec("... so \\boxed{18}")) is None
    assert gate.check(rec("She sells 10 eggs.\n#### 20")) == Reject("answer_mismatch", "expected 18, got 20")


def test_answer_check_rejects_missing_answers_on_either_side() -> None:
    gate = AnswerCheck(output_field="solution", source_field="answer")
    vague = Record(id="r", source={"answer": "#### 5"}, fields={"solution": "I think it is five."})
    no_answer = gate.check(vague)
    assert no_answer is not None and no_answer.reason == "no_answer"
    assert gate.check(Record(id="r", source={"answer": "#### 5"}, fields={})) is not None
    no_reference = gate.check(Record(id="r", source={"question": "?"}, fields={"solution": "#### 5"}))
    assert no_reference is not None and no_reference.reason == "no_reference"
