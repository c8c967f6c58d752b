"""One input row through the record flow: render → request → parse → validate (re-ask) → shape →
gates → outcome.

Returns the samples to commit: ``(ok, reason, payload)`` where payload is the output row when ok, or
the reject record ``{id, stage, reason, attempts, last_error, raw_output}`` when not.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

from datafactory import constants as C
from datafactory.config.pipeline import Pipeline
from datafactory.engine.gate_batch import GateBatcher
from datafactory.engine.gates import Gates, build_gates
from datafactory.engine.requester import Requester, RequestFailed
from datafactory.errors import (
    AuthenticationFailed,
    BadResponse,
    ConnectionFailed,
    FatalRequestError,
    RateLimited,
    ValidationFailed,
)
from datafactory.formats import output as shapes
from datafactory.io.readers import BadRow
from datafactory.providers.base import Choice
from datafactory.quality.gate import Gate
from datafactory.quality.parse import extract_json_object
from datafactory.quality.validate import SchemaValidator, reask_message
from datafactory.record import Record
from datafactory.secrets import redact

Sample = tuple[bool, "str | None", dict[str, Any]]


@dataclass(slots=True)
class RowTask:
    seq: int
    key: str
    row: dict[str, Any] | BadRow
    duplicate_of: str | None = None
    where: str = ""


@dataclass(slots=True)
class Accepted:
    """A parsed, schema-valid model object for one sample."""

    id: str
    obj: dict[str, Any]
    raw: str
    attempts: int


def reject(row_id: str, stage: str, reason: str, *, attempts: int = 0, last_error: str = "",
           raw_output: str | None = None) -> Sample:
    """A reject record. Texts are redacted *before* they are cut (a key straddling the cut would
    otherwise leave its first characters); a raw output longer than ``C.REJECT_RAW_CHARS`` keeps its
    start and end around a marker, and ``raw_output_chars`` gives the length it had."""
    payload: dict[str, Any] = {"id": row_id, "stage": stage, "reason": reason, "attempts": attempts,
                               "last_error": redact(last_error)[:2000], "raw_output": None}
    if raw_output is not None:
        text = redact(raw_output)
        payload["raw_output"] = shorten(text, C.REJECT_RAW_CHARS)
        if len(text) > C.REJECT_RAW_CHARS:
            payload["raw_output_chars"] = len(text)
    return (False, reason, payload)


def shorten(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its first two thirds and last third with a
    marker saying how much was cut."""
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 3, limit // 3
    return (f"{text[:head]}\n[... datafactory cut {len(text) - head - tail:,} of {len(text):,} characters ...]\n"
            f"{text[len(text) - tail:]}")


