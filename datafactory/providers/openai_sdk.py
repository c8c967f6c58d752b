"""OpenAI-compatible chat completions through the official ``openai`` SDK (``transport: sdk``).

``AsyncOpenAI`` with the aiohttp transport and ``max_retries=0``: the engine's retry layer is the
only one, so a 429 is never retried by the SDK *and* by us (retry amplification).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import orjson

from datafactory.errors import BadResponse, ConnectionFailed, RequestTimedOut
from datafactory.providers.base import Completion, completion_from_openai_json, pick_rate_headers
from datafactory.providers.status import error_for_status, error_message
from datafactory.secrets import redact


class OpenAISDKProvider:
    name = "openai"

    def __init__(self, *, api_key: str, base_url: str | None, timeout_s: float, concurrency: int) -> None:
        import openai

        try:
            http_client: Any = openai.DefaultAioHttpClient()
        except Exception:  # openai without the [aiohttp] extra: fall back to its default transport
            http_client = None
        self._openai = openai
        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0,
                                          timeout=timeout_s, http_client=http_client)
        self._timeout_s = timeout_s
        from openai.resources.chat.completions import AsyncCompletions

        self._keywords = frozenset(inspect.signature(AsyncCompletions.create).parameters) - {"self", "extra_body"}

    def __repr__(self) -> str:
        return f"OpenAISDKProvider(base_url={str(self._client.base_url)!r})"

    async def complete(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        oa = self._openai
        raw: Any = None
        try:
            # the SDK's timeout is per read: a body trickling one byte a second would never end; this
            # makes ``timeout_s`` the total deadline, as on the default transport
            async with asyncio.timeout(self._timeout_s):
                raw = await self._client.chat.completions.with_raw_response.create(
                    model=model, messages=messages, **self.sdk_arguments(params))  # type: ignore[arg-type]
                headers = pick_rate_headers(raw.headers)
                body = raw.http_response.content
            data = orjson.loads(body)
        except oa.APIStatusError as exc:
            raise error_for_status(exc.status_code, error_message(_error_body(exc)), exc.response.headers) from None
        except (oa.APITimeoutError, TimeoutError):
            raise RequestTimedOut(f"request timed out after {self._timeout_s:g}s") from None
        except oa.APIConnectionError as exc:
            raise ConnectionFailed(f"connection problem: {type(exc.__cause__ or exc).__name__}") from None
        except orjson.JSONDecodeError as exc:  # HTML, empty, cut short, nested deeper than 1024 levels
            raise BadResponse(f"status 200 but the body is not JSON: {exc}", status=200,
                              raw=_body_start(raw)) from None
        return completion_from_openai_json(data, headers)

    def sdk_arguments(self, params: dict[str, Any]) -> dict[str, Any]:
        """``create()`` keywords: the ones it knows as they are; server extras (``top_k``,
        ``chat_template_kwargs``...) in ``extra_body``, which the SDK sends at the top level."""
        known = {k: v for k, v in params.items() if k in self._keywords}
        extra = {k: v for k, v in params.items() if k not in self._keywords and k != "extra_body"}
        if isinstance(params.get("extra_body"), dict):
            extra.update(params["extra_body"])
        return {**known, "extra_body": extra} if extra else known

    async def aclose(self) -> None:
        await self._client.close()


def _error_body(exc: Any) -> Any:
    """The error response's bytes (the SDK's own ``message`` keeps only "Error code: 422" for FastAPI
    bodies); its parsed ``body`` when the bytes cannot be had."""
    try:
        return exc.response.content
    except Exception:  # a streamed response that was not read
        return getattr(exc, "body", None) or getattr(exc, "message", "")


def _body_start(raw: Any) -> str:
    try:
        return redact(raw.http_response.content[:64_000].decode("utf-8", "replace"))[:4000] if raw is not None else ""
    except Exception:  # the body could not be read at all
        return ""
