"""ZhipuAI (GLM) through the official ``zhipuai`` SDK.

The SDK is synchronous, so each call runs in a thread; its own retries are off (``max_retries=0``)
and its exceptions are mapped to ours by type and status code. What the SDK does not do, done here:

* its HTTP pool holds 50 connections whatever the concurrency: we hand it a client sized to ours;
* its ``timeout`` is per read, so a body trickling a byte a second never ends: ``timeout_s`` is made
  a total deadline (the caller stops waiting then; the thread's read stops at the same deadline);
* its ``create()`` has no ``n`` (and raises on keywords it does not know): ``n`` is never sent (the
  row processor asks again for the missing samples) and other parameters travel in ``extra_body``;
* the calls run in daemon threads, so a stop (SIGTERM) never waits for a hung request to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import orjson

from datafactory.errors import BadResponse, ConnectionFailed, RequestTimedOut
from datafactory.providers.base import Completion, completion_from_openai_json, pick_rate_headers
from datafactory.providers.status import error_for_status, error_message
from datafactory.secrets import redact

T = TypeVar("T")


class ZhipuProvider:
    name = "zhipuai"

    def __init__(self, *, api_key: str, base_url: str | None, timeout_s: float, concurrency: int) -> None:
        from zhipuai import ZhipuAI
        from zhipuai.api_resource.chat.completions import Completions

        deadline = Deadline(timeout_s)
        http = httpx.Client(timeout=httpx.Timeout(timeout_s),
                            limits=httpx.Limits(max_connections=concurrency + 8,
                                                max_keepalive_connections=concurrency + 8),
                            event_hooks={"request": [deadline.start], "response": [deadline.watch]})
        self._client = ZhipuAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s,
                               http_client=http)
        self._http = http
        self._base_url = base_url  # the SDK keeps it only in a private attribute
        self._timeout_s = timeout_s
        self._keywords = frozenset(inspect.signature(Completions.create).parameters) - {"self", "extra_body"}

    def __repr__(self) -> str:
        return f"ZhipuProvider(base_url={self._base_url!r})"

    def sdk_arguments(self, params: dict[str, Any]) -> dict[str, Any]:
        """``create()`` keywords: the ones it knows as they are, the rest in ``extra_body``, no ``n``."""
        known = {k: v for k, v in params.items() if k in self._keywords}
        extra = {k: v for k, v in params.items() if k not in self._keywords and k not in ("n", "extra_body")}
        if isinstance(params.get("extra_body"), dict):
            extra.update(params["extra_body"])
        extra.pop("n", None)
        return {**known, "extra_body": extra} if extra else known

    def _call(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        from zhipuai.core import _errors as zerr
        from zhipuai.core._constants import RAW_RESPONSE_HEADER

        http: Any = None
        try:
            # the raw-response header makes the SDK hand back the HTTP response (we need its headers)
            raw: Any = self._client.chat.completions.create(
                model=model, messages=messages, extra_headers={RAW_RESPONSE_HEADER: "true"},
                **self.sdk_arguments(params))
            http = raw.http_response
            headers = pick_rate_headers(http.headers)
            data = orjson.loads(http.content)
        except zerr.APIStatusError as exc:
            raise error_for_status(exc.status_code, error_message(_content(exc.response) or str(exc)),
                                   exc.response.headers) from None
        except zerr.APITimeoutError:
            raise RequestTimedOut(f"request timed out after {self._timeout_s:g}s") from None
        except zerr.APIConnectionError as exc:
            raise ConnectionFailed(f"connection problem: {type(exc.__cause__ or exc).__name__}") from None
        except orjson.JSONDecodeError as exc:  # HTML, empty, cut short, nested deeper than 1024 levels
            raise BadResponse(f"status 200 but the body is not JSON: {exc}", status=200,
                              raw=redact(_content(http).decode("utf-8", "replace"))[:4000]) from None
        return completion_from_openai_json(data, headers)

    async def complete(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        try:
            return await asyncio.wait_for(in_daemon_thread(self._call, model, messages, params), self._timeout_s)
        except TimeoutError:
            raise RequestTimedOut(f"request timed out after {self._timeout_s:g}s") from None

    async def aclose(self) -> None:
        self._client.close()
        self._http.close()


async def in_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in a fresh daemon thread. Unlike an executor's workers, a thread still blocked in a
    hung request is not joined when the interpreter exits, so a stop is never held up by one."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():  # the caller was cancelled (a stop): nobody waits for this any more
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def run() -> None:
        try:
            result: Any = (True, fn(*args))
        except BaseException as exc:  # handed to the awaiting coroutine, raised there
            result = (False, exc)
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(settle, *result)

    threading.Thread(target=run, name="zhipuai", daemon=True).start()
    return await future


class Deadline:
    """httpx event hooks that end every exchange ``seconds`` after it began, even one whose body keeps
    arriving a byte at a time (httpx's own timeouts are per read). Hooks rather than a transport, so the
    client keeps its defaults (proxies from the environment, TLS settings)."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._began: weakref.WeakKeyDictionary[httpx.Request, float] = weakref.WeakKeyDictionary()

    def start(self, request: httpx.Request) -> None:
        self._began[request] = time.monotonic()

    def watch(self, response: httpx.Response) -> None:
        began = self._began.get(response.request, time.monotonic())
        response.stream = _DeadlineStream(response.stream, began + self._seconds, response.request)


class _DeadlineStream(httpx.SyncByteStream):
    def __init__(self, inner: Any, deadline: float, request: httpx.Request) -> None:
        self._inner, self._deadline, self._request = inner, deadline, request

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            if time.monotonic() > self._deadline:
                raise httpx.ReadTimeout("the response did not complete within the total deadline",
                                        request=self._request)
            yield chunk

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


def _content(http: Any) -> bytes:
    try:
        return bytes(http.content) if http is not None else b""
    except Exception:  # the body could not be read at all
        return b""
