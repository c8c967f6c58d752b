"""Decontamination's second look (issue 14): the shape of the nearest eval items.

Against the shipped GSM8K test split; the rephrasings below are written the way a "rephrase this
question" prompt rewrites (names, numbers, wording and sentence order changed together), and the
negatives are real GSM8K *train* questions of the same genre as some test item.
"""

from __future__ import annotations

import numpy as np
import pytest

from datafactory.quality.decontam_gate import DecontamGate
from datafactory.quality.decontam_verify import digit_words, sentences
from datafactory.quality.normalize import tokenize_batch
from datafactory.record import Record

# test item 223 ("A company spends $15000 on advertising for a year, and then spends a third of that amount
# on advertising for another year. What's the total amount ...") and test item 543 ("For each small task
# accomplished, Jairus gets $0.8 while Jenny gets $0.5. If each of them finished 20 tasks, ...")
REPHRASED = {
    "gsm8k-test:223": "What's the total amount a firm paid for advertising over the two years, if it spent $24000 on "
                      "ads in the first year and then a fourth of that amount on advertising the following year?",
    "gsm8k-test:543": "If each of them completed 30 tasks, how much more will Tobias earn than Aisha? For every "
                      "little task done, Tobias receives $0.9 while Aisha receives $0.6.",
}
# GSM8K train questions that share a genre and stock phrases with a test item (test 312: "Trent is 5 years
# older than Jane, and Jane is 3 years younger than Quinn ..."; test 598: "... 8 quarters, 6 dimes, 14 nickels,
# and 15 pennies ...") but are other problems
SAME_GENRE = [
    "Kyle is 5 years older than Julian. Julian is 20 years younger than Frederick. Frederick is 2 times older than "
    "Tyson. If Tyson is 20, how old is Kyle?",
    "Tom finds 10 quarters, 3 dimes, and 4 nickels and 200 pennies. In dollars, how much money did he find?",
]


@pytest.fixture(scope="module")
def gate() -> DecontamGate:
    return DecontamGate(fields="question")


def rec(text: str) -> Record:
    return Record(id="r", source={}, fields={"question": text})


def test_rephrasing_with_names_numbers_wording_and_order_changed_is_rejected_naming_the_item(
        gate: DecontamGate) -> None:
    verdicts = gate.check_batch([rec(text) for text in REPHRASED.values()])
    for item, verdict in zip(REPHRASED, verdicts, strict=True):
        assert verdict is not None and verdict.reason == "contaminated"
        eval_id, method, score = verdict.detail.split(" ")[:3]
        assert (eval_id, method) == (item, "rephrase") and float(score.rstrip(":")) >= gate.threshold


def test_a_different_problem_of_the_same_genre_passes(gate: DecontamGate) -> None:
    assert gate.check_batch([rec(text) for text in SAME_GENRE]) == [None, None]


def test_shape_counts_quantities_as_digit_words_and_sentences_by_their_ends() -> None:
    texts = ["Sam has 3 apples and $2.50. He buys 12 more!", "No numbers here", "5 cats? 6 dogs."]
    assert digit_words(tokenize_batch(texts)).tolist() == [3, 0, 2]
    assert [sentences(t) for t in texts] == [2, 1, 2]
    assert np.array_equal(digit_words(tokenize_batch([""])), [0])
