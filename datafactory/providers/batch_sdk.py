"""The Files + Batches calls both official SDKs share (``openai`` and ``zhipuai`` have the same shape).

A subclass says how one SDK call is made and how its errors map to ``ProviderError`` (``_call``), what an
input line's body holds (``drop``: parameters the API has none of), and the SDK's extras.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datafactory.providers.batch_base import BatchInfo, info_from


class SdkBatchClient:
    name: str
    url: str
    drop: tuple[str, ...] = ()       # parameters never sent in an input line
    create_extra: dict[str, Any] = {}  # read only: extra arguments of batches.create
    _client: Any

    async def _call(self, fn: Callable[[], Any]) -> Any:
        """Run one SDK call (``fn``) with its errors mapped to ProviderError subclasses."""
        raise NotImplementedError

    def _has_more(self, page: Any, data: list[Any], limit: int) -> bool:
        return bool(getattr(page, "has_more", False))

    def body(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
        extra = params.get("extra_body") if isinstance(params.get("extra_body"), dict) else {}
        merged = {**{k: v for k, v in params.items() if k != "extra_body"}, **(extra or {})}
        for name in self.drop:
            merged.pop(name, None)
        return {"model": model, "messages": messages, **merged}

    async def upload(self, filename: str, data: bytes) -> str:
        obj = await self._call(lambda: self._client.files.create(file=(filename, data, "application/jsonl"),
                                                                 purpose="batch"))
        return str(obj.id)

    async def create(self, input_file_id: str, metadata: dict[str, str], window: str) -> BatchInfo:
        return info_from(await self._call(lambda: self._client.batches.create(
            input_file_id=input_file_id, endpoint=self.url, completion_window=window, metadata=metadata,
            **self.create_extra)))

    async def retrieve(self, batch_id: str) -> BatchInfo:
        return info_from(await self._call(lambda: self._client.batches.retrieve(batch_id)))

    async def list(self, after: str | None, limit: int) -> tuple[list[BatchInfo], bool]:
        kw: dict[str, Any] = {"limit": limit, **({"after": after} if after else {})}
        got = await self._call(lambda: self._client.batches.list(**kw))
        data = list(getattr(got, "data", None) or [])
        return [info_from(b) for b in data], self._has_more(got, data, limit)

    async def content(self, file_id: str) -> bytes:
        resp = await self._call(lambda: self._client.files.content(file_id))
        return bytes(resp.content)

    async def cancel(self, batch_id: str) -> BatchInfo:
        return info_from(await self._call(lambda: self._client.batches.cancel(batch_id)))
