"""Nothing a server sends may crash or brick a run: every reply, however deep, big or oddly shaped,
ends as written data or as a per-row reject, on the first run and on a rerun from the cache."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time

import orjson
import pytest
from conftest import SENTINEL_KEY, assert_no_traceback, is_reask, qid_of, run_cli

from datafactory import constants as C
from datafactory.errors import ValidationFailed
from datafactory.providers.base import Completion
from datafactory.quality.parse import extract_json_object
from datafactory.testing.faults import chat_body, error_body, nested_json
from datafactory.testing.loopback import Fault

pytestmark = pytest.mark.timeout(60)

GOOD = {"question": "Sam has 4 apples and buys 3 more.", "answer": "4 + 3 = 7\n#### 7"}
TRANSPORTS = {
    "http": {"kind": "openai", "transport": "http"},
    "sdk": {"kind": "openai", "transport": "sdk"},
    "zhipuai": {"kind": "zhipuai", "model": "glm-4-flash"},
}


def _provider(name, server):
    cfg = dict(TRANSPORTS[name])
    if name == "zhipuai":
        cfg["base_url"] = server.zhipu_base_url
    return cfg


def _only_for(qid, fault):
    return lambda i, body: fault if qid_of(body) == qid else None


# ---------------------------------------------------------------------- A1: depth
@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", [nested_json(100_000), nested_json(1_000_000), '{"a":' * 100_000,
                                  "```json\n" + nested_json(100_000) + "\n```"])
def test_replies_nested_far_too_deep_are_invalid_json_not_recursion_errors(text):
    with pytest.raises(ValidationFailed) as info:
        extract_json_object(text)
    assert info.value.reason == "invalid_json"


def test_reply_nested_100k_levels_is_a_reject_and_the_rerun_from_the_cache_finishes(make_project, server):
    proj = make_project(rows=4, quality={"reask": 0})
    server.set_fault_fn(_only_for("q00002", Fault(kind="content", content=nested_json(100_000))))
    stats = proj.augment()
    assert stats.written == 3
    (rej,) = proj.rejects()
    assert rej["reason"] == "invalid_json" and rej["stage"] == "parse"
    proj.assert_accounted()
    sent = server.requests
    again = proj.augment()  # the deep reply is cached: the rerun parses it again and must still end
    assert server.requests == sent and again.written == 0
    proj.assert_accounted()


@pytest.mark.parametrize("transport", ["sdk", "zhipuai"])
def test_http_body_nested_100k_levels_is_a_bad_response_reject(make_project, server, transport):
    proj = make_project(rows=3, provider=_provider(transport, server), limits={"max_attempts": 2})
    deep = b'{"choices":' + b"[" * 100_000
    server.set_fault_fn(_only_for("q00001", Fault(kind="body", body=deep)))
    stats = proj.augment()
    assert stats.written == 2
    (rej,) = proj.rejects()
    assert rej["reason"] == "bad_response" and rej["attempts"] == 2
    assert len(rej["raw_output"]) <= 4000
    proj.assert_accounted()


def test_object_holding_a_value_nested_1000_deep_is_an_invalid_json_reject(make_project, server):
    proj = make_project(rows=2, quality={"reask": 0})
    deep = '{"question": ' + "[" * 1000 + "]" * 1000 + ', "answer": "4 + 3 = 7 #### 7"}'
    server.set_fault_fn(_only_for("q00000", Fault(kind="content", content=deep)))
    assert proj.augment().written == 1
    (rej,) = proj.rejects()
    assert rej["reason"] == "invalid_json"


# ---------------------------------------------------------------------- A2: wrong shapes
WRONG_SHAPES = {
    "choices_are_strings": chat_body(["text"]),
    "message_is_a_string": chat_body([{"index": 0, "message": "text", "finish_reason": "stop"}]),
    "content_is_a_number": chat_body([{"index": 0, "message": {"role": "assistant", "content": 5}}]),
    "choices_nested_1020_deep": b'{"choices": [' + b"[" * 1020 + b"]" * 1020 + b"]}",
}


@pytest.mark.parametrize("shape", sorted(WRONG_SHAPES))
def test_200_body_of_the_wrong_shape_is_a_bad_response_reject(make_project, server, shape):
    proj = make_project(rows=3, limits={"max_attempts": 2})
    server.set_fault_fn(_only_for("q00000", Fault(kind="body", body=WRONG_SHAPES[shape])))
    stats = proj.augment()
    assert stats.written == 2
    (rej,) = proj.rejects()
    assert rej["reason"] == "bad_response" and rej["stage"] == "request" and rej["attempts"] == 2
    proj.assert_accounted()


def test_unreadable_usage_counts_as_zero_tokens_and_the_row_is_written(make_project, server):
    proj = make_project(rows=1)
    text = json.dumps(GOOD)
    server.enqueue(Fault(kind="body", body=chat_body(
        [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        usage={"prompt_tokens": "n/a", "completion_tokens": None})))
    stats = proj.augment()
    assert stats.written == 1 and stats.prompt_tokens == 0 and stats.completion_tokens == 0


def test_content_sent_as_a_list_of_text_parts_is_read_as_text(make_project, server):
    proj = make_project(rows=1)
    text = json.dumps(GOOD)
    parts = [{"type": "text", "text": text[:10]}, {"type": "text", "text": text[10:]}]
    server.enqueue(Fault(kind="body", body=chat_body(
        [{"index": 0, "message": {"role": "assistant", "content": parts}, "finish_reason": "stop"}])))
    assert proj.augment().written == 1
    assert proj.data()[0]["question"] == GOOD["question"]


@pytest.mark.parametrize("stored", [{"choices": ["text"]}, {"choices": None}, {"choices": [{"text": 5}]},
                                    {"choices": [{"text": "x"}], "prompt_tokens": "n/a"}, [], "text", None])
def test_completion_from_json_never_raises_on_what_a_cache_holds(stored):
    comp = Completion.from_json(stored)
    assert all(isinstance(c.text, str) for c in comp.choices)
    assert comp.prompt_tokens >= 0


def test_a_cache_entry_of_the_wrong_shape_is_a_reject_on_rerun_not_a_crash(make_project, server):
    proj = make_project(rows=3)
    proj.augment()
    db = sqlite3.connect(proj.run_dir / C.CACHE_DB)
    with db:
        db.execute("UPDATE responses SET response = ?", (orjson.dumps({"choices": ["text"], "prompt_tokens": "x"}),))
        db.execute("DELETE FROM outcomes")
    db.close()
    for p in (proj.run_dir / "data").glob("*"):
        p.unlink()
    res = run_cli("augment", str(proj.pipeline), "--quiet")
    assert_no_traceback(res.stderr)
    assert server.requests == 3  # nothing asked again: the stored (unreadable) responses answer
    assert {r["reason"] for r in proj.rejects()} == {"bad_response"}


# ---------------------------------------------------------------------- A3: time
@pytest.mark.timeout(10)
def test_30000_think_tags_parse_in_linear_time():
    flood = "<think>" * 30_000  # 210 KB, 51 s with the old regex
    started = time.perf_counter()
    for text in (flood + json.dumps(GOOD), "<think>x</think>" * 30_000 + json.dumps(GOOD)):
        with contextlib.suppress(ValidationFailed):
            extract_json_object(text)
    assert time.perf_counter() - started < 2.0


@pytest.mark.timeout(30)
def test_a_slow_to_parse_reply_does_not_block_the_event_loop(make_project, server):
    from datafactory.engine.augment import augment_async

    proj = make_project(rows=2, quality={"reask": 0}, limits={"concurrency": 2})
    hostile = "```json\n{bad}\n```\n" * 150_000  # 2.7 MB of broken fenced blocks: most of a second to scan
    server.set_fault_fn(_only_for("q00000", Fault(kind="content", content=hostile)))

    async def main():
        gaps = []

        async def heartbeat():
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        beat = asyncio.create_task(heartbeat())
        started = time.perf_counter()
        stats = await augment_async(proj.pipeline)
        took = time.perf_counter() - started
        beat.cancel()
        return stats, max(gaps), took

    stats, worst_gap, took = asyncio.run(main())
    assert stats.written == 1 and stats.rejected["invalid_json"] == 1
    assert worst_gap < max(0.25, took / 3), (worst_gap, took)


# ---------------------------------------------------------------------- A4: size
def test_a_10mb_reply_is_not_echoed_whole_in_the_reask_nor_stored_whole_in_rejects(make_project, server):
    proj = make_project(rows=1, quality={"reask": 1})
    huge = json.dumps({"question": "x" * 10_000_000})  # valid JSON, no answer: schema-invalid
    server.set_fault_fn(lambda i, body: Fault(kind="content", content=huge))
    proj.augment()
    reask = [e.body for e in server.log if is_reask(e.body)]
    assert len(reask) == 1
    echoed = reask[0]["messages"][-2]["content"]
    assert len(echoed) < C.REASK_ECHO_CHARS + 200 and "cut" in echoed
    assert "10,000,0" in reask[0]["messages"][-1]["content"]  # the model is told its reply was cut
    (rej,) = proj.rejects()
    assert rej["reason"] == "schema_invalid"
    assert len(rej["raw_output"]) < C.REJECT_RAW_CHARS + 200 and rej["raw_output_chars"] == len(huge)
    assert proj.rejects_file.stat().st_size < 50_000


def test_a_schema_error_quoting_a_10mb_value_is_cut_in_the_reask(make_project, server):
    proj = make_project(rows=1, quality={"reask": 1})
    huge = json.dumps({"question": ["x" * 10_000_000], "answer": GOOD["answer"]})  # not a string
    server.set_fault_fn(lambda i, body: Fault(kind="content", content=huge))
    proj.augment()
    (reask,) = [e.body for e in server.log if is_reask(e.body)]
    assert len(reask["messages"][-1]["content"]) < C.REASK_ERROR_CHARS + 500
    assert "is not of type" in reask["messages"][-1]["content"]


# ---------------------------------------------------------------------- A5: content filter
def test_content_filter_with_valid_looking_content_is_rejected_not_written(make_project, server):
    proj = make_project(rows=3)
    server.set_fault_fn(_only_for("q00001", Fault(kind="content", content=json.dumps(GOOD),
                                                  finish_reason="content_filter")))
    stats = proj.augment()
    assert stats.written == 2
    (rej,) = proj.rejects()
    assert rej["reason"] == "content_filter" and "content_filter" in rej["last_error"]
    proj.assert_accounted()


# ---------------------------------------------------------------------- F: redaction
def test_key_echoed_inside_a_200_reply_is_not_stored_in_the_cache(make_project, server):
    proj = make_project(rows=2)
    leaky = json.dumps({"question": f"Echo of your key {SENTINEL_KEY} for the record?", "answer": GOOD["answer"]})
    server.set_fault_fn(lambda i, body: Fault(kind="content", content=leaky))
    assert proj.augment().written == 2
    for path in proj.run_dir.rglob("*"):
        if path.is_file():
            assert SENTINEL_KEY.encode() not in path.read_bytes(), path


# where the key starts so that it straddles character 500 of the text each transport reads (the zhipuai
# SDK's text starts with 'Error code: 400, with error text {"error":{"message":"')
PADDING = {"http": 490, "sdk": 490, "zhipuai": 436}


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_key_straddling_the_cut_of_an_error_message_leaves_no_trace(make_project, server, transport):
    proj = make_project(rows=1, provider=_provider(transport, server))
    message = "x" * PADDING[transport] + f" {SENTINEL_KEY} was refused"
    server.set_fault_fn(lambda i, body: Fault(kind="body", status=400, body=error_body(400, message)))
    proj.augment()
    (rej,) = proj.rejects()
    assert rej["reason"] == "http_400" and "xxxx" in rej["last_error"]
    for path in proj.run_dir.rglob("*"):
        if path.is_file():
            assert SENTINEL_KEY[:6].encode() not in path.read_bytes(), path
