"""The request cache and the commit log: reruns never pay twice, and only what changed is redone."""

from __future__ import annotations

import sqlite3

import pytest
import yaml
from conftest import TEMPLATE, is_reask, make_rows, qid_of, run_cli

from datafactory.testing.loopback import Fault

pytestmark = pytest.mark.timeout(60)


def _snapshot(proj):
    return proj.data_file.read_bytes(), proj.rejects_file.read_bytes()


def test_rerun_of_finished_unchanged_pipeline_sends_zero_requests_and_writes_identical_bytes(make_project, server):
    proj = make_project(rows=12)
    # a content reject is final (a setup reject such as a 400 would be asked again: test_reject_reasons)
    server.set_fault_fn(lambda i, body: Fault(kind="content", content="no JSON")
                        if qid_of(body) == "q00003" else None)
    first = run_cli("augment", str(proj.pipeline), "--quiet")
    assert first.returncode == 0, first.stderr
    before = _snapshot(proj)
    assert len(proj.data()) == 11 and len(proj.rejects()) == 1
    server.reset_counters()

    second = run_cli("augment", str(proj.pipeline), "--quiet")
    assert second.returncode == 0, second.stderr
    assert server.requests == 0
    assert _snapshot(proj) == before
    stats = proj.stats()
    assert stats["rows_skipped_already_done"] == 12 and stats["requests_sent"] == 0
    assert stats["run_totals"] == {"written": 11, "rejected": {"invalid_json": 1}}
    assert "nothing to do: all 12 input rows were done by earlier runs" in second.stdout
    assert "(11 rows in total)" in second.stdout
    proj.assert_accounted()


def test_changing_the_prompt_template_sends_every_request_again(make_project, server, tmp_path):
    proj = make_project(rows=6)
    proj.augment()
    server.reset_counters()
    changed = dict(TEMPLATE, user=TEMPLATE["user"] + "Keep it short.\n")
    (tmp_path / "prompt.yaml").write_text(yaml.safe_dump(changed))
    proj.augment()
    assert server.requests == 6
    assert all(e.body["messages"][1]["content"].endswith("Keep it short.\n") for e in server.log)
    proj.assert_accounted()


def test_changing_generation_params_or_model_sends_requests_again(make_project, server):
    proj = make_project(rows=4)
    proj.augment()
    server.reset_counters()
    proj.update(provider={"params": {"temperature": 0.9}})
    proj.augment()
    assert server.requests == 4
    server.reset_counters()
    proj.augment(model="another-model")
    assert server.requests == 4


def test_changing_only_output_columns_is_served_from_cache_but_rewrites_data(make_project, server):
    proj = make_project(rows=8)
    proj.augment()
    old = proj.data()
    server.reset_counters()
    proj.update(output={"columns": {"original": "source.question"}})
    stats = proj.augment()
    assert server.requests == 0
    assert stats.cache_hits == 8
    new = proj.data()
    assert len(new) == 8
    assert "original" not in old[0] and new[0]["original"] == proj.rows[0]["question"]
    assert [r["answer"] for r in new] == [r["answer"] for r in old]
    proj.assert_accounted()


def test_limit_5_then_limit_10_sends_only_5_new_requests(make_project, server):
    proj = make_project(rows=20)
    res = run_cli("augment", str(proj.pipeline), "--limit", "5", "--quiet")
    assert res.returncode == 0, res.stderr
    assert server.requests == 5
    assert len(proj.data()) == 5
    res = run_cli("augment", str(proj.pipeline), "--limit", "10", "--quiet")
    assert res.returncode == 0, res.stderr
    assert server.requests == 10
    assert sorted(qid_of(e.body) for e in server.log[5:]) == [f"q{i:05d}" for i in range(5, 10)]
    assert [r["qid"] for r in proj.data()] == [f"q{i:05d}" for i in range(10)]
    proj.assert_accounted(proj.rows[:10])


def test_appending_input_rows_requests_only_the_new_rows(make_project, server):
    proj = make_project(rows=6)
    proj.augment()
    server.reset_counters()
    proj.set_rows(proj.rows + make_rows(3, start=6))
    proj.augment()
    assert sorted(qid_of(e.body) for e in server.log) == ["q00006", "q00007", "q00008"]
    assert [r["qid"] for r in proj.data()] == [r["qid"] for r in proj.rows]
    proj.assert_accounted()


def test_reask_conversation_is_cached_and_not_paid_for_twice(make_project, server):
    proj = make_project(rows=3)
    server.set_fault_fn(lambda i, body: Fault(kind="content", content="sorry, no JSON")
                        if qid_of(body) == "q00001" and not is_reask(body) else None)
    proj.augment()
    assert server.requests == 4
    assert len(proj.data()) == 3
    server.reset_counters()
    # a new output column forces every row through the record flow again: all from the cache
    proj.update(output={"columns": {"extra": "source.answer"}})
    stats = proj.augment()
    assert server.requests == 0 and stats.cache_hits == 4
    assert len(proj.data()) == 3


def test_every_stored_response_is_keyed_by_its_request(make_project, server):
    proj = make_project(rows=5)
    proj.augment()
    with sqlite3.connect(proj.run_dir / "cache.sqlite") as db:
        import json

        stored = [json.loads(r[0]) for r in db.execute("SELECT request FROM responses")]
    assert sorted(qid_of(r) for r in stored) == [r["qid"] for r in proj.rows]
    assert {r["model"] for r in stored} == {"gpt-4o-mini"}
    assert all(r["params"] == {"temperature": 0, "max_tokens": 256} for r in stored)


def test_rejected_row_stays_rejected_on_rerun_without_new_requests(make_project, server):
    proj = make_project(rows=4, quality={"reask": 0})
    server.set_fault_fn(lambda i, body: Fault(kind="content", content="nope") if qid_of(body) == "q00000" else None)
    proj.augment()
    assert [r["reason"] for r in proj.rejects()] == ["invalid_json"]
    server.set_fault_fn(None)
    server.reset_counters()
    proj.augment()
    assert server.requests == 0
    assert [r["reason"] for r in proj.rejects()] == ["invalid_json"]
    proj.assert_accounted()


def test_rows_whose_requests_failed_after_all_retries_are_retried_on_rerun(make_project, server):
    proj = make_project(rows=4, limits={"max_attempts": 2})
    server.set_fault_fn(lambda i, body: Fault(status=503) if qid_of(body) == "q00001" else None)
    first = proj.augment()
    assert dict(first.rejected) == {"request_failed": 1}
    server.set_fault_fn(None)
    server.reset_counters()
    second = proj.augment()
    assert server.requests == 1          # only the failed row is asked again; the others come from disk
    assert second.written == 1 and not second.rejected
    assert proj.rejects() == []
    assert len(proj.data()) == 4
    proj.assert_accounted()


def test_a_row_whose_connection_always_drops_is_a_connection_failed_reject_asked_again(make_project, server):
    proj = make_project(rows=4, limits={"max_attempts": 2})
    server.set_fault_fn(lambda i, body: Fault(kind="drop") if qid_of(body) == "q00001" else None)
    first = proj.augment()
    assert dict(first.rejected) == {"connection_failed": 1}
    server.set_fault_fn(None)
    server.reset_counters()
    proj.augment()
    assert server.requests == 1  # a setup reject: the rerun asks that row again
    proj.assert_accounted()
