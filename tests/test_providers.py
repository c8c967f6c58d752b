"""Every provider (raw aiohttp, the openai SDK over aiohttp, the zhipuai SDK) completes a run against
the loopback server and maps errors the same way: only our retry layer retries."""

from __future__ import annotations

import pytest
from conftest import SENTINEL_KEY, qid_of

from datafactory.errors import AuthenticationFailed
from datafactory.testing.loopback import Fault

pytestmark = pytest.mark.timeout(60)

PROVIDERS = {
    "http": {"kind": "openai", "transport": "http"},
    "sdk": {"kind": "openai", "transport": "sdk"},
    "zhipuai": {"kind": "zhipuai"},
}


@pytest.fixture(params=sorted(PROVIDERS))
def provider_project(request, make_project, server):
    def make(**changes):
        cfg = dict(PROVIDERS[request.param])
        if cfg["kind"] == "zhipuai":
            cfg["base_url"] = server.zhipu_base_url
            cfg["model"] = "glm-4-flash"
        changes.setdefault("limits", {})
        return make_project(provider=cfg, **changes)

    make.name = request.param
    return make


def _calls(server, qid):
    return [e for e in server.log if qid_of(e.body) == qid]


def test_small_run_completes(provider_project, server):
    proj = provider_project(rows=6)
    stats = proj.augment()
    assert server.requests == 6
    assert len(proj.data()) == 6 and proj.rejects() == []
    assert stats.prompt_tokens > 0
    assert all(e.authorization == f"Bearer {SENTINEL_KEY}" for e in server.log)
    if provider_project.name == "zhipuai":
        assert all(e.body["model"] == "glm-4-flash" for e in server.log)
    proj.assert_accounted()


def test_5xx_is_retried_only_by_our_layer(provider_project, server):
    proj = provider_project(rows=3, limits={"concurrency": 1, "max_attempts": 3})
    server.set_fault_fn(lambda i, body: Fault(status=503) if qid_of(body) == "q00001" else None)
    proj.augment()
    # exactly max_attempts requests: the SDKs (which would retry 429s and 5xx alike) add none of their own
    assert len(_calls(server, "q00001")) == 3
    (rej,) = proj.rejects()
    assert rej["reason"] == "request_failed" and rej["attempts"] == 3
    proj.assert_accounted()


def test_429_then_success_is_written(provider_project, server):
    proj = provider_project(rows=2, limits={"concurrency": 1})
    server.enqueue(Fault(status=429, headers={"Retry-After": "0.2"}))
    stats = proj.augment()
    assert server.requests == 3 and stats.rate_limited == 1
    assert server.log[1].t_start - server.log[0].t_end >= 0.2
    assert len(proj.data()) == 2


def test_400_rejects_the_row_after_one_request(provider_project, server):
    proj = provider_project(rows=3)
    server.set_fault_fn(lambda i, body: Fault(status=400) if qid_of(body) == "q00000" else None)
    proj.augment()
    assert len(_calls(server, "q00000")) == 1
    (rej,) = proj.rejects()
    assert rej["reason"] == "http_400" and rej["attempts"] == 1
    proj.assert_accounted()


def test_401_stops_the_run(provider_project, server, monkeypatch):
    proj = provider_project(rows=20, limits={"concurrency": 2})
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-the-right-one")
    monkeypatch.setenv("ZHIPUAI_API_KEY", "sk-not-the-right-one")
    with pytest.raises(AuthenticationFailed, match="check your API key"):
        proj.augment()
    assert 1 <= server.requests <= 2
    assert proj.data() == [] and proj.rejects() == []


@pytest.mark.parametrize("fault", [Fault(status=503), Fault(kind="drop"), Fault(kind="html"),
                                   Fault(kind="truncated_json")], ids=["503", "drop", "html", "truncated"])
def test_transient_failures_are_retried(provider_project, server, fault):
    proj = provider_project(rows=2, limits={"concurrency": 1})
    server.enqueue(fault)
    stats = proj.augment()
    assert server.requests == 3 and stats.retries == 1
    assert len(proj.data()) == 2
    proj.assert_accounted()


def test_persistent_html_is_rejected_as_bad_response_with_the_body(provider_project, server):
    proj = provider_project(rows=2, limits={"max_attempts": 2})
    server.set_fault_fn(lambda i, body: Fault(kind="html") if qid_of(body) == "q00001" else None)
    proj.augment()
    (rej,) = proj.rejects()
    assert rej["reason"] == "bad_response" and rej["attempts"] == 2
    assert "Bad Gateway" in (rej["raw_output"] or "")
    proj.assert_accounted()


def test_hung_request_times_out_and_is_retried(provider_project, server):
    proj = provider_project(rows=1, limits={"timeout_s": 0.5})
    server.enqueue(Fault(kind="hang", hang_s=10))
    proj.augment()
    assert server.requests == 2
    assert 0.5 <= server.log[1].t_start - server.log[0].t_start < 1.8
    assert len(proj.data()) == 1


def test_provider_reprs_show_no_key(provider_project, server):
    from datafactory.config.pipeline import load_pipeline
    from datafactory.providers.registry import create_provider

    proj = provider_project(rows=1)
    pipe = load_pipeline(proj.pipeline)
    provider = create_provider(pipe.provider, api_key=SENTINEL_KEY, timeout_s=5, concurrency=2)
    try:
        assert SENTINEL_KEY not in repr(provider)
        assert "127.0.0.1" in repr(provider)
    finally:
        import asyncio

        asyncio.run(provider.aclose())


def test_provider_flag_switches_a_pipeline_to_zhipuai(make_project, server):
    from conftest import cli_env, run_cli

    proj = make_project(rows=3)
    env = cli_env()
    del env["OPENAI_API_KEY"]  # --provider zhipuai reads ZHIPUAI_API_KEY
    res = run_cli("augment", str(proj.pipeline), "--provider", "zhipuai", "--base-url", server.zhipu_base_url,
                  "--model", "glm-4-flash", "--quiet", env=env)
    assert res.returncode == 0, res.stderr
    assert server.requests == 3 and {e.body["model"] for e in server.log} == {"glm-4-flash"}
    proj.assert_accounted()
