"""YAML loading that remembers where every key came from (file and line).

Validation errors must name the file, the key path and the line, so we keep PyYAML's node
marks next to the plain Python values instead of throwing them away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from datafactory.errors import ConfigError


@dataclass
class Located:
    """Plain YAML data plus the line of every key path (``"provider.model"`` → 12)."""

    data: Any
    file: str
    lines: dict[str, int] = field(default_factory=dict)

    def line(self, path: str) -> int | None:
        """Line of ``path`` or of its closest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path.rpartition(".")[0]
        return None

    def error(self, path: str, message: str, suggestion: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.file, key=path or None, line=self.line(path), suggestion=suggestion)


def _walk(node: yaml.Node, prefix: str, lines: dict[str, int], file: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            path = f"{prefix}.{key}" if prefix else key
            line = key_node.start_mark.line + 1
            if key in first_line:
                # PyYAML lets the last one win silently: a second `limits:` block would replace the first
                raise ConfigError(f"duplicate key '{key}' (first at line {first_line[key]}, again at line "
                                  f"{line}); keep one", file=file, key=path, line=line)
            first_line[key] = line
            lines[path] = line
            out[key] = _walk(value_node, path, lines, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            path = f"{prefix}[{i}]"
            lines[path] = item.start_mark.line + 1
            items.append(_walk(item, path, lines, file))
        return items
    # scalars: let PyYAML's safe constructor resolve the type (int, float, bool, null, str)
    return yaml.SafeLoader(yaml.serialize(node)).get_single_data()  # noqa: S506 - SafeLoader


def load_yaml(path: str | Path) -> Located:
    """Read a YAML file into plain data with line numbers; any problem is a ConfigError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file: {exc}", file=str(p)) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=str(p), line=line) from None
    lines: dict[str, int] = {}
    data = _walk(node, "", lines, str(p)) if node is not None else {}
    return Located(data=data, file=str(p), lines=lines)
