"""Guard tests: the `quality:` block is the step registry, and each step's dataclass is its only schema."""

from __future__ import annotations

import dataclasses

from datafactory.config import pipeline as P
from datafactory.config.spec import keys_from
from datafactory.steps.registry import load_steps


def test_quality_block_keys_are_reask_plus_the_step_registry() -> None:
    steps = load_steps()
    assert list(P.QUALITY_KEYS) == ["reask", *steps]
    assert list(P.STEP_KEYS) == list(steps)


def test_each_step_option_comes_from_its_dataclass_with_a_doc() -> None:
    for name, cfg in load_steps().items():
        assert dataclasses.is_dataclass(cfg) and cfg.__dataclass_params__.frozen, name  # type: ignore[attr-defined]
        assert P.STEP_KEYS[name] == keys_from(cfg)
        for key, spec in P.STEP_KEYS[name].items():
            assert spec.doc, f"quality.{name}.{key} has no doc"


def test_a_pipeline_gets_the_defaults_of_the_step_dataclass(make_project) -> None:
    proj = make_project(rows=1, quality={"answer_check": {}, "near_dedup": {"fields": "question"}},
                        output={"columns": {"output": "answer"}})
    quality = P.load_pipeline(proj.pipeline).quality
    assert quality.get("answer_check") == load_steps()["answer_check"]()  # output_field "output" everywhere
    assert quality.get("near_dedup").threshold == 0.8
    assert quality.get("length") is None
