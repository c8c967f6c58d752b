"""Named responders for the loopback server's subprocess mode (``--responder NAME``).

``default``: ``faults.default_responder`` (echoes the prompt: every rephrase of a templated input is a
near-duplicate of the others, so dedup rejects most of them). ``gsm8k``: a distinct, valid rephrase of
each GSM8K problem — its words in an order drawn from a hash of the prompt (deterministic, so a rerun
gets the same text), prefixed, with the reference's final answer — so that every gate of the shipped
``gsm8k_rephrase`` pipeline passes it, as it would a real model's.
"""

from __future__ import annotations

import random
import re
from typing import Any

import orjson
import xxhash

from datafactory.testing.faults import Responder, default_responder, last_user_message

_ANSWER_RE = re.compile(r"####\s*(-?[\d,]*\.?\d+)")


def gsm8k_responder(body: dict[str, Any], index: int) -> str:
    """``{"question": <the problem's words shuffled>, "answer": "... #### N"}`` (N from the reference)."""
    user = last_user_message(body)
    problem = user.split("Problem:\n", 1)[1].split("\n\n", 1)[0] if "Problem:\n" in user else user
    words = problem.split()
    random.Random(xxhash.xxh3_64_intdigest(user.encode())).shuffle(words)
    found = _ANSWER_RE.findall(user)
    answer = found[-1].replace(",", "") if found else "42"
    return orjson.dumps({"question": "Told differently: " + " ".join(words),
                         "answer": f"Step by step, the numbers give the result.\n#### {answer}"}).decode()


RESPONDERS: dict[str, Responder] = {"default": default_responder, "gsm8k": gsm8k_responder}
