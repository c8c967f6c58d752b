"""The optional LLM judge of decontamination (LMSYS llm-decontaminator style, Yang et al. 2023).

For a record the lexical methods kept but that scores at least ``judge_above`` against some eval item,
the ``judge_top_k`` nearest items (by rephrase score) are shown to the pipeline's own model one at a
time with the question "same problem?"; the first "yes" rejects the record as ``contaminated``
(method ``llm_judge``). Each question is an ordinary request of the run — cached (a rerun asks nothing
again), rate-limited, retried, and counted in stats and cost — because it goes through the run's
``Requester.ask``. A judge request that fails after its retries keeps the record (the lexical
verdict stands) and is counted as ``failed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from datafactory.errors import RequestFailed
from datafactory.quality.gate import Reject

if TYPE_CHECKING:
    from datafactory.quality.decontam_gate import DecontamGate

SYSTEM = ("You check whether a text is a copy of a benchmark test item. A rephrasing counts as the same: "
          "other wording, another sentence order, other names, other numbers, or other units. "
          "A different problem that merely shares a topic does not.")
USER = ("Text:\n{candidate}\n\nTest item:\n{item}\n\n"
        "Is the text the same problem as the test item, possibly rephrased? Answer with one word: yes or no.")
PARAMS: dict[str, Any] = {"temperature": 0, "max_tokens": 8, "n": 1}


def judge_messages(candidate: str, item: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": USER.format(candidate=candidate.strip(), item=item.strip())}]


def said_yes(text: str) -> bool:
    """Whether a judge's reply starts with "yes" (case, spaces and punctuation aside)."""
    words = "".join(c if c.isalpha() else " " for c in text).split()
    return bool(words) and words[0].lower() == "yes"


def reply_text(answer: Any) -> str:
    """The first choice's text of what ``ask`` returned (a Requester ``Answer``)."""
    choices = answer.completion.choices
    return str(choices[0].text or "") if choices else ""


async def judge(gate: DecontamGate, text: str, ask: Any) -> Reject | None:
    """Ask about ``text``'s nearest eval items (see the module docstring)."""
    for item, score in gate.candidates(text):
        if score < gate.judge_above:
            break  # best first: the rest score lower still
        gate.count_judge("asked")
        try:
            answer = await ask(judge_messages(text, gate.texts[item]), dict(PARAMS))
        except RequestFailed:
            gate.count_judge("failed")
            continue
        if getattr(answer, "cached", False):
            gate.count_judge("cached")
        if said_yes(reply_text(answer)):
            gate.count_judge("same")
            gate.count(item, "output_llm_judge")
            return Reject("contaminated", f"{gate.ids[item]} llm_judge {score:.2f}: {gate.quote(item)}")
        gate.count_judge("different")
    return None
