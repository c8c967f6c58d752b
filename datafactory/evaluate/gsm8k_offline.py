"""Offline GSM8K for lm-eval: a task directory whose YAML reads local JSONL files instead of the Hub.

The built-in ``gsm8k`` task reads ``openai/gsm8k`` from the Hugging Face Hub. Offline, we write a
task YAML equal to the installed built-in one (read from the lm_eval package at run time, so it
follows the installed version) except for the data source::

    dataset_path: json
    dataset_name: null
    dataset_kwargs: {data_files: {train: <train.jsonl>, test: <test.jsonl>}}

The task keeps its name, so results are reported under ``gsm8k`` as usual. The train split feeds
the few-shot examples. Rows are GSM8K-format JSON objects: ``{"question": .., "answer": ".. #### 42"}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from datafactory.errors import OfflineTaskError
from datafactory.io.atomic import atomic_write_text
from datafactory.proc.extras import package_dir

TASK_FAMILY_DIR = ("tasks", "gsm8k")


def builtin_task_files() -> dict[str, Path]:
    """task name → YAML file for the GSM8K family shipped with the installed lm-eval."""
    root = package_dir("lm_eval")
    if root is None:
        raise OfflineTaskError('lm-eval is not installed: pip install -e ".[train]"')
    folder = root.joinpath(*TASK_FAMILY_DIR)
    out: dict[str, Path] = {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            data = _load(path)
        except (OSError, yaml.YAMLError):
            continue
        name = data.get("task")
        if isinstance(name, str):
            out[name] = path
    return out


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def builtin_task_config(task: str) -> dict[str, Any]:
    """The installed built-in config of ``task`` with ``include:`` resolved (child keys win)."""
    files = builtin_task_files()
    if task not in files:
        known = ", ".join(sorted(files)) or "none"
        raise OfflineTaskError(f"task '{task}' cannot run offline: only the GSM8K tasks of the installed "
                               "lm-eval "
                               f"can ({known})")
    return _resolved(files[task], depth=0)


def _resolved(path: Path, depth: int) -> dict[str, Any]:
    data = _load(path)
    parent = data.pop("include", None)
    if isinstance(parent, str) and depth < 5:
        base = _resolved(path.parent / parent, depth + 1)
        base.pop("task", None)
        base.update(data)
        return base
    return data


def offline_task_config(task: str, train_file: Path, test_file: Path) -> dict[str, Any]:
    """``builtin_task_config(task)`` with the data source swapped for local JSON lines files."""
    config = builtin_task_config(task)
    config["dataset_path"] = "json"
    config["dataset_name"] = None
    config["dataset_kwargs"] = {"data_files": {"train": str(train_file), "test": str(test_file)}}
    return config


def write_offline_tasks(tasks: list[str], data_files: dict[str, Path], out_dir: Path) -> Path:
    """Write one YAML per task into ``out_dir`` (pass it as lm-eval's include path); returns ``out_dir``."""
    for split in ("train", "test"):
        path = data_files.get(split)
        if path is None or not Path(path).is_file():
            raise OfflineTaskError(f"offline GSM8K needs a '{split}' JSONL file; not found: {path}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        config = offline_task_config(task, Path(data_files["train"]), Path(data_files["test"]))
        text = "# written by datafactory: the installed lm-eval task with local data files\n"
        atomic_write_text(out_dir / f"{task}.yaml", text + yaml.safe_dump(config, sort_keys=False))
    return out_dir


OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
