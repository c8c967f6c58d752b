"""The batch client protocol: Files + Batches APIs of a provider, as batch mode (engine/batch) uses them.

Implementations (``batch_openai``, ``batch_zhipu``) go through the provider's official SDK with its
retries off and raise only ``datafactory.errors.ProviderError`` subclasses (mapped by status code, as the
chat providers do), so the engine's one retry layer decides what is retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# a batch in one of these states will not change any more: its files can be collected
FINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True)
class BatchInfo:
    """What the provider says about one batch."""

    id: str
    status: str
    input_file_id: str = ""
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)
    total: int = 0
    completed: int = 0
    failed: int = 0
    errors: str = ""          # the batch's own error messages (a failed batch), joined
    error_codes: tuple[str, ...] = ()   # their codes (``token_limit_exceeded``: the enqueued-token cap)

    @property
    def final(self) -> bool:
        return self.status in FINAL


class BatchClient(Protocol):
    """One provider's Files + Batches endpoints. ``url`` is the ``url`` of every input line."""

    name: str
    url: str

    def body(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
        """The request body of one input line (what the chat endpoint would get)."""
        ...

    async def upload(self, filename: str, data: bytes) -> str:
        """Upload a JSONL input file (purpose ``batch``); its file id."""
        ...

    async def create(self, input_file_id: str, metadata: dict[str, str], window: str) -> BatchInfo: ...

    async def retrieve(self, batch_id: str) -> BatchInfo: ...

    async def list(self, after: str | None, limit: int) -> tuple[list[BatchInfo], bool]:
        """One page of batches, newest first; ``(batches, has_more)``."""
        ...

    async def content(self, file_id: str) -> bytes: ...

    async def cancel(self, batch_id: str) -> BatchInfo: ...

    async def aclose(self) -> None: ...


def info_from(obj: Any) -> BatchInfo:
    """A BatchInfo from an SDK batch object (openai and zhipuai share the shape)."""
    counts = getattr(obj, "request_counts", None)
    errors = getattr(obj, "errors", None)
    data = getattr(errors, "data", None) or []
    messages = "; ".join(str(getattr(e, "message", "") or e) for e in data[:5])
    codes = tuple(str(getattr(e, "code", "") or "") for e in data)
    metadata = getattr(obj, "metadata", None)
    return BatchInfo(id=str(obj.id), status=str(obj.status), input_file_id=str(getattr(obj, "input_file_id", "") or ""),
                     output_file_id=getattr(obj, "output_file_id", None) or None,
                     error_file_id=getattr(obj, "error_file_id", None) or None,
                     created_at=float(getattr(obj, "created_at", 0) or 0),
                     metadata={str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {},
                     total=int(getattr(counts, "total", 0) or 0), completed=int(getattr(counts, "completed", 0) or 0),
                     failed=int(getattr(counts, "failed", 0) or 0), errors=messages, error_codes=codes)


def create_batch_client(kind: str, *, api_key: str, base_url: str | None, timeout_s: float) -> BatchClient:
    """The batch client of provider ``kind`` (the same names as the chat provider registry)."""
    if kind == "zhipuai":
        from datafactory.providers.batch_zhipu import ZhipuBatchClient

        return ZhipuBatchClient(api_key=api_key, base_url=base_url, timeout_s=timeout_s)
    from datafactory.providers.batch_openai import OpenAIBatchClient

    return OpenAIBatchClient(api_key=api_key, base_url=base_url, timeout_s=timeout_s)
