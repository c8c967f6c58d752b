"""Shared fixtures for the engine tests: a real loopback server, a small pipeline in tmp_path, a
sentinel API key, and helpers that check every input row is accounted for exactly once.

Nothing here patches the code under test: runs go through ``augment()`` or the real CLI in a
subprocess, against a real HTTP server, writing a real SQLite cache and real files.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from datafactory.record import content_hash
from datafactory.testing.loopback import LoopbackServer

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "gsm8k_rephrase.json"
# long and unmistakable, so a leak anywhere is found by a plain substring search
SENTINEL_KEY = "sk-SENTINEL-3c9f0a7e51d24b8f96e0d4c2a1b7e6f5"

# The qid leads the user message, so every row's request is unique and easy to recognise on the
# server side (the default responder echoes the start of the user message into the question).
TEMPLATE = {
    "system": "You rewrite grade-school math problems. Reply with one JSON object.",
    "user": "[{{ qid }}] Rephrase this problem:\n{{ question }}\n\nReference solution:\n{{ answer }}\n",
}


def make_rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"qid": f"q{i:05d}",
             "question": f"Sam has {i} apples and buys 3 more. How many apples does Sam have now?",
             "answer": f"{i} + 3 = {i + 3}\n#### {i + 3}"} for i in range(start, start + n)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def deep_update(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Nested update; a value of None removes the key."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def qid_of(body: dict[str, Any]) -> str | None:
    """The qid of the row a chat request is about (from its first user message)."""
    for m in body.get("messages", []):
        if m.get("role") == "user" and m.get("content", "").startswith("[q"):
            return m["content"][1:m["content"].index("]")]
    return None


def is_reask(body: dict[str, Any]) -> bool:
    return any(m.get("role") == "assistant" for m in body.get("messages", []))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class Project:
    """A pipeline YAML + input file + run dir in tmp_path, pointed at the loopback server."""

    root: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    pipeline: Path = field(init=False)

    def __post_init__(self) -> None:
        self.pipeline = self.root / "pipeline.yaml"
        self.write()

    # ------------------------------------------------------------------ files
    @property
    def input(self) -> Path:
        return self.root / self.config["input"]["path"]

    @property
    def run_dir(self) -> Path:
        return Path(self.config["output"]["dir"])

    @property
    def data_file(self) -> Path:
        return self.run_dir / "data" / f"{self.config['output']['name']}.jsonl"

    @property
    def rejects_file(self) -> Path:
        return self.run_dir / "rejects.jsonl"

    def write(self) -> None:
        self.pipeline.write_text(yaml.safe_dump(self.config, sort_keys=False), encoding="utf-8")

    def update(self, **changes: Any) -> None:
        """Change the pipeline YAML (nested dicts merge; None removes a key)."""
        self.config = deep_update(self.config, changes)
        self.write()

    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        write_jsonl(self.input, rows)

    # ------------------------------------------------------------------ results
    def data(self) -> list[dict[str, Any]]:
        return read_jsonl(self.data_file)

    def rejects(self) -> list[dict[str, Any]]:
        return read_jsonl(self.rejects_file)

    def stats(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "stats.json").read_text())

    def rejects_by_reason(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for r in self.rejects():
            out.setdefault(r["reason"], []).append(r)
        return out

    def key_of(self, row: dict[str, Any]) -> str:
        return content_hash(row)

    def expected_keys(self, rows: list[dict[str, Any]] | None = None) -> list[str]:
        """Row keys as the engine assigns them: content hash, '~n' for the n-th repeat of a row."""
        keys, seen = [], {}
        for row in self.rows if rows is None else rows:
            k = content_hash(row)
            if k in seen:
                seen[k] += 1
                keys.append(f"{k}~{seen[k]}")
            else:
                seen[k] = 0
                keys.append(k)
        return keys

    def assert_accounted(self, rows: list[dict[str, Any]] | None = None, *, extra_reject_ids: int = 0) -> None:
        """Every input row is in data/ or rejects.jsonl, exactly once, and nothing else is."""
        expected = self.expected_keys(rows)
        data_ids = [r["id"] for r in self.data()]
        reject_ids = [r["id"] for r in self.rejects()]
        assert len(data_ids) == len(set(data_ids)), "duplicate rows in data/"
        assert len(reject_ids) == len(set(reject_ids)), "duplicate rows in rejects.jsonl"
        assert not set(data_ids) & set(reject_ids), "a row is both written and rejected"
        seen = set(data_ids) | set(reject_ids)
        missing = set(expected) - seen
        assert not missing, f"{len(missing)} input rows are neither written nor rejected"
        unexpected = seen - set(expected)
        assert len(unexpected) == extra_reject_ids, f"rows not from the input: {sorted(unexpected)[:5]}"

    # ------------------------------------------------------------------ running
    def augment(self, **overrides: Any) -> Any:
        from datafactory.engine.augment import augment

        return augment(self.pipeline, **overrides)


@pytest.fixture
def api_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL_KEY)
    monkeypatch.setenv("ZHIPUAI_API_KEY", SENTINEL_KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    return SENTINEL_KEY


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    """A loopback OpenAI-compatible server that only accepts the sentinel key."""
    with LoopbackServer(expected_api_key=SENTINEL_KEY) as srv:
        yield srv


def base_config(root: Path, base_url: str) -> dict[str, Any]:
    return {
        "name": "t",
        "input": {"path": "input.jsonl", "fields": {"qid": "qid", "question": "question", "answer": "answer"}},
        "prompt": {"template": "prompt.yaml"},
        "schema": str(SCHEMA),
        "provider": {"kind": "openai", "model": "gpt-4o-mini", "base_url": base_url,
                     "params": {"temperature": 0, "max_tokens": 256}},
        "limits": {"concurrency": 4, "timeout_s": 10, "max_attempts": 4},
        "quality": {"reask": 1},
        "output": {"dir": str(root / "run"), "name": "out", "format": "jsonl",
                   "columns": {"qid": "source.qid", "question": "question", "answer": "answer"}},
    }


@pytest.fixture
def make_project(tmp_path: Path, server: LoopbackServer, api_env: str) -> Callable[..., Project]:
    """``make_project(rows=20, **yaml_changes)`` → a Project wired to ``server``."""

    def make(rows: int | list[dict[str, Any]] = 20, **changes: Any) -> Project:
        (tmp_path / "prompt.yaml").write_text(yaml.safe_dump(TEMPLATE, sort_keys=False), encoding="utf-8")
        data = make_rows(rows) if isinstance(rows, int) else rows
        cfg = deep_update(base_config(tmp_path, server.base_url), changes)
        proj = Project(tmp_path, cfg, data)
        write_jsonl(proj.input, data)
        return proj

    return make


# ---------------------------------------------------------------------- subprocess helpers
def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    env.update({"OPENAI_API_KEY": SENTINEL_KEY, "ZHIPUAI_API_KEY": SENTINEL_KEY,
                "NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


CLI = [sys.executable, "-m", "datafactory"]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env or cli_env(),
                          cwd=cwd, timeout=timeout)


def start_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
              **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or cli_env(), cwd=cwd, **kw)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


def line_of(path: Path, needle: str, nth: int = 1) -> int:
    """The 1-based line of the ``nth`` line of ``path`` holding ``needle`` (for file:line assertions)."""
    seen = 0
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == nth:
                return i
    raise AssertionError(f"{needle!r} not in {path}")


def assert_no_traceback(text: str) -> None:
    assert "Traceback (most recent call last)" not in text, text
