"""Run counters → stats.json."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    """Counters of one invocation, plus totals over the whole run dir (resumes included)."""

    rows_total: int | None = None       # input rows this invocation will look at (None: unknown)
    rows_done: int = 0                  # rows finished this invocation (written or rejected)
    rows_skipped_done: int = 0          # rows already finished by an earlier invocation (resume)
    rows_deferred: int = 0              # batch mode: rows whose request waits in a provider batch
    requests_sent: int = 0
    in_flight: int = 0                  # requests on the wire right now (sampled into timeline.jsonl)
    cache_hits: int = 0
    retries: int = 0
    rate_limited: int = 0               # 429 answers
    failed_requests: int = 0            # requests that ended in an error after retries
    reasks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None       # estimated, from the price table
    written: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    interrupted: bool = False
    stop_signal: int | None = None      # the signal that stopped the run (SIGINT/SIGTERM)
    total_written: int = 0              # over the whole run dir
    total_rejected: dict[str, int] = field(default_factory=dict)
    datasets: dict[str, int] = field(default_factory=dict)   # dataset (file stem in data/) → rows
    stopped: str | None = None          # the run stopped itself: RequestsFailing (breaker) / BudgetExhausted
    spent_usd: float | None = None      # with a cost limit: the run dir's spend so far (reported usage)
    # the most frequent reject reasons of this configuration: (reason, count, example last_error)
    top_rejects: list[tuple[str, int, str]] = field(default_factory=list)
    # the configuration changed since the run dir's last run: what changed, rows redone, estimated cost
    config_change: dict[str, Any] | None = None
    # data/ was left as it was (this run's export had fewer rows and the run did not finish): why
    export_kept: dict[str, Any] | None = None
    # named blocks a feature adds to stats.json (``batch``, ``endpoints``, ``decontamination``...): each
    # feature owns its block; to_json writes them after the core counters
    sections: dict[str, Any] = field(default_factory=dict)

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rows_per_s(self) -> float:
        return self.rows_done / self.elapsed if self.elapsed > 0 else 0.0

    def add_cost(self, value: float | None) -> None:
        if value is not None:
            self.cost_usd = (self.cost_usd or 0.0) + value

    def to_json(self) -> dict[str, Any]:
        return {
            "rows_total": self.rows_total, "rows_done": self.rows_done,
            "rows_skipped_already_done": self.rows_skipped_done,
            "requests_sent": self.requests_sent, "cache_hits": self.cache_hits, "retries": self.retries,
            "rate_limited_429": self.rate_limited, "failed_requests": self.failed_requests,
            "reasks": self.reasks,
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "estimated_cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
            "written": self.written, "rejected": dict(sorted(self.rejected.items())),
            "rejected_total": sum(self.rejected.values()),
            "elapsed_s": round(self.elapsed, 3), "rows_per_s": round(self.rows_per_s, 2),
            "requests_per_s": round(self.requests_sent / self.elapsed, 2) if self.elapsed > 0 else 0.0,
            "interrupted": self.interrupted, "stopped": self.stopped,
            "spent_usd": None if self.spent_usd is None else round(self.spent_usd, 6),
            "top_rejects": [{"reason": r, "count": n, "example": e[:300]} for r, n, e in self.top_rejects],
            "run_totals": {"written": self.total_written, "rejected": self.total_rejected},
            "datasets": self.datasets,
            "config_change": self.config_change,
            "export_kept": self.export_kept,
            **({"rows_deferred": self.rows_deferred} if self.rows_deferred else {}),
            **self.sections,
        }
