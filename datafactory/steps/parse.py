"""Parse → validate, with re-asks: a sample's raw text becomes the model's JSON object in
``record.fields``, checked against the schema; an invalid reply is asked again (``quality.reask``
times) with the validation error, then rejected (stage ``parse`` or ``validate``).

A reply cut at ``max_tokens`` or stopped by the provider's content filter is rejected without parsing.
A big reply is parsed off the event loop so the other rows keep going.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import Any

import orjson

from datafactory import constants as C
from datafactory.engine.outcome import reject, shorten
from datafactory.engine.requester import Requester, RequestFailed
from datafactory.errors import ValidationFailed
from datafactory.quality.parse import extract_json_object
from datafactory.quality.validate import SchemaValidator, reask_message
from datafactory.record import Record
from datafactory.steps.request import request_reject


class ParseStep:
    def __init__(self, schema: dict[str, Any], requester: Requester, params: dict[str, Any], reask: int) -> None:
        self.validator = SchemaValidator(schema)
        self.req, self.reask = requester, reask
        self.seconds = 0.0  # time parsing and validating on the event loop (not the wait for re-asks)
        self.params = {**params, "n": 1} if "n" in params else params

    async def __call__(self, rec: Record) -> bool:
        """Fill ``rec.fields`` with the model's object; False when ``rec`` is now rejected."""
        meta = rec.meta
        reasks_left = self.reask
        while True:
            text = meta["raw"]
            finish = meta.pop("finish", None)
            if finish == "length":
                reject(rec, "parse", "truncated", "the reply hit max_tokens (finish_reason=length); raise max_tokens")
                return False
            if finish == "content_filter":
                reject(rec, "parse", "content_filter", "the provider's content filter stopped the reply "
                       "(finish_reason=content_filter); it is not used as data")
                return False
            try:
                rec.fields = await self._checked(text)
            except ValidationFailed as exc:
                if reasks_left <= 0:
                    reject(rec, "validate" if exc.reason == "schema_invalid" else "parse", exc.reason, str(exc))
                    return False
                reasks_left -= 1
                if not await self._reask(rec, text, exc):
                    return False
                continue
            meta.pop("messages", None)
            return True

    async def _reask(self, rec: Record, text: str, exc: ValidationFailed) -> bool:
        meta = rec.meta
        follow_up = [*meta["messages"], {"role": "assistant", "content": shorten(text, C.REASK_ECHO_CHARS)},
                     {"role": "user", "content": reask_message(shorten(str(exc), C.REASK_ERROR_CHARS))
                      + _cut_note(text)}]
        self.req.stats.reasks += 1
        try:
            answer = await self.req.ask(follow_up, self.params)
        except RequestFailed as failed:
            request_reject(rec, failed)
            return False
        meta["attempts"] = meta.get("attempts", 0) + answer.attempts
        if not answer.completion.choices:
            reject(rec, "request", "bad_response", "the stored response has no choices", raw=False)
            return False
        choice = answer.completion.choices[0]
        meta["raw"], meta["finish"], meta["reasoning"] = choice.text, choice.finish_reason, choice.reasoning
        return True

    async def _checked(self, text: str) -> dict[str, Any]:
        if len(text) > C.PARSE_OFF_LOOP_CHARS:
            return await asyncio.to_thread(self._check, text)
        t0 = perf_counter()
        try:
            return self._check(text)
        finally:
            self.seconds += perf_counter() - t0

    def _check(self, text: str) -> dict[str, Any]:
        obj = extract_json_object(text)
        # first what cannot be written (nested deeper than orjson writes, 255 levels): it must not reach
        # the commit, nor the schema validator, whose messages repr() the value and would recurse out
        try:
            orjson.dumps(obj)
        except orjson.JSONEncodeError as exc:
            raise ValidationFailed(f"the JSON object cannot be stored: {exc}", reason="invalid_json") from None
        self.validator.validate(obj)
        return obj


def _cut_note(text: str) -> str:
    if len(text) <= C.REASK_ECHO_CHARS:
        return ""
    return (f"\n(Your previous reply was {len(text):,} characters long; only its start and end are shown "
            f"above. Reply with the JSON object only.)")
