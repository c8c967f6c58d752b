"""The end-of-run summary as text lines (what the CLI prints after ``augment``)."""

from __future__ import annotations

from datafactory.engine.stats import Stats
from datafactory.secrets import redact

EXAMPLE_CHARS = 160


def summary_lines(stats: Stats, run_dir: str) -> list[str]:
    """What this invocation did, what earlier ones had done, the top reject reasons with an example."""
    s = stats.to_json()
    lines = [f"run dir: {run_dir}"]
    total_rejected = sum(stats.total_rejected.values())
    nothing_to_do = (stats.rows_done == 0 and stats.rows_skipped_done > 0 and not stats.interrupted
                     and stats.stopped is None)
    if nothing_to_do:
        lines.append(f"nothing to do: all {stats.rows_skipped_done} input rows were done by earlier runs "
                     f"({stats.total_written} written, {total_rejected} rejected in the run dir)")
    else:
        lines.append(f"written: {s['written']}  rejected: {s['rejected_total']} {s['rejected'] or ''}  "
                     f"requests: {s['requests_sent']}  cache hits: {s['cache_hits']}  retries: {s['retries']}  "
                     f"429s: {s['rate_limited_429']}  elapsed: {s['elapsed_s']}s")
        if stats.rows_skipped_done:
            lines.append(f"done earlier: {stats.rows_skipped_done} rows (finished by an earlier run, not redone); "
                         f"the run dir now holds {stats.total_written} written, {total_rejected} rejected")
    if s["estimated_cost_usd"] is not None:
        lines.append(f"estimated cost: ${s['estimated_cost_usd']:.4f}")
    if stats.spent_usd is not None:
        lines.append(f"spent in this run dir (reported usage): ${stats.spent_usd:.4f}")
    if stats.top_rejects:
        lines.append("top reject reasons:")
        for reason, count, example in stats.top_rejects:
            text = " ".join(redact(example).split())
            if len(text) > EXAMPLE_CHARS:
                text = text[:EXAMPLE_CHARS] + "…"
            lines.append(f"  {reason} ×{count}" + (f"  e.g. {text}" if text else ""))
    for name, rows in stats.datasets.items():
        lines.append(f"dataset: {run_dir}/data/{name}.jsonl ({rows} rows in total)")
    return lines
