"""Model reply → JSON object → schema, and the re-ask loop end to end."""

from __future__ import annotations

import json

import pytest
from conftest import SCHEMA, is_reask, qid_of

from datafactory.errors import ValidationFailed
from datafactory.quality.parse import extract_json_object, strip_think
from datafactory.quality.validate import SchemaValidator
from datafactory.testing.loopback import Fault, default_responder, fenced_responder, think_responder

pytestmark = pytest.mark.timeout(60)

GOOD = {"question": "Sam has 4 apples and buys 3 more.", "answer": "4 + 3 = 7\n#### 7"}


# ---------------------------------------------------------------------- extract_json_object
@pytest.mark.parametrize("text", [
    json.dumps(GOOD),
    "```json\n" + json.dumps(GOOD) + "\n```",
    "Sure, here it is:\n```\n" + json.dumps(GOOD) + "\n```\nAnything else?",
    "<think>let me think {\"a\": 1} about it</think>\n" + json.dumps(GOOD),
    "<THINK>\nreasoning\n</THINK>```json\n" + json.dumps(GOOD, indent=2) + "\n```",
    "The answer object is " + json.dumps(GOOD) + " and that is all.",
])
def test_reply_shapes_models_produce_all_yield_the_object(text):
    assert extract_json_object(text) == GOOD


def test_last_fenced_block_wins_over_an_earlier_draft():
    draft = dict(GOOD, answer="draft #### 1")
    text = f"```json\n{json.dumps(draft)}\n```\nOops, fixed:\n```json\n{json.dumps(GOOD)}\n```"
    assert extract_json_object(text) == GOOD


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty_output"),
    ("   \n ", "empty_output"),
    ("<think>still thinking when the tokens ran out", "empty_output"),
    ("<think>done</think>", "empty_output"),
    ("I cannot help with that.", "invalid_json"),
    ('{"question": "unterminated', "invalid_json"),
    ("[1, 2, 3]", "invalid_json"),
])
def test_replies_without_an_object_fail_with_a_reason(text, reason):
    with pytest.raises(ValidationFailed) as info:
        extract_json_object(text)
    assert info.value.reason == reason


def test_parser_never_evaluates_python():
    with pytest.raises(ValidationFailed):
        extract_json_object("{'question': __import__('os').getcwd()}")


def test_strip_think_keeps_text_outside_the_block():
    assert strip_think("<think>a</think>b<think>c</think>d") == "bd"


def test_schema_validator_lists_the_problems_for_the_reask():
    validator = SchemaValidator(json.loads(SCHEMA.read_text()))
    validator.validate(GOOD)
    with pytest.raises(ValidationFailed) as info:
        validator.validate({"question": "short", "answer": "no final line"})
    assert info.value.reason == "schema_invalid"
    assert "at question:" in str(info.value) and "at answer:" in str(info.value)
    with pytest.raises(ValidationFailed, match=r"at \(root\): 'answer' is a required property"):
        validator.validate({"question": "long enough question"})


# ---------------------------------------------------------------------- end to end
def test_think_prefixed_replies_are_parsed_and_written(make_project, server):
    server.responder = think_responder(default_responder)
    proj = make_project(rows=4)
    proj.augment()
    assert len(proj.data()) == 4 and server.requests == 4
    assert all("<think>" not in r["question"] for r in proj.data())


def test_fenced_replies_with_prose_are_parsed_and_written(make_project, server):
    server.responder = fenced_responder(default_responder)
    proj = make_project(rows=4)
    proj.augment()
    assert len(proj.data()) == 4 and server.requests == 4


@pytest.mark.parametrize(("bad", "error_text"), [
    ("I'd rather not answer in JSON.", "no JSON object found"),
    ('{"question": "short", "answer": "42"}', "does not match"),
])
def test_invalid_reply_is_reasked_with_the_error_then_written(make_project, server, bad, error_text):
    proj = make_project(rows=3, limits={"concurrency": 1})
    server.set_fault_fn(lambda i, body: Fault(kind="content", content=bad)
                        if qid_of(body) == "q00001" and not is_reask(body) else None)
    stats = proj.augment()
    calls = [e.body for e in server.log if qid_of(e.body) == "q00001"]
    assert len(calls) == 2
    reask = calls[1]["messages"]
    assert reask[:2] == calls[0]["messages"]
    assert reask[2] == {"role": "assistant", "content": bad}
    assert reask[3]["role"] == "user"
    assert error_text in reask[3]["content"]
    assert stats.reasks == 1
    assert len(proj.data()) == 3 and proj.rejects() == []
    proj.assert_accounted()


@pytest.mark.parametrize(("bad", "reason", "stage"), [
    ("still not json", "invalid_json", "parse"),
    ('{"question": "short", "answer": "no number"}', "schema_invalid", "validate"),
    ("", "empty_output", "parse"),
])
def test_reply_invalid_twice_is_rejected_with_the_raw_output(make_project, server, bad, reason, stage):
    proj = make_project(rows=3)
    server.set_fault_fn(lambda i, body: Fault(kind="content", content=bad) if qid_of(body) == "q00002" else None)
    proj.augment()
    assert len([e for e in server.log if qid_of(e.body) == "q00002"]) == 2  # ask + one re-ask
    (rej,) = proj.rejects()
    assert rej["id"] == proj.key_of(proj.rows[2])
    assert (rej["reason"], rej["stage"]) == (reason, stage)
    assert rej["raw_output"] == bad
    assert rej["attempts"] == 2
    assert rej["last_error"]
    assert len(proj.data()) == 2
    proj.assert_accounted()


def test_reask_zero_rejects_without_a_second_request(make_project, server):
    proj = make_project(rows=2, quality={"reask": 0})
    server.enqueue(Fault(kind="content", content="nope"))
    proj.augment()
    assert server.requests == 2
    assert [r["reason"] for r in proj.rejects()] == ["invalid_json"]


def test_finish_reason_length_is_rejected_as_truncated(make_project, server):
    proj = make_project(rows=3)
    server.set_fault_fn(lambda i, body: Fault(kind="content", finish_reason="length")
                        if qid_of(body) == "q00000" else None)
    proj.augment()
    assert len([e for e in server.log if qid_of(e.body) == "q00000"]) == 1  # no re-ask: it would be cut too
    (rej,) = proj.rejects()
    assert rej["reason"] == "truncated" and rej["stage"] == "parse"
    assert "max_tokens" in rej["last_error"]
    assert rej["raw_output"]  # what came back is kept
    proj.assert_accounted()


def test_each_of_n_samples_is_validated_on_its_own(make_project, server):
    proj = make_project(rows=2, provider={"params": {"n": 2}}, quality={"reask": 0})

    def responder(body, index):
        return default_responder(body, index) if index == 0 else "not json"

    server.responder = responder
    proj.augment()
    assert len(proj.data()) == 2 and len(proj.rejects()) == 2
    assert {r["id"].rsplit("-", 1)[1] for r in proj.data()} == {"0"}
    assert {r["id"].rsplit("-", 1)[1] for r in proj.rejects()} == {"1"}
