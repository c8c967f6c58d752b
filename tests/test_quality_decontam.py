"""Decontamination against evaluation sets, including the shipped GSM8K test split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datafactory.errors import InputError, UnknownName
from datafactory.quality.decontam import Decontaminator, builtin_eval_set, load_eval_set
from datafactory.quality.gate import Gate
from datafactory.record import Record


@pytest.fixture(scope="module")
def gsm8k() -> Decontaminator:
    return Decontaminator(fields=("question", "answer"))


@pytest.fixture(scope="module")
def test_questions() -> list[str]:
    return [json.loads(line)["question"] for line in builtin_eval_set("gsm8k").open()]


def rec(question: str, answer: str = "") -> Record:
    return Record(id="r", source={}, fields={"question": question, "answer": answer})


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_gsm8k_test_split_ships_with_its_mit_license() -> None:
    path = builtin_eval_set("gsm8k")
    assert path.name == "test.jsonl" and path.is_file()
    assert len(path.read_text(encoding="utf-8").splitlines()) == 1319
    assert "MIT License" in (path.parent / "LICENSE").read_text(encoding="utf-8")
    with pytest.raises(UnknownName, match="gsm8k"):
        builtin_eval_set("gsm9k")


def test_gsm8k_test_question_copied_verbatim_is_contaminated_and_named(
    gsm8k: Decontaminator, test_questions: list[str]
) -> None:
    verdict = gsm8k.check(rec(test_questions[123]))
    assert verdict is not None and verdict.reason == "contaminated"
    assert verdict.detail.startswith("gsm8k-test:123 ")
    assert gsm8k.items == 1319 and len(gsm8k) > 40_000


def test_gsm8k_test_question_paraphrased_with_same_13gram_is_caught(gsm8k: Decontaminator) -> None:
    # test item 0 reworded around one untouched 13-word run ("She eats three ... with four")
    paraphrase = (
        "Every day Janet collects sixteen duck eggs. She eats three for breakfast every morning and "
        "bakes muffins for her friends every day with four, then sells what is left for $2 each. "
        "What does she earn?"
    )
    verdict = gsm8k.check(rec(paraphrase))
    assert verdict is not None and verdict.reason == "contaminated"
    assert verdict.detail.startswith("gsm8k-test:0 ")
    assert '"she eats three for breakfast every morning and bakes muffins for her friends' in verdict.detail


def test_case_punctuation_and_spacing_do_not_hide_a_copy(
    gsm8k: Decontaminator, test_questions: list[str]
) -> None:
    shouted = "  ".join(test_questions[5].upper().replace(".", " !").split())
    verdict = gsm8k.check(rec("Here is a question.", answer=shouted))
    assert verdict is not None and verdict.detail.startswith("gsm8k-test:5 ")


def test_twelve_shared_words_are_not_contamination(gsm8k: Decontaminator) -> None:
    twelve = "she eats three for breakfast every morning and bakes muffins for her"
    assert gsm8k.check(rec(f"Maria counts pencils. {twelve} cousins on Sunday.")) is None
    unrelated = "Tom buys 4 pencils for $3 each and pays with a $20 bill. What is his change?"
    assert gsm8k.check(rec(unrelated)) is None


def test_eval_item_shorter_than_n_words_is_matched_whole(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {"prompt": "What is two plus two?"},
        {"prompt": ""},
        {"prompt": "A much longer evaluation prompt that has more than thirteen words in it, surely."},
    ]
    path = write_jsonl(tmp_path / "tiny.jsonl", rows)
    gate = Decontaminator(ngram=13, fields="text", eval_sets=[path], text_field="prompt")
    quiz = "Quick quiz: what is TWO plus two? Answer fast."
    hit = gate.check(Record(id="a", source={}, fields={"text": quiz}))
    assert hit is not None and hit.detail == f'{tmp_path.name}-tiny:0 shares "what is two plus two"'
    assert gate.check(Record(id="b", source={}, fields={"text": "What is two plus three?"})) is None
    assert gate.items == 3


def test_eval_ids_are_row_indexes_prefixed_by_folder_and_file(tmp_path: Path) -> None:
    folder = tmp_path / "mmlu"
    folder.mkdir()
    path = write_jsonl(folder / "dev.jsonl", [{"question": "one two three"}, {"question": "four five six"}])
    (folder / "dev.jsonl").write_text(path.read_text() + "\n\n", encoding="utf-8")  # blank lines are skipped
    expected = [("mmlu-dev:0", "one two three"), ("mmlu-dev:1", "four five six")]
    assert load_eval_set(folder / "dev.jsonl") == expected
    gate = Decontaminator(ngram=3, fields="q", eval_sets=[folder / "dev.jsonl", "gsm8k"])
    verdict = gate.check_text("zebra four five six zebra")
    assert verdict is not None and verdict.detail == 'mmlu-dev:1 shares "four five six"'
    assert gate.items == 2 + 1319


def test_unreadable_eval_files_name_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "fine"}\n{not json\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:2: not JSON"):
        Decontaminator(eval_sets=[bad])
    missing_field = write_jsonl(tmp_path / "other.jsonl", [{"problem": "x"}])
    with pytest.raises(InputError, match=r"other.jsonl:1: no 'question' field"):
        Decontaminator(eval_sets=[missing_field])
    with pytest.raises(InputError, match="cannot read eval set"):
        Decontaminator(eval_sets=[tmp_path / "absent.jsonl"])
    with pytest.raises(ValueError):
        Decontaminator(ngram=0)


def test_decontaminator_is_a_gate(gsm8k: Decontaminator) -> None:
    assert isinstance(gsm8k, Gate) and gsm8k.name == "decontam"


def reference_verdicts(items: list[tuple[str, str]], texts: list[str], n: int) -> list[str | None]:
    """The rule in plain Python: the longest size first, then the first position; the first item
    owning an n-gram names it."""
    from datafactory.quality.normalize import normalize_words

    owner: dict[tuple[str, ...], str] = {}
    sizes = {n}
    for eval_id, text in items:
        words = normalize_words(text)
        if 0 < len(words) < n:
            sizes.add(len(words))
            owner.setdefault(tuple(words), eval_id)
        for i in range(len(words) - n + 1):
            owner.setdefault(tuple(words[i : i + n]), eval_id)
    out: list[str | None] = []
    for text in texts:
        words, found = normalize_words(text), None
        for size in sorted(sizes, reverse=True):
            for i in range(len(words) - size + 1):
                if (gram := tuple(words[i : i + size])) in owner:
                    found = f'{owner[gram]} shares "{" ".join(gram)}"'
                    break
            if found:
                break
        out.append(found)
    return out


def test_batch_verdicts_equal_the_plain_rule_on_mixed_records(test_questions: list[str]) -> None:
    import random

    rng = random.Random(5)
    items = [(f"e:{i}", q) for i, q in enumerate(test_questions[:200])]
    items += [("short:0", "What is two plus two?"), ("short:1", "Count the apples"), ("dup:0", test_questions[3])]
    texts: list[str] = []
    for k in range(300):
        words = rng.choice(test_questions).split()
        start = rng.randrange(max(len(words) - 14, 1))
        piece = " ".join(words[start : start + rng.choice([5, 12, 13, 20])])
        fill_words = ["so", "then", "apples", "two", "plus", "count"]
        filler = " ".join(rng.choice(fill_words) for _ in range(rng.randrange(12)))
        texts.append(rng.choice([f"{filler} {piece}", f"{piece} {filler}", filler, "", f"Count the APPLES! {k}"]))
    gate = Decontaminator(ngram=13, fields="question", eval_sets=[])
    gate.add_items(items)
    records = [Record(id=str(i), source={}, fields={"question": t}) for i, t in enumerate(texts)]
    got = [v.detail if v else None for s in range(0, len(records), 64) for v in gate.check_batch(records[s : s + 64])]
    assert got == reference_verdicts(items, texts, 13)
    assert sum(v is not None for v in got) > 50 and any(v and v.startswith("short:") for v in got)
