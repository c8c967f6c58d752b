"""The README's first command works as written on a fresh machine: it makes its own venv (PEP 668:
Debian's system Python refuses a bare ``pip install``), installs, dry-runs and runs the main job.

The command line is read from the README itself and run by bash in a fresh copy of the repository;
the only difference from a user's machine is where the OpenAI-compatible server is
(``OPENAI_BASE_URL``, which the openai SDK and our default transport both read).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from datafactory.testing.loopback import LoopbackServer

REPO = Path(__file__).resolve().parents[1]


def rephraser(body: dict[str, Any], k: int) -> str:
    """A model that rephrases each GSM8K problem (its words reversed) and keeps the reference answer."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    problem = user.split("Problem:\n", 1)[1].split("\n\n", 1)[0].strip()
    answer = re.findall(r"####\s*([-\d,.]+)", user)[0].replace(",", "")
    return json.dumps({"question": "Told differently: " + " ".join(problem.split()[::-1]),
                       "answer": f"Step by step.\n#### {answer}"})


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_starts_with_an_install_and_a_test_command_that_each_make_a_venv():
    main_cmd, test_cmd = readme_commands()[:2]
    for cmd in (main_cmd, test_cmd):
        assert cmd.startswith("python3 -m venv .venv && .venv/bin/pip install -e "), cmd
        assert " pip install" not in cmd.replace(".venv/bin/pip install", "")
    assert "datafactory augment pipelines/gsm8k_rephrase.yaml" in main_cmd
    ci = (REPO / ".ci" / "run").read_text()
    assert "OMP_NUM_THREADS=1" in ci and ".venv/bin/python -m pytest -q" in ci and '".[dev,train,ray]"' in ci


@pytest.mark.timeout(900)
@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout")
def test_readme_main_command_installs_and_runs_the_main_job_in_a_fresh_copy(tmp_path):
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           check=True, capture_output=True).stdout.decode().split("\0")
    copy = tmp_path / "datafactory"
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, copy / name)
    main_cmd = readme_commands()[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH", "OPENAI_"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    with LoopbackServer(responder=rephraser) as server:
        env.update(OPENAI_API_KEY="sk-readme-test", OPENAI_BASE_URL=server.base_url)
        proc = subprocess.run(["bash", "-c", main_cmd], cwd=copy, env=env, capture_output=True, text=True,
                              timeout=880)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "dry run: nothing was sent" in proc.stdout
        assert server.requests >= 190  # the input-side decontamination rejects a few rows unsent
    run = copy / "runs" / "gsm8k_rephrase"
    stats = json.loads((run / "stats.json").read_text())
    assert stats["written"] >= 190  # a few gates may still catch a reversed rephrase
    assert (run / "data" / "gsm8k_rephrase.jsonl").read_text().count("\n") == stats["written"]
