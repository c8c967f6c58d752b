"""Reasoning models: the chain of thought (``<think>`` in the content, ``reasoning_content`` / ``reasoning``
fields) is kept with the stored reply, offered to output columns as ``response.reasoning``, never parsed
as the answer; ``chat_template_kwargs`` goes to the server as it is."""

from __future__ import annotations

import pytest

from datafactory.errors import ConfigError
from datafactory.providers.base import Completion, completion_from_openai_json
from datafactory.quality.parse import think_text
from datafactory.testing.capabilities import REASONING_TEXT, Capabilities

pytestmark = pytest.mark.timeout(60)

COLUMNS = {"qid": "source.qid", "question": "question", "answer": "answer", "thought": "response.reasoning"}


@pytest.mark.parametrize("style", ["content", "reasoning_content", "reasoning"])
def test_the_reasoning_trace_goes_to_its_column_and_never_into_the_answer(make_project, server, style):
    server.capabilities = Capabilities(reasoning=style)     # the trace holds {"a": 1}: JSON-looking braces
    proj = make_project(rows=5, output={"columns": COLUMNS})
    stats = proj.augment()
    assert stats.written == 5 and stats.reasks == 0
    for row in proj.data():
        assert row["thought"] == REASONING_TEXT
        assert row["question"].startswith("Rephrased:") and "#### " in row["answer"]


@pytest.mark.parametrize("transport", ["sdk", "zhipuai"])
def test_the_reasoning_field_is_kept_on_the_other_transports(make_project, server, transport):
    server.capabilities = Capabilities(reasoning="reasoning_content")
    provider = ({"transport": "sdk"} if transport == "sdk"
                else {"kind": "zhipuai", "model": "glm-4-flash", "base_url": server.zhipu_base_url})
    proj = make_project(rows=3, provider=provider, output={"columns": COLUMNS})
    assert proj.augment().written == 3
    assert [r["thought"] for r in proj.data()] == [REASONING_TEXT] * 3


def test_the_trace_is_stored_in_the_cache_and_comes_back_without_a_request(make_project, server):
    server.capabilities = Capabilities(reasoning="reasoning")
    proj = make_project(rows=4, output={"columns": {"qid": "source.qid", "answer": "answer"}})
    assert proj.augment().written == 4
    sent = server.requests
    proj.update(output={"columns": COLUMNS})           # only the export changes: answered from the cache
    stats = proj.augment()
    assert stats.requests_sent == 0 and server.requests == sent
    assert [r["thought"] for r in proj.data()] == [REASONING_TEXT] * 4


def test_a_model_without_reasoning_gives_an_empty_column(make_project, server):
    proj = make_project(rows=2, output={"columns": COLUMNS})
    assert proj.augment().written == 2
    assert [r["thought"] for r in proj.data()] == ["", ""]


def test_cache_entries_written_before_reasoning_was_kept_still_load():
    old = {"choices": [{"text": '{"a": 1}', "finish_reason": "stop"}], "prompt_tokens": 3,
           "completion_tokens": 4, "model": "m"}
    comp = Completion.from_json(old)
    assert comp.choices[0].text == '{"a": 1}' and comp.choices[0].reasoning is None
    assert comp.to_json() == old                         # and they are written back the same way
    new = Completion.from_json({**old, "choices": [{"text": "x", "finish_reason": "stop", "reasoning": "r"}]})
    assert new.choices[0].reasoning == "r"


def test_think_blocks_are_the_reasoning_of_a_reply_without_a_reasoning_field():
    data = {"choices": [{"message": {"content": "<think>first</think>\n<think>second</think>{\"a\": 1}"}}]}
    assert completion_from_openai_json(data, {}).choices[0].reasoning == "first\n\nsecond"
    assert think_text("<think>ran out of tokens while thinking") == "ran out of tokens while thinking"
    assert think_text('{"a": 1}') is None


def test_think_text_stays_linear_on_hostile_replies():
    import time

    hostile = "<think>x</think>" * 50_000 + "<think>" * 50_000
    t0 = time.perf_counter()
    think_text(hostile)
    assert time.perf_counter() - t0 < 1.0


def test_chat_template_kwargs_go_to_the_top_level_of_the_request(make_project, server, tmp_path):
    kwargs = {"enable_thinking": False}
    for transport in ("http", "sdk"):
        server.reset_counters()
        proj = make_project(rows=2, provider={"transport": transport, "params": {"chat_template_kwargs": kwargs}},
                            output={"dir": str(tmp_path / f"run-{transport}")})
        assert proj.augment().written == 2
        assert all(e.body.get("chat_template_kwargs") == kwargs for e in server.log)


def test_chat_template_kwargs_that_is_not_a_mapping_is_a_config_error(make_project):
    proj = make_project(rows=1, provider={"params": {"chat_template_kwargs": "enable_thinking=false"}})
    with pytest.raises(ConfigError, match="provider.params.chat_template_kwargs: expected a mapping"):
        proj.augment()


def test_an_output_column_may_name_the_reasoning_but_not_a_misspelt_reference(make_project):
    proj = make_project(rows=1, output={"columns": {**COLUMNS, "thought": "response.reasonin"}})
    with pytest.raises(ConfigError, match="output.columns.thought"):
        proj.augment()
