"""Generation parameters (``provider.params``): the OpenAI ones are type- and range-checked.

A wrong type (``temperature: hot``) would otherwise be found by the server on every single request,
each one rejected. Parameters we do not know are sent as they are (vLLM, llama.cpp, Ollama and
proxies have extras such as ``top_k`` or ``min_p``), except a near-miss of a known name
(``temperatur``), which is a typo until proven otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from datafactory.config.suggest import closest
from datafactory.config.yamlio import Located

Check = Callable[[Any], str | None]


def _number(lo: float, hi: float) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"expected a number from {lo:g} to {hi:g}, got {v!r}"
        return None if lo <= v <= hi else f"must be from {lo:g} to {hi:g}, got {v!r}"
    return check


def _integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int):
            return f"expected an integer, got {v!r}"
        if minimum is not None and v < minimum:
            return f"must be {minimum} or more, got {v!r}"
        if maximum is not None and v > maximum:
            return f"must be {maximum} or less, got {v!r}"
        return None
    return check


def _string(v: Any) -> str | None:
    return None if isinstance(v, str) else f"expected a string, got {v!r}"


def _boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"expected true/false, got {v!r}"


def _mapping(v: Any) -> str | None:
    return None if isinstance(v, dict) else f"expected a mapping, got {v!r}"


def _stop(v: Any) -> str | None:
    if isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(s, str) for s in v)):
        return None
    return f"expected a string or a list of strings, got {v!r}"


def _response_format(v: Any) -> str | None:
    if not isinstance(v, dict):
        return f"expected a mapping like {{type: json_object}}, got {v!r}"
    kinds = ("text", "json_object", "json_schema")
    if v.get("type") not in kinds:
        return f"type must be one of {', '.join(kinds)}, got {v.get('type')!r}"
    return None


def _logit_bias(v: Any) -> str | None:
    if not isinstance(v, dict):
        return f"expected a mapping of token id to bias, got {v!r}"
    for token, bias in v.items():
        if (problem := _number(-100, 100)(bias)) is not None:
            return f"token {token}: {problem}"
    return None


@dataclass(frozen=True)
class Param:
    check: Check
    doc: str = ""


KNOWN: dict[str, Param] = {
    "temperature": Param(_number(0, 2)),
    "top_p": Param(_number(0, 1)),
    "max_tokens": Param(_integer(1)),
    "max_completion_tokens": Param(_integer(1)),
    "n": Param(_integer(1), "samples per request"),
    "seed": Param(_integer()),
    "stop": Param(_stop),
    "presence_penalty": Param(_number(-2, 2)),
    "frequency_penalty": Param(_number(-2, 2)),
    "response_format": Param(_response_format),
    "extra_body": Param(_mapping, "merged into the request body (server-specific parameters)"),
    "logit_bias": Param(_logit_bias),
    "logprobs": Param(_boolean),
    "top_logprobs": Param(_integer(0, 20)),
    "reasoning_effort": Param(_string),
    "user": Param(_string),
    # vLLM / SGLang: switches of the model's chat template (Qwen3 ``enable_thinking: false``), sent top level
    "chat_template_kwargs": Param(_mapping, "chat template switches, e.g. {enable_thinking: false}"),
}
# extras of common OpenAI-compatible servers (vLLM, llama.cpp, Ollama, LLaMA-Factory): sent unchecked,
# and never mistaken for a typo of a known name (top_k is one letter from top_p)
SERVER_EXTRAS = ("top_k", "min_p", "typical_p", "repetition_penalty", "length_penalty", "min_tokens",
                 "best_of", "ignore_eos", "skip_special_tokens", "guided_json", "guided_regex",
                 "guided_choice", "structured_outputs", "mirostat", "tfs_z",
                 "num_ctx", "do_sample")
_TYPO_CUTOFF = 0.85


def check_params(loc: Located, params: Any, path: str = "provider.params") -> dict[str, Any]:
    """Validate ``provider.params``; ConfigError (file:line, key) on a wrong type, range or typo."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise loc.error(path, f"expected a mapping, got {params!r}")
    for key, value in params.items():
        where = f"{path}.{key}"
        spec = KNOWN.get(key)
        if spec is None:
            if key not in SERVER_EXTRAS:
                near = closest(key, KNOWN, cutoff=_TYPO_CUTOFF)
                if near is not None:
                    raise loc.error(where, "unknown generation parameter (a server-specific one can go under "
                                    "provider.params.extra_body)", suggestion=near)
            continue
        if value is None:
            continue  # null: the server's default
        problem = spec.check(value)
        if problem is not None:
            raise loc.error(where, problem)
    return dict(params)
