"""Proof that build-info's entries are what LLaMA-Factory 0.9.5 expects.

Every format is registered by ``build_info`` and then loaded through LLaMA-Factory's own code
(``get_train_args`` -> ``load_tokenizer`` -> ``get_template_and_fix_tokenizer`` -> ``get_dataset``,
as its training workflows do) with a tiny local tokenizer and the ``qwen`` template. Each case
checks that no row was dropped and that the rendered prompt and the trained-on labels are exactly
right (prompt tokens masked with -100). The data sit in another folder than dataset_info.json,
so the relative ``file_name`` (``../data/...``) is exercised too, across every file type.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llamafactory")

from tiny_models import build_tiny_tokenizer  # noqa: E402

from datafactory.formats.dataset_info import BuildInfoResult, build_info  # noqa: E402

pytestmark = pytest.mark.train


@pytest.fixture(scope="module", autouse=True)
def _offline_one_thread() -> Iterator[None]:
    """Hub off and one thread for this module only (set in os.environ at import, it leaked into other modules).

    huggingface_hub and datasets read the offline switch once, at import, so their copies are set as well."""
    import datasets.config
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")  # tiny models, 2 shared cores: more threads only slow things down
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
            mp.setenv(name, "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        mp.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        yield

END = "<|im_end|>\n"


def _turn(role: str, text: str, style: str = "from") -> dict[str, str]:
    return {"from": role, "value": text} if style == "from" else {"role": role, "content": text}


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, BuildInfoResult]:
    """One dataset per format, in different file types, registered in a separate config folder."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    torch.set_num_threads(1)  # in case torch was imported before OMP_NUM_THREADS was set

    root = tmp_path_factory.mktemp("lf")
    data = root / "data"
    data.mkdir()
    datasets.Dataset.from_list([  # alpaca with system + history, as a save_to_disk folder
        {"instruction": "Add 2 and 3.", "input": "", "output": "5", "system": "Be brief.",
         "history": [["Hi", "Hello"]]},
        {"instruction": "Name a colour.", "input": "warm", "output": "red", "system": "", "history": []},
    ]).save_to_disk(data / "alpaca_sys")
    weather = json.dumps({"name": "weather", "arguments": {"city": "Paris"}})
    _jsonl(data / "sg_from.jsonl", [
        {"conversations": [_turn("human", "What is 2+2?"), _turn("gpt", "The answer is 4.")],
         "system": "Be brief.", "tools": ""},
        {"conversations": [_turn("human", "Weather in Paris?"), _turn("function_call", weather),
                           _turn("observation", "sunny"), _turn("gpt", "It is sunny.")],
         "system": "", "tools": json.dumps([{"name": "weather", "description": "Weather of a city",
                                              "parameters": {"type": "object", "properties": {}}}])},
    ])
    pq.write_table(pa.Table.from_pylist([  # role/content with a system message, as Parquet
        {"messages": [_turn("system", "Be kind.", "role"), _turn("user", "Hi", "role"),
                      _turn("assistant", "Hello!", "role"), _turn("user", "Bye", "role"),
                      _turn("assistant", "Goodbye!", "role")]},
    ]), data / "sg_role.parquet")
    (data / "pref_alpaca.csv").write_text("instruction,input,chosen,rejected\nWhat is 2+2?,,Four,Five\n")
    (data / "pref_sg.json").write_text(json.dumps([
        {"conversations": [_turn("human", "What is 2+2?")], "chosen": _turn("gpt", "Four"),
         "rejected": _turn("gpt", "Five")}]))
    _jsonl(data / "kto.json", [  # JSON Lines in a .json file
        {"instruction": "What is 2+2?", "output": "Four", "kto_tag": True},
        {"instruction": "What is 2+2?", "output": "Five", "kto_tag": False}])
    _jsonl(data / "kto_sg.jsonl", [
        {"messages": [_turn("user", "Hi", "role"), _turn("assistant", "Hello!", "role")], "kto_tag": True}])
    (data / "corpus.jsonl").write_text(json.dumps([{"text": "Once upon a time."}, {"text": "The end."}]))
    result = build_info(data, output=root / "config")
    return root / "config", build_tiny_tokenizer(root / "tokenizer"), result


def _load(registered: tuple[Path, Path, BuildInfoResult], name: str, stage: str,
          **extra: Any) -> tuple[Any, Any]:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    dataset_dir, tokenizer_dir, _ = registered
    out = dataset_dir.parent / f"out_{name}"
    model_args, data_args, training_args, _, _ = get_train_args(dict(
        model_name_or_path=str(tokenizer_dir), stage=stage, do_train=True, finetuning_type="full",
        dataset=name, dataset_dir=str(dataset_dir), template="qwen", cutoff_len=4096, output_dir=str(out),
        overwrite_cache=True, report_to="none", cache_dir=str(dataset_dir.parent / "hf_cache"), **extra))
    tokenizer = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer["tokenizer"], data_args)
    module = get_dataset(template, model_args, data_args, training_args,
                         stage="rm" if stage == "dpo" else stage, **tokenizer)  # as the dpo workflow does
    return module["train_dataset"], tokenizer["tokenizer"]


