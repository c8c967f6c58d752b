"""Real servers' quirks: extra_body on the default transport, servers (and the zhipuai SDK) that ignore
``n``, ZhipuAI's pool and deadlines, FastAPI error bodies, litellm's renamed rate-limit headers."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections import Counter
from typing import Any

import pytest
from conftest import REPO, assert_no_traceback, cli_env, start_cli, wait_for

from datafactory import augment, load_pipeline
from datafactory.testing.faults import fastapi_error_body
from datafactory.testing.loopback import Fault, LoopbackServer

pytestmark = pytest.mark.timeout(60)

TRANSPORTS = {
    "http": {"kind": "openai", "transport": "http"},
    "sdk": {"kind": "openai", "transport": "sdk"},
    "zhipuai": {"kind": "zhipuai", "model": "glm-4-flash"},
}


def _provider(name: str, server: LoopbackServer, **params: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = dict(TRANSPORTS[name])
    if name == "zhipuai":
        cfg["base_url"] = server.zhipu_base_url
    if params:
        cfg["params"] = params
    return cfg


# ---------------------------------------------------------------------- D1: extra_body
def test_extra_body_goes_to_the_top_level_of_the_request_on_the_default_transport(make_project, server):
    extras = {"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1,
              "structured_outputs": {"json": {"type": "object"}}}
    proj = make_project(rows=2, provider={"params": {"temperature": 0, "max_tokens": 256, "extra_body": extras}})
    assert proj.augment().written == 2
    for entry in server.log:
        assert "extra_body" not in entry.body
        assert {k: entry.body[k] for k in extras} == extras
        assert entry.body["temperature"] == 0


# ---------------------------------------------------------------------- D2: servers that ignore n
def test_preference_pipeline_against_a_server_that_ignores_n_makes_up_the_samples(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-quirks")
    sample = REPO / "pipelines" / "data" / "gsm8k_train_sample.jsonl"
    rows = [json.loads(line) for line in sample.read_text().splitlines()[:3]]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers = {r["question"].strip(): r["answer"].split("####")[1].strip().replace(",", "") for r in rows}

    asked: Counter[str] = Counter()

    def responder(body: dict[str, Any], k: int) -> str:
        # a row's requests follow one another (the first, then the made-up ones): every other request *of a
        # row* gets a wrong answer, so each row has right and wrong samples however the rows interleave
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        answer = next(a for q, a in answers.items() if q in user)
        wrong = asked[user] % 2 == 1
        asked[user] += 1
        return json.dumps({"answer": f"Work.\n#### {int(float(answer)) + 7 if wrong else answer}"})

    with LoopbackServer(responder=responder, ignore_n=True) as server:
        pipe = load_pipeline(REPO / "pipelines" / "gsm8k_preference.yaml", input=str(inp),
                             output=str(tmp_path / "run"), base_url=server.base_url)
        stats = augment(pipe)
        assert server.requests == 3 * 4  # n=4: one request answered with 1 choice, 3 more asked
        assert stats.written == 3, dict(stats.rejected)
        assert sorted(e.body.get("n") for e in server.log)[:4] == [1, 1, 1, 2]
    # each made-up request is its own cache entry: asked again, every sample comes from the cache
    db = sqlite3.connect(tmp_path / "run" / "cache.sqlite")
    with db:
        db.execute("DELETE FROM outcomes")
    db.close()
    with LoopbackServer(responder=responder, ignore_n=True) as server:
        again = augment(load_pipeline(REPO / "pipelines" / "gsm8k_preference.yaml", input=str(inp),
                                      output=str(tmp_path / "run"), base_url=server.base_url))
        assert server.requests == 0 and again.cache_hits == 12


def test_zhipuai_is_never_sent_n_and_the_samples_are_made_up(make_project, server):
    proj = make_project(rows=3, provider=_provider("zhipuai", server, temperature=0.7, max_tokens=256, n=2,
                                                   seed=5, top_k=20))
    stats = proj.augment()
    assert stats.written == 6 and server.requests == 6
    assert all("n" not in e.body for e in server.log)
    assert all(e.body["top_k"] == 20 for e in server.log)  # what create() has no keyword for: extra_body
    assert sorted(e.body.get("seed") for e in server.log) == [5, 5, 5, 6, 6, 6]  # the seed moves on
    ids = sorted(r["qid"] for r in proj.data())
    assert ids == ["q00000", "q00000", "q00001", "q00001", "q00002", "q00002"]


# ---------------------------------------------------------------------- D3: ZhipuAI pool, deadline, stop
@pytest.mark.timeout(30)
def test_zhipuai_runs_as_many_requests_at_once_as_the_concurrency(make_project, server):
    server.latency_s = 0.6
    proj = make_project(rows=64, provider=_provider("zhipuai", server), limits={"concurrency": 64})
    assert proj.augment().written == 64
    assert server.max_in_flight == 64  # the SDK's own pool stops at 50


@pytest.mark.timeout(30)
@pytest.mark.parametrize("transport", ["sdk", "zhipuai"])
def test_timeout_s_is_a_total_deadline_for_a_body_trickling_a_byte_at_a_time(make_project, server, transport):
    proj = make_project(rows=2, provider=_provider(transport, server), limits={"concurrency": 2, "timeout_s": 1.5})
    server.set_fault_fn(lambda i, body: Fault(kind="trickle", trickle_s=0.2) if i == 0 else None)
    started = time.monotonic()
    stats = proj.augment()
    assert time.monotonic() - started < 8  # the trickle alone would take minutes
    assert stats.written == 2 and stats.retries == 1


@pytest.mark.timeout(40)
def test_sigterm_with_hung_zhipuai_requests_exits_without_waiting_for_them(make_project, server):
    proj = make_project(rows=8, provider=_provider("zhipuai", server), limits={"concurrency": 4, "timeout_s": 60})
    server.set_fault_fn(lambda i, body: Fault(kind="hang", hang_s=120))
    env = cli_env()
    proc = start_cli("augment", str(proj.pipeline), "--quiet", env=env)
    try:
        wait_for(lambda: server.stats()["in_flight"] >= 4, timeout=20)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert took < 8, took  # 3 s of grace for requests on the wire, then out
    assert_no_traceback(err)


# ---------------------------------------------------------------------- D4: FastAPI error bodies
@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
@pytest.mark.parametrize(("status", "detail", "shown"), [
    (422, [{"loc": ["body", "temperature"], "msg": "Input should be a valid number", "type": "float_parsing"}],
     "body.temperature: Input should be a valid number"),
    (404, "Model qwen-7b not found; try /v1/models", "Model qwen-7b not found; try /v1/models"),
])
def test_fastapi_error_bodies_show_the_servers_detail(make_project, server, transport, status, detail, shown):
    proj = make_project(rows=1, provider=_provider(transport, server))
    server.set_fault_fn(lambda i, body: Fault(kind="body", status=status, body=fastapi_error_body(detail)))
    proj.augment()
    (rej,) = proj.rejects()
    assert rej["reason"] == f"http_{status}"
    assert rej["last_error"] == f"HTTP {status}: {shown}"


# ---------------------------------------------------------------------- D5: litellm's header names
@pytest.mark.timeout(30)
@pytest.mark.parametrize("headers", [
    {"llm_provider-retry-after": "1.5"},
    {"llm_provider-x-ratelimit-remaining-requests": "0", "llm_provider-x-ratelimit-reset-requests": "1.5s"},
])
def test_litellm_renamed_retry_headers_on_a_429_are_honoured(make_project, server, headers):
    proj = make_project(rows=1, limits={"concurrency": 1})
    server.enqueue(Fault(status=429, headers=headers))
    assert proj.augment().written == 1
    assert server.requests == 2
    assert server.log[1].t_start - server.log[0].t_end >= 1.5


@pytest.mark.timeout(30)
def test_litellm_renamed_ratelimit_headers_on_a_success_pause_the_run(make_project, server):
    proj = make_project(rows=2, limits={"concurrency": 1})
    server.enqueue(Fault(status=200, headers={"llm_provider-x-ratelimit-remaining-requests": "0",
                                              "llm_provider-x-ratelimit-reset-requests": "1.5s"}))
    assert proj.augment().written == 2
    assert server.log[1].t_start - server.log[0].t_end >= 1.4
