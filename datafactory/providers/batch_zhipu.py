"""ZhipuAI's Files + Batches APIs through the official ``zhipuai`` SDK (``max_retries=0``).

The SDK is synchronous: each call runs in a daemon thread (as the chat provider's do). Input lines go
to ``/v4/chat/completions``; ``n`` is never sent (the SDK and API have none) and ``extra_body`` is
merged into the body, as the chat provider sends it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datafactory.errors import ConnectionFailed, RequestTimedOut
from datafactory.providers.batch_sdk import SdkBatchClient
from datafactory.providers.status import error_for_status, error_message
from datafactory.providers.zhipu import in_daemon_thread


class ZhipuBatchClient(SdkBatchClient):
    name = "zhipuai"
    url = "/v4/chat/completions"
    drop = ("n",)
    create_extra = {"auto_delete_input_file": True}  # read only

    def __init__(self, *, api_key: str, base_url: str | None, timeout_s: float) -> None:
        from zhipuai import ZhipuAI

        self._client = ZhipuAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=max(timeout_s, 600.0))
        self._base_url = base_url

    def __repr__(self) -> str:
        return f"ZhipuBatchClient(base_url={self._base_url!r})"

    async def _call(self, fn: Callable[[], Any]) -> Any:
        return await in_daemon_thread(self._mapped, fn)

    def _has_more(self, page: Any, data: list[Any], limit: int) -> bool:
        has_more = getattr(page, "has_more", None)  # older API versions leave it out: a full page may go on
        return bool(has_more) if has_more is not None else len(data) >= limit

    @staticmethod
    def _mapped(fn: Callable[[], Any]) -> Any:
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

    async def aclose(self) -> None:
        self._client.close()


def _content(http: Any) -> bytes:
    try:
        return bytes(http.content) if http is not None else b""
    except Exception:  # the body could not be read at all
        return b""
