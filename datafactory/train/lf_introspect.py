"""Facts about the installed LLaMA-Factory, read from its source files without importing it.

Importing ``llamafactory`` costs seconds (torch, transformers); recipe validation must stay fast
and must work in the core install. So the template names, LLaMA-Factory's model → template table
and the argument names its parser accepts are read with ``ast`` from the installed source files.
Every function returns ``None`` when LLaMA-Factory (or transformers) is not installed, and callers
then skip the corresponding check.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from datafactory.proc.extras import package_dir


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


def _calls(tree: ast.Module, func_name: str) -> list[ast.Call]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name == func_name:
                out.append(node)
    return out


def _kwarg_str(call: ast.Call, key: str) -> str | None:
    for kw in call.keywords:
        if kw.arg == key and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            return kw.value.value
    return None


@functools.lru_cache(maxsize=1)
def template_names() -> frozenset[str] | None:
    """Names registered with ``register_template`` in ``llamafactory/data/template.py``."""
    root = package_dir("llamafactory")
    tree = _parse(root / "data" / "template.py") if root else None
    if tree is None:
        return None
    names = {n for call in _calls(tree, "register_template") if (n := _kwarg_str(call, "name"))}
    return frozenset(names) or None


@functools.lru_cache(maxsize=1)
def default_templates() -> dict[str, str] | None:
    """Hub id (and short name) → template, for the chat/instruct models LLaMA-Factory knows."""
    root = package_dir("llamafactory")
    tree = _parse(root / "extras" / "constants.py") if root else None
    if tree is None:
        return None
    table: dict[str, str] = {}
    for call in _calls(tree, "register_model_group"):
        template = _kwarg_str(call, "template")
        models = next((kw.value for kw in call.keywords if kw.arg == "models"), None)
        if template is None or not isinstance(models, ast.Dict):
            continue
        multimodal = any(kw.arg == "multimodal" and isinstance(kw.value, ast.Constant) and kw.value.value
                         for kw in call.keywords)
        for key, value in zip(models.keys, models.values, strict=False):
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                continue
            # same rule as LLaMA-Factory's DEFAULT_TEMPLATE: only chat-style models get a default
            if not multimodal and not any(s in key.value for s in _CHAT_SUFFIXES):
                continue
            table[key.value] = template
            if isinstance(value, ast.Dict):
                for hub_id in value.values:
                    if isinstance(hub_id, ast.Constant) and isinstance(hub_id.value, str):
                        table[hub_id.value] = template
    return table


_CHAT_SUFFIXES = ("-Chat", "-Distill", "-Instruct", "-Thinking")


def _dataclass_fields(path: Path) -> set[str]:
    tree = _parse(path)
    names: set[str] = set()
    if tree is None:
        return names
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                target = stmt.target if isinstance(stmt, ast.AnnAssign) else None
                if isinstance(target, ast.Name) and not target.id.startswith("_"):
                    names.add(target.id)
    return names


@functools.lru_cache(maxsize=1)
def train_argument_names() -> frozenset[str] | None:
    """Keys ``llamafactory-cli train`` accepts (its own dataclasses + transformers' TrainingArguments)."""
    lf, tf = package_dir("llamafactory"), package_dir("transformers")
    if lf is None or tf is None:
        return None
    names: set[str] = set()
    for path in sorted((lf / "hparams").glob("*.py")):
        names |= _dataclass_fields(path)
    for rel in ("training_args.py", "training_args_seq2seq.py"):
        names |= _dataclass_fields(tf / rel)
    # a handful of fields every version has: if they are missing, the sources moved, do not guess
    if not {"model_name_or_path", "learning_rate", "template", "finetuning_type"} <= names:
        return None
    return frozenset(names)
