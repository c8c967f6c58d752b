"""The pipeline fingerprint, and what a rerun with a changed configuration will redo.

Rows are finished per fingerprint (provider, model, params, template, schema, input fields, output
shape, re-asks): a rerun into a run dir whose last configuration differs redoes every row. Before it
starts, ``detect`` says what changed (``key: old → new``, never a secret), how many rows are asked again
and what that is estimated to cost — so nobody re-pays a dataset without a word.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import orjson

from datafactory.config.pipeline import Pipeline
from datafactory.engine.cache import Cache
from datafactory.engine.requester import estimate_tokens, expected_completion_tokens
from datafactory.io.readers import BadRow, iter_rows
from datafactory.providers.pricing import cost
from datafactory.record import content_hash
from datafactory.secrets import redact

# only the export changes with these: the requests are the same, the cache answers them
CACHE_ONLY = frozenset({"output", "reask"})
# shown as "changed" with a short hash: the values are long texts
HASHED = frozenset({"template", "schema"})
VALUE_CHARS = 60
ESTIMATE_SAMPLE_ROWS = 100


def fingerprint_parts(pipe: Pipeline) -> dict[str, Any]:
    """Everything that changes what a finished row looks like (see ``fingerprint``)."""
    return {"provider": pipe.provider.kind, "model": pipe.provider.model,
            "params": pipe.provider.params, "template": pipe.prompt.fingerprint,
            "schema": pipe.schema, "fields": pipe.input.fields,
            "output": [pipe.output.format, pipe.output.columns], "reask": pipe.quality.reask}


def fingerprint(pipe: Pipeline) -> str:
    """Rows finished under another fingerprint are redone (their requests may still come from the cache)."""
    return content_hash(fingerprint_parts(pipe))


@dataclass
class ConfigChange:
    """A run dir's configuration changed since its last run; what that costs."""

    changes: list[tuple[str, str, str]]   # (key, old, new) as display text; empty when not recorded
    rows_to_ask_again: int                # rows finished under the previous configuration, redone now
    requests_expected: bool               # False when only the export changed (the cache answers)
    estimated_cost_usd: float | None      # for the rows asked again (None: no price known)
    recorded: bool = True                 # False for a run dir from before configurations were stored

    def to_json(self) -> dict[str, Any]:
        return {"changes": [{"key": k, "old": o, "new": n} for k, o, n in self.changes],
                "rows_to_ask_again": self.rows_to_ask_again, "requests_expected": self.requests_expected,
                "estimated_cost_usd": None if self.estimated_cost_usd is None else round(self.estimated_cost_usd, 6)}

    def describe(self) -> str:
        lines = ["the configuration changed since the last run in this run dir; rows finished under the "
                 "previous one are redone:"]
        lines += [f"  {key}: {old} → {new}" for key, old, new in self.changes]
        if not self.recorded:
            lines.append("  (what changed is not recorded: the run dir was written by an older version)")
        rows = f"{self.rows_to_ask_again} row{'s' if self.rows_to_ask_again != 1 else ''}"
        if not self.requests_expected:
            lines.append(f"{rows} redone from the cached responses (only the export changed; no new requests "
                         "expected)")
        elif self.estimated_cost_usd is None:
            lines.append(f"{rows} will be asked again (cost unknown: no price for this model)")
        else:
            lines.append(f"{rows} will be asked again, estimated cost ${self.estimated_cost_usd:.4f} "
                         "(upper bound: completions at max_tokens)")
        lines.append("data/ is not replaced by fewer rows until a run with this configuration finishes")
        return "\n".join(lines)


def detect(cache: Cache, pipe: Pipeline, fp: str, parts: dict[str, Any]) -> ConfigChange | None:
    """Compare with the run dir's previous configuration; None when unchanged or the run dir is new."""
    previous = cache.previous_config(fp)
    if previous is None:
        return None
    old_fp, old_parts = previous
    rows = cache.rows_to_redo(old_fp, fp)
    # round-trip through JSON so stored and current values compare alike (tuples vs lists)
    new_parts = orjson.loads(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS))
    changes = diff(old_parts, new_parts) if old_parts is not None else []
    changed_keys = {key.split(".", 1)[0] for key, _, _ in changes}
    requests = old_parts is None or not changed_keys <= CACHE_ONLY
    estimate = _estimate(pipe, rows) if requests else 0.0
    return ConfigChange(changes, rows, requests, estimate, recorded=old_parts is not None)


def diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[tuple[str, str, str]]:
    """``(key, old, new)`` for every leaf that differs; dicts are compared key by key."""
    out: list[tuple[str, str, str]] = []
    for key in sorted(set(old) | set(new), key=lambda k: (k not in new, str(k))):
        a, b = old.get(key, _UNSET), new.get(key, _UNSET)
        if a == b:
            continue
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(diff(a, b, f"{name}."))
        elif name in HASHED:
            out.append((name, _short_hash(a), _short_hash(b)))
        else:
            out.append((name, _show(a), _show(b)))
    return out


class _Unset:
    def __repr__(self) -> str:
        return "(unset)"


_UNSET = _Unset()


def _show(value: Any) -> str:
    if value is _UNSET:
        return "(unset)"
    text = redact(orjson.dumps(value, default=str).decode())
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def _short_hash(value: Any) -> str:
    if value is _UNSET:
        return "(unset)"
    return f"#{content_hash(value)[:8]}"


def _estimate(pipe: Pipeline, rows: int) -> float | None:
    """Cost of asking ``rows`` rows again: the mean prompt of the first input rows + max completion."""
    if rows == 0:
        return 0.0
    inp = pipe.input
    prompts: list[int] = []
    sample = iter_rows(inp.path, fmt=inp.format, split=inp.split, subset=inp.subset)
    try:
        for _, row in itertools.islice(sample, ESTIMATE_SAMPLE_ROWS):
            if isinstance(row, BadRow) or any(row.get(c) in (None, "") for c in inp.fields.values()):
                continue
            prompts.append(estimate_tokens(pipe.prompt.render({v: row[c] for v, c in inp.fields.items()})))
    finally:
        close = getattr(sample, "close", None)
        if close is not None:
            close()
    mean_prompt = sum(prompts) / len(prompts) if prompts else 0.0
    return cost(pipe.provider.model, pipe.pricing, int(mean_prompt * rows), expected_completion_tokens(pipe) * rows)
