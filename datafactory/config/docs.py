"""The README's key tables, generated from the config dataclasses (key, type, default, doc).

``python -m datafactory.config.docs`` prints the pipeline and recipe tables, each between its marker
comments; ``--write README.md`` replaces the marked sections of a file in place. A guard test holds the
README to this output, so the docs cannot drift from the code. The quality steps' tables come from a
mapping of step name → config dataclass (:func:`pipeline_table` takes one); until every step owns a
dataclass, :func:`quality_steps` falls back to the pipeline module's key tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from datafactory.config.spec import Key, keys_from

MARKERS = {"pipeline": ("<!-- keys:pipeline -->", "<!-- /keys:pipeline -->"),
           "recipe": ("<!-- keys:recipe -->", "<!-- /keys:recipe -->")}
_TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "true/false", dict: "mapping",
               list: "list", object: "any"}
Steps = Mapping[str, "type | Mapping[str, Key]"]


def type_text(key: Key) -> str:
    """``integer``, ``string or null``, ``one of `a`, `b```: what a key accepts."""
    if "type_shown" in key.meta:  # a type the YAML spells in its own way (``integer or `auto```)
        return str(key.meta["type_shown"])
    if key.choices is not None:
        return "one of " + ", ".join("null" if c is None else f"`{c}`" for c in key.choices)
    tup = _types(key)
    names = [_TYPE_NAMES.get(t, t.__name__) for t in tup if t is not type(None)]
    if "integer" in names and "number" in names:  # a count or a fraction
        names.remove("integer")
    return " or ".join(dict.fromkeys(names)) + (" or null" if type(None) in tup else "")


def default_text(key: Key) -> str:
    """The default as a reader wants it: ``required``, ``none``, `` `alpaca` ``, ``0.1``, or the key's
    ``shown`` metadata where the default is computed (``runs/<name>``)."""
    if "shown" in key.meta:
        return str(key.meta["shown"])
    if key.required:
        return "required"
    value = key.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, (list, dict)):
        return f"`{_flow(value)}`"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _flow(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    return str(value)


def rows(keys: Mapping[str, Key], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """One table row per key: (key path, type, default, doc)."""
    return [(f"{prefix}{name}", type_text(key), default_text(key), key.doc) for name, key in keys.items()]


def table(body: list[tuple[str, str, str, str]]) -> str:
    """A Markdown table of ``rows`` (``|`` inside a cell escaped)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {cell(t)} | {cell(d)} | {cell(doc)} |" for k, t, d, doc in body]
    return "\n".join(lines)


def _types(key: Key) -> tuple[type, ...]:
    return key.types if isinstance(key.types, tuple) else (key.types,)


def _keys(step: type | Mapping[str, Key]) -> Mapping[str, Key]:
    return keys_from(step) if isinstance(step, type) and dataclasses.is_dataclass(step) else step  # type: ignore[return-value]


def quality_steps() -> Steps:
    """The quality steps' config dataclasses by YAML name (the step registry, in flow order)."""
    from datafactory.steps.registry import load_steps

    return dict(load_steps())


def pipeline_table(steps: Steps | None = None) -> str:
    """The pipeline key reference; ``steps`` maps each quality step's YAML name to its config dataclass
    (or key table), default :func:`quality_steps`."""
    from datafactory.config import pipeline as P

    sections: dict[str, Mapping[str, Key]] = {"input": P.INPUT_KEYS, "prompt": P.PROMPT_KEYS,
                                              "provider": P.PROVIDER_KEYS, "limits": P.LIMIT_KEYS,
                                              "output": P.OUTPUT_KEYS, "pricing": P.PRICING_KEYS}
    step_keys = {name: _keys(step) for name, step in (quality_steps() if steps is None else steps).items()}
    body: list[tuple[str, str, str, str]] = []
    for name, key in P.TOP_KEYS.items():
        if name in sections:
            body += rows(sections[name], f"{name}.")
            if name == "provider":  # a nested block with its own dataclass
                body += rows(P.BATCH_KEYS, "provider.batch.")
                body += rows(P.ENDPOINTS_KEYS, "provider.endpoints[].")
        elif name == "quality":
            # the quality block's own options (reask); its step blocks come from the registry
            plain = {k: v for k, v in P.QUALITY_KEYS.items() if dict not in _types(v)}
            body += rows(plain, "quality.")
            for step, keys in step_keys.items():
                body.append((f"quality.{step}", "mapping", "off", f"the `{step}` step, on when present "
                             "(see [Quality gates](#quality-gates))"))
                body += rows(keys, f"quality.{step}.")
        else:
            body += rows({name: key})
    return table(body)


def recipe_table() -> str:
    """The train-eval recipe key reference."""
    from datafactory.config import recipe as R

    body: list[tuple[str, str, str, str]] = []
    for name, key in R.TOP_KEYS.items():
        body += rows(R.SECTION_KEYS[name], f"{name}.") if name in R.SECTION_KEYS else rows({name: key})
    return table(body)


GENERATORS = {"pipeline": pipeline_table, "recipe": recipe_table}


def section(kind: str) -> str:
    """The generated block for ``kind``, markers included."""
    start, end = MARKERS[kind]
    return f"{start}\n{GENERATORS[kind]()}\n{end}"


def marked(text: str, kind: str) -> str | None:
    """The block of ``kind`` in ``text`` (markers included), or None when the markers are missing."""
    start, end = MARKERS[kind]
    m = re.search(re.escape(start) + r".*?" + re.escape(end), text, flags=re.S)
    return m.group(0) if m else None


def rewrite(text: str) -> str:
    """``text`` with every marked block replaced by the generated one."""
    for kind in MARKERS:
        old = marked(text, kind)
        if old is not None:
            text = text.replace(old, section(kind))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datafactory.config.docs", description=__doc__.split("\n")[0])
    parser.add_argument("--write", metavar="FILE", help="replace the marked key tables in FILE (README.md)")
    parser.add_argument("kinds", nargs="*", choices=[*MARKERS, []], help="which tables (default: all)")
    args = parser.parse_args(argv)
    if args.write:
        path = Path(args.write)
        path.write_text(rewrite(path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    sys.stdout.write("\n\n".join(section(k) for k in (args.kinds or MARKERS)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
