"""A loopback OpenAI-compatible fake chat-completions server for tests and benchmarks.

It lets the engine be exercised end to end without network access or API spend: the real
``openai.AsyncOpenAI`` / ``zhipuai.ZhipuAI`` clients (or raw aiohttp) talk to it over
127.0.0.1, and tests script latency and faults (429 with Retry-After, 5xx, dropped
connections, hangs, HTML / empty / truncated bodies, custom content) per request.

In-process: ``with LoopbackServer(latency_s=0.05) as server: server.enqueue(Fault(status=429))``
(its own event loop runs in a daemon thread). Subprocess (benchmarks), until SIGTERM/SIGINT::

    python -m datafactory.testing.loopback --port 0 --latency 0.2 [--responder gsm8k] [--fault-rate 0.05]

prints one line ``LISTENING http://127.0.0.1:PORT/v1``; ``GET /_stats`` returns the counters
as JSON and ``POST /_reset`` resets them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from datafactory.testing.capabilities import Capabilities
from datafactory.testing.faults import (
    HTML_BODY,
    Fault,
    FaultFn,
    Responder,
    completion_body,
    default_responder,
    error_body,
    fenced_responder,
    last_user_message,
    think_responder,
    transient_fault_fn,
)

__all__ = ["Fault", "LoopbackServer", "RequestLog", "default_responder", "fenced_responder"]
__all__ += ["think_responder", "transient_fault_fn"]

_JSON = "application/json"


@dataclass
class RequestLog:
    """One chat-completion request as the server saw it (``status`` 0 = no status was sent)."""

    index: int
    t_start: float
    t_end: float | None
    status: int
    body: dict[str, Any]
    authorization: str | None


class LoopbackServer:
    """Fake OpenAI-compatible server on a random free loopback port (see module docstring).

    Counters (``requests``, ``in_flight``, ``max_in_flight``, ``statuses``, ``log``) are only
    mutated under a lock; ``latency_s`` and ``responder`` may be reassigned at any time.
    ``keep_log=False`` skips the per-request log (for long benchmarks).
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        responder: Responder | None = None,
        expected_api_key: str | None = None,
        ratelimit_headers: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        keep_log: bool = True,
        ignore_n: bool = False,
        capabilities: Capabilities | None = None,
    ) -> None:
        self.latency_s = latency_s
        # like llama.cpp and Ollama: one choice whatever ``n`` asks for
        self.ignore_n = ignore_n
        self.capabilities = capabilities  # response_format honoured/refused, K at once, reasoning fields
        self.responder: Responder = responder or default_responder
        self.expected_api_key = expected_api_key
        self.ratelimit_headers = dict(ratelimit_headers) if ratelimit_headers else None
        self.host = host
        self.port = port
        self.keep_log = keep_log
        self._lock = threading.Lock()
        self._faults: collections.deque[Fault] = collections.deque()
        self._fault_fn: FaultFn | None = None
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.statuses: collections.Counter[int] = collections.Counter()
        self.log: list[RequestLog] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._stopped = False

    # ----------------------------------------------------------------- addresses
    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Base URL for the OpenAI SDK."""
        return f"{self.root_url}/v1"

    @property
    def zhipu_base_url(self) -> str:
        """Base URL for the ZhipuAI SDK (same handler)."""
        return f"{self.root_url}/api/paas/v4"

    # ----------------------------------------------------------------- scripting
    def enqueue(self, *faults: Fault) -> None:
        """The next requests, in arrival order, get these faults (FIFO)."""
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def set_fault_fn(self, fn: FaultFn | None) -> None:
        """``fn(request_index, body)`` is consulted when the FIFO is empty; None = normal reply."""
        self._fault_fn = fn

    def reset_counters(self) -> None:
        with self._lock:
            self.requests = 0
            self.max_in_flight = self.in_flight
            self.statuses = collections.Counter()
            self.log = []

    def stats(self) -> dict[str, Any]:
        """Snapshot of the counters (what ``GET /_stats`` returns)."""
        with self._lock:
            return {
                "requests": self.requests,
                "max_in_flight": self.max_in_flight,
                "in_flight": self.in_flight,
                "statuses": {str(k): v for k, v in self.statuses.items()},
            }

    def user_messages(self) -> list[str]:
        """Content of the last user message of each logged request, in arrival order."""
        with self._lock:
            entries = list(self.log)
        return [last_user_message(e.body) for e in entries]

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> LoopbackServer:
        """Serve from a daemon thread with its own event loop; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("LoopbackServer already started")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready,), name=f"loopback-{id(self):x}", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._start_error is not None:
            self._thread.join()
            raise RuntimeError("LoopbackServer failed to start") from self._start_error
        return self

    def stop(self) -> None:
        """Stop serving (idempotent); in-flight requests are cancelled after 0.2 s."""
        if self._stopped or self._thread is None:
            return
        self._stopped = True
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(event.set)
        self._thread.join(timeout=10)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _thread_main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.serve(on_ready=ready.set))
        except BaseException as exc:  # report startup failures to start()
            self._start_error = exc
        finally:
            ready.set()
            loop.close()

    async def serve(
        self, stop: asyncio.Event | None = None, on_ready: Callable[[], None] | None = None
    ) -> None:
        """Serve in the running loop until ``stop`` is set (or :meth:`stop` is called)."""
        self._stop_event = stop = stop or asyncio.Event()
        sock = socket.create_server((self.host, self.port), backlog=2048)
        self.port = sock.getsockname()[1]
        server = web.Server(self._dispatch, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=0.2)
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
            if on_ready is not None:
                on_ready()
            await stop.wait()
        finally:
            if self.capabilities is not None:
                self.capabilities.abandon()  # replies still made for clients that gave up
            await runner.cleanup()
            sock.close()

    # ----------------------------------------------------------------- handlers
    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.endswith("/chat/completions") and request.method == "POST":
            return await self._chat(request)
        from datafactory.testing.batch_api import api_for, is_batch_route
        if is_batch_route(path):  # the Files + Batches APIs of both providers (testing/batch_api.py)
            return await api_for(self).handle(request)
        if path == "/_stats" and request.method == "GET":
            return _json_response(200, orjson.dumps(self.stats()))
        if path == "/_reset" and request.method == "POST":
            self.reset_counters()
            return _json_response(200, b'{"ok":true}')
        if "/resolve/" in path and request.method in ("HEAD", "GET"):
            return self._hub_file(path)
        return _json_response(404, error_body(404, f"No route for {request.method} {path}"))

    # a Hugging Face Hub stand-in for HF_ENDPOINT: the repos in ``hub_models`` exist, others answer as the
    # real Hub does without a token (401 + X-Error-Code: RepoNotFound)
    hub_models: frozenset[str] = frozenset()

    def _hub_file(self, path: str) -> web.Response:
        repo = path.strip("/").split("/resolve/", 1)[0]
        if repo in self.hub_models:
            return web.Response(status=200, body=b"{}", content_type=_JSON)
        return web.Response(status=401, body=b'{"error":"Repository Not Found"}', content_type=_JSON,
                            headers={"X-Error-Code": "RepoNotFound"})

    async def _chat(self, request: web.BaseRequest) -> web.StreamResponse:
        t0 = time.monotonic()
        raw = await request.read()
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        auth = request.headers.get("Authorization")
        with self._lock:
            index = self.requests
            self.requests += 1
            self.in_flight += 1
            if self.in_flight > self.max_in_flight:
                self.max_in_flight = self.in_flight
            entry = RequestLog(index, t0, None, 0, body, auth)
            if self.keep_log:
                self.log.append(entry)
        status = 0
        try:
            if not isinstance(parsed, dict):
                status = 400
                return _json_response(400, error_body(400, "Request body is not a JSON object"))
            key = self.expected_api_key
            if key is not None and auth != f"Bearer {key}":
                status = 401
                return _json_response(401, error_body(401))
            if self.capabilities is not None:  # refusals, work slots (testing/capabilities.py)
                resp, status = await self.capabilities.serve(body, lambda: self._answer(request, body, index))
            else:
                resp, status = await self._answer(request, body, index)
            return resp
        finally:
            with self._lock:
                self.in_flight -= 1
                self.statuses[status] += 1
                entry.t_end = time.monotonic()
                entry.status = status

    async def _answer(self, request: web.BaseRequest, body: dict[str, Any],
                      index: int) -> tuple[web.StreamResponse, int]:
        fault: Fault | None = None
        if self._faults:
            with self._lock:
                fault = self._faults.popleft() if self._faults else None
        if fault is None:
            fault_fn = self._fault_fn
            if fault_fn is not None:
                fault = fault_fn(index, body)
        delay = fault.delay_s if fault is not None and fault.delay_s is not None else self.latency_s
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is None:
            return self._completion(body, index, None, "stop", None), 200
        return await self._faulted(request, body, index, fault)

    def _completion(
        self,
        body: dict[str, Any],
        index: int,
        content: str | None,
        finish_reason: str,
        extra: dict[str, str] | None,
    ) -> web.Response:
        if self.ignore_n:
            body = {k: v for k, v in body.items() if k != "n"}
        caps = self.capabilities
        payload = (caps.completion(body, index, self.responder, content, finish_reason) if caps is not None else
                   completion_body(body, index, self.responder, content=content, finish_reason=finish_reason))
        headers = {"Content-Type": _JSON}
        if self.ratelimit_headers:
            headers.update(self.ratelimit_headers)
        if extra:
            headers.update(extra)
        return web.Response(status=200, body=payload, headers=headers)

    async def _faulted(
        self, request: web.BaseRequest, body: dict[str, Any], index: int, fault: Fault
    ) -> tuple[web.StreamResponse, int]:
        kind = fault.kind
        if kind == "status":
            if fault.status == 200:
                return self._completion(body, index, None, fault.finish_reason, fault.headers), 200
            return (_json_response(fault.status, error_body(fault.status, fault.message), fault.headers),
                    fault.status)
        if kind == "content":
            return self._completion(body, index, fault.content, fault.finish_reason, fault.headers), 200
        if kind == "hang":
            await asyncio.sleep(fault.hang_s)
            return self._completion(body, index, None, fault.finish_reason, fault.headers), 200
        if kind == "drop":
            # Close (FIN) without a byte of response; the response returned below cannot be
            # written to the closing transport, which aiohttp treats as a client disconnect.
            _close_transport(request)
            return web.Response(status=204), 0
        if kind == "html":
            headers = {"Content-Type": "text/html", **fault.headers}
            return web.Response(status=200, body=HTML_BODY, headers=headers), 200
        if kind == "empty":
            return _json_response(200, b"", fault.headers), 200
        if kind == "body":
            return _json_response(fault.status, fault.body or b"", fault.headers), fault.status
        if kind == "trickle":
            payload = completion_body(body, index, self.responder, finish_reason=fault.finish_reason)
            resp = web.StreamResponse(status=200, headers={"Content-Type": _JSON, **fault.headers})
            resp.content_length = len(payload)
            await resp.prepare(request)
            for i in range(len(payload)):
                await resp.write(payload[i:i + 1])
                await asyncio.sleep(fault.trickle_s)
            await resp.write_eof()
            return resp, 200
        payload = completion_body(body, index, self.responder, finish_reason=fault.finish_reason)
        half = payload[: len(payload) // 2]
        if kind == "truncated_json":
            return _json_response(200, half, fault.headers), 200
        # drop_mid: full Content-Length announced, half the body sent, then the connection closed.
        resp = web.StreamResponse(status=200, headers={"Content-Type": _JSON, **fault.headers})
        resp.content_length = len(payload)
        await resp.prepare(request)
        await resp.write(half)
        _close_transport(request)
        return resp, 0


def _json_response(status: int, payload: bytes, extra: dict[str, str] | None = None) -> web.Response:
    headers = {"Content-Type": _JSON}
    if extra:
        headers.update(extra)
    return web.Response(status=status, body=payload, headers=headers)


def _close_transport(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


if __name__ == "__main__":  # subprocess mode (benchmarks); the flags live in testing/serve.py
    from datafactory.testing.serve import main

    sys.exit(main())
