"""OpenAI-compatible chat completions through the official ``openai`` SDK (``transport: sdk``).

``AsyncOpenAI`` with the aiohttp transport and ``max_retries=0``: the engine's retry layer is the
only one, so a 429 is never retried by the SDK *and* by us (retry amplification).
"""

from __future__ import annotations

from typing import Any

from datafactory.errors import BadResponse, ConnectionFailed, RequestTimedOut
from datafactory.providers.base import Completion, completion_from_openai_json, pick_rate_headers
from datafactory.providers.status import error_for_status


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

    def __repr__(self) -> str:
        return f"OpenAISDKProvider(base_url={str(self._client.base_url)!r})"

    async def complete(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        oa = self._openai
        raw: Any = None
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                model=model, messages=messages, **params)  # type: ignore[arg-type]
            headers = pick_rate_headers(raw.headers)
            data = raw.http_response.json()
        except oa.APIStatusError as exc:
            raise error_for_status(exc.status_code, _message(exc), exc.response.headers) from None
        except oa.APITimeoutError:
            raise RequestTimedOut(f"request timed out after {self._timeout_s:g}s") from None
        except oa.APIConnectionError as exc:
            raise ConnectionFailed(f"connection problem: {type(exc.__cause__ or exc).__name__}") from None
        except ValueError as exc:  # body is not JSON (HTML error page, empty, cut short)
            raise BadResponse(f"status 200 but the body is not JSON: {exc}", status=200,
                              raw=_body_start(raw)) from None
        return completion_from_openai_json(data, headers)

    async def aclose(self) -> None:
        await self._client.close()


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
    return str(getattr(exc, "message", ""))[:500]


def _body_start(raw: Any) -> str:
    try:
        return str(raw.http_response.content[:4000].decode("utf-8", "replace")) if raw is not None else ""
    except Exception:  # the body could not be read at all
        return ""
