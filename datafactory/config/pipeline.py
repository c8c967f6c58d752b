"""The pipeline config: YAML → validated, resolved dataclasses (no secrets, ever).

Relative paths for input, prompt template and schema are resolved against the pipeline file's
directory (so a pipeline works from any working directory); the output run dir is resolved
against the working directory, where users expect ``runs/`` to appear.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datafactory import constants as C
from datafactory.config.batch import MODES, BatchConfig
from datafactory.config.endpoints import ENDPOINT_KEYS, EndpointConfig, from_urls, load_endpoints
from datafactory.config.names import check_gate_names
from datafactory.config.params import check_params
from datafactory.config.pipeline_refs import (
    _check_columns,
    _check_placeholders,
    _eval_set,
    _load_schema,
    _must_exist,
    _resolve_input,
    _str_map,
)
from datafactory.config.prompt import PromptTemplate, load_template
from datafactory.config.spec import Key, check_section, doc, keys_from, non_negative, positive
from datafactory.config.suggest import closest
from datafactory.config.yamlio import load_yaml
from datafactory.errors import ConfigError
from datafactory.formats.entries import FORMAT_ENTRIES
from datafactory.io.readers import LOCAL_FORMATS
from datafactory.providers.registry import REGISTRY
from datafactory.providers.registry import TRANSPORTS as TRANSPORT_REGISTRY
from datafactory.providers.structured import MODES as STRUCTURED_MODES
from datafactory.steps.registry import load_steps

# choice lists come from the registries that serve them (a guard test holds the rest to theirs)
PROVIDER_KINDS = tuple(REGISTRY)
TRANSPORTS = tuple(TRANSPORT_REGISTRY)
OUTPUT_FORMATS = tuple(FORMAT_ENTRIES)
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "zhipuai": "ZHIPUAI_API_KEY"}
SHAREGPT_TAGS = ("from_value", "role_content")
PAIR_STYLES = ("alpaca", "sharegpt")
STEPS = load_steps()  # quality step name -> its config dataclass (datafactory/steps)


def _concurrency(value: Any) -> str | None:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return None
    return f"expected a positive integer or auto, got {value!r}"


def _fraction(value: Any) -> str | None:
    return None if 0 <= value < 1 else "must be in [0, 1)"


# Each section's dataclass is its YAML schema (keys_from): metadata "default" is the YAML default where
# the resolved value is filled in later (None: derived), "shown" the default as the README tells it.
@dataclass(frozen=True)
class InputConfig:
    path: str = field(metadata=doc("`.jsonl` / `.json` (array) / `.csv` / `.parquet` file, or a `datasets` hub "
                                   "id (streamed)"))
    format: str | None = field(default=None, metadata=doc("force a local format", choices=(*LOCAL_FORMATS, None),
                                                          shown="from suffix"))
    split: str = field(default="train", metadata=doc("hub datasets: the split"))
    subset: str | None = field(default=None, metadata=doc("hub datasets: the subset"))
    fields: dict[str, str] = field(default_factory=dict, metadata=doc("template variable → input column"))
    limit: int | None = field(default=None, metadata=doc("first N rows (`--limit`)", check=positive))


@dataclass(frozen=True)
class ProviderConfig:
    kind: str = field(metadata=doc("`openai` (any OpenAI-compatible server) or `zhipuai` (`--provider`)",
                                   choices=PROVIDER_KINDS, default="openai"))
    model: str = field(metadata=doc("model name (`--model`)"))
    base_url: str | None = field(default=None, metadata=doc("e.g. `http://127.0.0.1:8000/v1` (`--base-url`)",
                                                            shown="provider default"))
    api_key_env: str = field(default="OPENAI_API_KEY", metadata=doc(
        "the environment variable holding the key", type=str | None, default=None,
        shown=" / ".join(f"`{v}`" for v in DEFAULT_KEY_ENV.values())))
    transport: str = field(default="http", metadata=doc("`http`: lean aiohttp client; `sdk`: the official "
                                                        "`openai` SDK (see the benchmark)", choices=TRANSPORTS))
    params: dict[str, Any] = field(default_factory=dict, metadata=doc(
        "`temperature`, `top_p`, `max_tokens`, `n`, `seed`, `stop`, `response_format`, …"))
    mode: str = field(default="online", metadata=doc("`online`: one request at a time; `batch`: the provider's "
                                                     "Batch API at half the price (`--batch`)", choices=MODES))
    batch: BatchConfig = field(default_factory=BatchConfig, metadata=doc(
        "batch mode: splitting and polling (see the `provider.batch.*` keys)", type=dict | None, default=None))
    structured_output: str = field(default="auto", metadata=doc(
        "`auto`: JSON Schema from `schema` as `response_format` (json_object on ZhipuAI), stepping down to "
        "json_object, then the prompt alone, when the server refuses it; or `json_schema`, `json_object`, `off`",
        choices=STRUCTURED_MODES))
    endpoints: list[EndpointConfig] = field(default_factory=list, metadata=doc(
        "several servers or keys for this provider: a list of `{base_url, api_key_env, weight, concurrency}` "
        "(see the `provider.endpoints[].*` keys; `--base-url` more than once); requests go where there is room, "
        "a failing endpoint is taken out and probed back", type=list | None, default=None, shown="none"))


@dataclass(frozen=True)
class LimitsConfig:
    concurrency: int = field(default=C.DEFAULT_CONCURRENCY, metadata=doc(
        "requests in flight (`--concurrency`); `auto`: learned from the server's latency, 429s and timeouts, "
        "up to `max_concurrency`", type=int | str, type_shown="integer or `auto`", check=_concurrency))
    max_concurrency: int = field(default=C.DEFAULT_MAX_CONCURRENCY, metadata=doc(
        "the ceiling of `concurrency: auto`", check=positive))
    # concurrency: auto, resolved (concurrency = max_concurrency workers, an adaptive in-flight limit)
    adaptive: bool = False
    rpm: float | None = field(default=None, metadata=doc("requests per minute (`--rpm`)", check=positive))
    tpm: float | None = field(default=None, metadata=doc("tokens per minute (`--tpm`)", check=positive))
    timeout_s: float = field(default=C.DEFAULT_TIMEOUT_S, metadata=doc("per request", check=positive))
    max_attempts: int = field(default=C.DEFAULT_MAX_ATTEMPTS, metadata=doc("per request, retries included",
                                                                           check=positive))
    max_cost_usd: float | None = field(default=None, metadata=doc(
        "stop before the run dir's spend (priced from reported usage) could pass this", check=positive))
    rate_limit_wait_s: float = field(default=C.DEFAULT_RATE_LIMIT_WAIT_S, metadata=doc(
        "how long one request waits out 429s, and the run without any success", check=positive))


@dataclass(frozen=True)
class OutputConfig:
    dir: str = field(metadata=doc("run directory (`--output`)", type=str | None, default=None,
                                  shown="`runs/<name>`"))
    name: str = field(metadata=doc("dataset file name in `data/`", type=str | None, default=None,
                                   shown="`name`"))
    format: str = field(default="alpaca", metadata=doc("row shape (see [Output formats](#output-formats))",
                                                       choices=OUTPUT_FORMATS))
    columns: dict[str, str] = field(default_factory=dict, metadata=doc(
        "output column → property of the model's object, `source.<var>` for an input field, or "
        "`response.reasoning` for a reasoning model's chain of thought"))
    explode: str | None = field(default=None, metadata=doc("a list property of the reply; each item becomes "
                                                           "one row"))
    conversation: str = field(default="conversations", metadata=doc("sharegpt: the property holding the turns"))
    tags: str = field(default="from_value", metadata=doc(
        "sharegpt/preference: `from_value` (human/gpt) or `role_content` (user/assistant)", choices=SHAREGPT_TAGS))
    style: str = field(default="alpaca", metadata=doc("preference/kto: `alpaca` or `sharegpt` rows",
                                                      choices=PAIR_STYLES))
    parquet: bool = field(default=False, metadata=doc("also write `data/<name>.parquet`"))
    validation_split: float = field(default=0.0, metadata=doc(
        "fraction of rows for `<name>_validation` (by id hash)", check=_fraction))
    seed: int = field(default=42, metadata=doc("seed of the validation split"))


@dataclass(frozen=True)
class QualityConfig:
    """Re-asks and the gate steps that are on: YAML name -> that step's config (``datafactory.steps``),
    in flow order. Each step's dataclass is its only schema and source of defaults."""

    reask: int = 1
    steps: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        """The config of step ``name``, or None when it is off."""
        return self.steps.get(name)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, every registered step named (None when off), for config.resolved.yaml."""
        return {"reask": self.reask, **{name: dataclasses.asdict(self.steps[name]) if name in self.steps else None
                                        for name in STEPS}}


@dataclass(frozen=True)
class PricingConfig:
    input_per_1m: float | None = field(default=None, metadata=doc("USD per 1M input tokens (cost estimates)",
                                                                  check=non_negative, shown="built-in table"))
    output_per_1m: float | None = field(default=None, metadata=doc("USD per 1M output tokens",
                                                                   check=non_negative, shown="built-in table"))
    expected_output_tokens: int = field(default=C.DEFAULT_EXPECTED_OUTPUT_TOKENS, metadata=doc(
        "output tokens per request assumed by `--dry-run` estimates", check=positive))
    batch_share: float = field(default=0.5, metadata=doc(
        "share of the online price a batch request costs (`provider.mode: batch`)", check=non_negative))


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline. ``source`` is the YAML file it came from (for messages)."""

    name: str
    source: str
    input: InputConfig
    prompt: PromptTemplate
    schema: dict[str, Any]
    schema_path: str
    provider: ProviderConfig
    limits: LimitsConfig
    output: OutputConfig
    quality: QualityConfig
    pricing: PricingConfig

    def with_overrides(self, **overrides: Any) -> Pipeline:
        """Apply CLI-style overrides (``input``, ``output``, ``limit``, ``concurrency``, ``rpm``, ``tpm``,
        ``provider``, ``model``, ``base_url``); None means 'keep the YAML value'."""
        return apply_overrides(self, overrides)

    def resolved(self) -> dict[str, Any]:
        """What actually runs, as plain data (for config.resolved.yaml). Holds no secrets: only the
        *name* of the key's environment variable."""
        return {
            "name": self.name,
            "source": self.source,
            "input": dataclasses.asdict(self.input),
            "prompt": {"path": self.prompt.path, "system": self.prompt.system, "user": self.prompt.user},
            "schema": self.schema_path,
            "provider": dataclasses.asdict(self.provider),
            "limits": dataclasses.asdict(self.limits),
            "output": dataclasses.asdict(self.output),
            "quality": self.quality.as_dict(),
            "pricing": dataclasses.asdict(self.pricing),
        }


