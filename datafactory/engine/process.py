"""One input row through the record flow: render → request → parse → validate (re-ask) → outcome.

Returns the samples to commit: ``(ok, reason, payload)`` where payload is the output row when ok, or
the reject record ``{id, stage, reason, attempts, last_error, raw_output}`` when not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datafactory.config.pipeline import Pipeline
from datafactory.engine.requester import Requester, RequestFailed
from datafactory.errors import (
    AuthenticationFailed,
    BadResponse,
    FatalRequestError,
    RateLimited,
    ValidationFailed,
)
from datafactory.formats.output import FORMATS
from datafactory.io.readers import BadRow
from datafactory.providers.base import Choice
from datafactory.quality.parse import extract_json_object
from datafactory.quality.validate import SchemaValidator, reask_message
from datafactory.secrets import redact

Sample = tuple[bool, "str | None", dict[str, Any]]


@dataclass(slots=True)
class RowTask:
    seq: int
    key: str
    row: dict[str, Any] | BadRow
    duplicate_of: str | None = None
    where: str = ""


def reject(row_id: str, stage: str, reason: str, *, attempts: int = 0, last_error: str = "",
           raw_output: str | None = None) -> Sample:
    return (False, reason, {"id": row_id, "stage": stage, "reason": reason, "attempts": attempts,
                            "last_error": redact(last_error)[:2000],
                            "raw_output": None if raw_output is None else redact(raw_output)})


class RowProcessor:
    def __init__(self, pipe: Pipeline, requester: Requester) -> None:
        self.pipe = pipe
        self.req = requester
        self.validator = SchemaValidator(pipe.schema)
        self.shape = FORMATS[pipe.output.format]
        self.params = dict(pipe.provider.params)

    async def process(self, task: RowTask) -> list[Sample]:
        if isinstance(task.row, BadRow):
            return [reject(task.key, "input", "bad_input", last_error=f"{task.where}: {task.row.error}",
                           raw_output=task.row.raw)]
        if task.duplicate_of is not None:
            return [reject(task.key, "input", "duplicate_input",
                           last_error=f"{task.where}: same content as an earlier input row ({task.duplicate_of})")]
        source: dict[str, Any] = {}
        for var, col in self.pipe.input.fields.items():
            value = task.row.get(col)
            if value is None or value == "":
                problem = f"{task.where}: input column '{col}' (for {{{{ {var} }}}}) is missing or empty"
                return [reject(task.key, "input", "missing_field", last_error=problem)]
            source[var] = value
        messages = self.pipe.prompt.render(source)
        try:
            answer = await self.req.ask(messages, self.params)
        except RequestFailed as failed:
            return [self._request_reject(task.key, failed)]
        comp = answer.completion
        multi = len(comp.choices) > 1
        out = []
        for i, choice in enumerate(comp.choices):
            sample_id = f"{task.key}-{i}" if multi else task.key
            out.append(await self._finish(sample_id, source, messages, choice, answer.attempts))
        return out

    def _request_reject(self, row_id: str, failed: RequestFailed) -> Sample:
        err = failed.error
        if isinstance(err, AuthenticationFailed):
            raise err
        if isinstance(err, FatalRequestError):
            reason = f"http_{err.status}" if err.status else "request_rejected"
        elif isinstance(err, RateLimited):
            reason = "rate_limited"
        elif isinstance(err, BadResponse):
            reason = "bad_response"
        else:
            reason = "request_failed"
        return reject(row_id, "request", reason, attempts=failed.attempts, last_error=str(err),
                      raw_output=getattr(err, "raw", None) or None)

    async def _finish(self, sample_id: str, source: dict[str, Any], messages: list[dict[str, str]],
                      choice: Choice, attempts: int) -> Sample:
        reasks_left = self.pipe.quality.reask
        while True:
            if choice.finish_reason == "length":
                return reject(sample_id, "parse", "truncated", attempts=attempts, raw_output=choice.text,
                              last_error="the reply hit max_tokens (finish_reason=length); raise max_tokens")
            try:
                obj = extract_json_object(choice.text)
                self.validator.validate(obj)
            except ValidationFailed as exc:
                if reasks_left <= 0:
                    return reject(sample_id, "validate" if exc.reason == "schema_invalid" else "parse",
                                  exc.reason, attempts=attempts, last_error=str(exc), raw_output=choice.text)
                reasks_left -= 1
                follow_up = [*messages, {"role": "assistant", "content": choice.text},
                             {"role": "user", "content": reask_message(str(exc))}]
                self.req.stats.reasks += 1
                try:
                    answer = await self.req.ask(follow_up, {**self.params, "n": 1} if "n" in self.params
                                                else self.params)
                except RequestFailed as failed:
                    return self._request_reject(sample_id, failed)
                attempts += answer.attempts
                choice = answer.completion.choices[0]
                continue
            return True, None, self.shape(self.pipe.output, obj, source, sample_id)
