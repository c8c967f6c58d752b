"""Guard tests: every config choice list is the registry that serves it (as httpx's exception map test)."""

from __future__ import annotations

import importlib.util
import itertools
import re
from pathlib import Path

import pytest

from datafactory.config import pipeline as P
from datafactory.config import recipe as R
from datafactory.config.recipe_model import FINETUNING_TYPES


def test_provider_kind_choices_are_the_provider_registry() -> None:
    from datafactory.providers.registry import REGISTRY

    assert P.PROVIDER_KEYS["kind"].choices == tuple(REGISTRY)
    assert set(P.DEFAULT_KEY_ENV) == set(REGISTRY)  # every provider says where its key lives


def test_transport_choices_are_the_transport_registry() -> None:
    from datafactory.providers.registry import TRANSPORTS

    assert P.PROVIDER_KEYS["transport"].choices == tuple(TRANSPORTS)
    assert P.PROVIDER_KEYS["transport"].default in TRANSPORTS


def test_input_format_choices_are_the_readers(tmp_path: Path) -> None:
    from datafactory.io.readers import LOCAL_FORMATS, iter_rows

    assert P.INPUT_KEYS["format"].choices == (*LOCAL_FORMATS, None)
    samples = {"jsonl": '{"q": "a"}\n', "json": '[{"q": "a"}]', "csv": "q\na\n"}
    for fmt in LOCAL_FORMATS:
        path = tmp_path / f"in.{fmt}"
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({"q": ["a"]}), path)
        else:
            path.write_text(samples[fmt], encoding="utf-8")
        rows = [row for _, row in iter_rows(str(path), fmt=fmt)]
        assert rows == [{"q": "a"}], fmt


def test_output_format_choices_are_the_format_registry() -> None:
    from datafactory.formats.entries import FORMAT_ENTRIES
    from datafactory.formats.output import ROW_SHAPES

    choices = set(P.OUTPUT_KEYS["format"].choices or ())
    assert choices == set(FORMAT_ENTRIES)  # every format registers its own dataset_info entry
    paired = {"preference", "kto"}  # shaped by the pairing step, not by a row shape
    assert choices == set(ROW_SHAPES) | paired


def test_every_optional_section_checks_to_its_dataclass_defaults() -> None:
    from datafactory.config.spec import check_section
    from datafactory.config.yamlio import Located

    loc = Located(data={}, file="<test>")
    assert P.LimitsConfig(**check_section(loc, {}, "limits", P.LIMIT_KEYS)) == P.LimitsConfig()
    assert P.PricingConfig(**check_section(loc, {}, "pricing", P.PRICING_KEYS)) == P.PricingConfig()
    given = {"dir": "d", "name": "n"}
    out = check_section(loc, given, "output", P.OUTPUT_KEYS)
    assert P.OutputConfig(**out) == P.OutputConfig(**given)
    for section, spec in (("train", R.TrainSpec), ("eval", R.EvalSpec)):
        assert spec(**check_section(loc, {}, section, R.SECTION_KEYS[section], null_is_default=True)) == spec()


def test_recipe_method_and_stage_choices_are_their_registries() -> None:
    train = R.SECTION_KEYS["train"]
    assert train["method"].choices == tuple(FINETUNING_TYPES)
    assert set(R.DEFAULT_LR) == set(itertools.product(train["stage"].choices or (), train["method"].choices or ()))


def test_eval_backend_choices_are_the_backend_registry() -> None:
    from datafactory.evaluate.job import BACKENDS, EvalJob
    from datafactory.evaluate.lm_eval_runner import model_spec

    assert R.SECTION_KEYS["eval"]["backend"].choices == tuple(BACKENDS)
    for name in BACKENDS:
        assert model_spec(EvalJob(model_path="m", backend=name))[0] == BACKENDS[name]


@pytest.mark.skipif(importlib.util.find_spec("llamafactory") is None, reason="needs the [train] extra")
def test_recipe_stages_and_finetuning_types_are_llamafactorys() -> None:
    spec = importlib.util.find_spec("llamafactory")
    assert spec is not None and spec.submodule_search_locations
    source = (Path(spec.submodule_search_locations[0]) / "hparams" / "finetuning_args.py").read_text()

    def literal(name: str) -> set[str]:
        m = re.search(rf"\b{name}: Literal\[([^\]]*)\]", source)
        assert m, name
        return set(re.findall(r'"([^"]+)"', m.group(1)))

    assert set(R.SECTION_KEYS["train"]["stage"].choices or ()) <= literal("stage")
    assert set(FINETUNING_TYPES.values()) <= literal("finetuning_type")