class RowProcessor:
    def __init__(self, pipe: Pipeline, requester: Requester, gates: Gates | None = None) -> None:
        self.pipe = pipe
        self.req = requester
        self.validator = SchemaValidator(pipe.schema)
        self.params = dict(pipe.provider.params)
        n = self.params.get("n", 1)
        self.samples = n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1
        self.steps = build_gates(pipe) if gates is None else gates
        self.gates: list[Gate] = self.steps.gates
        self.batcher = GateBatcher(self.gates)
        self.fmt = pipe.output.format

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
            choices, attempts = await self._sample(messages)
        except RequestFailed as failed:
            return [self._request_reject(task.key, failed)]
        if not choices:  # only a cache entry nobody can read has none (a live reply without is BadResponse)
            return [reject(task.key, "request", "bad_response", last_error="the stored response has no choices")]
        multi = len(choices) > 1
        results: list[Accepted | Sample] = []
        for i, choice in enumerate(choices):
            sample_id = f"{task.key}-{i}" if multi else task.key
            results.append(await self._accept(sample_id, messages, choice, attempts))
        if self.fmt in ("preference", "kto"):
            return await self._pairs(task.key, source, results)
        out: list[Sample] = []
        for res in results:
            out.extend(await self._rows(res, source) if isinstance(res, Accepted) else [res])
        return out

    # ------------------------------------------------------------------ request + parse
    async def _sample(self, messages: list[dict[str, str]]) -> tuple[list[Choice], int]:
        """The ``n`` samples asked for. Servers that ignore ``n`` (llama.cpp, Ollama; the zhipuai SDK
        has none) return fewer: the rest is asked for with more requests, each its own cache entry
        (``variant``), with the seed moved on so a seeded server does not repeat itself."""
        answer = await self.req.ask(messages, self.params)
        choices = list(answer.completion.choices)
        attempts = answer.attempts
        variant = 0
        while choices and len(choices) < self.samples and variant < self.samples:
            variant += 1
            params = {**self.params, "n": self.samples - len(choices)}
            seed = params.get("seed")
            if isinstance(seed, int) and not isinstance(seed, bool):
                params["seed"] = seed + variant
            more = await self.req.ask(messages, params, variant=variant)
            attempts += more.attempts
            choices.extend(more.completion.choices)
        return choices[:self.samples], attempts

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
        elif isinstance(err, ConnectionFailed):  # a TransientError: the more specific class first
            reason = "connection_failed"
        else:
            reason = "request_failed"
        return reject(row_id, "request", reason, attempts=failed.attempts, last_error=str(err),
                      raw_output=getattr(err, "raw", None) or None)

    async def _accept(self, sample_id: str, messages: list[dict[str, str]], choice: Choice,
                      attempts: int) -> Accepted | Sample:
        reasks_left = self.pipe.quality.reask
        while True:
            if choice.finish_reason == "length":
                return reject(sample_id, "parse", "truncated", attempts=attempts, raw_output=choice.text,
                              last_error="the reply hit max_tokens (finish_reason=length); raise max_tokens")
            if choice.finish_reason == "content_filter":
                return reject(sample_id, "parse", "content_filter", attempts=attempts, raw_output=choice.text,
                              last_error="the provider's content filter stopped the reply "
                                         "(finish_reason=content_filter); it is not used as data")
            try:
                obj = await self._checked(choice.text)
            except ValidationFailed as exc:
                if reasks_left <= 0:
                    return reject(sample_id, "validate" if exc.reason == "schema_invalid" else "parse",
                                  exc.reason, attempts=attempts, last_error=str(exc), raw_output=choice.text)
                reasks_left -= 1
                follow_up = [*messages, {"role": "assistant", "content": shorten(choice.text, C.REASK_ECHO_CHARS)},
                             {"role": "user", "content": reask_message(shorten(str(exc), C.REASK_ERROR_CHARS))
                              + _cut_note(choice.text)}]
                self.req.stats.reasks += 1
                params = {**self.params, "n": 1} if "n" in self.params else self.params
                try:
                    answer = await self.req.ask(follow_up, params)
                except RequestFailed as failed:
                    return self._request_reject(sample_id, failed)
                attempts += answer.attempts
                if not answer.completion.choices:
                    return reject(sample_id, "request", "bad_response", attempts=attempts,
                                  last_error="the stored response has no choices")
                choice = answer.completion.choices[0]
                continue
            return Accepted(sample_id, obj, choice.text, attempts)

    async def _checked(self, text: str) -> dict[str, Any]:
        """Parse + validate; a big reply is handled off the event loop so the other rows keep going."""
        if len(text) > C.PARSE_OFF_LOOP_CHARS:
            return await asyncio.to_thread(self._check, text)
        return self._check(text)

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

    # ------------------------------------------------------------------ shaping + gates
    async def _rows(self, acc: Accepted, source: dict[str, Any]) -> list[Sample]:
        explode = self.pipe.output.explode
        if explode:
            items = acc.obj.get(explode)
            if not isinstance(items, list) or not items:
                return [reject(acc.id, "validate", "schema_invalid", attempts=acc.attempts, raw_output=acc.raw,
                               last_error=f"'{explode}' is not a non-empty list")]
            objs = [(f"{acc.id}.{j}", it if isinstance(it, dict) else {"value": it}) for j, it in enumerate(items)]
        else:
            objs = [(acc.id, acc.obj)]
        shape = shapes.ROW_SHAPES[self.fmt]
        out: list[Sample] = []
        for oid, obj in objs:
            try:
                row = shape(self.pipe.output, obj, source, oid)
            except ValidationFailed as exc:
                out.append(reject(oid, "validate", exc.reason, attempts=acc.attempts, last_error=str(exc),
                                  raw_output=acc.raw))
                continue
            fields = {**obj, **row} if self.steps.needs_object else row
            verdict = await self.batcher.check(Record(id=oid, source=source, fields=fields))
            if verdict is not None:
                out.append(reject(oid, "gate", verdict.reason, attempts=acc.attempts, last_error=verdict.detail,
                                  raw_output=acc.raw))
            else:
                out.append((True, None, row))
        return out

    async def _pairs(self, row_id: str, source: dict[str, Any], results: list[Accepted | Sample]) -> list[Sample]:
        """Preference / KTO: judge every sample against the source answer, then pair or tag them."""
        from datafactory.quality.gsm8k import answers_match, extract_answer

        check = self.pipe.quality.get("answer_check")
        out_field, src_field = check.output_field, check.source_field
        expected = extract_answer(str(source.get(src_field, "")))
        good: list[str] = []
        bad: list[str] = []
        failures: list[Sample] = []
        for res in results:
            if not isinstance(res, Accepted):
                failures.append(res)
                continue
            text = str(res.obj.get(out_field, ""))
            got = extract_answer(text)
            (good if got is not None and expected is not None and answers_match(got, expected) else bad).append(text)
        prompt = shapes.prompt_text(self.pipe.output, source)
        attempts = max((r.attempts for r in results if isinstance(r, Accepted)), default=0)
        if self.fmt == "kto":
            rows: list[Sample] = [(True, None, shapes.kto(self.pipe.output, prompt, t, True)) for t in good]
            rows += [(True, None, shapes.kto(self.pipe.output, prompt, t, False)) for t in bad]
            return rows or failures[:1] or [reject(row_id, "pair", "no_valid_sample", attempts=attempts)]
        if good and bad:
            row = shapes.preference(self.pipe.output, prompt, good[0], bad[0])
            verdict = await self.batcher.check(Record(id=row_id, source=source, fields=row))
            if verdict is not None:
                return [reject(row_id, "gate", verdict.reason, attempts=attempts, last_error=verdict.detail)]
            return [(True, None, row)]
        if not good and not bad and failures:
            return failures[:1]
        reason = "no_correct_sample" if not good else "no_wrong_sample"
        return [reject(row_id, "pair", reason, attempts=attempts,
                       last_error=f"{len(good)} correct and {len(bad)} wrong of {len(results)} samples "
                                  f"(expected answer {expected})")]


def _cut_note(text: str) -> str:
    if len(text) <= C.REASK_ECHO_CHARS:
        return ""
    return (f"\n(Your previous reply was {len(text):,} characters long; only its start and end are shown "
            f"above. Reply with the JSON object only.)")
