"""ZhipuAI (GLM) through the official ``zhipuai`` SDK.

The SDK is synchronous, so calls run in a thread pool sized to the concurrency; its own retries are
off (``max_retries=0``) and its exceptions are mapped to ours by type and status code.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from datafactory.errors import BadResponse, ConnectionFailed, RequestTimedOut
from datafactory.providers.base import Completion, completion_from_openai_json, pick_rate_headers
from datafactory.providers.status import error_for_status


class ZhipuProvider:
    name = "zhipuai"

    def __init__(self, *, api_key: str, base_url: str | None, timeout_s: float, concurrency: int) -> None:
        from zhipuai import ZhipuAI

        self._client = ZhipuAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s)
        self._base_url = base_url  # the SDK keeps it only in a private attribute
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="zhipuai")
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"ZhipuProvider(base_url={self._base_url!r})"

    def _call(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        from zhipuai.core import _errors as zerr
        from zhipuai.core._constants import RAW_RESPONSE_HEADER

        http: Any = None
        try:
            # the raw-response header makes the SDK hand back the HTTP response (we need its headers)
            raw: Any = self._client.chat.completions.create(
                model=model, messages=messages, extra_headers={RAW_RESPONSE_HEADER: "true"}, **params)
            http = raw.http_response
            data = http.json()
            headers = pick_rate_headers(http.headers)
        except zerr.APIStatusError as exc:
            raise error_for_status(exc.status_code, str(exc)[:500], exc.response.headers) from None
        except zerr.APITimeoutError:
            raise RequestTimedOut(f"request timed out after {self._timeout_s:g}s") from None
        except zerr.APIConnectionError as exc:
            raise ConnectionFailed(f"connection problem: {type(exc.__cause__ or exc).__name__}") from None
        except ValueError as exc:
            raise BadResponse(f"status 200 but the body is not JSON: {exc}", status=200,
                              raw=_body_start(http)) from None
        return completion_from_openai_json(data, headers)

    async def complete(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, model, messages, params)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


def _body_start(http: Any) -> str:
    try:
        return str(http.content[:4000].decode("utf-8", "replace")) if http is not None else ""
    except Exception:  # the body could not be read at all
        return ""
