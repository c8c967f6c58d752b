"""Invalid-JSON rejects and re-asks with and without structured output, on the loopback server.

    python benchmarks/structured_output.py [--rows 500] [--broken 0.2]

The server's model is chatty (``testing/capabilities.chatty_responder``): JSON inside prose and a fence,
a ``--broken`` share of it broken (a trailing comma, single quotes, cut short). A server that honours
response_format answers the same request with the bare JSON. Rates are per input row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datafactory.engine.augment import augment  # noqa: E402
from datafactory.testing.capabilities import Capabilities, chatty_responder  # noqa: E402
from datafactory.testing.faults import default_responder  # noqa: E402
from datafactory.testing.loopback import LoopbackServer  # noqa: E402

CASES = {  # label -> (server's response_format behaviour, provider.structured_output)
    "structured output off (server ignores it)": ("ignore", "off"),
    "auto, server honours response_format": ("honour", "auto"),
    "auto, server refuses it (falls back to prompt only)": ("refuse", "auto"),
}


def run(root: Path, rows: int, broken: float, server_mode: str, mode: str) -> dict[str, float]:
    caps = Capabilities(response_format=server_mode)
    with LoopbackServer(responder=chatty_responder(default_responder, broken), capabilities=caps) as srv:
        (root / "prompt.yaml").write_text(yaml.safe_dump({"system": "Reply with one JSON object.",
                                                          "user": "[{{ qid }}] Rephrase: {{ question }}"}))
        (root / "in.jsonl").write_text("".join(json.dumps({"qid": f"q{i}", "question": f"Sam has {i} apples. "
                                                           f"#### {i}"}) + "\n" for i in range(rows)))
        cfg = {"name": "bench", "input": {"path": "in.jsonl", "fields": {"qid": "qid", "question": "question"}},
               "prompt": {"template": "prompt.yaml"}, "schema": str(REPO / "schemas" / "gsm8k_rephrase.json"),
               "provider": {"model": "m", "base_url": srv.base_url, "structured_output": mode},
               "limits": {"concurrency": 32}, "quality": {"reask": 1},
               "output": {"dir": str(root / "run"), "format": "jsonl"}}
        (root / "p.yaml").write_text(yaml.safe_dump(cfg))
        stats = augment(root / "p.yaml")
    return {"requests": stats.requests_sent, "reask_rate": stats.reasks / rows,
            "invalid_json_rate": stats.rejected.get("invalid_json", 0) / rows, "written": stats.written,
            "refused": caps.refused}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=500)
    p.add_argument("--broken", type=float, default=0.2)
    args = p.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    print(f"{args.rows} rows, {args.broken:.0%} of unconstrained replies broken, quality.reask 1")
    print(f"{'case':55} {'requests':>8} {'re-asks':>8} {'invalid_json':>12} {'refused':>7}")
    for label, (server_mode, mode) in CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            r = run(Path(tmp), args.rows, args.broken, server_mode, mode)
        print(f"{label:55} {r['requests']:>8} {r['reask_rate']:>8.1%} {r['invalid_json_rate']:>12.1%} "
              f"{r['refused']:>7}")


if __name__ == "__main__":
    main()
