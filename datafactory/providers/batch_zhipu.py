"""ZhipuAI's Files + Batches APIs through the official ``zhipuai`` SDK (``max_retries=0``).

The SDK is synchronous: each call runs in a daemon thread (as the chat provider's do). Input lines go
to ``/v4/chat/completions``; ``n`` is never sent (the SDK and API have none) and ``extra_body`` is
merged into the body, as the chat provider sends it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from datafactory.errors import ConnectionFailed, RequestTimedOut
from datafactory.providers.batch_base import BatchInfo, info_from
from datafactory.providers.status import error_for_status, error_message
from datafactory.providers.zhipu import in_daemon_thread

T = TypeVar("T")


class ZhipuBatchClient:
    name = "zhipuai"
    url = "/v4/chat/completions"

    def __init__(self, *, api_key: str, base_url: str | None, timeout_s: float) -> None:
        from zhipuai import ZhipuAI

        self._client = ZhipuAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=max(timeout_s, 600.0))
        self._base_url = base_url

    def __repr__(self) -> str:
        return f"ZhipuBatchClient(base_url={self._base_url!r})"

    def body(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
        extra = params.get("extra_body") if isinstance(params.get("extra_body"), dict) else {}
        merged = {**{k: v for k, v in params.items() if k not in ("extra_body", "n")}, **(extra or {})}
        merged.pop("n", None)
        return {"model": model, "messages": messages, **merged}

    async def _call(self, fn: Callable[[], T]) -> T:
        return await in_daemon_thread(self._mapped, fn)

    @staticmethod
    def _mapped(fn: Callable[[], T]) -> T:
        from zhipuai.core import _errors as zerr

        try:
            return fn()
        except zerr.APIStatusError as exc:
            raise error_for_status(exc.status_code, error_message(_content(exc.response) or str(exc)),
                                   exc.response.headers) from None
        except zerr.APITimeoutError:
            raise RequestTimedOut("the batch API call timed out") from None
        except zerr.APIConnectionError as exc:
            raise ConnectionFailed(f"connection problem: {type(exc.__cause__ or exc).__name__}") from None

    async def upload(self, filename: str, data: bytes) -> str:
        obj = await self._call(lambda: self._client.files.create(file=(filename, data, "application/jsonl"),
                                                                 purpose="batch"))
        return str(obj.id)

    async def create(self, input_file_id: str, metadata: dict[str, str], window: str) -> BatchInfo:
        return info_from(await self._call(lambda: self._client.batches.create(
            input_file_id=input_file_id, endpoint=self.url, completion_window=window,
            metadata=metadata, auto_delete_input_file=True)))

    async def retrieve(self, batch_id: str) -> BatchInfo:
        return info_from(await self._call(lambda: self._client.batches.retrieve(batch_id)))

    async def list(self, after: str | None, limit: int) -> tuple[list[BatchInfo], bool]:
        def page() -> Any:
            kw: dict[str, Any] = {"limit": limit}
            if after:
                kw["after"] = after
            return self._client.batches.list(**kw)

        got = await self._call(page)
        data = list(getattr(got, "data", None) or [])
        has_more = getattr(got, "has_more", None)
        return [info_from(b) for b in data], bool(has_more) if has_more is not None else len(data) >= limit

    async def content(self, file_id: str) -> bytes:
        resp = await self._call(lambda: self._client.files.content(file_id))
        return bytes(resp.content)

    async def cancel(self, batch_id: str) -> BatchInfo:
        return info_from(await self._call(lambda: self._client.batches.cancel(batch_id)))

    async def aclose(self) -> None:
        self._client.close()


def _content(http: Any) -> bytes:
    try:
        return bytes(http.content) if http is not None else b""
    except Exception:  # the body could not be read at all
        return b""