def _text(tokenizer: Any, ids: list[int]) -> str:
    return str(tokenizer.decode([i for i in ids if i != -100]))


def test_every_format_was_registered(registered: tuple[Path, Path, BuildInfoResult]) -> None:
    result = registered[2]
    assert result.unclassified == []
    assert {r.name: r.format for r in result.registered} == {
        "alpaca_sys": "alpaca", "sg_from": "sharegpt", "sg_role": "sharegpt",
        "pref_alpaca": "alpaca-preference", "pref_sg": "sharegpt-preference", "kto": "alpaca-kto",
        "kto_sg": "sharegpt-kto", "corpus": "text"}
    info = json.loads(result.info_path.read_text())
    assert info["alpaca_sys"]["file_name"] == "../data/alpaca_sys/data-00000-of-00001.arrow"


def test_alpaca_with_system_and_history_renders_and_masks_the_prompt(registered: Any) -> None:
    ds, tok = _load(registered, "alpaca_sys", "sft")
    assert len(ds) == 2
    assert _text(tok, ds[0]["input_ids"]) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        f"Hello{END}<|im_start|>user\nAdd 2 and 3.<|im_end|>\n<|im_start|>assistant\n5{END}")
    assert _text(tok, ds[0]["labels"]) == f"Hello{END}5{END}"  # history answers are trained on too
    assert "user\nName a colour.\nwarm<|im_end|>" in _text(tok, ds[1]["input_ids"])  # instruction\ninput
    assert _text(tok, ds[1]["labels"]) == f"red{END}"


def test_sharegpt_from_value_with_system_and_tools(registered: Any) -> None:
    ds, tok = _load(registered, "sg_from", "sft")
    assert len(ds) == 2
    assert _text(tok, ds[0]["input_ids"]).startswith(
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>")
    assert _text(tok, ds[0]["labels"]) == f"The answer is 4.{END}"
    tool_row = _text(tok, ds[1]["input_ids"])
    assert '"name": "weather"' in tool_row.split("<|im_start|>user", 1)[0]  # tools rendered into the system
    assert "<tool_response>\nsunny\n</tool_response>" in tool_row
    labels = _text(tok, ds[1]["labels"])
    assert labels.startswith("<tool_call>") and labels.endswith(f"It is sunny.{END}")
    assert "<tool_response>" not in labels  # the observation is prompt, not trained on


def test_sharegpt_role_content_with_system_message(registered: Any) -> None:
    ds, tok = _load(registered, "sg_role", "sft")
    assert len(ds) == 1
    assert _text(tok, ds[0]["input_ids"]) == (
        "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        f"Hello!{END}<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\nGoodbye!{END}")
    assert _text(tok, ds[0]["labels"]) == f"Hello!{END}Goodbye!{END}"


@pytest.mark.parametrize("name", ["pref_alpaca", "pref_sg"])
def test_preference_data_loads_as_pairs_for_dpo(registered: Any, name: str) -> None:
    ds, tok = _load(registered, name, "dpo")
    assert len(ds) == 1
    row = ds[0]
    assert _text(tok, row["chosen_input_ids"]).endswith(
        f"user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\nFour{END}")
    assert _text(tok, row["chosen_labels"]) == f"Four{END}"
    assert _text(tok, row["rejected_labels"]) == f"Five{END}"


def test_preference_data_is_refused_for_sft_because_of_ranking(registered: Any) -> None:
    with pytest.raises(ValueError, match="not applicable in the current training stage"):
        _load(registered, "pref_alpaca", "sft")


@pytest.mark.parametrize(("name", "tags", "answer"),
                         [("kto", [True, False], "Four"), ("kto_sg", [True], "Hello!")])
def test_kto_data_keeps_its_tags(registered: Any, name: str, tags: list[bool], answer: str) -> None:
    ds, tok = _load(registered, name, "kto")
    assert len(ds) == len(tags)
    assert [bool(t) for t in ds["kto_tags"]] == tags
    assert _text(tok, ds[0]["labels"]) == f"{answer}{END}"


def test_text_is_pretraining_data(registered: Any) -> None:
    ds, tok = _load(registered, "corpus", "pt", packing=False)
    assert len(ds) == 2
    assert [_text(tok, ids) for ids in ds["input_ids"]] == ["Once upon a time.<|im_end|>",
                                                            "The end.<|im_end|>"]
