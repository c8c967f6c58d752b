"""Submitting batches without ever submitting a request twice (the protocol is in ``store.py``).

Every provider call goes through the run's one retry layer. ``create`` is the call that must not be
repeated blindly: a retry after a timeout, and the first call for a batch recorded as ``uploaded`` by
an earlier process, first search the provider's batch list for it; only a list that reaches back past
the moment the batch was recorded without finding it proves it was not created.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from datafactory.config.pipeline import Pipeline
from datafactory.engine.batch.split import split
from datafactory.engine.batch.store import BatchRow, BatchStore
from datafactory.errors import BatchNotFound, ConfigError, FatalRequestError, ProviderError
from datafactory.providers.batch_base import BatchClient, BatchInfo

T = TypeVar("T")
META_KEY = "datafactory_batch"       # the batch's local id, in the provider batch's metadata
LIST_PAGE = 100
CLOCK_SLACK_S = 600.0                # provider clocks and whole-second timestamps: search this much further back

Retry = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


class Submitter:
    def __init__(self, pipe: Pipeline, store: BatchStore, client: BatchClient, retry: Retry) -> None:
        self.pipe, self.store, self.client, self.retry = pipe, store, client, retry
        self.cfg = pipe.provider.batch
        self.errors: dict[str, ProviderError] = {}   # key → why it failed for good (this invocation)

    def plan_queued(self) -> tuple[int, list[str]]:
        """Group the queued requests into batch intents; ``(batches recorded, keys too big for any batch)``."""
        self.store.flush()
        chunks, too_big = split(self.store.queued(), self.cfg.max_requests, self.cfg.bytes_for(self.client.name))
        for keys, nbytes in chunks:
            self.store.add_intent(keys, nbytes)
        return len(chunks), too_big

    async def advance(self, row: BatchRow, *, fresh: bool) -> BatchInfo | None:
        """Take an ``intent`` / ``uploaded`` batch to ``submitted``. ``fresh``: this process recorded the
        ``uploaded`` state itself a moment ago (no earlier create can exist). None: the provider refused the
        file or the batch for good (its requests are failed with that error)."""
        file_id = row.file_id
        try:
            if row.state == "intent":
                data = self.store.file_bytes(row.local_id)
                try:
                    file_id = str(await self.retry(lambda: self.client.upload(f"datafactory-{row.local_id}.jsonl",
                                                                              data)))
                except FatalRequestError as exc:
                    if exc.status in (404, 405):  # a server without the Files API (vLLM, Ollama, a proxy)
                        self.store.drop_intent(row.local_id)
                        raise no_batch_api(self.pipe, exc) from None
                    raise
                self.store.set_file(row.local_id, file_id)
                fresh = True
            assert file_id is not None
            tries = 0

            async def create() -> BatchInfo:
                nonlocal tries
                tries += 1
                if tries > 1 or not fresh:
                    found = await self.find(row, file_id)
                    if found is not None:
                        return found
                return await self.client.create(file_id, {META_KEY: row.local_id}, self.cfg.completion_window)

            info: BatchInfo = await self.retry(create)
        except FatalRequestError as exc:
            if exc.status == 401:
                raise
            keys = self.store.member_keys(row.local_id)
            self.errors.update(dict.fromkeys(keys, exc))
            self.store.fail(keys, str(exc))
            self.store.drop_intent(row.local_id)
            return None
        self.store.set_submitted(row.local_id, info.id, info.status)
        return info

    async def find(self, row: BatchRow, file_id: str | None) -> BatchInfo | None:
        """The provider batch made for ``row`` (metadata or input file), searching newest first back to the
        moment the batch was recorded; None when the list proves there is none."""
        after: str | None = None
        while True:
            page, more = await self.client.list(after, LIST_PAGE)
            for info in page:
                if info.metadata.get(META_KEY) == row.local_id or (file_id and info.input_file_id == file_id):
                    return info
            if not page or not more or min(b.created_at for b in page) < row.created - CLOCK_SLACK_S:
                return None
            after = page[-1].id

    async def retrieve(self, row: BatchRow) -> BatchInfo:
        assert row.batch_id is not None
        try:
            info: BatchInfo = await self.retry(lambda: self.client.retrieve(row.batch_id or ""))
        except FatalRequestError as exc:
            if exc.status == 404:
                raise not_found(row.batch_id, self.pipe) from None
            raise
        return info

    async def cancel(self, row: BatchRow) -> BatchInfo | None:
        """Cancel a batch that may be running; an ``intent`` is dropped (never created), an ``uploaded`` one
        is looked up first."""
        if row.state == "intent":
            self.store.drop_intent(row.local_id)
            return None
        batch_id = row.batch_id
        if row.state == "uploaded":
            found = await self.find(row, row.file_id)
            if found is None:
                self.store.drop_intent(row.local_id)
                return None
            self.store.set_submitted(row.local_id, found.id, found.status)
            batch_id = found.id
        assert batch_id is not None
        try:
            info: BatchInfo = await self.retry(lambda: self.client.cancel(batch_id))
        except FatalRequestError as exc:
            if exc.status == 404:
                raise not_found(batch_id, self.pipe) from None
            raise
        self.store.set_status(row.local_id, info.status)
        return info


def no_batch_api(pipe: Pipeline, exc: FatalRequestError) -> ConfigError:
    where = pipe.provider.base_url or f"the {pipe.provider.kind} API"
    return ConfigError(f"batch mode, but {where} has no Files / Batches API (uploading the batch file answered "
                       f"{exc}); batch mode needs OpenAI's or ZhipuAI's API: use provider.mode: online (without "
                       "--batch) for this server", file=pipe.source, key="provider.mode")


def not_found(batch_id: str, pipe: Pipeline) -> BatchNotFound:
    return BatchNotFound(
        f"the provider does not know batch {batch_id}, which this run dir ({pipe.output.dir}) submitted: it was "
        f"created with another API key or project than the one in {pipe.provider.api_key_env} now. Set the key "
        "that created it and rerun; or use another --output to start afresh", batch_id=batch_id)
