"""train-eval stops in seconds, naming the recipe key, when it cannot succeed: a model that is neither a
local folder, nor cached, nor on a reachable Hub; a dataset with no rows (an augment run that wrote
nothing); a val_size the dataset cannot fill; a dataset_dir that is not the augment run dir. Plus the
Ctrl-C / SIGTERM message and exit code of the CLI. No test touches the network: the Hub is a loopback
server (HF_ENDPOINT) or switched off (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Project, cli_env, run_cli, start_cli, wait_for

from datafactory.config.recipe import Recipe, load_recipe, recipe_from_dict
from datafactory.errors import ConfigError
from datafactory.testing.loopback import LoopbackServer
from datafactory.train.preflight import check_rows, locate_model

REPO = Path(__file__).resolve().parents[1]
HUB_ID = "Qwen/Qwen2.5-1.5B-Instruct"
HAS_TRAIN = all(importlib.util.find_spec(m) for m in ("torch", "llamafactory"))


def _dataset(root: Path, rows: int, name: str = "sft") -> Path:
    d = root / "data"
    d.mkdir(exist_ok=True)
    items = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(rows)]
    (d / f"{name}.json").write_text(json.dumps(items), encoding="utf-8")
    (d / "dataset_info.json").write_text(json.dumps({name: {"file_name": f"{name}.json"}}), encoding="utf-8")
    return d


def _recipe(root: Path, data: Path, model: str = HUB_ID, **train: Any) -> dict[str, Any]:
    return {"model": {"name_or_path": model, "template": "qwen"},
            "data": {"dataset_dir": str(data), "datasets": ["sft"]},
            "train": {"max_steps": 2, "eval_steps": 1, "val_size": 0.25, **train},
            "output_dir": str(root / "run")}


def _load(recipe: dict[str, Any], root: Path) -> Recipe:
    return recipe_from_dict(recipe, source=str(root / "recipe.yaml"), base_dir=root)


def _fake_cache(hf_home: Path, repo: str) -> None:
    """The layout huggingface_hub writes: refs/main → snapshots/<commit>/config.json."""
    folder = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("abc123", encoding="utf-8")
    (folder / "snapshots" / "abc123").mkdir(parents=True)
    (folder / "snapshots" / "abc123" / "config.json").write_text("{}", encoding="utf-8")


# ------------------------------------------------------------------------------ where the model is
@pytest.mark.skipif(not HAS_TRAIN, reason="train-eval needs the [train] extra before its checks run")
def test_offline_hub_id_not_in_cache_fails_in_seconds_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(_recipe(tmp_path, _dataset(tmp_path, 8))), encoding="utf-8")
    (tmp_path / "hf_home").mkdir()
    env = cli_env(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    env.pop("HF_HUB_CACHE", None)
    start = time.monotonic()
    proc = run_cli("train-eval", str(path), "--no-progress", env=env, cwd=tmp_path, timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert "model.name_or_path" in err and HUB_ID in err and "HF_HUB_OFFLINE=1" in err, err
    assert "not in the Hugging Face cache" in err and str(tmp_path / "hf_home" / "hub") in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "logs" / "train.log").exists()  # LLaMA-Factory never started
    assert elapsed < 30, elapsed


def test_offline_hub_id_in_the_cache_is_found_there(tmp_path: Path) -> None:
    _fake_cache(tmp_path / "hf", HUB_ID)
    rec = _load(_recipe(tmp_path, _dataset(tmp_path, 8)), tmp_path)
    source = locate_model(rec, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert source.kind == "cache" and "HF_HUB_OFFLINE=1" in source.detail


def test_missing_local_path_is_refused_when_the_recipe_loads(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()  # "models/tiny" is then a local path, not a Hub id to retry for a minute
    with pytest.raises(ConfigError) as info:
        _load(_recipe(tmp_path, _dataset(tmp_path, 8), model="models/tiny"), tmp_path)
    assert info.value.key == "model.name_or_path" and "not found" in str(info.value)


def test_local_folder_without_config_json_names_the_model_folder_inside(tmp_path: Path) -> None:
    inner = tmp_path / "download" / "qwen"
    inner.mkdir(parents=True)
    (inner / "config.json").write_text("{}", encoding="utf-8")
    rec = _load(_recipe(tmp_path, _dataset(tmp_path, 8), model=str(tmp_path / "download")), tmp_path)
    with pytest.raises(ConfigError) as info:
        locate_model(rec, env={})
    assert info.value.key == "model.name_or_path" and f"did you mean {inner}" in str(info.value)
    assert locate_model(_load(_recipe(tmp_path, _dataset(tmp_path, 8), model=str(inner)), tmp_path),
                        env={}).kind == "local"


def test_hub_probe_reachable_missing_and_unreachable(tmp_path: Path) -> None:
    rec = _load(_recipe(tmp_path, _dataset(tmp_path, 8)), tmp_path)
    home = tmp_path / "hf"
    home.mkdir()
    with LoopbackServer() as hub:
        env = {"HF_ENDPOINT": hub.root_url, "HF_HOME": str(home), "HF_TOKEN": ""}
        hub.hub_models = frozenset({HUB_ID})
        assert locate_model(rec, env=env).kind == "hub"
        hub.hub_models = frozenset()
        with pytest.raises(ConfigError) as info:
            locate_model(rec, env=env)
        assert info.value.key == "model.name_or_path" and "no such model (HTTP 401)" in str(info.value)
    # the server is gone: its port refuses connections
    start = time.monotonic()
    with pytest.raises(ConfigError, match="unreachable"):
        locate_model(rec, env=env, timeout_s=2)
    assert time.monotonic() - start < 5
    _fake_cache(home, HUB_ID)  # cached + unreachable: use the cache, and tell the children to stay offline
    source = locate_model(rec, env=env, timeout_s=2)
    assert source.kind == "cache" and source.offline


# ------------------------------------------------------------------------------ rows and val_size
def test_val_size_larger_than_the_dataset_is_found_before_training(tmp_path: Path) -> None:
    rec = _load(_recipe(tmp_path, _dataset(tmp_path, 5), val_size=10), tmp_path)
    with pytest.raises(ConfigError) as info:
        check_rows(rec)
    assert info.value.key == "train.val_size" and "5 rows" in str(info.value) and "at most 4" in str(info.value)
    with pytest.raises(ConfigError, match="0 training"):  # a fraction of a 1-row dataset leaves nothing
        check_rows(_load(_recipe(tmp_path / "one", _dataset(_mk(tmp_path / "one"), 1)), tmp_path))
    assert check_rows(_load(_recipe(tmp_path, _dataset(tmp_path, 5), val_size=2), tmp_path)) == {"sft": 5}


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_empty_dataset_says_there_is_nothing_to_train_on(tmp_path: Path) -> None:
    rec = _load(_recipe(tmp_path, _dataset(tmp_path, 0)), tmp_path)
    with pytest.raises(ConfigError) as info:
        check_rows(rec)
    assert info.value.key == "data.datasets[0]" and "no rows" in str(info.value)
    (tmp_path / "data" / "sft.json").write_text("[]\n", encoding="utf-8")
    (tmp_path / "data" / "stats.json").write_text("{}", encoding="utf-8")  # an augment run dir
    with pytest.raises(ConfigError, match="rejects.jsonl"):
        check_rows(rec)


def test_augment_run_that_wrote_nothing_is_named_as_the_cause(make_project: Callable[..., Project],
                                                              server: LoopbackServer, tmp_path: Path) -> None:
    from datafactory.errors import UserError
    from datafactory.testing.faults import Fault

    proj = make_project(rows=4, output={"format": "alpaca",
                                        "columns": {"instruction": "question", "output": "answer"}})
    server.set_fault_fn(lambda i, body: Fault(kind="content", content="no JSON here"))
    with contextlib.suppress(UserError):  # a run that ends with 0 rows may say so by stopping (RunStopped)
        proj.augment()
    assert not (proj.run_dir / "dataset_info.json").exists()
    recipe = _recipe(tmp_path, proj.run_dir)
    with pytest.raises(ConfigError) as info:
        _load(recipe, tmp_path)
    msg = str(info.value)
    assert info.value.key == "data.dataset_dir" and "wrote 0 rows" in msg and "rejects.jsonl" in msg, msg


def test_dataset_dir_hints_name_the_run_dir(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "gsm8k_preference"
    (run / "data").mkdir(parents=True)
    (run / "dataset_info.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"set data.dataset_dir: {run}"):
        _load(_recipe(tmp_path, run / "data"), tmp_path)
    # the shipped DPO recipe before `augment pipelines/gsm8k_preference.yaml` ran: the run dir, and the
    # pipeline that writes it, not "the data/ folder"
    with pytest.raises(ConfigError) as info:
        load_recipe(REPO / "pipelines" / "train_qwen_gsm8k_dpo.yaml", base_dir=tmp_path / "empty")
    msg = str(info.value)
    assert "runs/gsm8k_preference" in msg and f"datafactory augment {REPO / 'pipelines' / 'gsm8k_preference.yaml'}" \
        in msg and "not the data/ folder" in msg, msg


# ------------------------------------------------------------------------------ interrupted
@pytest.mark.skipif(not HAS_TRAIN, reason="needs LLaMA-Factory to start a real child")
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_train_eval_says_so_once_and_exits_128_plus_signal(tmp_path: Path, sig: signal.Signals,
                                                                       code: int) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen2"}', encoding="utf-8")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(_recipe(tmp_path, _dataset(tmp_path, 8), model=str(model))), encoding="utf-8")
    proc = start_cli("train-eval", str(path), "--no-progress", env=cli_env(HF_HUB_OFFLINE="1"), cwd=tmp_path)
    log = tmp_path / "run" / "logs" / "train.log"
    wait_for(log.exists, timeout=60)
    time.sleep(0.3)  # the child (LLaMA-Factory importing torch) is running now
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.count("interrupted:") == 1 and "interrupted: llamafactory-cli train was stopped" in err, err
    assert "Run the same command again" in err and str(log) in err
