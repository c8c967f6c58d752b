"""Every reject reason the engine can write, and what a rerun does with it.

* ``CONTENT``: the model answered and the answer was judged (invalid JSON, a gate, a pairing that
  failed). Final: a rerun keeps the reject (the response is paid for and cached).
* ``TRANSIENT``: no usable answer came back (5xx storm, rate limits, broken bodies). Nothing usable was
  paid for, so a rerun asks again.
* ``SETUP``: the request was refused for a reason the user fixes outside the data (wrong model or URL,
  a bad parameter, a server that was down). A rerun asks again, so fixing the setup and rerunning the
  same command completes the run.
* ``INPUT``: the input row itself is unusable. Final for that input content.

Reasons are stable codes, never message text; ``http_<status>`` codes are SETUP for every 4xx.
A guard test checks that every reason the code produces is classed here.
"""

from __future__ import annotations

import re
from enum import Enum


class Kind(str, Enum):
    CONTENT = "content"
    TRANSIENT = "transient"
    SETUP = "setup"
    INPUT = "input"


REASONS: dict[str, Kind] = {
    # input stage
    "bad_input": Kind.INPUT, "duplicate_input": Kind.INPUT, "missing_field": Kind.INPUT,
    # request stage
    "request_failed": Kind.TRANSIENT, "rate_limited": Kind.TRANSIENT, "bad_response": Kind.TRANSIENT,
    "request_rejected": Kind.SETUP, "connection_failed": Kind.SETUP,
    # parse / validate
    "truncated": Kind.CONTENT, "invalid_json": Kind.CONTENT, "empty_output": Kind.CONTENT,
    "schema_invalid": Kind.CONTENT, "bad_turns": Kind.CONTENT, "content_filter": Kind.CONTENT,
    # gates
    "duplicate": Kind.CONTENT, "near_duplicate": Kind.CONTENT, "contaminated": Kind.CONTENT,
    "too_short": Kind.CONTENT, "too_long": Kind.CONTENT, "empty_field": Kind.CONTENT,
    "wrong_language": Kind.CONTENT, "no_reference": Kind.CONTENT, "no_answer": Kind.CONTENT,
    "answer_mismatch": Kind.CONTENT,
    # preference / KTO pairing
    "no_valid_sample": Kind.CONTENT, "no_correct_sample": Kind.CONTENT, "no_wrong_sample": Kind.CONTENT,
}

_HTTP = re.compile(r"http_(\d{3})")


def kind_of(reason: str) -> Kind:
    """The class of a reject reason; ``KeyError`` for a reason nobody registered (a bug)."""
    if (m := _HTTP.fullmatch(reason)) is not None:
        status = int(m.group(1))
        return Kind.SETUP if 400 <= status < 500 else Kind.TRANSIENT
    return REASONS[reason]


def asked_again_on_rerun(reason: str) -> bool:
    """True for rejects a rerun retries (nothing usable was paid for), False for final ones."""
    return kind_of(reason) in (Kind.TRANSIENT, Kind.SETUP)
