"""The three shipped pipelines, end to end against the loopback server, with counts by reason.

The fake model's replies are scripted per input row so that every gate has something to catch:
a wrong final answer, a copy of the source question, a GSM8K *test* question, two near-identical
rephrases, and bad dialogue turn structures. The YAML files under pipelines/ are used as shipped;
only input, output dir and base URL are overridden (the same flags a user has).
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path
from typing import Any

import datasets
import pytest

from datafactory import augment, load_pipeline
from datafactory.testing.loopback import LoopbackServer

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "pipelines" / "data" / "gsm8k_train_sample.jsonl"
GSM8K_TEST = REPO / "datafactory" / "data" / "gsm8k" / "test.jsonl"


def _rows(n: int) -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()[:n]]


def _problem_and_answer(body: dict[str, Any]) -> tuple[str, str]:
    user = body["messages"][-1]["content"] if body["messages"][-1]["role"] == "user" else ""
    for m in body["messages"]:
        if m["role"] == "user":
            user = m["content"]
            break
    problem = user.split("Problem:\n", 1)[1].split("\n\n", 1)[0].strip()
    ref = re.findall(r"####\s*([-\d,.]+)", user)
    return problem, ref[0].replace(",", "") if ref else "0"


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-pipelines")


def _load(pipeline: str, tmp_path: Path, server: LoopbackServer, inp: Path) -> Any:
    return load_pipeline(REPO / "pipelines" / pipeline, input=str(inp), output=str(tmp_path / "run"),
                         base_url=server.base_url)


def test_gsm8k_rephrase_pipeline_gates_every_failure_kind_and_writes_loadable_alpaca(tmp_path, api_key):
    rows = _rows(12)
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    test_question = json.loads(GSM8K_TEST.read_text().splitlines()[5])["question"]
    index = {r["question"].strip(): i for i, r in enumerate(rows)}

    def responder(body: dict[str, Any], k: int) -> str:
        problem, answer = _problem_and_answer(body)
        i = index[problem]
        question = f"Here is the same problem told differently (case {i}): {problem[::-1]}"
        if i == 1:
            answer = str(int(float(answer)) + 1)          # wrong final answer
        if i == 2:
            question = problem                             # a "rephrase" identical to its source
        if i == 3:
            question = "Consider this: " + test_question   # leaks a GSM8K test question
        if i == 5:                                         # near copy of row 4's rephrase
            question = f"Here is the same problem told otherwise (case 4): {rows[4]['question'].strip()[::-1]}"
        return json.dumps({"question": question, "answer": f"Step by step.\n#### {answer}"})

    with LoopbackServer(responder=responder) as server:
        stats = augment(_load("gsm8k_rephrase.yaml", tmp_path, server, inp))
        assert server.requests == 12
    run = tmp_path / "run"
    assert stats.written == 8
    assert dict(stats.rejected) == {"answer_mismatch": 1, "duplicate": 1, "contaminated": 1, "near_duplicate": 1}
    rejects = {r["reason"]: r for r in map(json.loads, (run / "rejects.jsonl").read_text().splitlines())}
    assert "gsm8k" in rejects["contaminated"]["last_error"]
    ds = datasets.load_dataset("json", data_files=str(run / "data" / "gsm8k_rephrase.jsonl"), split="train")
    assert ds.num_rows == 8 and set(ds.column_names) == {"instruction", "input", "output"}
    info = json.loads((run / "dataset_info.json").read_text())
    assert info["gsm8k_rephrase"]["file_name"] == "data/gsm8k_rephrase.jsonl"
    assert json.loads((run / "stats.json").read_text())["rejected"]["contaminated"] == 1


def test_gsm8k_preference_pipeline_pairs_correct_and_wrong_samples_and_counts_the_rest(tmp_path, api_key):
    rows = _rows(6)
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    index = {r["question"].strip(): i for i, r in enumerate(rows)}

    def responder(body: dict[str, Any], k: int) -> str:
        problem, _ = _problem_and_answer(body)
        i = index[problem]
        answer = rows[i]["answer"].split("####")[1].strip().replace(",", "")
        right = f"Work it out.\n#### {answer}"
        wrong = f"A slip somewhere.\n#### {int(float(answer)) + 7}"
        if i == 0:
            text = right                 # all correct → no_wrong_sample
        elif i == 1:
            text = wrong                 # all wrong → no_correct_sample
        else:
            text = right if k % 2 == 0 else wrong
        return json.dumps({"answer": text})

    with LoopbackServer(responder=responder) as server:
        stats = augment(_load("gsm8k_preference.yaml", tmp_path, server, inp))
        assert server.requests == 6                    # n=4 samples come back in one request
    assert stats.written == 4
    assert dict(stats.rejected) == {"no_wrong_sample": 1, "no_correct_sample": 1}
    run = tmp_path / "run"
    ds = datasets.load_dataset("json", data_files=str(run / "data" / "gsm8k_preference.jsonl"), split="train")
    assert set(ds.column_names) == {"instruction", "input", "chosen", "rejected"}
    first = ds[0]
    assert first["instruction"] == rows[2]["question"]
    assert first["chosen"].endswith(rows[2]["answer"].split("####")[1].strip())
    assert not first["rejected"].endswith(rows[2]["answer"].split("####")[1].strip())
    info = json.loads((run / "dataset_info.json").read_text())["gsm8k_preference"]
    assert info["ranking"] is True


def test_dialogue_expand_pipeline_explodes_dialogues_checks_turns_and_dedups(tmp_path, api_key):
    seeds = REPO / "pipelines" / "data" / "seed_dialogues.jsonl"

    def responder(body: dict[str, Any], k: int) -> str:
        topic = re.search(r"topic: ([^)]+)\)", body["messages"][1]["content"]).group(1)
        asks = ["What is the first thing to check when", "Could you explain slowly why", "My neighbour insists that"]
        says = ["Begin with the basics and write down every step", "Because the rules changed last spring, nobody knew",
                "That is a common myth; the real answer depends on"]
        def words(salt: str) -> str:  # 30 pseudo-random words: distinct dialogues really differ
            return " ".join(f"w{zlib.crc32(f'{topic}/{salt}/{t}'.encode()) % 9973}" for t in range(30))

        good = [{"conversations": [{"from": "human", "value": f"{asks[j]} {topic} goes wrong? {words(f'q{j}')}"},
                                   {"from": "gpt", "value": f"{says[j]} for {topic}. {words(f'a{j}')}"}]}
                for j in range(3)]
        bad_order = {"conversations": [{"from": "gpt", "value": f"I speak first about {topic}."},
                                       {"from": "human", "value": "That is the wrong order."}]}
        dup = good[0]
        return json.dumps({"dialogues": [*good, bad_order, dup]})

    with LoopbackServer(responder=responder) as server:
        stats = augment(_load("dialogue_expand.yaml", tmp_path, server, seeds))
        assert server.requests == 5
    assert stats.written == 15                      # 5 seeds × 3 good dialogues
    assert dict(stats.rejected) == {"bad_turns": 5, "duplicate": 5}
    run = tmp_path / "run"
    ds = datasets.load_dataset("json", data_files=str(run / "data" / "dialogue_expand.jsonl"), split="train")
    assert ds.num_rows == 15
    assert ds[0]["conversations"][0]["from"] == "human"
    info = json.loads((run / "dataset_info.json").read_text())["dialogue_expand"]
    assert info["formatting"] == "sharegpt"
