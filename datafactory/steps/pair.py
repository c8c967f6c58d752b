"""Preference / KTO: every sample is a record of its own until the pairing step.

* :class:`SampleStep` gives each parsed sample its fields — the sample as a one-turn row (the prompt as
  ``instruction`` — or a user turn — and the sample's solution as ``output``) over the model's object —
  and the answer check's tag in ``meta["correct"]`` (``AnswerCheck``: the final answer equals the
  source's). The per-sample gates (length, language, empty fields, decontamination) then run on every
  sample, like on any row.
* :class:`PairStep` takes the samples that passed and makes the row's output: one ``chosen``/``rejected``
  pair (preference: the first correct and the first wrong sample), or one tagged row per sample (KTO:
  correct first). A row whose samples are all correct or all wrong is a ``pair`` reject saying so.
  Gates with memory (dedup) run on what pairing makes — the rows that are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datafactory.config.pipeline import Pipeline
from datafactory.engine.outcome import is_rejected, rejected
from datafactory.formats import output as shapes
from datafactory.quality.gsm8k import AnswerCheck, extract_answer
from datafactory.record import Record


class SampleStep:
    def __init__(self, pipe: Pipeline) -> None:
        check = pipe.quality.get("answer_check")
        self.output = pipe.output
        self.out_field = check.output_field
        self.check = AnswerCheck(output_field=check.output_field, source_field=check.source_field)

    def __call__(self, rec: Record) -> None:
        """``rec`` (parsed) gets its one-turn row view and its right/wrong tag."""
        obj = rec.fields
        text = str(obj.get(self.out_field, ""))
        row = shapes.kto(self.output, shapes.prompt_text(self.output, rec.source), text, True)
        del row["kto_tag"]
        rec.fields = {**obj, **row}
        rec.meta["text"] = text
        rec.meta["correct"] = self.check.check(rec) is None


class PairStep:
    def __init__(self, pipe: Pipeline) -> None:
        self.output = pipe.output
        self.kto = pipe.output.format == "kto"
        self.source_field = pipe.quality.get("answer_check").source_field

    def __call__(self, row: Record, samples: Sequence[Record]) -> list[Record]:
        """The row's output records: pairs / tagged rows, or a ``pair`` reject (sample rejects are kept
        by the caller)."""
        valid = [s for s in samples if not is_rejected(s)]
        if not valid:
            return [] if samples else [rejected(row.id, "pair", "no_valid_sample", seq=row.meta.get("seq", 0))]
        good = [s for s in valid if s.meta["correct"]]
        bad = [s for s in valid if not s.meta["correct"]]
        prompt = shapes.prompt_text(self.output, row.source)
        attempts = max(s.meta.get("attempts", 0) for s in valid)
        meta: dict[str, Any] = {"seq": row.meta.get("seq", 0), "attempts": attempts}
        if self.kto:
            return [Record(id=s.id, source=row.source, meta=dict(meta),
                           fields=shapes.kto(self.output, prompt, s.meta["text"], tag))
                    for tag, group in ((True, good), (False, bad)) for s in group]
        if good and bad:
            pair = shapes.preference(self.output, prompt, good[0].meta["text"], bad[0].meta["text"])
            return [Record(id=row.id, source=row.source, fields=pair, meta=meta)]
        reason = "no_correct_sample" if not good else "no_wrong_sample"
        expected = extract_answer(str(row.source.get(self.source_field, "")))
        return [rejected(row.id, "pair", reason, f"{len(good)} correct and {len(bad)} wrong of {len(samples)} "
                         f"samples (expected answer {expected})", **meta)]
