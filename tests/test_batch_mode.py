"""Batch mode (provider.mode: batch) against the loopback server's Files + Batches endpoints: the same rows,
rejects and run dir as online at half the price; splitting; follow-up batches for error lines, expired
and failed batches, and re-asks; giving up after max_attempts; one retry layer; the shipped pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from datafactory.config.pipeline import load_pipeline
from datafactory.engine.augment import augment
from datafactory.engine.batch.split import split
from datafactory.engine.plan import plan
from datafactory.errors import ConfigError
from datafactory.testing.batch_api import api_for
from datafactory.testing.faults import default_responder
from datafactory.testing.loopback import LoopbackServer
from datafactory.testing.responders import gsm8k_responder
from tests.conftest import REPO, SENTINEL_KEY, Project, is_reask, qid_of

BATCH = {"mode": "batch", "batch": {"poll_s": 0.02}}


def batch_project(make_project: Any, rows: int = 20, **provider: Any) -> Project:
    return make_project(rows, provider={**BATCH, **provider})


def bad_every_fifth(body: dict[str, Any], index: int) -> str:
    """Invalid JSON for every fifth qid (first ask and re-ask alike): a content reject in both modes."""
    qid = qid_of(body) or "q00000"
    return "not json at all" if int(qid[1:]) % 5 == 0 else default_responder(body, index)


def by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in rows}


# ---------------------------------------------------------------------- same flow as online, half the price
def test_batch_run_writes_the_same_rows_and_rejects_as_online_at_half_the_price(make_project: Any,
                                                                               server: LoopbackServer) -> None:
    server.responder = bad_every_fifth
    proj = make_project(20, pricing={"input_per_1m": 1.0, "output_per_1m": 2.0})
    online = proj.augment()
    online_data, online_rejects = proj.data(), proj.rejects()
    chat_requests = server.requests
    shutil.rmtree(proj.run_dir)

    proj.update(provider=BATCH)
    batch = proj.augment()
    assert server.requests == chat_requests, "batch mode sent chat requests"
    assert by_id(proj.data()) == by_id(online_data)
    assert {r["id"]: r["reason"] for r in proj.rejects()} == {r["id"]: r["reason"] for r in online_rejects}
    assert {r["reason"] for r in proj.rejects()} == {"invalid_json"}
    proj.assert_accounted()
    api = api_for(server)
    assert max(api.submitted.values()) == 1
    assert batch.prompt_tokens == online.prompt_tokens and batch.completion_tokens == online.completion_tokens
    assert batch.cost_usd == pytest.approx(0.5 * online.cost_usd)
    section = proj.stats()["batch"]
    assert section["cost_usd"] == pytest.approx(0.5 * section["online_cost_usd"])
    assert section["running"] == [] and section["submitted_requests"] == sum(api.batch_sizes())


def test_reasks_go_into_a_follow_up_batch_of_only_those_requests(make_project: Any, server: LoopbackServer) -> None:
    def first_bad(body: dict[str, Any], index: int) -> str:
        return default_responder(body, index) if is_reask(body) else "{broken"

    server.responder = first_bad
    proj = batch_project(make_project, 12)
    proj.augment()
    api = api_for(server)
    assert api.batch_sizes() == [12, 12]
    assert len(proj.data()) == 12 and proj.rejects() == []
    second = list(api.batches.values())[1]["_lines"]
    assert all(is_reask(line["body"]) for line in second)


@pytest.mark.parametrize("kind", ["openai", "zhipuai"])
def test_both_providers_go_through_their_sdk_files_and_batches(make_project: Any, server: LoopbackServer,
                                                                kind: str) -> None:
    url = server.base_url if kind == "openai" else server.zhipu_base_url
    proj = batch_project(make_project, 6, kind=kind, base_url=url)
    proj.augment()
    api = api_for(server)
    assert api.calls["upload"] == 1 and api.calls["create"] == 1 and api.calls["content"] == 1
    endpoint = next(iter(api.batches.values()))["endpoint"]
    assert endpoint == ("/v1/chat/completions" if kind == "openai" else "/v4/chat/completions")
    lines = next(iter(api.batches.values()))["_lines"]
    assert {line["url"] for line in lines} == {endpoint}
    assert len(proj.data()) == 6


# ---------------------------------------------------------------------- splitting
def test_requests_are_split_by_max_requests(make_project: Any, server: LoopbackServer) -> None:
    proj = make_project(20, provider={"mode": "batch", "batch": {"poll_s": 0.02, "max_requests": 7}})
    stats = proj.augment()
    assert api_for(server).batch_sizes() == [7, 7, 6]
    assert stats.sections["batch"]["requests_per_batch"] == [7, 7, 6]
    assert len(proj.data()) == 20


def test_requests_are_split_by_max_bytes(make_project: Any, server: LoopbackServer) -> None:
    proj = make_project(10, provider={"mode": "batch", "batch": {"poll_s": 0.02, "max_bytes": 2500}})
    proj.augment()
    api = api_for(server)
    files = [api.files[b["input_file_id"]]["data"] for b in api.batches.values()]
    assert len(files) > 1 and all(len(f) <= 2500 for f in files)
    assert sum(api.batch_sizes()) == 10 and len(proj.data()) == 10


def test_split_keeps_order_and_sets_aside_lines_too_big_for_any_file() -> None:
    chunks, too_big = split([("a", 10), ("b", 10), ("huge", 100), ("c", 10)], max_requests=2, max_bytes=30)
    assert chunks == [(["a", "b"], 22), (["c"], 11)]
    assert too_big == ["huge"]


# ---------------------------------------------------------------------- follow-ups and giving up
def test_error_lines_go_into_a_follow_up_batch_of_only_those_rows(make_project: Any, server: LoopbackServer) -> None:
    seen: set[str] = set()

    def once(cid: str, body: dict[str, Any]) -> int | None:
        if qid_of(body) in ("q00003", "q00007") and cid not in seen:
            seen.add(cid)
            return 500
        return None

    api = api_for(server)
    api.line_error = once
    proj = batch_project(make_project, 10)
    stats = proj.augment()
    assert api.batch_sizes() == [10, 2]
    second = [qid_of(line["body"]) for line in list(api.batches.values())[1]["_lines"]]
    assert sorted(second) == ["q00003", "q00007"]
    assert len(proj.data()) == 10
    assert stats.sections["batch"]["errored_lines"] == 2


def test_a_request_gives_up_after_max_attempts_with_the_last_error(make_project: Any, server: LoopbackServer) -> None:
    api = api_for(server)
    api.line_error = lambda cid, body: 503 if qid_of(body) == "q00002" else None
    proj = batch_project(make_project, 5)
    proj.augment()
    assert api.batch_sizes() == [5, 1, 1, 1]  # limits.max_attempts: 4
    (rej,) = proj.rejects()
    assert rej["reason"] == "request_failed" and rej["attempts"] == 4 and "503" in rej["last_error"]
    assert len(proj.data()) == 4


def test_a_refused_line_is_not_resubmitted_and_a_rerun_asks_again(make_project: Any, server: LoopbackServer) -> None:
    api = api_for(server)
    api.line_error = lambda cid, body: 400 if qid_of(body) == "q00001" else None
    proj = batch_project(make_project, 4)
    proj.augment()
    assert api.batch_sizes() == [4]
    assert [r["reason"] for r in proj.rejects()] == ["http_400"]
    api.line_error = None
    proj.augment()  # a setup reject is asked again by a rerun, as online
    assert api.batch_sizes() == [4, 1]
    assert len(proj.data()) == 4 and proj.rejects() == []


@pytest.mark.parametrize("to_error_file", [False, True])
def test_an_expired_batch_resubmits_only_the_rows_it_did_not_answer(make_project: Any, server: LoopbackServer,
                                                                    to_error_file: bool) -> None:
    api = api_for(server)
    api.expire_after, api.expire_batches, api.expired_to_error_file = 6, 1, to_error_file
    proj = batch_project(make_project, 15)
    proj.augment()
    assert api.batch_sizes() == [15, 9]
    assert [b["status"] for b in api.batches.values()] == ["expired", "completed"]
    first = [line["custom_id"] for line in list(api.batches.values())[0]["_lines"]]
    second = [line["custom_id"] for line in list(api.batches.values())[1]["_lines"]]
    assert second == first[6:], "the answered rows were resubmitted (or the missing ones not)"
    assert len(proj.data()) == 15


def test_a_failed_batch_rejects_its_rows_as_setup_and_a_rerun_asks_again(make_project: Any,
                                                                        server: LoopbackServer) -> None:
    api = api_for(server)
    api.fail_batches = 1
    proj = batch_project(make_project, 5)
    proj.augment()
    assert {r["reason"] for r in proj.rejects()} == {"http_400"}
    assert "simulated validation failure" in proj.rejects()[0]["last_error"]
    proj.augment()
    assert api.batch_sizes() == [5, 5] and len(proj.data()) == 5


# ---------------------------------------------------------------------- one retry layer around the API calls
def test_file_and_batch_calls_are_retried_by_our_layer_not_the_sdk(make_project: Any, server: LoopbackServer) -> None:
    api = api_for(server)
    api.faults = {"upload": [500], "create": [429], "retrieve": [503], "content": [502]}
    proj = batch_project(make_project, 5)
    stats = proj.augment()
    assert api.calls["upload_refused"] == 1 and api.calls["upload"] == 1  # one failure, one retry: SDK retries off
    assert api.calls["create_refused"] == 1 and len(api.batches) == 1
    assert stats.retries >= 4
    assert len(proj.data()) == 5


def test_a_create_whose_answer_was_lost_is_found_not_made_twice(make_project: Any, server: LoopbackServer) -> None:
    api = api_for(server)
    api.fail_after = {"create": [503]}  # the batch is made, the answer is a 503: the retry must look it up
    proj = batch_project(make_project, 8)
    proj.augment()
    assert len(api.batches) == 1 and max(api.submitted.values()) == 1
    assert api.calls["list"] >= 1 and len(proj.data()) == 8


# ---------------------------------------------------------------------- config, price, the shipped pipeline
def test_mode_and_batch_keys_are_checked_with_file_and_key(make_project: Any) -> None:
    proj = make_project(2, provider={"mode": "bulk"})
    with pytest.raises(ConfigError, match=r"provider\.mode.*must be one of online, batch"):
        load_pipeline(proj.pipeline)
    proj.update(provider={"mode": "batch", "batch": {"max_requests": 0}})
    with pytest.raises(ConfigError, match=r"provider\.batch\.max_requests.*greater than 0"):
        load_pipeline(proj.pipeline)
    proj.update(provider={"batch": {"max_requests": 5, "polls": 1}})
    with pytest.raises(ConfigError, match=r"provider\.batch\.polls.*unknown key.*poll_s"):
        load_pipeline(proj.pipeline)


def test_dry_run_prices_batch_mode_at_the_batch_share(make_project: Any) -> None:
    proj = make_project(10)
    online = plan(proj.pipeline)
    batch = plan(proj.pipeline, mode="batch")
    assert online.cost_usd and batch.cost_usd == pytest.approx(0.5 * online.cost_usd)
    proj.update(pricing={"batch_share": 0.25})
    assert plan(proj.pipeline, mode="batch").cost_usd == pytest.approx(0.25 * online.cost_usd)


@pytest.mark.parametrize("kind", ["openai", "zhipuai"])
def test_shipped_gsm8k_rephrase_runs_in_batch_mode_end_to_end(tmp_path: Path, api_env: str, kind: str) -> None:
    with LoopbackServer(responder=gsm8k_responder, expected_api_key=SENTINEL_KEY) as srv:
        url = srv.base_url if kind == "openai" else srv.zhipu_base_url
        stats = augment(REPO / "pipelines" / "gsm8k_rephrase.yaml", output=str(tmp_path / "run"), limit=40,
                        provider=kind, base_url=url, mode="batch")
        api = api_for(srv)
        assert srv.requests == 0 and len(api.batch_sizes()) == 1 and max(api.submitted.values()) == 1
        assert stats.sections["batch"]["collected"] == api.batch_sizes()[0] >= 35
        # each line's body is what the online request would be, structured output included
        body = next(iter(api.batches.values()))["_lines"][0]["body"]
        assert body["response_format"]["type"] == ("json_schema" if kind == "openai" else "json_object")
        assert ("n" in body) == (kind == "openai")
    out = tmp_path / "run" / "data" / "gsm8k_rephrase.jsonl"
    data = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(data) + sum(stats.total_rejected.values()) == 40
    assert len(data) >= 35 and (tmp_path / "run" / "dataset_info.json").is_file()


def test_a_batch_over_the_enqueued_token_cap_waits_for_ours_and_costs_no_attempt(make_project: Any,
                                                                                 server: LoopbackServer) -> None:
    api = api_for(server)
    api.token_limit_batches = 1
    proj = make_project(10, provider={"mode": "batch", "batch": {"poll_s": 0.02, "max_requests": 5}},
                        limits={"max_attempts": 1})
    stats = proj.augment()
    assert api.batch_sizes() == [5, 5, 5]
    assert [b["status"] for b in api.batches.values()] == ["failed", "completed", "completed"]
    assert len(proj.data()) == 10 and proj.rejects() == []
    assert stats.sections["batch"]["token_limit_waits"] == 1


def test_the_cost_limit_holds_in_batch_mode_and_a_higher_one_continues(make_project: Any,
                                                                        server: LoopbackServer) -> None:
    from datafactory.errors import BudgetExhausted

    proj = make_project(20, provider=BATCH, pricing={"input_per_1m": 1.0, "output_per_1m": 2.0},
                        limits={"max_cost_usd": 0.0008})
    with pytest.raises(BudgetExhausted) as stopped:
        proj.augment()
    stats = stopped.value.stats
    written = len(proj.data())
    assert 0 < written < 20 and stats.stopped == "BudgetExhausted"
    assert stats.sections["batch"]["cost_usd"] <= 0.0008
    assert len(api_for(server).batch_sizes()) > 1  # worst cases released as answers came in: more fit
    proj.augment(max_cost=1.0)
    assert len(proj.data()) == 20 and max(api_for(server).submitted.values()) == 1


def test_a_batch_file_over_a_megabyte_is_uploaded_whole(make_project: Any, server: LoopbackServer) -> None:
    rows = [{"qid": f"q{i:05d}", "question": f"Sam has {i} apples. " + "word " * 400, "answer": f"#### {i}"}
            for i in range(600)]
    proj = make_project(rows, provider=BATCH)
    proj.augment()
    api = api_for(server)
    (batch,) = api.batches.values()
    assert len(api.files[batch["input_file_id"]]["data"]) > 1024 * 1024
    assert api.batch_sizes() == [600] and len(proj.data()) == 600


def test_a_refused_response_format_steps_down_and_the_follow_up_batch_asks_without_it(
        make_project: Any, server: LoopbackServer) -> None:
    from datafactory.testing.capabilities import Capabilities

    server.capabilities = Capabilities(response_format="refuse_json_schema")
    proj = make_project(6, provider=BATCH, limits={"max_attempts": 1})
    stats = proj.augment()
    api = api_for(server)
    assert api.batch_sizes() == [6, 6]
    first, second = ([line["body"]["response_format"]["type"] for line in b["_lines"]] for b in api.batches.values())
    assert set(first) == {"json_schema"} and set(second) == {"json_object"}
    assert len(proj.data()) == 6 and proj.rejects() == []
    assert stats.sections["structured_output"]["sent"] == "json_object"


def test_a_request_too_big_for_any_batch_file_is_rejected_and_the_rest_go(make_project: Any,
                                                                          server: LoopbackServer) -> None:
    rows = [{"qid": "q00000", "question": "long " * 800, "answer": "#### 1"},
            *({"qid": f"q{i:05d}", "question": f"Sam has {i} apples.", "answer": f"#### {i}"} for i in range(1, 4))]
    proj = make_project(rows, provider={"mode": "batch", "batch": {"poll_s": 0.02, "max_bytes": 3000}})
    proj.augment()
    (rej,) = proj.rejects()
    assert rej["reason"] == "request_rejected" and "provider.batch.max_bytes" in rej["last_error"]
    assert len(proj.data()) == 3 and sum(api_for(server).batch_sizes()) == 3


def test_a_row_rejected_in_one_pass_is_not_redone_or_counted_again_by_later_passes(
        make_project: Any, server: LoopbackServer) -> None:
    def reask_q1(body: dict[str, Any], index: int) -> str:
        return "{broken" if qid_of(body) == "q00001" and not is_reask(body) else default_responder(body, index)

    server.responder = reask_q1
    api = api_for(server)
    api.line_error = lambda cid, body: 400 if qid_of(body) == "q00000" else None
    proj = batch_project(make_project, 4)
    stats = proj.augment()
    assert api.batch_sizes() == [4, 1]  # the re-ask of q00001 needs a third pass; q00000 was rejected in the second
    assert stats.sections["batch"]["passes"] == 3
    assert stats.rows_done == 4 and stats.rejected == {"http_400": 1} and stats.written == 3
    assert stats.rows_deferred == 0 and [r["reason"] for r in proj.rejects()] == ["http_400"]


def test_a_server_without_the_batch_api_is_a_config_error_not_a_reject_per_row(make_project: Any,
                                                                                server: LoopbackServer) -> None:
    api = api_for(server)
    api.faults = {"upload": [404] * 20}
    proj = batch_project(make_project, 5)
    with pytest.raises(ConfigError, match=r"provider\.mode: batch mode, but .* has no Files / Batches API"):
        proj.augment()
    assert proj.rejects() == [] and api.batches == {}
    proj.update(provider={"mode": "online"})
    proj.augment()
    assert len(proj.data()) == 5
