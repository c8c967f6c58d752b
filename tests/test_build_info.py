"""datafactory build-info: format detection and dataset_info.json merging (no LLaMA-Factory needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from datafactory.errors import ConfigError, UserError
from datafactory.formats.dataset_info import DatasetInfoClash, build_info, format_result, register
from datafactory.formats.detect import detect_file

FROM_VALUE_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                   "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
ROLE_CONTENT_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "observation_tag": "tool", "function_tag": "function_call",
                     "system_tag": "system"}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_info(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "dataset_info.json").read_text())


def turn(role: str, text: str, style: str = "from") -> dict[str, str]:
    return {"from": role, "value": text} if style == "from" else {"role": role, "content": text}


ALPACA = [{"instruction": "Add 2 and 3.", "input": "", "output": "5", "system": "Be brief.",
           "history": [["Hi", "Hello"]]},
          {"instruction": "Name a colour.", "input": "warm", "output": "red"}]


# ---------------------------------------------------------------- formats
def test_alpaca_with_system_and_history_gets_every_column(tmp_path: Path) -> None:
    det = detect_file(write_jsonl(tmp_path / "a.jsonl", ALPACA))
    assert det.format == "alpaca" and det.stage == "sft" and det.rows == 2
    assert det.entry == {"formatting": "alpaca", "columns": {
        "prompt": "instruction", "query": "input", "response": "output", "system": "system",
        "history": "history"}}


def test_alpaca_without_input_column_does_not_register_query(tmp_path: Path) -> None:
    # with "columns" present LLaMA-Factory sets unnamed columns to None; naming a missing one fails
    det = detect_file(write_jsonl(tmp_path / "qa.jsonl", [{"question": "2+2?", "answer": "4"}]))
    assert det.entry == {"formatting": "alpaca", "columns": {"prompt": "question", "response": "answer"}}


def test_sharegpt_from_value_with_system_and_tools_columns(tmp_path: Path) -> None:
    conv = [turn("human", "weather?"), turn("function_call", '{"name": "w"}'), turn("observation", "sunny"),
            turn("gpt", "It is sunny.")]
    det = detect_file(write_jsonl(tmp_path / "s.jsonl", [
        {"conversations": conv, "system": "You help.", "tools": '[{"name": "w"}]'}]))
    assert det.format == "sharegpt"
    assert det.entry == {"formatting": "sharegpt", "tags": FROM_VALUE_TAGS,
                         "columns": {"messages": "conversations", "system": "system", "tools": "tools"}}


def test_sharegpt_role_content_with_system_message_and_tool_turns(tmp_path: Path) -> None:
    msgs = [turn(role, text, "role") for role, text in [
        ("system", "Be kind."), ("user", "Hi"), ("assistant", "Hello"), ("user", "Call it"),
        ("function_call", "{}"), ("tool", "42"), ("assistant", "It is 42.")]]
    det = detect_file(write_jsonl(tmp_path / "chat.jsonl", [{"messages": msgs, "tools": "[]"}]))
    assert det.entry == {"formatting": "sharegpt", "tags": ROLE_CONTENT_TAGS,
                         "columns": {"messages": "messages", "tools": "tools"}}
    assert det.tag_slots_seen == {"system_tag", "user_tag", "assistant_tag", "function_tag",
                                  "observation_tag"}


def test_alpaca_preference_is_registered_with_ranking(tmp_path: Path) -> None:
    det = detect_file(write_jsonl(tmp_path / "p.jsonl", [
        {"instruction": "2+2?", "input": "", "chosen": "4", "rejected": "5"}]))
    assert det.format == "alpaca-preference" and det.stage == "dpo"
    assert det.entry == {"formatting": "alpaca", "ranking": True, "columns": {
        "prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}}


def test_sharegpt_preference_with_message_objects_is_registered_with_ranking(tmp_path: Path) -> None:
    det = detect_file(write_jsonl(tmp_path / "p.jsonl", [
        {"conversations": [turn("human", "2+2?")], "chosen": turn("gpt", "4"),
         "rejected": turn("gpt", "5")}]))
    assert det.format == "sharegpt-preference"
    assert det.entry == {"formatting": "sharegpt", "ranking": True, "tags": FROM_VALUE_TAGS, "columns": {
        "messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}


def test_kto_rows_get_the_kto_tag_column(tmp_path: Path) -> None:
    alpaca = detect_file(write_jsonl(tmp_path / "k.jsonl", [
        {"instruction": "2+2?", "output": "4", "kto_tag": True},
        {"instruction": "2+2?", "output": "5", "kto_tag": False}]))
    assert alpaca.format == "alpaca-kto" and alpaca.stage == "kto"
    assert alpaca.entry == {"formatting": "alpaca", "columns": {
        "prompt": "instruction", "response": "output", "kto_tag": "kto_tag"}}
    chat = detect_file(write_jsonl(tmp_path / "kc.jsonl", [
        {"messages": [turn("user", "2+2?", "role"), turn("assistant", "4", "role")], "kto_tag": True}]))
    assert chat.format == "sharegpt-kto"
    assert chat.entry == {"formatting": "sharegpt", "tags": ROLE_CONTENT_TAGS,
                          "columns": {"messages": "messages", "kto_tag": "kto_tag"}}


def test_boolean_label_column_is_a_kto_tag_like_llamafactorys_demo(tmp_path: Path) -> None:
    det = detect_file(write_jsonl(tmp_path / "k.jsonl", [
        {"messages": [turn("user", "Hi", "role"), turn("assistant", "Hello", "role")], "label": False}]))
    assert det.format == "sharegpt-kto"
    assert det.entry is not None and det.entry["columns"] == {"messages": "messages", "kto_tag": "label"}


def test_media_columns_are_registered(tmp_path: Path) -> None:
    det = detect_file(write_jsonl(tmp_path / "mm.jsonl", [
        {"messages": [turn("user", "<image>What is it?", "role"), turn("assistant", "A cat.", "role")],
         "images": ["img/cat.jpg"]}]))
    assert det.entry is not None and det.entry["columns"] == {"messages": "messages", "images": "images"}


def test_text_rows_are_pretraining_data(tmp_path: Path) -> None:
    det = detect_file(write_jsonl(tmp_path / "t.jsonl", [{"text": "Once upon a time."},
                                                          {"text": "The end."}]))
    assert (det.format, det.stage, det.rows) == ("text", "pt", 2)
    assert det.entry == {"formatting": "alpaca", "columns": {"prompt": "text"}}


def test_parquet_is_detected_with_its_row_count(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"instruction": f"q{i}", "output": f"a{i}"} for i in range(7)]),
                   tmp_path / "d.parquet")
    det = detect_file(tmp_path / "d.parquet")
    assert (det.format, det.rows) == ("alpaca", 7)


# ---------------------------------------------------------------- save_to_disk
def test_save_to_disk_folder_is_registered_by_its_arrow_file(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list([{"text": t} for t in "abc"]).save_to_disk(tmp_path / "corpus")
    train = datasets.Dataset.from_list([{"instruction": "q", "output": "a"}])
    splits = datasets.DatasetDict({"train": train})
    splits.save_to_disk(tmp_path / "qa")
    result = build_info(tmp_path)
    info = read_info(tmp_path)
    assert info["corpus"] == {"file_name": "corpus/data-00000-of-00001.arrow", "formatting": "alpaca",
                              "columns": {"prompt": "text"}}
    assert info["qa_train"]["file_name"] == "qa/train/data-00000-of-00001.arrow"
    assert [(r.name, r.format, r.rows) for r in result.registered] == [("corpus", "text", 3),
                                                                      ("qa_train", "alpaca", 1)]
    assert result.unclassified == []


def test_multi_shard_save_to_disk_is_not_registered_and_says_why(tmp_path: Path) -> None:
    import datasets

    rows = [{"text": str(i)} for i in range(4)]
    datasets.Dataset.from_list(rows).save_to_disk(tmp_path / "big", num_shards=2)
    result = build_info(tmp_path)
    assert result.registered == []
    assert "2 shards" in result.unclassified[0].reason and "num_shards=1" in result.unclassified[0].reason
    assert not (tmp_path / "dataset_info.json").exists()


def test_output_inside_a_save_to_disk_folder_is_refused(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list([{"text": "a"}]).save_to_disk(tmp_path / "ds")
    with pytest.raises(UserError, match="save_to_disk"):
        build_info(tmp_path / "ds")


# ---------------------------------------------------------------- build_info and merging
def test_file_name_is_relative_to_the_output_location(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "sft" / "a.jsonl", ALPACA)
    result = build_info(tmp_path / "data", output=tmp_path / "lf" / "config")
    assert result.info_path == tmp_path / "lf" / "config" / "dataset_info.json"
    assert read_info(tmp_path / "lf" / "config")["a"]["file_name"] == "../../data/sft/a.jsonl"
    with pytest.raises(ConfigError, match="dataset_info.json"):
        build_info(tmp_path / "data", output=tmp_path / "info.json")


def test_merge_keeps_other_entries_and_hand_edits(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", ALPACA)
    write_jsonl(tmp_path / "t.jsonl", [{"text": "x"}])
    build_info(tmp_path)
    info = read_info(tmp_path)
    info["a"]["num_samples"] = 1  # a hand edit LLaMA-Factory understands
    info["hub"] = {"hf_hub_url": "org/data", "formatting": "sharegpt"}
    info["t"] = {"file_name": "./t.jsonl", "columns": {"prompt": "text"}}  # same meaning, other spelling
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    result = build_info(tmp_path)
    after = read_info(tmp_path)
    assert after["hub"] == {"hf_hub_url": "org/data", "formatting": "sharegpt"}
    assert after["a"]["num_samples"] == 1
    assert after["t"] == {"file_name": "./t.jsonl", "columns": {"prompt": "text"}}
    assert [(r.name, r.status) for r in result.registered] == [("a", "unchanged"), ("t", "unchanged")]
    assert result.kept == ["hub"]


def test_readme_style_entry_with_defaults_is_the_same_entry(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "demo.jsonl", [{"instruction": "q", "input": "", "output": "a"}])
    write_jsonl(tmp_path / "chat.jsonl",
                [{"messages": [turn("user", "q", "role"), turn("assistant", "a", "role")]}])
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "demo": {"file_name": "demo.jsonl"},
        "chat": {"file_name": "chat.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
                 "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                          "assistant_tag": "assistant", "system_tag": "system"}}}))
    result = build_info(tmp_path)
    assert {r.name: r.status for r in result.registered} == {"chat": "unchanged", "demo": "unchanged"}


def test_a_file_registered_by_hand_under_another_name_is_not_registered_twice(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", [{"text": "x"}])
    hand = {"gsm8k_pt": {"file_name": "train.jsonl", "columns": {"prompt": "text"}, "num_samples": 1}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(hand))
    result = build_info(tmp_path)
    assert read_info(tmp_path) == hand
    assert [(r.name, r.status) for r in result.registered] == [("gsm8k_pt", "unchanged")]
    assert result.kept == []


def test_name_clash_with_different_content_names_both(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", [{"text": "x"}])
    (tmp_path / "dataset_info.json").write_text(json.dumps({"train": {"file_name": "old/train.json"}}))
    before = (tmp_path / "dataset_info.json").read_bytes()
    with pytest.raises(DatasetInfoClash) as exc:
        build_info(tmp_path)
    assert exc.value.names == ["train"]
    assert "file_name: old/train.json" in str(exc.value) and str(tmp_path / "train.jsonl") in str(exc.value)
    assert (tmp_path / "dataset_info.json").read_bytes() == before


def test_force_replaces_the_clashing_entry(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", [{"text": "x"}])
    (tmp_path / "dataset_info.json").write_text(json.dumps({"train": {"file_name": "old/train.json"}}))
    result = build_info(tmp_path, force=True)
    assert read_info(tmp_path)["train"] == {"file_name": "train.jsonl", "formatting": "alpaca",
                                            "columns": {"prompt": "text"}}
    assert result.registered[0].status == "updated"


def test_output_is_byte_stable_and_not_rewritten_on_rerun(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "b.jsonl", ALPACA)
    write_jsonl(tmp_path / "a.jsonl", [{"text": "x"}])
    assert build_info(tmp_path, name_prefix="my_").written
    first = (tmp_path / "dataset_info.json").read_bytes()
    assert first.endswith(b"}\n") and b'\n  "my_a": {\n    "columns": {\n      "prompt": "text"\n' in first
    again = build_info(tmp_path, name_prefix="my_")
    assert not again.written and (tmp_path / "dataset_info.json").read_bytes() == first


def test_files_with_the_same_stem_get_distinct_names(tmp_path: Path) -> None:
    for rel in ("a/train.jsonl", "b/train.jsonl", "c/x.jsonl", "c/x.json", "solo.jsonl"):
        write_jsonl(tmp_path / rel, [{"text": rel}])
    build_info(tmp_path)
    assert sorted(read_info(tmp_path)) == ["a_train", "b_train", "c_x_json", "c_x_jsonl", "solo"]


def test_hidden_temp_and_output_files_are_skipped(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "ok.jsonl", [{"text": "x"}])
    write_jsonl(tmp_path / ".hidden.jsonl", [{"text": "x"}])
    write_jsonl(tmp_path / ".git" / "x.jsonl", [{"text": "x"}])
    write_jsonl(tmp_path / "part.jsonl.tmp", [{"text": "x"}])
    (tmp_path / "notes.md").write_text("# notes")
    result = build_info(tmp_path)
    assert [r.name for r in result.registered] == ["ok"]
    assert result.unclassified == []


def test_unclassifiable_files_are_listed_with_the_reason(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "ok.jsonl", [{"text": "x"}])
    write_jsonl(tmp_path / "rejects.jsonl", [{"error": "timeout", "raw": "..."}])
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "old.ndjson").write_text('{"text": "x"}\n')
    result = build_info(tmp_path)
    reasons = {u.path.name: u.reason for u in result.unclassified}
    assert set(reasons) == {"rejects.jsonl", "empty.jsonl", "old.ndjson"}
    assert "no columns LLaMA-Factory can use (found: error, raw)" in reasons["rejects.jsonl"]
    assert "empty file" in reasons["empty.jsonl"] and "rename it to '.jsonl'" in reasons["old.ndjson"]
    text = format_result(result)
    assert text.splitlines()[1].split() == ["ok", "text", "1", "row", str(tmp_path / "ok.jsonl"), "[added]"]
    assert "not registered (3):" in text and reasons["rejects.jsonl"] in text


# ---------------------------------------------------------------- broken input
def test_broken_jsonl_line_is_reported_as_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"\n')
    reason = detect_file(path).reason
    assert reason is not None and reason.startswith(f"{path}:3: not valid JSON")


def test_mixed_formats_name_a_row_of_each(tmp_path: Path) -> None:
    chat = {"conversations": [turn("human", "q"), turn("gpt", "a")]}
    path = write_jsonl(tmp_path / "m.jsonl", [ALPACA[1], chat])
    assert detect_file(path).reason == (
        f"mixed formats: {path}:1 is alpaca (instruction, output) but {path}:2 is sharegpt (conversations); "
        "a LLaMA-Factory dataset has one format - split the file")


def test_json_array_in_jsonl_and_jsonl_in_json_are_registered_with_a_warning(tmp_path: Path) -> None:
    array = tmp_path / "arr.jsonl"
    array.write_text(json.dumps([{"text": "a"}, {"text": "b"}], indent=2))
    lines = write_jsonl(tmp_path / "lines.json", [{"text": "a"}, {"text": "b"}])
    det_array, det_lines = detect_file(array), detect_file(lines)
    assert (det_array.format, det_array.rows, det_lines.format, det_lines.rows) == ("text", 2, "text", 2)
    assert "one JSON array, not JSON Lines" in det_array.warnings[0]
    assert "rename it to .json" in det_array.warnings[0]
    assert "holds JSON Lines" in det_lines.warnings[0]


def test_json_object_wrapping_the_rows_is_refused_but_a_single_row_object_is_not(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"data": [{"text": "a"}]}))
    assert "wrapping the rows under 'data'" in (detect_file(path).reason or "")
    single = tmp_path / "one.json"
    single.write_text(json.dumps({"conversations": [turn("human", "q"), turn("gpt", "a")]}))
    assert (detect_file(single).format, detect_file(single).rows) == ("sharegpt", 1)


def test_role_names_must_be_spelled_the_same_in_every_row(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "r.jsonl", [{"conversations": [turn("human", "q"), turn("gpt", "a")]},
                                              {"conversations": [turn("user", "q"), turn("gpt", "a")]}])
    assert detect_file(path).reason == (
        f"mixed role names: {path}:1 uses 'human' and {path}:2 uses 'user' for the same role; "
        "LLaMA-Factory's user_tag takes one name - use one spelling")


@pytest.mark.parametrize(("row", "expected"), [
    ({"instruction": "q"}, "has 'instruction' but no response column"),
    ({"instruction": "q", "chosen": "a"}, "has 'chosen' but no 'rejected'"),
    ({"instruction": "q", "output": None}, "'output' is empty (null)"),
    ({"instruction": "q", "output": "a", "kto_tag": "yes"}, "'kto_tag' is text; it must be true or false"),
    ({"instruction": "q", "output": "a", "history": ["q", "a"]}, "string pairs"),
    ({"conversations": [turn("human", "q"), turn("human", "q2")]},
     "message 2 is 'human': expected an assistant"),
    ({"conversations": [turn("human", "q")]}, "must end with an assistant turn"),
    ({"conversations": [turn("human", "q"), turn("bot", "a")]}, "role 'bot'"),
    ({"conversations": [turn("human", "q"), turn("user", "q2", "role")]}, "message 2 uses 'role'"),
    ({"conversations": [turn("human", "q"), turn("gpt", "a"), turn("user", "q"), turn("gpt", "b")]},
     "mixes 'human' and 'user'"),
    ({"messages": [turn("user", "q", "role"), {"role": "assistant", "content": None, "tool_calls": [{}]}]},
     "tool_calls"),
    ({"messages": [turn("user", "q", "role"), turn("assistant", "a", "role")], "tools": [{"name": "f"}]},
     "JSON string"),
    ({"conversations": [turn("human", "q")], "chosen": "a", "rejected": "b"}, "must be one message object"),
])
def test_rows_llamafactory_would_drop_are_explained(tmp_path: Path, row: dict[str, Any],
                                                    expected: str) -> None:
    reason = detect_file(write_jsonl(tmp_path / "x.jsonl", [row])).reason
    assert reason is not None and reason.startswith(f"{tmp_path / 'x.jsonl'}:1: ") and expected in reason


def test_csv_columns_that_pandas_reads_as_numbers_or_kto_tags_are_refused(tmp_path: Path) -> None:
    (tmp_path / "n.csv").write_text("question,answer\nWhat is 2+2?,4\nWhat is 3+3?,6\n")
    (tmp_path / "k.csv").write_text("instruction,output,kto_tag\nq,a,true\n")
    (tmp_path / "ok.csv").write_text("instruction,input,output\nq,,a\nq2,x,b\n")
    assert "'answer' holds only numbers" in (detect_file(tmp_path / "n.csv").reason or "")
    assert "CSV cannot hold" in (detect_file(tmp_path / "k.csv").reason or "")
    ok = detect_file(tmp_path / "ok.csv")
    assert ok.rows == 2 and ok.entry == {"formatting": "alpaca", "columns": {
        "prompt": "instruction", "query": "input", "response": "output"}}


# ---------------------------------------------------------------- register (augment engine)
def test_register_merges_known_entries(tmp_path: Path) -> None:
    entry = {"file_name": str(tmp_path / "data" / "out.jsonl"), "formatting": "alpaca",
             "columns": {"prompt": "instruction", "response": "output"}}
    assert register({"run1": entry}, tmp_path) == {"run1": "added"}
    assert read_info(tmp_path)["run1"]["file_name"] == "data/out.jsonl"
    assert register({"run1": entry}, tmp_path / "dataset_info.json") == {"run1": "unchanged"}
    other = {**entry, "columns": {"prompt": "question", "response": "output"}}
    with pytest.raises(DatasetInfoClash, match="columns.prompt: 'instruction' -> 'question'"):
        register({"run1": other}, tmp_path)
    assert register({"run1": other}, tmp_path, force=True) == {"run1": "updated"}
    with pytest.raises(ConfigError, match="file_name"):
        register({"run2": {"formatting": "alpaca"}}, tmp_path)
