"""Guard tests (as httpx's ``test_httpcore_all_exceptions_mapped``): every exception class datafactory
defines lives in ``datafactory/errors.py``, derives from ``DatafactoryError`` and is drawn in that
module's docstring tree. A new error class elsewhere, or outside the tree, fails here."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import datafactory
from datafactory import errors
from datafactory.errors import DatafactoryError

SKIP = {"datafactory.__main__"}  # runs the CLI when imported


def _modules() -> list[ModuleType]:
    found = []
    for info in pkgutil.walk_packages(datafactory.__path__, "datafactory."):
        if info.name in SKIP:
            continue
        try:
            found.append(importlib.import_module(info.name))
        except ImportError as exc:  # an optional extra (e.g. ray) that is not installed here
            if not exc.name or exc.name.startswith("datafactory"):
                raise
    return found


def test_walk_finds_the_whole_package() -> None:
    names = {m.__name__ for m in _modules()}
    for expected in ("datafactory.errors", "datafactory.engine.requester", "datafactory.train.pipeline",
                     "datafactory.evaluate.lm_eval_runner", "datafactory.proc.child", "datafactory.formats.sampling"):
        assert expected in names, expected


def test_every_exception_class_is_defined_in_errors_and_derives_from_the_base() -> None:
    outside, foreign = [], []
    for module in _modules():
        for name, obj in vars(module).items():
            if not (inspect.isclass(obj) and issubclass(obj, BaseException)):
                continue
            if obj.__module__ == module.__name__ and module is not errors:
                outside.append(f"{module.__name__}.{name}")
            if obj.__module__.startswith("datafactory") and not issubclass(obj, DatafactoryError):
                foreign.append(f"{obj.__module__}.{obj.__qualname__}")
    assert not outside, f"exception classes defined outside datafactory/errors.py: {outside}"
    assert not foreign, f"exception classes outside the DatafactoryError tree: {sorted(set(foreign))}"


def test_the_errors_docstring_draws_every_class() -> None:
    doc = errors.__doc__ or ""
    classes = [n for n, o in vars(errors).items() if inspect.isclass(o) and issubclass(o, BaseException)
               and o.__module__ == errors.__name__]
    assert len(classes) > 20
    missing = [n for n in classes if f"── {n}" not in doc and n != "DatafactoryError"]
    assert not missing, f"add these to the tree in errors.py's docstring: {missing}"
    assert "    DatafactoryError\n" in doc


def test_context_is_given_to_the_constructor() -> None:
    from pathlib import Path

    from datafactory.errors import EvalFailed, Interrupted, NoCheckpoint, RequestFailed, ServerError, TrainFailed

    failed = RequestFailed(ServerError("boom", status=503), 4)
    assert (failed.error.status, failed.attempts) == (503, 4)
    err = TrainFailed("x", command="llamafactory-cli train", returncode=1, log_path="/r/logs/train.log")
    assert (err.command, err.returncode, err.log_path) == ("llamafactory-cli train", 1, Path("/r/logs/train.log"))
    assert EvalFailed("no results").returncode is None
    assert Interrupted("stopped", what="lm-eval", signum=15).signum == 15
    assert NoCheckpoint("none", train_dir="/r/train").train_dir == Path("/r/train")
