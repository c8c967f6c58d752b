"""Checks made right before the first slow stage, so that a run that cannot succeed stops in seconds.

- :func:`locate_model`: is ``model.name_or_path`` a local model folder, in the Hugging Face cache, or
  on a reachable Hub? Offline (``HF_HUB_OFFLINE=1``) only the cache counts; online one ``HEAD`` of the
  model's ``config.json`` with a short timeout answers it, instead of transformers' minute of retries
  ending in ``OSError: Failed to load tokenizer``. When the Hub is unreachable but the model is cached,
  the children are told to stay offline (no retries).
- :func:`check_rows`: every dataset has rows, and ``train.val_size`` leaves rows on both sides of
  LLaMA-Factory's split (``datasets.train_test_split``), which it would otherwise find only after
  loading the model and tokenizing.

Every failure is a :class:`~datafactory.errors.ConfigError` naming the recipe key. Nothing is imported
from torch or transformers; the Hub probe uses httpx, the cache lookup huggingface_hub.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datafactory.constants import DATASET_INFO, REJECTS_FILE, STATS_FILE
from datafactory.errors import ConfigError, Unfit

if TYPE_CHECKING:
    from datafactory.config.recipe import Recipe

HUB_PROBE_TIMEOUT_S = 5.0
DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "on", "yes", "true"}
KEY = "model.name_or_path"


@dataclass(frozen=True)
class ModelSource:
    """Where the base model comes from: ``kind`` is local, cache, hub or other; ``offline`` asks the
    children to run with ``HF_HUB_OFFLINE=1``."""

    kind: str
    detail: str
    offline: bool = False


def _truthy(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in _TRUE


def hub_cache_dir(env: Mapping[str, str]) -> Path:
    """The Hugging Face hub cache the children will use (same precedence as huggingface_hub)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return Path(env[name]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def locate_model(recipe: Recipe, *, env: Mapping[str, str] | None = None,
                 timeout_s: float = HUB_PROBE_TIMEOUT_S) -> ModelSource:
    """Say where ``model.name_or_path`` will be loaded from, or raise ConfigError saying why it cannot."""
    env = os.environ if env is None else env
    name = recipe.model.name_or_path

    def fail(message: str) -> ConfigError:
        return ConfigError(message, file=recipe.source, key=KEY)

    path = Path(name)
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource("local", f"local folder {path}")
        inner = sorted(p.parent for p in path.glob("*/config.json")) + sorted(p.parent for p in
                                                                             path.glob("*/*/*/config.json"))
        hint = f"; did you mean {inner[0]}?" if inner else ""
        raise fail(f"{path} is a folder but holds no config.json, so it is not a Hugging Face model folder{hint}")
    if path.exists():
        raise fail(f"{path} is a file; point it at the model folder (the one holding config.json)")
    for other in ("USE_MODELSCOPE_HUB", "USE_OPENMIND_HUB"):
        if _truthy(env, other):
            return ModelSource("other", f"'{name}' from the hub {other} selects (not checked here)")
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise fail(f"'{name}' is neither a local folder (none at {Path(name).resolve()}) nor a valid Hub id "
                   "like 'Qwen/Qwen2.5-1.5B-Instruct'") from None
    revision = str(recipe.overrides.get("model_revision") or "main")
    cache = hub_cache_dir(env)
    cached = _cached(name, revision, cache)
    offline_var = next((v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if _truthy(env, v)), None)
    if offline_var:
        if cached:
            return ModelSource("cache", f"'{name}' from the Hugging Face cache {cache} ({offline_var}=1)")
        raise fail(f"'{name}' is not a local folder (none at {Path(name).resolve()}) and not in the Hugging Face "
                   f"cache {cache}, and {offline_var}=1 forbids downloading it. Download it where the Hub is "
                   f"reachable (huggingface-cli download {name}, with the same HF_HOME) or set {KEY} to a "
                   "local model folder")
    endpoint = (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    verdict, why = _probe(endpoint, name, revision, _token(env), timeout_s)
    if verdict == "ok":
        return ModelSource("hub", f"'{name}' on the Hub ({endpoint})"
                                  + (", already in the cache" if cached else ", downloaded on first use"))
    if cached:
        return ModelSource("cache", f"'{name}' from the Hugging Face cache {cache}: the Hub answered {why}, so "
                                    "the children run with HF_HUB_OFFLINE=1", offline=True)
    if verdict == "unreachable":
        raise fail(f"'{name}' is not a local folder and not in the Hugging Face cache {cache}, and the Hub "
                   f"({endpoint}) is unreachable: {why}. Connect, or set {KEY} to a local model folder")
    raise fail(f"'{name}' is not a local folder and the Hub ({endpoint}) says: {why}")


def _cached(name: str, revision: str, cache: Path) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, "config.json", cache_dir=str(cache), revision=revision)
    except Exception:  # a malformed cache entry counts as not cached
        return False
    return isinstance(found, str)


def _token(env: Mapping[str, str]) -> str | None:
    token = env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # no token is a normal state
        return None


def _probe(endpoint: str, name: str, revision: str, token: str | None, timeout_s: float) -> tuple[str, str]:
    """One HEAD of the model's config.json: ("ok" | "missing" | "denied" | "unreachable", why)."""
    import httpx

    url = f"{endpoint}/{name}/resolve/{revision}/config.json"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = httpx.head(url, headers=headers, timeout=timeout_s, follow_redirects=False)
    except httpx.HTTPError as exc:
        return "unreachable", f"{type(exc).__name__} {exc}".strip()
    if resp.status_code < 400:
        return "ok", ""
    code = resp.headers.get("x-error-code", "")
    if code == "GatedRepo":
        return "denied", (f"'{name}' is gated (HTTP {resp.status_code}): accept its licence on its Hub page "
                          "and set HF_TOKEN")
    if code in ("RepoNotFound", "RevisionNotFound", "EntryNotFound") or resp.status_code in (401, 404):
        what = {"RevisionNotFound": f"no revision '{revision}'",
                "EntryNotFound": "no config.json (not a transformers model?)"}.get(code, "no such model")
        private = "" if token else " (or it is private: set HF_TOKEN)"
        return "missing", f"{what} (HTTP {resp.status_code}){private}"
    if resp.status_code >= 500:
        return "unreachable", f"HTTP {resp.status_code}"
    return "denied", f"HTTP {resp.status_code}"


# ------------------------------------------------------------------------------------------ rows
def dataset_rows(recipe: Recipe) -> dict[str, int | None]:
    """Rows per recipe dataset as LLaMA-Factory will load them (after ``max_samples``); None: not counted
    (remote, a folder, or too large to count cheaply)."""
    from datafactory.formats.sampling import read_sample

    info_path = recipe.data.dataset_dir / DATASET_INFO
    info: dict[str, Any] = json.loads(info_path.read_text(encoding="utf-8"))
    out: dict[str, int | None] = {}
    for i, name in enumerate(recipe.data.datasets):
        entry = info.get(name) or {}
        file_name = entry.get("file_name")
        path = recipe.data.dataset_dir / file_name if isinstance(file_name, str) else None
        if path is None or not path.is_file() or any(k.endswith("_url") for k in entry):
            out[name] = None
            continue
        try:
            total = read_sample(path, 1).total
        except Unfit as exc:  # an empty file lands here too
            raise ConfigError(f"LLaMA-Factory cannot train on dataset '{name}': {exc}{_run_hint(recipe)}",
                              file=recipe.source, key=f"data.datasets[{i}]") from None
        if total is not None and recipe.data.max_samples is not None:
            total = min(total, recipe.data.max_samples)
        out[name] = total
    return out


def _run_hint(recipe: Recipe) -> str:
    path = recipe.data.dataset_dir
    if (path / STATS_FILE).is_file():  # a datafactory augment run dir: its rejects say why
        return f" (see {path / STATS_FILE} and {path / REJECTS_FILE} for why the augment run wrote none)"
    return ""


def check_rows(recipe: Recipe) -> dict[str, int | None]:
    """No empty dataset; ``train.val_size`` leaves at least one row for training and one for eval."""
    rows = dataset_rows(recipe)
    for i, (name, n) in enumerate(rows.items()):
        if n == 0:
            raise ConfigError(f"dataset '{name}' has 0 rows: there is nothing to train on{_run_hint(recipe)}",
                              file=recipe.source, key=f"data.datasets[{i}]")
    if any(n is None for n in rows.values()):
        return rows
    total = sum(n or 0 for n in rows.values())
    val = recipe.train.val_size
    if val < 1:
        n_val, n_train = math.ceil(val * total), math.floor((1 - val) * total)
    else:
        n_val, n_train = int(val), total - int(val)
    if n_train < 1 or n_val < 1:
        per = ", ".join(f"{k}: {v}" for k, v in rows.items())
        raise ConfigError(f"{val} leaves {max(n_train, 0)} training and {max(n_val, 0)} validation rows: the "
                          f"datasets have {total} rows in all ({per}); use a fraction such as 0.1, or at most "
                          f"{max(total - 1, 1)} rows", file=recipe.source, key="train.val_size")
    return rows
