"""The benchmark's model (``--responder gsm8k``): every row gets a distinct rephrase with the right
answer, so the shipped gsm8k_rephrase pipeline with every gate on keeps all of them — as it would a
real model's — where the default echoing responder's near-duplicates are mostly rejected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import make_rows, write_jsonl

from datafactory import augment
from datafactory.testing.loopback import LoopbackServer
from datafactory.testing.responders import RESPONDERS, gsm8k_responder

REPO = Path(__file__).resolve().parent.parent


def test_the_shipped_pipeline_keeps_every_gsm8k_responder_rephrase(tmp_path, api_env):
    inp = write_jsonl(tmp_path / "in.jsonl", make_rows(40))
    with LoopbackServer(responder=gsm8k_responder) as server:
        stats = augment(REPO / "pipelines" / "gsm8k_rephrase.yaml", input=str(inp), output=str(tmp_path / "run"),
                        base_url=server.base_url, concurrency=8)
    assert stats.written == 40 and not stats.rejected
    with LoopbackServer() as server:  # the echoing default: near-duplicates of one another
        echoed = augment(REPO / "pipelines" / "gsm8k_rephrase.yaml", input=str(inp),
                         output=str(tmp_path / "run-default"), base_url=server.base_url, concurrency=8)
    assert echoed.rejected


def test_subprocess_mode_lists_the_named_responders():
    out = subprocess.run([sys.executable, "-m", "datafactory.testing.loopback", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--responder" in out and all(name in out for name in RESPONDERS)
