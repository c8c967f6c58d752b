"""OpenAI's Files + Batches APIs through the official ``openai`` SDK (``AsyncOpenAI``, ``max_retries=0``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from datafactory.errors import ConnectionFailed, RequestTimedOut
from datafactory.providers.batch_base import BatchInfo, info_from
from datafactory.providers.status import error_for_status, error_message

T = TypeVar("T")


class OpenAIBatchClient:
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

    def body(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
        extra = params.get("extra_body") if isinstance(params.get("extra_body"), dict) else {}
        return {"model": model, "messages": messages,
                **{k: v for k, v in params.items() if k != "extra_body"}, **(extra or {})}

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        oa = self._openai
        try:
            return await fn()
        except oa.APIStatusError as exc:
            raise error_for_status(exc.status_code, error_message(_body(exc)), exc.response.headers) from None
        except oa.APITimeoutError:
            raise RequestTimedOut("the batch API call timed out") from None
        except oa.APIConnectionError as exc:
            raise ConnectionFailed(f"connection problem: {type(exc.__cause__ or exc).__name__}") from None

    async def upload(self, filename: str, data: bytes) -> str:
        obj = await self._call(lambda: self._client.files.create(file=(filename, data, "application/jsonl"),
                                                                 purpose="batch"))
        return str(obj.id)

    async def create(self, input_file_id: str, metadata: dict[str, str], window: str) -> BatchInfo:
        return info_from(await self._call(lambda: self._client.batches.create(
            input_file_id=input_file_id, endpoint=self.url, completion_window=window,  # type: ignore[arg-type]
            metadata=metadata)))

    async def retrieve(self, batch_id: str) -> BatchInfo:
        return info_from(await self._call(lambda: self._client.batches.retrieve(batch_id)))

    async def list(self, after: str | None, limit: int) -> tuple[list[BatchInfo], bool]:
        async def page() -> Any:
            kw: dict[str, Any] = {"limit": limit}
            if after:
                kw["after"] = after
            return await self._client.batches.list(**kw)

        got = await self._call(page)
        return [info_from(b) for b in got.data], bool(getattr(got, "has_more", False))

    async def content(self, file_id: str) -> bytes:
        resp = await self._call(lambda: self._client.files.content(file_id))
        return bytes(resp.content)

    async def cancel(self, batch_id: str) -> BatchInfo:
        return info_from(await self._call(lambda: self._client.batches.cancel(batch_id)))

    async def aclose(self) -> None:
        await self._client.close()


def _body(exc: Any) -> Any:
    try:
        return exc.response.content
    except Exception:  # a streamed response that was not read
        return getattr(exc, "body", None) or getattr(exc, "message", "")
