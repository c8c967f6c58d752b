"""The README's key tables are generated from the config dataclasses and cannot drift from them."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from datafactory.config import docs
from datafactory.config.spec import doc, positive

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_key_tables_equal_the_generated_ones() -> None:
    text = README.read_text(encoding="utf-8")
    for kind in docs.MARKERS:
        block = docs.marked(text, kind)
        assert block is not None, f"README.md lacks the {kind} key table markers {docs.MARKERS[kind]}"
        assert block == docs.section(kind), (
            f"README.md's {kind} key table is out of date: run  python -m datafactory.config.docs --write README.md")


def test_every_key_of_every_section_is_in_the_tables() -> None:
    from datafactory.config import pipeline as P
    from datafactory.config import recipe as R

    pipe, recipe = docs.pipeline_table(), docs.recipe_table()
    for prefix, keys in (("input", P.INPUT_KEYS), ("provider", P.PROVIDER_KEYS), ("limits", P.LIMIT_KEYS),
                         ("output", P.OUTPUT_KEYS), ("pricing", P.PRICING_KEYS)):
        for name in keys:
            assert f"| `{prefix}.{name}` |" in pipe
    for section, keys in R.SECTION_KEYS.items():
        for name in keys:
            assert f"| `{section}.{name}` |" in recipe
    assert "| `train.learning_rate` | number or null | none |" in recipe
    assert "| `limits.concurrency` | integer or `auto` | 32 |" in pipe


@dataclass(frozen=True)
class _ToyStep:
    fields: list[str] = field(metadata=doc("columns the step reads"))
    window: int = field(default=7, metadata=doc("how many | at once", check=positive))
    mode: str = field(default="fast", metadata=doc("speed", choices=("fast", "slow")))


def test_quality_tables_come_from_a_step_registry_of_dataclasses() -> None:
    table = docs.pipeline_table({"toy": _ToyStep})
    assert "| `quality.toy` | mapping | off |" in table
    assert "| `quality.toy.fields` | list | required | columns the step reads |" in table
    assert "| `quality.toy.window` | integer | 7 | how many \\| at once |" in table
    assert "| `quality.toy.mode` | one of `fast`, `slow` | `fast` | speed |" in table
    assert "quality.near_dedup" not in table  # the registry given replaces the built-in one


def test_docs_command_prints_and_rewrites(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "datafactory.config.docs", "recipe"], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("<!-- keys:recipe -->\n| key |") and out.rstrip().endswith("<!-- /keys:recipe -->")
    target = tmp_path / "README.md"
    target.write_text("intro\n<!-- keys:recipe -->\nstale\n<!-- /keys:recipe -->\noutro\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "datafactory.config.docs", "--write", str(target)], check=True)
    assert target.read_text(encoding="utf-8") == f"intro\n{docs.section('recipe')}\noutro\n"
