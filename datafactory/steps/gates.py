"""The gate steps: one frozen config dataclass each (its fields are the YAML keys and their only
defaults), registered by YAML name in flow order — cheap filters first, then the answer check and
decontamination, dedup last, so a record rejected for another reason never enters the dedup memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datafactory.config.spec import doc, non_negative, positive
from datafactory.steps.registry import register

if TYPE_CHECKING:
    from datafactory.quality.gate import Gate
    from datafactory.steps.reads import GateContext


def _share(value: Any) -> str | None:
    return None if 0 < value <= 1 else "must be in (0, 1]"


def _fields(what: str) -> Any:
    return field(metadata=doc(f"output column(s) or schema property(ies) {what}"))


@register("empty_fields")
@dataclass(frozen=True)
class EmptyFieldsConfig:
    fields: str | list[str] = _fields("that must be present and non-empty")

    def build(self, ctx: GateContext) -> Gate:
        from datafactory.quality.filters import EmptyFieldFilter

        return EmptyFieldFilter(ctx.reads(self.fields))


@register("language")
@dataclass(frozen=True)
class LanguageConfig:
    fields: str | list[str] = _fields("whose letters are counted by script")
    allowed: list[str] = field(default_factory=lambda: ["en"], metadata=doc(
        "ISO 639 codes (or script names) whose scripts are allowed"))
    min_share: float = field(default=0.8, metadata=doc("share of letters that must be in an allowed script",
                                                       check=_share))

    def build(self, ctx: GateContext) -> Gate:
        from datafactory.quality.filters import LanguageFilter

        return LanguageFilter(ctx.reads(self.fields), allowed=tuple(self.allowed), min_share=self.min_share)


@register("length")
@dataclass(frozen=True)
class LengthConfig:
    fields: str | list[str] = _fields("whose joined, stripped text is measured")
    min_chars: int = field(default=1, metadata=doc("fewer characters: `too_short`", check=non_negative))
    max_chars: int = field(default=20000, metadata=doc("more characters: `too_long`", check=positive))

    def build(self, ctx: GateContext) -> Gate:
        from datafactory.quality.filters import LengthFilter

        return LengthFilter(ctx.reads(self.fields), min_chars=self.min_chars, max_chars=self.max_chars)


@register("answer_check")
@dataclass(frozen=True)
class AnswerCheckConfig:
    output_field: str = field(default="output", metadata=doc(
        "output column or schema property holding the solution whose final answer is checked"))
    source_field: str = field(default="answer", metadata=doc(
        "mapped input field holding the reference solution (`#### N`)"))

    def build(self, ctx: GateContext) -> Gate | None:
        if ctx.paired:
            return None  # preference/KTO: the answer check tags samples right/wrong in the pairing
        from datafactory.quality.gsm8k import AnswerCheck

        return AnswerCheck(output_field=ctx.reads(self.output_field)[0], source_field=self.source_field)


def _methods(value: Any) -> str | None:
    from datafactory.quality.decontam_gate import METHODS

    bad = [m for m in value if m not in METHODS]
    if bad or not value:
        return f"must be a non-empty list of {', '.join(METHODS)}, got {value!r}"
    return None


@register("decontaminate")
@dataclass(frozen=True)
class DecontaminateConfig:
    fields: str | list[str] = _fields("checked against the eval sets")
    ngram: int = field(default=13, metadata=doc("`ngram` method: a shared run of this many words rejects",
                                                check=positive))
    eval_sets: list[str] = field(default_factory=lambda: ["gsm8k"], metadata=doc(
        "built-in eval set names (`gsm8k`) or JSONL paths (relative to the pipeline file); several at once"))
    text_field: str = field(default="question", metadata=doc("field of a JSONL eval set holding the text"))
    methods: list[str] = field(default_factory=lambda: ["ngram", "rephrase", "identity"], metadata=doc(
        "`ngram` (a shared word n-gram), `rephrase` (masked n-gram containment + names/numbers: reordered, "
        "renamed, renumbered, reworded copies), `identity` (the names, numbers and rare words of a near item)",
        check=_methods))
    threshold: float = field(default=0.570, metadata=doc(
        "`rephrase` verdict score (wording, then shape against the 2 nearest items) at or above which a text is "
        "contaminated (0.570: 0.7% false positives on GSM8K train, see benchmarks/decontam.py)", check=_share))
    inputs: list[str] = field(default_factory=list, metadata=doc(
        "mapped input fields checked before the request: a contaminated input row costs nothing"))
    judge: bool = field(default=False, metadata=doc(
        "ask the pipeline's model \"same problem?\" about borderline records (cached, counted in cost)"))
    judge_above: float = field(default=0.48, metadata=doc(
        "`rephrase` score from which a kept record goes to the judge", check=_share))
    judge_top_k: int = field(default=2, metadata=doc("nearest eval items the judge compares", check=positive))

    def build(self, ctx: GateContext) -> Gate:
        from datafactory.quality.decontam_gate import DecontamGate

        return DecontamGate(ctx.reads(self.fields), self.eval_sets, self.text_field, ngram=self.ngram,
                            methods=self.methods, threshold=self.threshold, inputs=self.inputs, judge=self.judge,
                            judge_above=self.judge_above, judge_top_k=self.judge_top_k)


@register("exact_dedup")
@dataclass(frozen=True)
class ExactDedupConfig:
    fields: str | list[str] = _fields("whose normalised text must be new")
    against_input: list[str] | None = field(default=None, metadata=doc(
        "mapped input fields also remembered: output repeating its input is a duplicate"))

    def build(self, ctx: GateContext) -> Gate:
        from datafactory.quality.dedup import ExactDedup

        return ExactDedup(ctx.reads(self.fields))


@register("near_dedup")
@dataclass(frozen=True)
class NearDedupConfig:
    fields: str | list[str] = _fields("compared by MinHash with what was kept")
    threshold: float = field(default=0.8, metadata=doc("estimated Jaccard similarity that counts as a copy",
                                                       check=_share))
    shingle: int = field(default=3, metadata=doc("words per shingle", check=positive))
    num_perm: int = field(default=128, metadata=doc("MinHash permutations", check=positive))
    seed: int = field(default=1, metadata=doc("MinHash seed"))

    def build(self, ctx: GateContext) -> Gate:
        from datafactory.quality.dedup import NearDedup

        return NearDedup(ctx.reads(self.fields), threshold=self.threshold, num_perm=self.num_perm,
                         shingle=self.shingle, seed=self.seed)
