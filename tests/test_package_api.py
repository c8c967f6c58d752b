"""The lazy top-level module: ``help(datafactory)`` and tab completion show the API, imports stay cheap."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_dir_lists_the_public_api_before_anything_is_imported() -> None:
    out = _run("import sys, datafactory\n"
               "names = dir(datafactory)\n"
               "print(','.join(names))\n"
               "print('datafactory.engine.augment' in sys.modules)")
    names, imported = out.strip().splitlines()
    listed = set(names.split(","))
    for name in ("augment", "augment_async", "plan", "load_pipeline", "build_info", "train_eval", "Pipeline",
                 "Stats", "Plan", "DatafactoryError", "__version__"):
        assert name in listed, name
    assert not {"Any", "TYPE_CHECKING", "_LAZY"} & listed  # no implementation details in completion
    assert imported == "False"  # dir() itself imports nothing heavy


def test_help_shows_the_docstring_and_every_function() -> None:
    text = _run("import pydoc, datafactory\nprint(pydoc.render_doc(datafactory, renderer=pydoc.plaintext))")
    for needle in ("load_pipeline(path", "train_eval(recipe", "augment_async(pipe"):  # the docstring's list
        assert needle in text, needle
    functions = text.split("FUNCTIONS", 1)[1].split("DATA", 1)[0]
    for name in ("augment(", "augment_async(", "plan(", "load_pipeline(", "build_info(", "train_eval("):
        assert f"\n    {name}" in functions or f"\n    async {name}" in functions, name  # the real function
    assert "class Stats" in text and "class DatafactoryError" in text


def test_every_name_in_all_resolves() -> None:
    import datafactory

    for name in datafactory.__all__:
        assert getattr(datafactory, name) is not None, name
