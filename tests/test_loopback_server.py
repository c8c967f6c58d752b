"""Behaviour of the loopback fake OpenAI server used by the engine tests and benchmarks."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai
import pytest

from datafactory.testing.loopback import (
    Fault,
    LoopbackServer,
    default_responder,
    fenced_responder,
    think_responder,
)

pytestmark = pytest.mark.timeout(30)

BODY: dict[str, Any] = {
    "model": "gpt-test",
    "messages": [
        {"role": "system", "content": "You rephrase math problems."},
        {"role": "user", "content": "Tom has 3   apples.\nHow many?  #### 1,234"},
    ],
}


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


def _client(srv: LoopbackServer, **kw: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=srv.base_url, api_key="x", max_retries=0, **kw)


async def _create(srv: LoopbackServer, **kw: Any) -> Any:
    async with _client(srv, **kw) as client:
        return await client.chat.completions.create(model="gpt-test", messages=BODY["messages"], n=2)


async def _raw_post(srv: LoopbackServer, body: dict[str, Any] | None = None) -> tuple[int, Any, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{srv.base_url}/chat/completions", json=body or BODY) as resp,
    ):
        return resp.status, resp.headers, await resp.read()


def test_normal_reply_honours_n_and_echoes_model(server: LoopbackServer) -> None:
    resp = asyncio.run(_create(server))
    assert resp.model == "gpt-test"
    assert [c.index for c in resp.choices] == [0, 1]
    for i, choice in enumerate(resp.choices):
        assert choice.finish_reason == "stop"
        assert choice.message.role == "assistant"
        payload = json.loads(choice.message.content or "")
        assert payload["question"] == f"Rephrased: Tom has 3 apples. How many? #### 1,234 (variant {i})"
        assert payload["answer"].endswith("#### 1234")
    prompt_chars = sum(len(m["content"]) for m in BODY["messages"])
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == prompt_chars // 4
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert server.requests == 1
    assert server.statuses[200] == 1
    assert server.user_messages() == [BODY["messages"][1]["content"]]
    entry = server.log[0]
    assert entry.index == 0 and entry.status == 200 and entry.body["n"] == 2
    assert entry.t_end is not None and entry.t_end >= entry.t_start
    assert entry.authorization == "Bearer x"


def test_429_retry_after_header_is_visible_to_clients(server: LoopbackServer) -> None:
    server.enqueue(
        Fault(status=429, headers={"Retry-After": "2"}), Fault(status=429, headers={"Retry-After": "2"})
    )
    with pytest.raises(openai.RateLimitError) as info:
        asyncio.run(_create(server))
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.code == "rate_limit_exceeded"
    status, headers, body = asyncio.run(_raw_post(server))
    assert status == 429 and headers["Retry-After"] == "2"
    assert set(json.loads(body)["error"]) == {"message", "type", "code"}
    assert server.statuses == {429: 2}


def test_ratelimit_headers_are_added_to_successful_replies() -> None:
    with LoopbackServer(ratelimit_headers={"x-ratelimit-remaining-requests": "7"}) as srv:
        status, headers, _ = asyncio.run(_raw_post(srv))
    assert status == 200 and headers["x-ratelimit-remaining-requests"] == "7"


def test_drop_raises_a_connection_error_in_clients(server: LoopbackServer) -> None:
    server.enqueue(Fault(kind="drop"), Fault(kind="drop"))
    with pytest.raises(openai.APIConnectionError):
        asyncio.run(_create(server))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        asyncio.run(_raw_post(server))
    assert server.statuses == {0: 2}
    assert server.requests == 2


def test_drop_mid_sends_half_a_body_then_closes(server: LoopbackServer) -> None:
    server.enqueue(Fault(kind="drop_mid"), Fault(kind="drop_mid"))
    with pytest.raises(aiohttp.ClientPayloadError):
        asyncio.run(_raw_post(server))
    with pytest.raises(openai.APIConnectionError):
        asyncio.run(_create(server))
    assert server.statuses == {0: 2}


def test_hang_makes_a_client_time_out_and_frees_the_slot(server: LoopbackServer) -> None:
    server.enqueue(Fault(kind="hang"))
    t0 = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        asyncio.run(_create(server, timeout=0.5))
    assert time.monotonic() - t0 < 3
    deadline = time.monotonic() + 2
    while server.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.in_flight == 0  # the handler is cancelled when the client goes away
    assert server.statuses == {0: 1}


def test_bad_bodies_html_empty_and_truncated_json(server: LoopbackServer) -> None:
    server.enqueue(Fault(kind="html"), Fault(kind="empty"), Fault(kind="truncated_json"))
    status, headers, body = asyncio.run(_raw_post(server))
    assert (status, headers["Content-Type"], body) == (
        200,
        "text/html",
        b"<html><body>Bad Gateway</body></html>",
    )
    status, headers, body = asyncio.run(_raw_post(server))
    assert (status, headers["Content-Type"], body) == (200, "application/json", b"")
    status, _, body = asyncio.run(_raw_post(server))
    assert status == 200 and body.startswith(b'{"id":')
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


def test_content_fault_sets_content_and_finish_reason(server: LoopbackServer) -> None:
    server.enqueue(Fault(kind="content", content="not json", finish_reason="length"))
    resp = asyncio.run(_create(server))
    assert [(c.message.content, c.finish_reason) for c in resp.choices] == [("not json", "length")] * 2


def test_max_in_flight_reaches_the_client_concurrency() -> None:
    async def burst(srv: LoopbackServer) -> None:
        async with _client(srv) as client:
            await asyncio.gather(
                *(
                    client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"q{i}"}])
                    for i in range(20)
                )
            )

    with LoopbackServer(latency_s=0.2) as srv:
        t0 = time.monotonic()
        asyncio.run(burst(srv))
        elapsed = time.monotonic() - t0
        assert srv.max_in_flight == 20
        assert srv.in_flight == 0 and srv.requests == 20
        assert elapsed < 2.0
        assert sorted(srv.user_messages()) == sorted(f"q{i}" for i in range(20))
        srv.reset_counters()
        assert (srv.requests, srv.max_in_flight, srv.log, srv.statuses) == (0, 0, [], {})


def test_fifo_faults_take_priority_over_fault_fn_and_delay_overrides_latency() -> None:
    seen: list[int] = []

    def fault_fn(index: int, body: dict[str, Any]) -> Fault | None:
        seen.append(index)
        return Fault(status=503) if index == 1 else None

    async def run(srv: LoopbackServer) -> list[int]:
        return [(await _raw_post(srv))[0] for _ in range(4)]

    with LoopbackServer(latency_s=5.0) as srv:
        srv.set_fault_fn(fault_fn)
        srv.enqueue(Fault(status=500, delay_s=0))
        srv.latency_s = 0.0
        assert asyncio.run(run(srv)) == [500, 503, 200, 200]
        assert seen == [1, 2, 3]
        srv.set_fault_fn(None)
        srv.enqueue(Fault(delay_s=0.3))
        t0 = time.monotonic()
        assert asyncio.run(run(srv))[0] == 200
        assert time.monotonic() - t0 >= 0.3


def test_wrong_api_key_gets_401_with_openai_error_body() -> None:
    with LoopbackServer(expected_api_key="sk-right") as srv:
        with pytest.raises(openai.AuthenticationError) as info:
            asyncio.run(_create(srv))
        assert info.value.status_code == 401
        assert info.value.body == {
            "message": "Incorrect API key provided",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }

        async def good() -> Any:
            async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="sk-right", max_retries=0) as c:
                return await c.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )

        assert asyncio.run(good()).choices[0].message.content
        assert srv.statuses == {401: 1, 200: 1}
        assert [e.authorization for e in srv.log] == ["Bearer x", "Bearer sk-right"]


def test_zhipuai_sdk_gets_a_normal_reply(server: LoopbackServer) -> None:
    from zhipuai import ZhipuAI

    client = ZhipuAI(api_key="abc", base_url=server.zhipu_base_url, max_retries=0)
    resp = client.chat.completions.create(
        model="glm-4", messages=[{"role": "user", "content": "2+2? #### 4"}]
    )
    assert resp.model == "glm-4"
    assert json.loads(resp.choices[0].message.content)["answer"].endswith("#### 4")
    assert server.log[0].authorization == "Bearer abc"


def test_stats_and_reset_endpoints(server: LoopbackServer) -> None:
    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        server.enqueue(Fault(status=500))
        await _raw_post(server)
        await _raw_post(server)
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{server.root_url}/_stats") as r:
                before = await r.json()
            async with s.post(f"{server.root_url}/_reset") as r:
                assert r.status == 200
            async with s.get(f"{server.root_url}/_stats") as r:
                after = await r.json()
        return before, after

    before, after = asyncio.run(run())
    assert before == {"requests": 2, "max_in_flight": 1, "in_flight": 0, "statuses": {"500": 1, "200": 1}}
    assert after == {"requests": 0, "max_in_flight": 0, "in_flight": 0, "statuses": {}}


def test_subprocess_mode_prints_listening_and_answers() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "datafactory.testing.loopback", "--port", "0", "--latency", "0.01"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("LISTENING http://127.0.0.1:") and line.endswith("/v1")
        base_url = line.split()[1]

        async def run() -> tuple[Any, dict[str, Any]]:
            async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as c:
                resp = await c.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )
            async with aiohttp.ClientSession() as s, s.get(base_url.removesuffix("/v1") + "/_stats") as r:
                return resp, await r.json()

        resp, stats = asyncio.run(run())
        assert resp.choices[0].message.content
        assert stats["requests"] == 1 and stats["statuses"] == {"200": 1}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == ""  # exactly one line on stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_responders_extract_answers_and_wrap_output() -> None:
    body = {"messages": [{"role": "user", "content": "a #### 5"}, {"role": "user", "content": "  b\n c  "}]}
    out = json.loads(default_responder(body, 3))
    assert out == {
        "question": "Rephrased: b c (variant 3)",
        "answer": "Step 1: think. Step 2: compute. #### 42",
    }
    long_q = {"messages": [{"role": "user", "content": "x" * 500 + " #### 12,000"}]}
    assert json.loads(default_responder(long_q, 0))["question"] == f"Rephrased: {'x' * 300} (variant 0)"
    assert json.loads(default_responder(long_q, 0))["answer"].endswith("#### 12000")
    thought = think_responder(default_responder)(body, 0)
    assert thought.startswith("<think>") and json.loads(thought.split("</think>\n", 1)[1])
    fenced = fenced_responder(default_responder)(body, 0)
    assert "```json\n" in fenced and not fenced.startswith("```")
    assert json.loads(fenced.split("```json\n", 1)[1].split("\n```", 1)[0])["answer"].endswith("#### 42")
    with pytest.raises(ValueError):
        Fault(kind="nope")


def test_stop_is_idempotent_and_frees_hung_requests() -> None:
    srv = LoopbackServer().start()
    srv.enqueue(Fault(kind="hang"))

    async def fire() -> None:
        async with aiohttp.ClientSession() as s:
            task = asyncio.ensure_future(s.post(f"{srv.base_url}/chat/completions", json=BODY))
            while srv.in_flight == 0:
                await asyncio.sleep(0.01)
            t0 = time.monotonic()
            await asyncio.to_thread(srv.stop)
            assert time.monotonic() - t0 < 2
            with pytest.raises(aiohttp.ClientError):
                await task

    asyncio.run(fire())
    srv.stop()
