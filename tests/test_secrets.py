"""The API key goes to the server's Authorization header and nowhere else: not into the run dir,
stdout/stderr, exception texts, or the reprs of the config and provider objects."""

from __future__ import annotations

import dataclasses
import json
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import SENTINEL_KEY, qid_of, run_cli

from datafactory.config.pipeline import load_pipeline
from datafactory.errors import AuthenticationFailed
from datafactory.testing.loopback import Fault

pytestmark = pytest.mark.timeout(60)

KEY_BYTES = SENTINEL_KEY.encode()


def _assert_no_key_under(path):
    files = [p for p in path.rglob("*") if p.is_file()]
    assert files
    for p in files:
        assert KEY_BYTES not in p.read_bytes(), f"API key found in {p}"


@pytest.mark.parametrize("transport", ["http", "sdk"])
def test_key_is_sent_to_the_server_and_written_nowhere(make_project, server, transport):
    proj = make_project(rows=12, provider={"transport": transport}, limits={"max_attempts": 2})

    def faults(index, body):
        qid = qid_of(body)
        return {"q00001": Fault(status=400), "q00002": Fault(status=500), "q00003": Fault(kind="html"),
                "q00004": Fault(kind="content", content="not json")}.get(qid)

    server.set_fault_fn(faults)
    server.enqueue(Fault(status=429, headers={"Retry-After": "0.1"}))
    with proj.input.open("a") as fh:
        fh.write("not json either\n")
    res = run_cli("augment", str(proj.pipeline))  # progress lines on, too
    assert res.returncode == 0, res.stderr
    assert all(e.authorization == f"Bearer {SENTINEL_KEY}" for e in server.log)
    assert SENTINEL_KEY not in res.stdout and SENTINEL_KEY not in res.stderr
    assert len(proj.rejects()) == 5
    _assert_no_key_under(proj.run_dir)


class _EchoingAuthServer:
    """Replies 400 to the first request and 401 after, both echoing the Authorization header in the
    error message — as some gateways do."""

    def __init__(self):
        calls = self.calls = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                calls.append(self.headers.get("Authorization"))
                status = 400 if len(calls) == 1 else 401
                body = json.dumps({"error": {"message": f"rejected credentials {self.headers.get('Authorization')}",
                                             "type": "invalid_request_error"}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def echo_server():
    srv = _EchoingAuthServer()
    yield srv
    srv.stop()


def test_key_echoed_by_the_server_is_redacted_from_rejects_and_stderr(make_project, echo_server):
    proj = make_project(rows=5, provider={"base_url": echo_server.base_url}, limits={"concurrency": 1})
    res = run_cli("augment", str(proj.pipeline), "--quiet")
    assert res.returncode == 1
    assert echo_server.calls[0] == f"Bearer {SENTINEL_KEY}"
    assert "check your API key" in res.stderr
    assert "rejected credentials" in res.stderr  # the server's message is shown, with the key masked
    assert SENTINEL_KEY not in res.stderr and SENTINEL_KEY not in res.stdout
    (rej,) = proj.rejects()
    assert rej["reason"] == "http_400" and "rejected credentials" in rej["last_error"]
    _assert_no_key_under(proj.run_dir)


def test_key_echoed_by_the_server_is_not_in_the_exception_text(make_project, echo_server):
    proj = make_project(rows=5, provider={"base_url": echo_server.base_url}, limits={"concurrency": 1})
    with pytest.raises(AuthenticationFailed) as info:
        proj.augment()
    assert SENTINEL_KEY not in str(info.value)
    assert SENTINEL_KEY not in "".join(traceback.format_exception(info.value))


def test_pipeline_and_provider_objects_do_not_show_the_key(make_project, server):
    import asyncio

    from datafactory.providers.registry import api_key_for, create_provider

    proj = make_project(rows=1)
    pipe = load_pipeline(proj.pipeline)
    assert SENTINEL_KEY not in repr(pipe) and SENTINEL_KEY not in str(pipe.resolved())
    key = api_key_for(pipe.provider)
    assert key == SENTINEL_KEY
    for changes in ({"transport": "http"}, {"transport": "sdk"}, {"kind": "zhipuai"}):
        provider = create_provider(dataclasses.replace(pipe.provider, **changes), api_key=key, timeout_s=5,
                                   concurrency=2)
        try:
            assert SENTINEL_KEY not in repr(provider) and SENTINEL_KEY not in str(provider)
        finally:
            asyncio.run(provider.aclose())


def test_wrong_key_error_does_not_echo_the_key_we_sent(make_project, server, monkeypatch):
    wrong = "sk-WRONG-ae01f5c37b9d4e2a"
    proj = make_project(rows=3)
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    with pytest.raises(AuthenticationFailed) as info:
        proj.augment()
    assert wrong not in str(info.value)
    assert all(wrong.encode() not in p.read_bytes() for p in proj.run_dir.rglob("*") if p.is_file())
