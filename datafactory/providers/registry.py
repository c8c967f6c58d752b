"""Providers by name. Adding one = one entry here; adding an OpenAI transport = one entry in TRANSPORTS.

The pipeline config takes its ``provider.kind`` and ``provider.transport`` choices from these tables, so
this module imports the config only for type checking.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from datafactory.config.suggest import closest
from datafactory.errors import MissingApiKey, UnknownName
from datafactory.providers.base import Provider
from datafactory.secrets import register_secret

if TYPE_CHECKING:
    from datafactory.config.pipeline import ProviderConfig


def _http(base_url: str | None, **kw: Any) -> Provider:
    from datafactory.providers.openai_http import OpenAIHTTPProvider

    return OpenAIHTTPProvider(base_url=base_url, **kw)


def _sdk(base_url: str | None, **kw: Any) -> Provider:
    from datafactory.providers.openai_sdk import OpenAISDKProvider

    return OpenAISDKProvider(base_url=base_url, **kw)


# how the openai provider speaks to the server: the lean aiohttp client (default) or the openai SDK
TRANSPORTS: dict[str, Callable[..., Provider]] = {"http": _http, "sdk": _sdk}


def _openai(cfg: ProviderConfig, **kw: Any) -> Provider:
    # OPENAI_BASE_URL as the openai SDK reads it, on both transports (the YAML / --base-url win)
    base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL") or None
    return TRANSPORTS[cfg.transport](base_url, **kw)


def _zhipu(cfg: ProviderConfig, **kw: Any) -> Provider:
    from datafactory.providers.zhipu import ZhipuProvider

    return ZhipuProvider(base_url=cfg.base_url, **kw)


REGISTRY: dict[str, Callable[..., Provider]] = {"openai": _openai, "zhipuai": _zhipu}


def api_key_for(cfg: ProviderConfig) -> str:
    """The API key from the environment variable the config names, or a MissingApiKey that says
    what to set (the key itself never enters the config, logs or run dir). With ``provider.endpoints``
    every endpoint's key must be set; each is registered for redaction and the first is returned."""
    if cfg.endpoints:
        keys = [_key(cfg, ep.api_key_env or cfg.api_key_env) for ep in cfg.endpoints]
        for key in keys:
            register_secret(key)
        return keys[0]
    return _key(cfg, cfg.api_key_env)


def _key(cfg: ProviderConfig, env: str) -> str:
    key = os.environ.get(env, "").strip()
    if key:
        return key
    local = " For a local vLLM/Ollama server pass --base-url http://127.0.0.1:8000/v1 and set the variable " \
            "to any value (e.g. EMPTY)." if cfg.kind == "openai" else ""
    raise MissingApiKey(
        f"no API key: set the environment variable {env} (provider '{cfg.kind}').{local} "
        f"To check the pipeline without calling the API, use --dry-run.")


def create_provider(cfg: ProviderConfig, *, api_key: str, timeout_s: float, concurrency: int) -> Provider:
    try:
        factory = REGISTRY[cfg.kind]
    except KeyError:
        raise UnknownName(f"unknown provider '{cfg.kind}' (choices: {', '.join(sorted(REGISTRY))})"
                          + (f" — did you mean '{s}'?" if (s := closest(cfg.kind, REGISTRY)) else "")) from None
    if not cfg.endpoints:
        return factory(cfg, api_key=api_key, timeout_s=timeout_s, concurrency=concurrency)
    from datafactory.providers.pool import Endpoint, PoolProvider, shown_url

    endpoints = []
    for ep in cfg.endpoints:  # one client per endpoint, each with its own key and connection pool
        one = dataclasses.replace(cfg, base_url=ep.base_url, endpoints=[])
        key = _key(cfg, ep.api_key_env or cfg.api_key_env)
        register_secret(key)
        client = factory(one, api_key=key, timeout_s=timeout_s, concurrency=ep.concurrency or concurrency)
        endpoints.append(Endpoint(client, shown_url(ep.base_url), weight=ep.weight, cap=ep.concurrency))
    return PoolProvider(endpoints)
