"""Every output shape, written as JSONL and Parquet, loads untouched with `datasets` and is
registered by build-info with the format LLaMA-Factory needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import orjson
import pytest

from datafactory.config.pipeline import OutputConfig
from datafactory.errors import ValidationFailed
from datafactory.formats import output as shapes
from datafactory.formats.dataset_info import build_info
from datafactory.formats.writers import split_of, write_datasets

DIALOGUE = {"conversations": [{"from": "system", "value": "Be brief."},
                              {"from": "human", "value": "Hi, can you help me plan a trip?"},
                              {"from": "gpt", "value": "Of course. Where to?"},
                              {"role": "user", "content": "Lisbon, in May."},
                              {"role": "assistant", "content": "Great choice: mild weather, fewer crowds."}]}


def _cfg(fmt: str, **kw: Any) -> OutputConfig:
    return OutputConfig(dir="unused", name=kw.pop("name", fmt), format=fmt, **kw)


def _rows(cfg: OutputConfig, n: int = 10) -> list[dict[str, Any]]:
    src = {"question": "What is 2 + 2?"}
    if cfg.format == "alpaca":
        return [shapes.alpaca(cfg, {"q": f"Question {i}?", "a": f"Answer {i}"}, src, str(i)) for i in range(n)]
    if cfg.format == "sharegpt":
        return [shapes.sharegpt(cfg, DIALOGUE, src, str(i)) for i in range(n)]
    if cfg.format == "preference":
        return [shapes.preference(cfg, f"Q{i}", f"good {i}", f"bad {i}") for i in range(n)]
    return [shapes.kto(cfg, f"Q{i}", f"answer {i}", i % 2 == 0) for i in range(n)]


CASES = [
    ("alpaca", {"columns": {"instruction": "q", "output": "a"}}, "alpaca"),
    ("sharegpt", {"tags": "from_value"}, "sharegpt"),
    ("sharegpt", {"tags": "role_content"}, "sharegpt"),
    ("preference", {"style": "alpaca"}, "alpaca-preference"),
    ("preference", {"style": "sharegpt"}, "sharegpt-preference"),
    ("kto", {"style": "alpaca"}, "alpaca-kto"),
    ("kto", {"style": "sharegpt"}, "sharegpt-kto"),
]


@pytest.mark.parametrize(("fmt", "kw", "detected"), CASES, ids=[f"{c[0]}-{next(iter(c[1].values()))}" for c in CASES])
def test_each_shape_loads_with_datasets_as_jsonl_and_parquet_and_is_detected(tmp_path: Path, fmt, kw, detected):
    cfg = _cfg(fmt, parquet=True, **kw)
    rows = _rows(cfg)
    counts = write_datasets(tmp_path, cfg, ((str(i), orjson.dumps(r)) for i, r in enumerate(rows)))
    assert counts == {fmt: 10}
    for kind in ("json", "parquet"):
        ext = "jsonl" if kind == "json" else "parquet"
        ds = datasets.load_dataset(kind, data_files=str(tmp_path / f"{fmt}.{ext}"), split="train")
        assert ds.num_rows == 10
        assert ds[3] == json.loads(json.dumps(rows[3]))
    result = build_info(tmp_path, output=tmp_path / "dataset_info.json")
    formats = {r.file_name: r.format for r in result.registered}
    assert formats[f"{fmt}.jsonl"] == detected
    assert formats[f"{fmt}.parquet"] == detected


def test_sharegpt_shape_moves_system_to_its_column_and_normalises_tags():
    row = shapes.sharegpt(_cfg("sharegpt", tags="role_content"), DIALOGUE, {}, "x")
    assert row["system"] == "Be brief."
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "user", "assistant"]


@pytest.mark.parametrize("turns", [
    [{"from": "gpt", "value": "I start"}, {"from": "human", "value": "wrong"}],
    [{"from": "human", "value": "only a question"}],
    [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}, {"from": "system", "value": "late"}],
    [{"from": "human", "value": "a"}, {"from": "alien", "value": "b"}],
    [{"from": "human", "value": "a"}, {"from": "gpt", "value": "   "}],
    "not a list",
])
def test_bad_turn_structure_is_rejected_with_bad_turns(turns):
    with pytest.raises(ValidationFailed) as err:
        shapes.sharegpt(_cfg("sharegpt"), {"conversations": turns}, {}, "x")
    assert err.value.reason == "bad_turns"


def test_validation_split_is_deterministic_for_a_seed_and_close_to_the_fraction(tmp_path: Path):
    cfg = _cfg("alpaca", columns={"instruction": "q", "output": "a"}, validation_split=0.2, seed=7)
    rows = _rows(cfg, 2000)
    ids = [f"row{i}" for i in range(2000)]
    counts = write_datasets(tmp_path, cfg, zip(ids, (orjson.dumps(r) for r in rows), strict=True))
    assert set(counts) == {"alpaca_train", "alpaca_validation"}
    assert sum(counts.values()) == 2000
    assert 330 <= counts["alpaca_validation"] <= 470
    again = [split_of(i, 0.2, 7) for i in ids]
    assert again == [split_of(i, 0.2, 7) for i in ids]
    assert again != [split_of(i, 0.2, 8) for i in ids]
    val = datasets.load_dataset("json", data_files=str(tmp_path / "alpaca_validation.jsonl"), split="train")
    assert val.num_rows == counts["alpaca_validation"]


def test_writer_leaves_no_temp_files_and_replaces_atomically(tmp_path: Path):
    cfg = _cfg("alpaca", columns={"instruction": "q", "output": "a"})
    write_datasets(tmp_path, cfg, [("1", b'{"instruction":"a","input":"","output":"b"}')])
    write_datasets(tmp_path, cfg, [("1", b'{"instruction":"c","input":"","output":"d"}')])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpaca.jsonl"]
    assert json.loads((tmp_path / "alpaca.jsonl").read_text())["instruction"] == "c"


def test_augment_registers_each_dataset_once_under_its_own_name_even_with_parquet(make_project):
    proj = make_project(rows=30, output={"format": "alpaca", "parquet": True, "validation_split": 0.2,
                                         "columns": {"instruction": "question", "output": "answer"}})
    proj.augment()
    info = json.loads((proj.run_dir / "dataset_info.json").read_text())
    assert sorted(info) == ["out_train", "out_validation"]
    assert info["out_train"]["file_name"] == "data/out_train.jsonl"
    assert (proj.run_dir / "data" / "out_train.parquet").is_file()
    n = sum(datasets.load_dataset("json", data_files=str(proj.run_dir / "data" / f"{name}.jsonl"),
                                  split="train").num_rows for name in info)
    assert n == 30
