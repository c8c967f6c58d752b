"""``provider.endpoints``: several servers (or several API keys) for one provider (``providers/pool.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datafactory.config.spec import check_section, doc, keys_from, positive
from datafactory.config.yamlio import Located


@dataclass(frozen=True)
class EndpointConfig:
    base_url: str = field(metadata=doc("the server's API root, e.g. `http://10.0.0.2:8000/v1`"))
    api_key_env: str | None = field(default=None, metadata=doc(
        "the environment variable holding this endpoint's key", shown="`provider.api_key_env`"))
    weight: float = field(default=1.0, metadata=doc("share of the requests, relative to the others",
                                                    check=positive))
    concurrency: int | None = field(default=None, metadata=doc(
        "requests in flight at this endpoint at most", check=positive, shown="no cap of its own"))


ENDPOINT_KEYS = keys_from(EndpointConfig)


def load_endpoints(loc: Located, value: Any, key_env: str, path: str = "provider.endpoints") -> list[EndpointConfig]:
    """The endpoints block (a list of mappings, or of URL strings); each key env defaults to ``key_env``."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise loc.error(path, f"expected a list of endpoints ({{base_url: ...}}), got {value!r}")
    out = []
    for i, item in enumerate(value):
        item = {"base_url": item} if isinstance(item, str) else item
        ep = check_section(loc, item, f"{path}[{i}]", ENDPOINT_KEYS)
        out.append(EndpointConfig(base_url=ep["base_url"], api_key_env=ep["api_key_env"] or key_env,
                                  weight=float(ep["weight"]), concurrency=ep["concurrency"]))
    return out


def from_urls(urls: list[str], key_env: str) -> list[EndpointConfig]:
    """``--base-url`` given more than once: one endpoint per URL, all with the provider's key."""
    return [EndpointConfig(base_url=u, api_key_env=key_env) for u in urls]
