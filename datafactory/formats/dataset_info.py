"""Write LLaMA-Factory's ``dataset_info.json`` for a folder of datasets (``datafactory build-info``).

``build_info`` scans a folder for .jsonl/.json/.csv/.parquet/.arrow files and ``save_to_disk``
folders, detects each one's format (``datafactory.formats.detect``) and merges the entries into the
``dataset_info.json`` that LLaMA-Factory reads from its ``dataset_dir``:

* ``file_name`` is relative to the folder holding dataset_info.json (LLaMA-Factory joins it to
  ``dataset_dir``); a ``save_to_disk`` folder is registered by its single .arrow file, because
  LLaMA-Factory 0.9.5 loads registered folders with ``load_dataset`` (all files in them), never with
  ``load_from_disk``.
* Existing entries stay as they are, hand edits included. An entry with the same name is replaced
  only with ``force``; without it a name whose entry would mean something else (another file,
  another format/columns/tags/ranking, as LLaMA-Factory reads them) is an error naming both.
* The file is written atomically, with sorted keys, indent 2, ASCII and a trailing newline, and only
  when its bytes change: the same input gives the same bytes.

``register`` is the same merge for entries whose format is already known (the augment engine's run
directory).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from datafactory.constants import DATASET_INFO
from datafactory.errors import ConfigError, DatasetInfoClash, InputError, UserError
from datafactory.formats.detect import Detection, detect_file
from datafactory.formats.sampling import SUPPORTED_SUFFIXES, UNSUPPORTED_SUFFIXES, is_save_to_disk_dir
from datafactory.io.atomic import atomic_write_text

CANDIDATE_SUFFIXES = frozenset(SUPPORTED_SUFFIXES) | frozenset(UNSUPPORTED_SUFFIXES)
_TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".swp", ".crdownload", ".lock", "~")
_NAME_OK = re.compile(r"^[A-Za-z0-9_.-]+$")
_SOURCE_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name", "file_name")
# DatasetAttr's defaults, used only when an entry has no "columns" / "tags" object at all
_COLUMN_DEFAULTS = {"prompt": "instruction", "query": "input", "response": "output",
                    "messages": "conversations"}
_COMMON_COLUMNS = ("system", "tools", "images", "videos", "audios", "chosen", "rejected", "kto_tag")
_ALPACA_COLUMNS = ("prompt", "query", "response", "history", *_COMMON_COLUMNS)
_SHAREGPT_COLUMNS = ("messages", *_COMMON_COLUMNS)
_TAG_DEFAULTS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}


@dataclass(frozen=True, slots=True)
class Registered:
    """One dataset in dataset_info.json; ``status`` is added, updated or unchanged."""

    name: str
    path: Path
    file_name: str
    format: str
    rows: int | None
    status: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Unclassified:
    """A file that was not registered, and why."""

    path: Path
    reason: str


@dataclass(slots=True)
class BuildInfoResult:
    """What ``build_info`` found and wrote."""

    info_path: Path
    registered: list[Registered] = field(default_factory=list)
    unclassified: list[Unclassified] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # entries already there that this run did not touch
    written: bool = False

    @property
    def dataset_dir(self) -> Path:
        """The folder to give LLaMA-Factory as ``dataset_dir``."""
        return self.info_path.parent


def resolve_info_path(target: str | Path) -> Path:
    """``target`` as the dataset_info.json path: a folder gets ``dataset_info.json`` appended."""
    path = Path(target)
    if path.suffix.lower() == ".json":
        if path.name != DATASET_INFO:
            raise ConfigError(f"LLaMA-Factory only reads a file named {DATASET_INFO} (in its dataset_dir); "
                              "give that name or a folder", file=str(path))
        return path
    return path / DATASET_INFO


def build_info(directory: str | Path, *, output: str | Path | None = None, name_prefix: str = "",
               force: bool = False) -> BuildInfoResult:
    """Detect every dataset under ``directory`` and merge its entry into dataset_info.json.

    ``output`` is the dataset_info.json path or its folder (default: ``directory``); ``name_prefix``
    is put in front of every generated name; ``force`` replaces existing entries of the same name.
    Files that cannot be classified are listed in the result with the reason, not registered.
    """
    root = Path(directory)
    if not root.is_dir():
        raise InputError("not a directory" if root.exists() else "directory not found", file=str(root))
    if name_prefix and not _NAME_OK.match(name_prefix):
        raise ConfigError(f"name prefix '{name_prefix}' may only hold letters, digits, '_', '.' and '-'")
    info_path = resolve_info_path(output if output is not None else root)
    _refuse_save_to_disk_target(info_path)
    candidates, result_unclassified = _scan(root, info_path)
    names = assign_names(candidates, root, prefix=name_prefix)
    detections = [detect_file(p) for p in candidates]

    result = BuildInfoResult(info_path=info_path, unclassified=result_unclassified)
    new: dict[str, dict[str, Any]] = {}
    found: dict[str, Detection] = {}
    for det in detections:
        if not det.ok:
            result.unclassified.append(Unclassified(det.path, det.reason or "not classified"))
            continue
        assert det.entry is not None and det.data_file is not None
        name = names[det.path]
        new[name] = {"file_name": _relative(det.data_file, info_path.parent), **det.entry}
        found[name] = det
    result.unclassified.sort(key=lambda u: str(u.path))

    existing = _load(info_path)
    seen = {name: det.tag_slots_seen for name, det in found.items()}
    labels = {name: str(det.path) for name, det in found.items()}
    merged, statuses, aliases = _merge(existing, new, info_path, force=force, seen=seen, labels=labels)
    for name in new:
        det = found[name]
        result.registered.append(Registered(aliases.get(name, name), det.path, new[name]["file_name"],
                                            det.format or "", det.rows, statuses[name], det.warnings))
    result.registered.sort(key=lambda r: r.name)
    result.kept = sorted(k for k in existing if k not in new and k not in aliases.values())
    if new or info_path.exists():
        result.written = _write(info_path, merged)
    return result


def register(entries: Mapping[str, Mapping[str, Any]], info_path: str | Path,
             force: bool = False) -> dict[str, str]:
    """Merge ready-made entries (format already known) into dataset_info.json; name -> status.

    Each entry needs ``file_name``; an absolute one is made relative to the dataset_info.json
    folder. Same merge rules as ``build_info``: clashes raise ``DatasetInfoClash`` unless ``force``.
    """
    path = resolve_info_path(info_path)
    _refuse_save_to_disk_target(path)
    new: dict[str, dict[str, Any]] = {}
    for name, entry in entries.items():
        if not _NAME_OK.match(name):
            raise ConfigError("dataset names may only hold letters, digits, '_', '.' and '-'", key=name)
        file_name = entry.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise ConfigError("entry needs a file_name", key=name)
        if entry.get("formatting", "alpaca") not in ("alpaca", "sharegpt", "openai"):
            raise ConfigError(f"unknown formatting '{entry.get('formatting')}'", key=name)
        if os.path.isabs(file_name):
            file_name = _relative(Path(file_name), path.parent)
        new[name] = {**entry, "file_name": file_name}
    merged, statuses, aliases = _merge(_load(path), new, path, force=force, seen={}, labels={})
    _write(path, merged)
    return {aliases.get(name, name): status for name, status in statuses.items()}


def is_valid_name(name: str) -> bool:
    """Whether ``name`` can be a dataset_info.json key that recipes and the CLI can name."""
    return bool(_NAME_OK.match(name))


def assign_names(paths: list[Path], root: Path, *, prefix: str = "") -> dict[Path, str]:
    """Dataset names: the sanitised file stem; files sharing a stem get their relative path instead.

    Deterministic for a given set of paths (ties broken by sorted path).
    """
    def rel_name(p: Path, keep_suffix: bool) -> str:
        rel = p.relative_to(root) if p != root else Path(p.name)
        if p.is_dir() or keep_suffix:
            return _sanitize("_".join(rel.parts).replace(".", "_") if keep_suffix else "_".join(rel.parts))
        return _sanitize("_".join(rel.with_suffix("").parts))

    names = {p: _base_name(p) for p in paths}
    for keep_suffix in (False, True):
        counts = Counter(names.values())
        names = {p: (rel_name(p, keep_suffix) if counts[n] > 1 else n) for p, n in names.items()}
    taken: set[str] = set()
    for p in sorted(paths):
        name, k = names[p], 2
        while name in taken:
            name, k = f"{names[p]}_{k}", k + 1
        taken.add(name)
        names[p] = name
    return {p: prefix + n for p, n in names.items()}


def format_result(result: BuildInfoResult) -> str:
    """The human summary: one line per registered dataset, then the files that were not."""
    lines = [f"{result.info_path}: {len(result.registered)} dataset(s) "
             f"({'written' if result.written else 'no change'}); use dataset_dir: {result.dataset_dir}"]
    if result.registered:
        width = max(len(r.name) for r in result.registered)
        fwidth = max(len(r.format) for r in result.registered)
        for r in result.registered:
            rows = "? rows" if r.rows is None else f"{r.rows} row{'' if r.rows == 1 else 's'}"
            lines.append(f"  {r.name:<{width}}  {r.format:<{fwidth}}  {rows:>11}  {r.path}  [{r.status}]")
            lines.extend(f"    warning: {w}" for w in r.warnings)
    if result.kept:
        shown = ", ".join(result.kept[:10]) + (", ..." if len(result.kept) > 10 else "")
        lines.append(f"kept {len(result.kept)} other entr{'y' if len(result.kept) == 1 else 'ies'}: {shown}")
    if result.unclassified:
        lines.append(f"not registered ({len(result.unclassified)}):")
        lines.extend(f"  {u.reason}" if str(u.path) in u.reason else f"  {u.path}: {u.reason}"
                     for u in result.unclassified)
    return "\n".join(lines)


# ---------------------------------------------------------------- internals
def _sanitize(text: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_.-]+", "_", text)).strip("_.-") or "dataset"


def _base_name(path: Path) -> str:
    if path.is_dir():
        if (path.parent / "dataset_dict.json").is_file():  # one split of a DatasetDict
            return _sanitize(f"{path.parent.name}_{path.name}")
        return _sanitize(path.name)
    return _sanitize(path.stem)


def _hidden(name: str) -> bool:
    return name.startswith((".", "~")) or name.lower().endswith(_TEMP_SUFFIXES)


def _scan(root: Path, info_path: Path) -> tuple[list[Path], list[Unclassified]]:
    if is_save_to_disk_dir(root):
        return [root], []
    skip = os.path.normcase(os.path.abspath(info_path))
    found: list[Path] = []
    notes: list[Unclassified] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not _hidden(n))
        if here != root and is_save_to_disk_dir(here):
            found.append(here)
            dirnames[:] = []
            continue
        in_dict = (here / "dataset_dict.json").is_file()
        for name in sorted(filenames):
            path = here / name
            if _hidden(name) or Path(name).suffix.lower() not in CANDIDATE_SUFFIXES:
                continue
            if os.path.normcase(os.path.abspath(path)) == skip or (in_dict and name == "dataset_dict.json"):
                continue
            if name == DATASET_INFO:
                notes.append(Unclassified(path, "a LLaMA-Factory dataset_info.json (a registry, not data)"))
                continue
            found.append(path)
    return sorted(found), notes


def _refuse_save_to_disk_target(info_path: Path) -> None:
    if is_save_to_disk_dir(info_path.parent):
        raise UserError(f"{info_path.parent} is a datasets save_to_disk folder; its {DATASET_INFO} belongs "
                        "to datasets - write LLaMA-Factory's somewhere else (--output)")


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(start))).as_posix()


def _load(info_path: Path) -> dict[str, Any]:
    if not info_path.exists():
        return {}
    try:
        data = orjson.loads(info_path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON ({str(exc).splitlines()[0]}); fix or remove it",
                          file=str(info_path), line=getattr(exc, "lineno", None)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read ({exc.strerror or exc})", file=str(info_path)) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object of dataset entries", file=str(info_path))
    return data


def _write(info_path: Path, info: dict[str, Any]) -> bool:
    # ASCII: LLaMA-Factory opens dataset_info.json with the locale's encoding
    text = json.dumps(info, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
    try:
        if info_path.read_bytes() == text.encode("utf-8"):
            return False
    except OSError:
        pass
    atomic_write_text(info_path, text)
    return True


def _merge(existing: dict[str, Any], new: dict[str, dict[str, Any]], info_path: Path, *, force: bool,
           seen: Mapping[str, frozenset[str]], labels: Mapping[str, str]
           ) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """Existing + new entries, each new name's status, and new name -> the existing name it already has."""
    merged = dict(existing)
    statuses: dict[str, str] = {}
    aliases: dict[str, str] = {}
    clashes: list[str] = []
    clash_names: list[str] = []
    base = info_path.parent
    for name, entry in sorted(new.items()):
        old = existing.get(name)
        if old is None:
            # the same file, meaning the same, registered by hand under another name: keep that one
            alias = next((k for k, v in sorted(existing.items()) if k not in new and isinstance(v, dict)
                          and not _differences(v, entry, base, seen.get(name))), None)
            if alias is not None:
                aliases[name], statuses[name] = alias, "unchanged"
            else:
                merged[name], statuses[name] = entry, "added"
            continue
        diffs = _differences(old, entry, base, seen.get(name)) if isinstance(old, dict) else ["not an object"]
        if not diffs:
            statuses[name] = "unchanged"  # the existing entry, hand edits included, stays as it is
        elif force:
            merged[name], statuses[name] = entry, "updated"
        else:
            what = labels.get(name) or posixpath.normpath(entry["file_name"])
            clash_names.append(name)
            clashes.append(f"'{name}': existing entry ({_describe(old)}) vs new file {what} "
                           f"({'; '.join(diffs)})")
    if clashes:
        raise DatasetInfoClash(
            f"{info_path}: dataset name already registered with a different entry:\n  " + "\n  ".join(clashes)
            + "\nrename the file, use a name prefix, or force to replace the existing entries",
            clash_names)
    return merged, statuses, aliases


