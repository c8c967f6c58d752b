"""The decontamination gate: eval items copied word for word *or rephrased* are rejected, on the output
and (before any request) on the input.

Three methods, cheapest verdict first, all over one tokenisation shared with the dedup gates:

* ``ngram``: a normalised word ``ngram`` (13) shared with an eval item (:class:`Decontaminator`);
* ``rephrase``, in two stages: the rephrase score of :class:`~datafactory.quality.decontam_score.RephraseIndex`
  (names/numbers/rare words masked, 3/2/1-gram containment plus the item's names and numbers: what a
  reordered, renamed, renumbered or reworded copy keeps) ranks every eval item; then the two best are
  checked for the same *shape* (words, digit words, sentences, and how far the best stands out:
  :mod:`~datafactory.quality.decontam_verify`); a verdict score at or above ``threshold`` rejects;
* ``identity``: the text's names, numbers and rare words are (nearly) those of one of its two nearest
  items (Jaccard >= 0.6, 3 or more shared, verdict score >= 0.45) — a free rewording that kept the
  quantities and the cast.

A reject is reason ``contaminated`` with the eval item, the method and its score in the detail:
``gsm8k-test:222 rephrase 0.93: "Andy plants 90 geraniums and 40 fewer petunias that geraniums. ..."``.

``check_source`` / ``check_sources`` judge the mapped input variables named in ``inputs`` the same way before the row's
request is built, so a test question given as input costs nothing. ``acheck`` is the optional LLM
judge (:mod:`datafactory.quality.decontam_judge`) for candidates scoring in ``[judge_above, threshold)``.
Counters per eval set (what was rejected, by stage and method) are kept current in ``report``, the
``decontamination`` block of stats.json (``stats_section``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from datafactory.quality.decontam import Decontaminator, EvalSpec, eval_set_path, load_eval_set
from datafactory.quality.decontam_score import RephraseIndex
from datafactory.quality.decontam_verify import THRESHOLD, Shapes, features, floor, row_shapes, verdict_scores
from datafactory.quality.gate import FieldSpec, Reject, field_names, field_texts, value_text
from datafactory.quality.normalize import TokenBatch, tokenize_batch, tokens_for
from datafactory.record import Record

METHODS = ("ngram", "rephrase", "identity")
# ``identity``: a text whose names, numbers and rare words are (nearly) those of an eval item it is close
# to — a rewording that kept the quantities and the cast. Jaccard of the two sets, with a few shared at least
IDENTITY_JACCARD = 0.6
IDENTITY_SHARED = 3
IDENTITY_FLOOR = 0.45  # rephrase verdict score from which a text's two nearest items are compared this way
SHOWN_CHARS = 80  # start of the eval item's text quoted in a reject
NEAREST_HELD = 4096  # kept records whose judge candidates wait for acheck


class DecontamGate:
    """Rejects records (and input rows) that copy or rephrase an eval item (see the module docstring)."""

    name = "decontam"
    stats_section = "decontamination"  # the key of :attr:`report` in stats.json's sections

    def __init__(self, fields: FieldSpec = ("question",), eval_sets: Sequence[EvalSpec] = ("gsm8k",),
                 text_field: str = "question", *, ngram: int = 13, methods: Sequence[str] = METHODS,
                 threshold: float = THRESHOLD, inputs: Sequence[str] = (), judge: bool = False,
                 judge_above: float = 0.48, judge_top_k: int = 2) -> None:
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {list(methods)}")
        self.fields = field_names(fields)
        self.methods = tuple(methods)
        self.threshold, self.inputs = threshold, tuple(inputs)
        self.judge_enabled, self.judge_above, self.judge_top_k = judge, judge_above, judge_top_k
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.set_names: list[str] = []
        self._set_of: list[int] = []
        for spec in eval_sets:
            path = eval_set_path(spec)
            items = load_eval_set(path, text_field)
            name = items[0][0].rsplit(":", 1)[0] if items else path.stem
            self.set_names.append(name)
            self._set_of.extend([len(self.set_names) - 1] * len(items))
            self.ids.extend(i for i, _ in items)
            self.texts.extend(t for _, t in items)
        self.exact = Decontaminator(ngram=ngram, fields=self.fields, eval_sets=())
        self.exact.add_items(zip(self.ids, self.texts, strict=True))
        self.index = RephraseIndex(self.texts) if {"rephrase", "identity"} & set(self.methods) or judge else None
        if self.index is not None:
            raw = tokenize_batch(self.texts)
            self.shapes = Shapes(raw, self.index.masked_counts(raw), self.texts)
        self.floor = floor(threshold)
        # the stats.json block, kept current: per eval set its rejects by stage ("output"/"input") and
        # method; the judge's requests and answers
        sizes = Counter(self._set_of)
        self.report: dict[str, Any] = {
            "eval_sets": {name: {"items": sizes[i], "rejected": 0} for i, name in enumerate(self.set_names)},
            "methods": list(self.methods), "threshold": self.threshold, "inputs": list(self.inputs)}
        if judge:
            self.report["judge"] = {}
        self._nearest: dict[str, list[tuple[int, float]]] = {}  # judge: kept texts -> their candidates

    @property
    def items(self) -> int:
        return len(self.ids)

    def set_of(self, item: int) -> int:
        """Index (into ``set_names``) of the eval set item ``item`` came from."""
        return self._set_of[item]

    # ------------------------------------------------------------------ the verdicts
    def check(self, record: Record) -> Reject | None:
        return self.check_batch([record])[0]

    def check_batch(self, records: Sequence[Record]) -> list[Reject | None]:
        """Equal to ``[check(r) for r in records]``, in one pass per method."""
        return self.check_texts(field_texts(records, self.fields))

    def check_source(self, source: dict[str, Any]) -> Reject | None:
        """The input row's variables named in ``inputs``, joined by newlines, judged like an output."""
        return self.check_sources([source])[0]

    def check_sources(self, sources: Sequence[dict[str, Any]]) -> list[Reject | None]:
        """``[check_source(s) for s in sources]`` in one pass (a batch of input rows costs about what the
        same rows cost as outputs; one row alone pays the numpy overhead, ~0.5 ms)."""
        if not self.inputs or not sources:
            return [None] * len(sources)
        texts = ["\n".join(value_text(source.get(name)) for name in self.inputs) for source in sources]
        # tokenised on their own: the shared last-batch tokens (tokens_for) stay those of the output gates
        return self.check_tokens(tokenize_batch(texts), texts, stage="input")

    def check_texts(self, texts: Sequence[str], stage: str = "output") -> list[Reject | None]:
        """Judge any texts the way ``check_batch`` judges records' fields."""
        return self.check_tokens(tokens_for(texts), texts, stage)

    def check_tokens(self, tokens: TokenBatch, texts: Sequence[str], stage: str = "output") -> list[Reject | None]:
        """Per row of ``tokens`` (the normalised ``texts``): the ``ngram`` verdict, else the ``rephrase`` one,
        else ``identity`` (``stage`` is counted). With the judge on, each kept row's judge candidates are
        remembered for ``acheck``."""
        n = len(tokens)
        out: list[Reject | None] = [None] * n
        if not n or not self.ids:
            return out
        if "ngram" in self.methods:
            for row, hit in enumerate(self.exact.hits(tokens)):
                if hit is not None:
                    out[row] = self._reject(hit[0], f"ngram{self.exact.ngram}", 1.0, stage, f' shares "{hit[1]}"')
        index = self.index
        if index is None or not ({"rephrase", "identity"} & set(self.methods)):
            return out
        rest = np.array([row for row, verdict in enumerate(out) if verdict is None], np.int64)
        if not len(rest):
            return out
        part = tokens.select(rest) if len(rest) < n else tokens
        part_texts = [texts[r] for r in rest.tolist()]
        top = max(self.judge_top_k if self.judge_enabled else 2, 2)
        items, first = index.best(part, top)
        scores = self.verify(part, part_texts, items, first)
        if self.judge_enabled and len(self._nearest) > NEAREST_HELD:
            self._nearest.clear()  # records not judged after all (rejected by a later gate)
        same: dict[int, tuple[int, int, float]] = {}
        if "identity" in self.methods:
            decided = scores[:, 0] >= self.threshold if "rephrase" in self.methods else np.zeros(len(scores), np.bool_)
            near = np.flatnonzero((scores[:, 0] >= IDENTITY_FLOOR) & ~decided)  # rephrase rejects stand first
            shared, jaccard = index.identity(part, near, items[near, :2])
            for j, sh, jac, cand in zip(near.tolist(), shared.tolist(), jaccard.tolist(), items[near, :2].tolist(),
                                        strict=True):
                for c in range(len(cand)):
                    if sh[c] >= IDENTITY_SHARED and jac[c] >= IDENTITY_JACCARD:
                        same[j] = (cand[c], sh[c], jac[c])
                        break
        rephrased = (np.flatnonzero(scores[:, 0] >= self.threshold).tolist() if "rephrase" in self.methods
                     else [])
        rows = rest.tolist()
        for j in sorted({*rephrased, *same}):  # in row order (the counters' keys appear in that order)
            if j in same:  # never a rephrase reject too: those rows are not compared for identity
                item, count, jac = same[j]
                out[rows[j]] = self._reject(item, "identity", jac, stage, f" ({count} names/numbers in common)")
            else:
                out[rows[j]] = self._reject(int(items[j, 0]), "rephrase", float(scores[j, 0]), stage)
        if self.judge_enabled:
            k = self.judge_top_k
            for j, row in enumerate(rows):
                if out[row] is None:
                    pairs = zip(items[j, :k].tolist(), scores[j, :k].tolist(), strict=True)
                    self._nearest[texts[row]] = [(i, s) for i, s in pairs if s >= self.judge_above]
        return out

    def verify(self, tokens: TokenBatch, texts: Sequence[str], items: np.ndarray,
               first: np.ndarray) -> np.ndarray:
        """The rephrase verdict scores (:mod:`decontam_verify`) of each row's candidate ``items`` (best first)
        from their first-stage scores ``first``, re-sorted best first along with ``items``
        (in place). Rows whose best first-stage score is under the floor score 0 without further work."""
        out = np.zeros(first.shape, np.float64)
        rows = np.flatnonzero(first[:, 0] >= self.floor)
        if not len(rows):
            return out
        assert self.index is not None
        mine = row_shapes(tokens, self.index.masked_counts(tokens), texts, rows)
        picked = items[rows]
        scores = verdict_scores(features(self.shapes, mine, picked, first[rows]))
        if scores.shape[1] == 2:  # the stable sort of two: swap where the runner-up now scores higher
            swap = np.flatnonzero(scores[:, 1] > scores[:, 0])
            scores[swap] = scores[swap, ::-1]
            picked[swap] = picked[swap, ::-1]
        else:
            order = np.argsort(-scores, axis=1, kind="stable")
            picked = np.take_along_axis(picked, order, axis=1)
            scores = np.take_along_axis(scores, order, axis=1)
        items[rows] = picked
        out[rows] = scores
        return out

    def candidates(self, text: str) -> list[tuple[int, float]]:
        """The ``judge_top_k`` eval items nearest to ``text`` by rephrase score, best first."""
        if self.index is None or not self.ids:
            return []
        held = self._nearest.pop(text, None)
        if held is not None:
            return held
        tokens = tokenize_batch([text])
        items, first = self.index.best(tokens, max(self.judge_top_k, 2))
        scores = self.verify(tokens, [text], items, first)
        k = self.judge_top_k
        return list(zip(items[0, :k].tolist(), scores[0, :k].tolist(), strict=True))

    async def acheck(self, record: Record, ask: Any) -> Reject | None:
        """The LLM judge for a record the batch methods kept (off unless ``judge``)."""
        if not self.judge_enabled:
            return None
        from datafactory.quality.decontam_judge import judge

        return await judge(self, field_texts([record], self.fields)[0], ask)

    # ------------------------------------------------------------------ rejects and counts
    def _reject(self, item: int, method: str, score: float, stage: str, extra: str = "") -> Reject:
        self.count(item, f"{stage}_{method.rstrip('0123456789')}")
        return Reject("contaminated", f"{self.ids[item]} {method} {score:.2f}{extra}: {self.quote(item)}")

    def quote(self, item: int) -> str:
        text = " ".join(self.texts[item].split())
        return '"' + (text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS].rstrip() + " ...") + '"'

    def count(self, item: int, key: str) -> None:
        """One more reject of ``key`` (stage_method) against ``item``'s eval set."""
        entry = self.report["eval_sets"][self.set_names[self._set_of[item]]]
        entry[key] = entry.get(key, 0) + 1
        entry["rejected"] += 1

    def count_judge(self, key: str) -> None:
        judge = self.report.setdefault("judge", {})
        judge[key] = judge.get(key, 0) + 1

    def counters(self) -> dict[str, Any]:
        """What this gate rejected in this process, per eval set, plus the judge's requests: the
        ``decontamination`` block of stats.json (a copy of :attr:`report`, which is kept current)."""
        return json.loads(json.dumps(self.report))


def decontamination_section(gates: Sequence[object]) -> dict[str, Any] | None:
    """The ``decontamination`` block of stats.json from a run's built gates (None: no such gate)."""
    for gate in gates:
        if isinstance(gate, DecontamGate):
            return gate.counters()
    return None
