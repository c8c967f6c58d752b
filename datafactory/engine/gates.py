"""Builds the quality gates a pipeline asks for and runs them on each accepted sample.

Order matters: cheap filters first, then answer check and decontamination, dedup last — so a
record rejected for another reason never enters the dedup memory and blocks a later good one.
"""

from __future__ import annotations

from typing import Any

from datafactory.config.pipeline import Pipeline
from datafactory.quality.gate import Gate, Reject
from datafactory.record import Record


def build_gates(pipe: Pipeline) -> list[Gate]:
    q = pipe.quality
    gates: list[Gate] = []
    if q.empty_fields:
        from datafactory.quality.filters import EmptyFieldFilter

        gates.append(EmptyFieldFilter(q.empty_fields["fields"]))
    if q.language:
        from datafactory.quality.filters import LanguageFilter

        gates.append(LanguageFilter(q.language["fields"], allowed=tuple(q.language["allowed"]),
                                    min_share=q.language["min_share"]))
    if q.length:
        from datafactory.quality.filters import LengthFilter

        gates.append(LengthFilter(q.length["fields"], min_chars=q.length["min_chars"],
                                  max_chars=q.length["max_chars"]))
    if q.answer_check and pipe.output.format not in ("preference", "kto"):
        from datafactory.quality.gsm8k import AnswerCheck

        gates.append(AnswerCheck(output_field=q.answer_check["output_field"],
                                 source_field=q.answer_check["source_field"]))
    if q.decontaminate:
        from datafactory.quality.decontam import Decontaminator, builtin_eval_set

        d = q.decontaminate
        sets = [str(builtin_eval_set(s)) if s == "gsm8k" else s for s in d["eval_sets"]]
        gates.append(Decontaminator(ngram=d["ngram"], fields=d["fields"], eval_sets=sets,
                                    text_field=d["text_field"]))
    if q.exact_dedup:
        from datafactory.quality.dedup import ExactDedup

        gates.append(ExactDedup(q.exact_dedup["fields"]))
    if q.near_dedup:
        from datafactory.quality.dedup import NearDedup

        n = q.near_dedup
        gates.append(NearDedup(n["fields"], threshold=n["threshold"], num_perm=n["num_perm"],
                               shingle=n["shingle"], seed=n["seed"]))
    return gates


def run_gates(gates: list[Gate], record_id: str, source: dict[str, Any], fields: dict[str, Any]) -> Reject | None:
    rec = Record(id=record_id, source=source, fields=fields)
    for gate in gates:
        verdict = gate.check(rec)
        if verdict is not None:
            return verdict
    return None
