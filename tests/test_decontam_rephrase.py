"""Decontamination that survives rephrasing (issue 14): the gate against the shipped GSM8K test split.

No data from outside the package: the eval set is the shipped copy of the test split, the
rephrasings are written out here, and the extra eval sets are small files made in tmp_path.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from datafactory.quality.decontam import Decontaminator, builtin_eval_set
from datafactory.quality.decontam_gate import DecontamGate, decontamination_section
from datafactory.quality.decontam_index import KeyTable, word_lcs
from datafactory.quality.gate import AsyncGate, BatchGate, SourceGate
from datafactory.quality.normalize import tokenize_batch
from datafactory.record import Record

# issue 14: test item 222 with its last sentence moved to the front; the longest shared run is 10 words
ISSUE_EXAMPLE = ("How many flowers does he plant total? Consider the following: Andy plants 90 geraniums and 40 "
                 "fewer petunias that geraniums.")
# test item 0 with other names and numbers, two synonyms and the sentences in another order
JANET_REWORDED = ("Every day, Maria sells the rest at the farmers' market for $3 per fresh duck egg. Maria's ducks "
                  "lay 20 eggs per day. She consumes four for breakfast every morning and bakes muffins for her pals "
                  "daily with five. How much in dollars does she earn every day at the farmers' market?")
# test item 10 reworded the way a "rephrase this question" prompt does: every number kept, the wording new
DOWNLOADS_REWORDED = ("In its first month a new program was downloaded 60 times. The second month saw three times "
                      "as many downloads, while the third month dropped 30% from the second. What was the total "
                      "number of downloads across the three months?")
UNRELATED = [
    "A baker sells 12 loaves of bread each hour for 8 hours. Each loaf costs $3. How much money does the baker "
    "make in a day?",
    "Tom buys 4 pencils for $3 each and pays with a $20 bill. What is his change?",
    "Lena reads 25 pages of her novel every night. The novel has 400 pages. After 9 nights, how many pages does "
    "she still have to read?",
    "A farmer has 3 fields. Each field has 14 rows of corn with 22 plants in each row. How many corn plants does "
    "the farmer have?",
]


@pytest.fixture(scope="module")
def gate() -> DecontamGate:
    return DecontamGate(fields="question")


def rec(text: str, i: int = 0) -> Record:
    return Record(id=f"r{i}", source={}, fields={"question": text})


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_issue_example_with_the_question_moved_to_the_front_is_contaminated_naming_the_item(
        gate: DecontamGate) -> None:
    assert Decontaminator(fields="question").check(rec(ISSUE_EXAMPLE)) is None  # what the 13-gram gate missed
    verdict = gate.check(rec(ISSUE_EXAMPLE))
    assert verdict is not None and verdict.reason == "contaminated"
    item, method, score, quote = verdict.detail.split(" ", 3)
    assert (item, method) == ("gsm8k-test:222", "rephrase") and float(score.rstrip(":")) >= gate.threshold
    assert quote.startswith('"Andy plants 90 geraniums and 40 fewer petunias that geraniums.')


def test_renamed_renumbered_reworded_and_reordered_test_question_is_caught(gate: DecontamGate) -> None:
    verdict = gate.check(rec(JANET_REWORDED))
    assert verdict is not None and verdict.detail.startswith("gsm8k-test:0 rephrase ")


def test_rewording_that_keeps_the_numbers_is_caught_by_the_names_and_numbers_it_shares(gate: DecontamGate) -> None:
    assert DecontamGate(fields="question", methods=["ngram", "rephrase"]).check(rec(DOWNLOADS_REWORDED)) is None
    verdict = gate.check(rec(DOWNLOADS_REWORDED))
    assert verdict is not None and verdict.detail.startswith("gsm8k-test:10 identity ")
    assert "names/numbers in common" in verdict.detail


def test_verbatim_copy_is_named_by_the_13_gram_method_with_the_shared_words(gate: DecontamGate) -> None:
    question = json.loads(builtin_eval_set("gsm8k").read_text(encoding="utf-8").splitlines()[5])["question"]
    verdict = gate.check(rec("Consider this: " + question))
    assert verdict is not None and verdict.detail.startswith("gsm8k-test:5 ngram13 1.00 shares \"")


def test_unrelated_grade_school_questions_are_kept(gate: DecontamGate) -> None:
    assert gate.check_batch([rec(t, i) for i, t in enumerate(UNRELATED)]) == [None] * len(UNRELATED)


def test_batch_verdicts_equal_one_record_at_a_time(gate: DecontamGate) -> None:
    texts = [ISSUE_EXAMPLE, *UNRELATED, JANET_REWORDED, DOWNLOADS_REWORDED, "", "How many?"]
    records = [rec(t, i) for i, t in enumerate(texts)]
    assert gate.check_batch(records) == [gate.check(r) for r in records]


def test_methods_ngram_alone_is_the_13_gram_gate(gate: DecontamGate) -> None:
    assert gate.methods == ("ngram", "rephrase", "identity")
    old = DecontamGate(fields="question", methods=["ngram"])
    assert old.index is None and old.check(rec(ISSUE_EXAMPLE)) is None
    with pytest.raises(ValueError, match="methods"):
        DecontamGate(fields="question", methods=["embedding"])


def test_fast_scores_equal_the_features_times_the_weights(gate: DecontamGate) -> None:
    assert gate.index is not None
    tokens = tokenize_batch([ISSUE_EXAMPLE, JANET_REWORDED, *UNRELATED, "", "one"])
    expected = gate.index.features(tokens) @ np.array(gate.index.weights, np.float32)
    np.testing.assert_allclose(gate.index.scores(tokens), expected, atol=1e-5)


def test_input_check_reads_only_the_configured_variables(gate: DecontamGate) -> None:
    assert gate.check_source({"question": ISSUE_EXAMPLE}) is None  # inputs: none by default
    checking = DecontamGate(fields="question", inputs=["question"])
    verdict = checking.check_source({"question": ISSUE_EXAMPLE, "answer": "#### 140"})
    assert verdict is not None and verdict.detail.startswith("gsm8k-test:222 rephrase ")
    assert checking.check_source({"question": UNRELATED[0], "answer": ISSUE_EXAMPLE}) is None
    assert checking.counters()["eval_sets"]["gsm8k-test"]["input_rephrase"] == 1
    sources = [{"question": t} for t in [UNRELATED[0], ISSUE_EXAMPLE, JANET_REWORDED, UNRELATED[1]]]
    assert checking.check_sources(sources) == [checking.check_source(s) for s in sources]
    assert [v is not None for v in checking.check_sources(sources)] == [False, True, True, False]
    assert isinstance(checking, SourceGate) and isinstance(checking, AsyncGate) and isinstance(checking, BatchGate)


def test_several_eval_sets_at_once_are_named_and_counted_each(tmp_path: Path) -> None:
    (tmp_path / "quiz").mkdir()
    quiz = write_jsonl(tmp_path / "quiz" / "dev.jsonl", [
        {"prompt": "A lighthouse keeper climbs 112 stairs four times a night. How many stairs is that in a week?"},
        {"prompt": "Zebras at the reserve drink 38 liters a day each; the reserve has 17 zebras. How many liters "
                   "do they drink in March?"},
    ])
    riddles = write_jsonl(tmp_path / "riddles.jsonl", [
        {"prompt": "An octopus painter finishes 3 canvases per tentacle. How many canvases are done?"},
    ])
    gate = DecontamGate(fields="question", eval_sets=[quiz, riddles], text_field="prompt")
    texts = ["How many liters do the zebras drink in March? The reserve has 21 zebras, each drinking 40 liters a day.",
             "Each tentacle of the octopus painter finishes 5 canvases. How many canvases are finished?",
             UNRELATED[1]]
    verdicts = gate.check_batch([rec(t, i) for i, t in enumerate(texts)])
    assert verdicts[0] is not None and verdicts[0].detail.startswith("quiz-dev:1 rephrase ")
    assert verdicts[1] is not None and verdicts[1].detail.startswith(f"{tmp_path.name}-riddles:0 rephrase ")
    assert verdicts[2] is None
    block = decontamination_section([object(), gate])
    assert block is not None
    assert block["eval_sets"] == {"quiz-dev": {"items": 2, "rejected": 1, "output_rephrase": 1},
                                  f"{tmp_path.name}-riddles": {"items": 1, "rejected": 1, "output_rephrase": 1}}
    assert decontamination_section([object()]) is None


def test_key_table_finds_exactly_its_keys() -> None:
    rng = np.random.default_rng(7)
    keys = np.unique(rng.integers(1, 2**63, 5000, dtype=np.int64).astype(np.uint64) * np.uint64(3))
    table = KeyTable(keys)
    queries = np.concatenate([keys, keys + np.uint64(1), rng.integers(1, 2**63, 3000).astype(np.uint64)])
    where = {int(k): i for i, k in enumerate(keys.tolist())}
    assert table.find(queries).tolist() == [where.get(int(q), -1) for q in queries.tolist()]
    assert KeyTable(np.zeros(0, np.uint64)).find(keys[:3]).tolist() == [-1, -1, -1]


def test_word_lcs_equals_the_dynamic_programme() -> None:
    rng = random.Random(3)
    for _ in range(200):
        a = [rng.randint(0, 4) for _ in range(rng.randint(0, 30))]
        b = [rng.randint(0, 4) for _ in range(rng.randint(0, 70))]
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
        assert word_lcs(a, b) == table[-1][-1]
