"""Each output format supplies its own dataset_info.json entry: equal to what detection finds in
the file written, loadable by LLaMA-Factory, and a run whose dataset cannot be registered fails."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import orjson  # noqa: E402
import pytest  # noqa: E402

from datafactory.config.pipeline import OUTPUT_FORMATS, OutputConfig  # noqa: E402
from datafactory.errors import DatasetNotRegistered  # noqa: E402
from datafactory.formats import output as shapes  # noqa: E402
from datafactory.formats.detect import detect_file  # noqa: E402
from datafactory.formats.entries import FORMAT_ENTRIES, dataset_entry  # noqa: E402
from datafactory.formats.writers import write_datasets  # noqa: E402

TURNS = [{"from": "human", "value": "Hi, can you help me plan a trip?"}, {"from": "gpt", "value": "Of course."},
         {"role": "user", "content": "Lisbon, in May."}, {"role": "assistant", "content": "Great choice."}]
SYSTEM = [{"from": "system", "value": "Be brief."}]

CASES: list[tuple[str, dict[str, Any], list[Any]]] = [
    ("alpaca", {"columns": {"instruction": "q", "output": "a"}}, []),
    ("alpaca", {"columns": {"instruction": "q", "output": "a", "system": "s"}}, []),
    ("sharegpt", {"tags": "from_value"}, SYSTEM),
    ("sharegpt", {"tags": "from_value"}, []),
    ("sharegpt", {"tags": "role_content"}, SYSTEM),
    ("preference", {"style": "alpaca"}, []),
    ("preference", {"style": "sharegpt", "tags": "from_value"}, []),
    ("preference", {"style": "sharegpt", "tags": "role_content"}, []),
    ("kto", {"style": "alpaca"}, []),
    ("kto", {"style": "sharegpt"}, []),
]
IDS = [f"{fmt}-{'-'.join(str(v) for v in kw.values() if isinstance(v, str))}{'-system' if sys else ''}"
       for fmt, kw, sys in CASES]


def _rows(cfg: OutputConfig, system: list[Any], n: int = 6) -> list[dict[str, Any]]:
    src = {"question": "What is 2 + 2?"}
    if cfg.format == "alpaca":
        return [shapes.alpaca(cfg, {"q": f"Question {i}?", "a": f"Answer {i}", "s": "Be brief."}, src, str(i))
                for i in range(n)]
    if cfg.format == "sharegpt":  # the system turn only in one row: the entry must still name it
        return [shapes.sharegpt(cfg, {"conversations": (system if i == 2 else []) + TURNS}, src, str(i))
                for i in range(n)]
    if cfg.format == "preference":
        return [shapes.preference(cfg, f"Q{i}", f"good {i}", f"bad {i}") for i in range(n)]
    return [shapes.kto(cfg, f"Q{i}", f"answer {i}", i % 2 == 0) for i in range(n)]


def _written(tmp_path: Path, fmt: str, kw: dict[str, Any], system: list[Any]) -> tuple[Path, dict[str, Any]]:
    cfg = OutputConfig(dir="unused", name=fmt, format=fmt, **kw)
    rows = _rows(cfg, system)
    present: dict[str, set[str]] = {}
    write_datasets(tmp_path, cfg, ((str(i), orjson.dumps(r)) for i, r in enumerate(rows)), present)
    entry = dataset_entry(cfg, frozenset(present[fmt]))
    assert entry is not None
    return tmp_path / f"{fmt}.jsonl", entry


def test_every_output_format_has_an_entry_and_only_jsonl_has_none() -> None:
    assert sorted(FORMAT_ENTRIES) == sorted(OUTPUT_FORMATS)
    assert dataset_entry(OutputConfig(dir="d", name="n", format="jsonl")) is None


@pytest.mark.parametrize(("fmt", "kw", "system"), CASES, ids=IDS)
def test_the_entry_a_format_supplies_is_what_detection_finds_in_the_file_it_wrote(
        tmp_path: Path, fmt: str, kw: dict[str, Any], system: list[Any]) -> None:
    path, entry = _written(tmp_path, fmt, kw, system)
    found = detect_file(path)
    assert found.entry is not None, found.reason
    assert entry == found.entry


def test_a_run_whose_dataset_cannot_be_registered_fails_with_a_typed_error(make_project: Any) -> None:
    proj = make_project(rows=3, output={"format": "alpaca", "name": "my data",
                                        "columns": {"instruction": "question", "output": "answer"}})
    with pytest.raises(DatasetNotRegistered) as err:
        proj.augment()
    assert err.value.dataset == "my data" and err.value.format == "alpaca"
    assert (proj.run_dir / "data" / "my data.jsonl").is_file()  # the data are written all the same


@pytest.mark.train
@pytest.mark.parametrize(("fmt", "kw", "system"), CASES, ids=IDS)
def test_llamafactory_loads_every_format_through_the_entry_it_supplies(
        tmp_path: Path, fmt: str, kw: dict[str, Any], system: list[Any]) -> None:
    pytest.importorskip("llamafactory")
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer
    from tiny_models import build_tiny_tokenizer

    data = tmp_path / "data"
    data.mkdir()
    _, entry = _written(data, fmt, kw, system)
    (tmp_path / "dataset_info.json").write_text(json.dumps({fmt: {**entry, "file_name": f"data/{fmt}.jsonl"}}))
    stage = {"preference": "dpo", "kto": "kto"}.get(fmt, "sft")
    model_args, data_args, training_args, _, _ = get_train_args(dict(
        model_name_or_path=str(build_tiny_tokenizer(tmp_path / "tok")), stage=stage, do_train=True,
        finetuning_type="full", dataset=fmt, dataset_dir=str(tmp_path), template="qwen", cutoff_len=1024,
        output_dir=str(tmp_path / "out"), overwrite_cache=True, report_to="none",
        cache_dir=str(tmp_path / "hf_cache")))
    tokenizer = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer["tokenizer"], data_args)
    module = get_dataset(template, model_args, data_args, training_args,
                         stage="rm" if stage == "dpo" else stage, **tokenizer)
    assert len(module["train_dataset"]) == 6