def _describe(entry: Any) -> str:
    if not isinstance(entry, dict):
        return repr(entry)
    src = next((k for k in _SOURCE_KEYS if k in entry), None)
    return f"{src}: {entry[src]}" if src else "no file_name"


def _differences(old: dict[str, Any], new: dict[str, Any], base: Path,
                 tag_slots: frozenset[str] | None) -> list[str]:
    a, b = _effective(old, base, tag_slots), _effective(new, base, tag_slots)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _effective(entry: dict[str, Any], base: Path, tag_slots: frozenset[str] | None) -> dict[str, Any]:
    """What LLaMA-Factory makes of an entry (DatasetAttr.join), limited to what matters for its data."""
    src = next((k for k in _SOURCE_KEYS if k in entry), None)
    value = entry.get(src) if src else None
    if src == "file_name" and isinstance(value, str):
        value = os.path.normpath(os.path.join(os.path.abspath(base), value))
    fmt = entry.get("formatting", "alpaca")
    eff: dict[str, Any] = {"source": f"{src}: {value}", "formatting": fmt,
                           "ranking": entry.get("ranking", False)}
    columns = entry.get("columns")
    for col in _ALPACA_COLUMNS if fmt == "alpaca" else _SHAREGPT_COLUMNS:
        eff[f"columns.{col}"] = columns.get(col) if isinstance(columns, dict) else _COLUMN_DEFAULTS.get(col)
    if fmt != "alpaca":
        tags = entry.get("tags")
        for tag, default in _TAG_DEFAULTS.items():
            if tag_slots is None or tag in ("role_tag", "content_tag") or tag in tag_slots:
                eff[f"tags.{tag}"] = tags.get(tag) if isinstance(tags, dict) else default
    return eff