TOP_KEYS = {
    "name": Key(str, None, doc="run name", meta={"shown": "file stem"}),
    "input": Key(dict, doc="the input rows"), "prompt": Key(dict, doc="the prompt template"),
    "schema": Key(str, doc="JSON Schema (draft 2020-12) the model's JSON object must satisfy"),
    "provider": Key(dict, doc="the model endpoint"),
    "limits": Key(dict, None, doc="concurrency, rate limits, retries, spend"),
    "output": Key(dict, None, doc="the run directory and row format"),
    "quality": Key(dict, None, doc="re-asks and gates"), "pricing": Key(dict, None, doc="cost estimates"),
}
INPUT_KEYS = keys_from(InputConfig)
PROMPT_KEYS = {"template": Key(str, doc="YAML with `system` and `user` texts; `{{ var }}` placeholders (JSON "
                                        "examples need no escaping)")}
PROVIDER_KEYS = keys_from(ProviderConfig)
BATCH_KEYS = keys_from(BatchConfig)
ENDPOINTS_KEYS = ENDPOINT_KEYS  # provider.endpoints[] (config/endpoints.py)
LIMIT_KEYS = keys_from(LimitsConfig, skip=("adaptive",))
OUTPUT_KEYS = keys_from(OutputConfig)
QUALITY_KEYS = {
    "reask": Key(int, 1, check=non_negative,
                 doc="re-asks with the validation error appended before a row is rejected"),
    **{name: Key((dict, type(None)), None, doc=f"the `{name}` step, on when present") for name in STEPS},
}
STEP_KEYS = {name: keys_from(cfg) for name, cfg in STEPS.items()}  # derived from each step's dataclass
PRICING_KEYS = keys_from(PricingConfig)
REQUIRED_COLUMNS = {"alpaca": ("instruction", "output")}


