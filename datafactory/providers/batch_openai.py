"""OpenAI's Files + Batches APIs through the official ``openai`` SDK (``AsyncOpenAI``, ``max_retries=0``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datafactory.errors import ConnectionFailed, RequestTimedOut
from datafactory.providers.batch_sdk import SdkBatchClient
from datafactory.providers.status import error_for_status, error_message


class OpenAIBatchClient(SdkBatchClient):
    name = "openai"
    url = "/v1/chat/completions"

    def __init__(self, *, api_key: str, base_url: str | None, timeout_s: float) -> None:
        import openai

        self._openai = openai
        # uploads and downloads of files up to 200 MB: a longer deadline than one chat request's
        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0,
                                          timeout=max(timeout_s, 600.0))

    def __repr__(self) -> str:
        return f"OpenAIBatchClient(base_url={str(self._client.base_url)!r})"

    async def _call(self, fn: Callable[[], Any]) -> Any:
        oa = self._openai
        try:
            return await fn()
        except oa.APIStatusError as exc:
            raise error_for_status(exc.status_code, error_message(_body(exc)), exc.response.headers) from None
        except oa.APITimeoutError:
            raise RequestTimedOut("the batch API call timed out") from None
        except oa.APIConnectionError as exc:
            raise ConnectionFailed(f"connection problem: {type(exc.__cause__ or exc).__name__}") from None

    async def aclose(self) -> None:
        await self._client.close()


def _body(exc: Any) -> Any:
    try:
        return exc.response.content
    except Exception:  # a streamed response that was not read
        return getattr(exc, "body", None) or getattr(exc, "message", "")
