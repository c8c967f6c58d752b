"""End-to-end runs against the loopback server: output, run dir, stats, concurrency."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml
from conftest import SENTINEL_KEY, qid_of

pytestmark = pytest.mark.timeout(60)


def test_every_row_is_written_in_input_order_with_the_configured_columns(make_project, server):
    proj = make_project(rows=25)
    stats = proj.augment()

    data = proj.data()
    assert [r["qid"] for r in data] == [r["qid"] for r in proj.rows]
    assert set(data[0]) == {"id", "qid", "question", "answer"}
    for row, src in zip(data, proj.rows, strict=True):
        # the responder echoes the start of the user message and the reference answer's number
        assert row["question"].startswith(f"Rephrased: [{src['qid']}]")
        assert row["answer"].endswith(src["answer"].split("####")[1].strip())
    assert proj.rejects() == []
    assert server.requests == 25
    assert stats.written == 25 and stats.requests_sent == 25
    proj.assert_accounted()


def test_run_dir_holds_resolved_config_cache_stats_and_data(make_project, server):
    proj = make_project(rows=5)
    proj.augment()

    run = proj.run_dir
    resolved = yaml.safe_load((run / "config.resolved.yaml").read_text())
    assert resolved["provider"]["base_url"] == server.base_url
    assert resolved["provider"]["api_key_env"] == "OPENAI_API_KEY"
    assert resolved["input"]["path"] == str(proj.input)
    stats = proj.stats()
    assert stats["requests_sent"] == 5 and stats["written"] == 5
    assert stats["run_totals"] == {"written": 5, "rejected": {}}
    assert stats["tokens"]["prompt"] > 0 and stats["tokens"]["completion"] > 0
    assert stats["estimated_cost_usd"] > 0  # gpt-4o-mini is in the price table
    assert stats["interrupted"] is False
    with sqlite3.connect(run / "cache.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 5
    assert proj.rejects_file.exists() and proj.rejects_file.read_text() == ""


def test_stats_tokens_match_the_usage_the_server_reported(make_project, server):
    proj = make_project(rows=6)
    stats = proj.augment()
    # what the server computed: prompt chars // 4, completion chars // 4 (see faults.completion_body)
    expected_prompt = sum(max(1, sum(len(m["content"]) for m in e.body["messages"]) // 4) for e in server.log)
    assert stats.prompt_tokens == expected_prompt


def test_concurrency_is_reached_and_never_exceeded(make_project, server):
    server.latency_s = 0.2
    proj = make_project(rows=64, limits={"concurrency": 16})
    proj.augment()
    assert server.max_in_flight == 16
    assert server.requests == 64
    proj.assert_accounted()


def test_concurrency_one_sends_requests_one_after_another(make_project, server):
    server.latency_s = 0.02
    proj = make_project(rows=8, limits={"concurrency": 1})
    proj.augment()
    assert server.max_in_flight == 1
    starts_ends = sorted((e.t_start, e.t_end) for e in server.log)
    for (_, end), (start, _) in zip(starts_ends, starts_ends[1:], strict=False):
        assert start >= end


def test_n_samples_per_row_are_all_written_with_distinct_ids(make_project, server):
    proj = make_project(rows=4, provider={"params": {"n": 3}})
    proj.augment()
    data = proj.data()
    assert len(data) == 12
    assert server.requests == 4  # one request per row, n choices each
    ids = [r["id"] for r in data]
    assert len(set(ids)) == 12
    keys = proj.expected_keys()
    assert {i.rsplit("-", 1)[0] for i in ids} == set(keys)
    assert {i.rsplit("-", 1)[1] for i in ids} == {"0", "1", "2"}


def test_requests_carry_the_model_params_and_rendered_prompt(make_project, server):
    proj = make_project(rows=2, provider={"model": "my-local-model", "params": {"temperature": 0.3, "seed": 7}})
    proj.augment()
    body = server.log[0].body
    assert body["model"] == "my-local-model"
    assert body["temperature"] == 0.3 and body["seed"] == 7
    assert body["messages"][0]["role"] == "system"
    assert qid_of(body) in {"q00000", "q00001"}
    assert "Sam has" in body["messages"][1]["content"]
    assert all(e.authorization == f"Bearer {SENTINEL_KEY}" for e in server.log)


def test_alpaca_format_writes_instruction_input_output(make_project, server):
    proj = make_project(rows=3)
    proj.config["output"].update(format="alpaca", columns={"instruction": "question", "output": "answer"})
    proj.write()
    proj.augment()
    rows = [json.loads(line) for line in proj.data_file.read_text().splitlines()]
    assert len(rows) == 3
    assert list(rows[0]) == ["instruction", "input", "output"]
    assert rows[0]["input"] == ""
    assert rows[0]["output"].endswith("#### 3")


def test_augment_works_inside_a_running_event_loop_and_augment_async_awaits(make_project, server):
    import asyncio

    from datafactory import augment, augment_async

    proj = make_project(rows=6)

    async def notebook_cell():  # what a Jupyter cell does: call the blocking API inside a running loop
        return augment(proj.pipeline, limit=3)

    first = asyncio.run(notebook_cell())
    assert first.written == 3
    second = asyncio.run(augment_async(proj.pipeline))
    assert second.written == 3 and second.rows_skipped_done == 3
    assert server.requests == 6
    proj.assert_accounted()