def load_pipeline(path: str | Path, **overrides: Any) -> Pipeline:
    """Read and validate a pipeline YAML; raise ConfigError naming file, line and key on any problem."""
    loc = load_yaml(path)
    base = Path(loc.file).resolve().parent
    top = check_section(loc, loc.data, "", TOP_KEYS)
    name = top["name"] or Path(loc.file).stem

    inp = check_section(loc, top["input"], "input", INPUT_KEYS)
    fields = _str_map(loc, inp["fields"] or {}, "input.fields")
    in_path = _resolve_input(inp["path"], base)
    input_cfg = InputConfig(path=in_path, format=inp["format"], split=inp["split"], subset=inp["subset"],
                            fields=fields, limit=inp["limit"])

    pr = check_section(loc, top["prompt"], "prompt", PROMPT_KEYS)
    template = load_template(_must_exist(loc, "prompt.template", pr["template"], base))
    _check_placeholders(loc, template, fields)

    schema_path = _must_exist(loc, "schema", top["schema"], base)
    schema = _load_schema(loc, schema_path)

    pv = check_section(loc, top["provider"], "provider", PROVIDER_KEYS)
    params = check_params(loc, pv["params"])
    provider = ProviderConfig(kind=pv["kind"], model=pv["model"], base_url=pv["base_url"],
                              api_key_env=pv["api_key_env"] or DEFAULT_KEY_ENV[pv["kind"]],
                              transport=pv["transport"], params=params, structured_output=pv["structured_output"])
    provider = dataclasses.replace(provider, endpoints=load_endpoints(loc, pv["endpoints"], provider.api_key_env))
    provider = dataclasses.replace(provider, mode=pv["mode"],  # batch mode (config/batch.py)
                                   batch=BatchConfig(**check_section(loc, pv["batch"], "provider.batch", BATCH_KEYS)))

    lm = check_section(loc, top["limits"], "limits", LIMIT_KEYS)
    if lm["concurrency"] == "auto":
        lm.update(concurrency=lm["max_concurrency"], adaptive=True)
    limits = LimitsConfig(**lm)
    out = check_section(loc, top["output"], "output", OUTPUT_KEYS)
    columns = _str_map(loc, out["columns"] or {}, "output.columns")
    for col in REQUIRED_COLUMNS.get(out["format"], ()):
        if col not in columns:
            raise loc.error("output.columns", f"format '{out['format']}' needs a column '{col}'")
    _check_columns(loc, columns, schema, fields)
    output = OutputConfig(dir=out["dir"] or str(Path(C.DEFAULT_RUNS_DIR) / name), name=out["name"] or name,
                          format=out["format"], columns=columns, explode=out["explode"],
                          conversation=out["conversation"], tags=out["tags"], style=out["style"],
                          parquet=out["parquet"], validation_split=float(out["validation_split"]), seed=out["seed"])
    q = check_section(loc, top["quality"], "quality", QUALITY_KEYS)
    on = {name: check_section(loc, q[name], f"quality.{name}", keys)
          for name, keys in STEP_KEYS.items() if q[name] is not None}
    check_gate_names(loc, on, schema, columns, fields, output.format, output.conversation)
    if "decontaminate" in on:
        on["decontaminate"]["eval_sets"] = [_eval_set(loc, v, base) for v in on["decontaminate"]["eval_sets"]]
    if output.format in ("preference", "kto") and "answer_check" not in on:
        raise loc.error("quality.answer_check", f"format '{output.format}' needs quality.answer_check to tell "
                        "correct samples from wrong ones")
    quality = QualityConfig(reask=q["reask"], steps={name: STEPS[name](**values) for name, values in on.items()})
    pricing = PricingConfig(**check_section(loc, top["pricing"], "pricing", PRICING_KEYS))
    pipe = Pipeline(name=name, source=loc.file, input=input_cfg, prompt=template, schema=schema,
                    schema_path=schema_path, provider=provider, limits=limits, output=output,
                    quality=quality, pricing=pricing)
    return apply_overrides(pipe, overrides) if overrides else pipe


def apply_overrides(pipe: Pipeline, overrides: dict[str, Any]) -> Pipeline:
    known = {"input", "output", "limit", "concurrency", "rpm", "tpm", "provider", "model", "base_url",
             "timeout_s", "max_attempts", "max_cost", "mode", "batch_wait"}
    for key in overrides:
        if key not in known:
            raise ConfigError(f"unknown override '{key}'", suggestion=closest(key, known))
    ov = {k: v for k, v in overrides.items() if v is not None}
    for key in ("limit", "concurrency", "max_attempts"):
        if key in ov and ov[key] != "auto" and (not isinstance(ov[key], int) or ov[key] < 1):
            raise ConfigError(f"--{key.replace('_', '-')} must be a positive integer, got {ov[key]!r}")
    for key in ("rpm", "tpm", "timeout_s", "max_cost"):
        if key in ov and (isinstance(ov[key], bool) or not isinstance(ov[key], (int, float))
                          or not math.isfinite(ov[key]) or ov[key] <= 0):  # nan, inf, 0, negative
            raise ConfigError(f"--{key.replace('_', '-')} must be a finite number greater than 0, "
                              f"got {ov[key]!r}")
    inp = pipe.input
    if "input" in ov:
        inp = dataclasses.replace(inp, path=str(ov["input"]), format=None)
    if "limit" in ov:
        inp = dataclasses.replace(inp, limit=ov["limit"])
    prov = pipe.provider
    if "provider" in ov:
        kind = ov["provider"]
        if kind not in PROVIDER_KINDS:
            raise ConfigError(f"unknown provider '{kind}' (choices: {', '.join(PROVIDER_KINDS)})",
                              suggestion=closest(kind, PROVIDER_KINDS))
        key_env = prov.api_key_env if prov.kind == kind else DEFAULT_KEY_ENV[kind]
        prov = dataclasses.replace(prov, kind=kind, api_key_env=key_env)
    if "model" in ov:
        prov = dataclasses.replace(prov, model=ov["model"])
    if "base_url" in ov:  # --base-url once: the URL; more than once: that many endpoints
        urls = [ov["base_url"]] if isinstance(ov["base_url"], str) else list(ov["base_url"])
        prov = dataclasses.replace(prov, base_url=urls[0] if len(urls) == 1 else None,
                                   endpoints=from_urls(urls, prov.api_key_env) if len(urls) > 1 else [])
    if "mode" in ov:
        if ov["mode"] not in MODES:
            raise ConfigError(f"unknown provider mode '{ov['mode']}' (choices: {', '.join(MODES)})")
        prov = dataclasses.replace(prov, mode=ov["mode"])
    if "batch_wait" in ov:
        prov = dataclasses.replace(prov, batch=dataclasses.replace(prov.batch, wait=bool(ov["batch_wait"])))
    limits = dataclasses.replace(pipe.limits, **{k: ov[k] for k in ("rpm", "tpm", "timeout_s", "max_attempts")
                                                 if k in ov})
    if "concurrency" in ov:
        auto = ov["concurrency"] == "auto"
        limits = dataclasses.replace(limits, concurrency=limits.max_concurrency if auto else ov["concurrency"],
                                     adaptive=auto)
    if "max_cost" in ov:
        limits = dataclasses.replace(limits, max_cost_usd=float(ov["max_cost"]))
    output = pipe.output
    if "output" in ov:
        output = dataclasses.replace(output, dir=str(ov["output"]))
    return dataclasses.replace(pipe, input=inp, provider=prov, limits=limits, output=output)


def as_pipeline(pipeline: Pipeline | str | Path, overrides: dict[str, Any]) -> Pipeline:
    """A Pipeline from a loaded one or a YAML path, with the caller's ``overrides`` applied."""
    if isinstance(pipeline, Pipeline):
        return pipeline.with_overrides(**overrides) if overrides else pipeline
    return load_pipeline(pipeline, **overrides)
