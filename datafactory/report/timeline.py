"""A small time series of an augment run, recorded while it runs: ``RUN_DIR/timeline.jsonl``.

:func:`record_timeline` wraps the run's :class:`~datafactory.engine.progress.Progress`: the scheduler's
ticker calls ``update(stats)`` four times a second and the recorder keeps one sample a second of the
run's cumulative counters (rows, written, rejected, requests, cache hits, retries, 429s, tokens) plus
the requests in flight at that moment. Counters are cumulative, so a rate between any two kept
samples is exact and samples can be dropped without losing totals: past ``MAX_SAMPLES`` every other
sample goes and the interval doubles (a day-long run keeps ≤ ``MAX_SAMPLES`` lines, ≈ 150 bytes each).

Each sample is appended as it is taken (the report written at the end of the run reads the file as it
is then); a downsampling pass rewrites the file atomically. A failure to write never stops the run:
it is logged once and recording stops. The file describes the last invocation (a resume starts it
anew), like the per-invocation counters of ``stats.json``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson

from datafactory.engine.progress import Progress
from datafactory.engine.stats import Stats
from datafactory.io.atomic import atomic_write_bytes

TIMELINE_FILE = "timeline.jsonl"
INTERVAL_S = 1.0
MAX_SAMPLES = 1200

log = logging.getLogger("datafactory")


def sample(stats: Stats, t: float) -> dict[str, Any]:
    """One point of the time series: the run's counters at ``t`` seconds."""
    return {"t": round(t, 2), "rows_done": stats.rows_done, "written": stats.written,
            "rejected": sum(stats.rejected.values()), "requests_sent": stats.requests_sent,
            "cache_hits": stats.cache_hits, "retries": stats.retries, "rate_limited_429": stats.rate_limited,
            "failed_requests": stats.failed_requests, "in_flight": stats.in_flight,
            "tokens": stats.prompt_tokens + stats.completion_tokens}


class TimelineRecorder:
    """A Progress that forwards every call to ``inner`` and records the time series on the side."""

    def __init__(self, inner: Progress, path: Path, *, interval_s: float = INTERVAL_S,
                 max_samples: int = MAX_SAMPLES) -> None:
        self.inner, self.path = inner, path
        self.interval_s, self.max_samples = interval_s, max(4, max_samples)
        self.samples: list[dict[str, Any]] = []
        self._next = 0.0
        self._broken = False

    def start(self, stats: Stats) -> None:
        self.inner.start(stats)
        self.samples = []
        self._guard(lambda: atomic_write_bytes(self.path, b""))
        self._take(stats, force=True)

    def update(self, stats: Stats) -> None:
        self.inner.update(stats)
        self._take(stats)

    def stop(self, stats: Stats) -> None:
        self._take(stats, force=True)
        self.inner.stop(stats)

    # ------------------------------------------------------------------ recording
    def _take(self, stats: Stats, *, force: bool = False) -> None:
        if self._broken:
            return
        t = time.monotonic() - stats.started
        if not force and t < self._next:
            return
        point = sample(stats, t)
        if force and self.samples and t - self.samples[-1]["t"] < 0.05 and _same(point, self.samples[-1]):
            return  # stop right after a sample that already says it all
        self._next = t + self.interval_s
        self.samples.append(point)
        if len(self.samples) > self.max_samples:
            self.samples = self.samples[::2] if len(self.samples) % 2 else [*self.samples[:-1:2], point]
            self.interval_s *= 2
            self._guard(self._rewrite)
        else:
            self._guard(lambda: self._append(point))

    def _append(self, point: dict[str, Any]) -> None:
        with self.path.open("ab") as fh:
            fh.write(orjson.dumps(point) + b"\n")

    def _rewrite(self) -> None:
        atomic_write_bytes(self.path, b"".join(orjson.dumps(p) + b"\n" for p in self.samples))

    def _guard(self, write: Any) -> None:
        try:
            write()
        except OSError as exc:
            self._broken = True
            log.warning("cannot record the run's timeline in %s (%s); the report will have no timeline",
                        self.path, exc)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two samples with the same counters (their times aside)."""
    return all(a[k] == b[k] for k in a if k != "t")


def record_timeline(progress: Progress, run_dir: Path) -> Progress:
    """Wrap ``progress`` so the run records ``run_dir/timeline.jsonl`` (the one line augment adds)."""
    return TimelineRecorder(progress, Path(run_dir) / TIMELINE_FILE)


def read_timeline(path: Path) -> list[dict[str, Any]]:
    """The samples of a ``timeline.jsonl`` in time order (unreadable lines are skipped; no file: [])."""
    out: list[dict[str, Any]] = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            point = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(point, dict) and isinstance(point.get("t"), (int, float)):
            out.append(point)
    out.sort(key=lambda p: p["t"])
    return out


def intervals(samples: list[dict[str, Any]], key: str, max_points: int = 200) -> list[tuple[float, float, float]]:
    """``(start, end, per-second rate)`` of a cumulative counter between samples.

    At most ``max_points`` intervals: with more samples, every k-th is used (the counters are cumulative,
    so a rate over a wider window is the exact mean of the narrower ones, and a chart is no band of
    zigzags). A sample much sooner than the usual step (the last one, at the run's end) replaces the one
    before it, so an interval of a few milliseconds never makes a spike."""
    stride = max(1, -(-(len(samples) - 1) // max_points))
    if stride > 1:
        samples = samples[::stride] + ([samples[-1]] if (len(samples) - 1) % stride else [])
    steps = sorted(b["t"] - a["t"] for a, b in zip(samples, samples[1:], strict=False) if b["t"] > a["t"])
    if not steps:
        return []
    shortest = steps[len(steps) // 2] / 2
    kept = [samples[0]]
    for b in samples[1:]:
        if b["t"] - kept[-1]["t"] >= shortest:
            kept.append(b)
        elif b is samples[-1] and len(kept) > 1:
            kept[-1] = b
    return [(float(a["t"]), float(b["t"]), max(0.0, (b.get(key, 0) - a.get(key, 0)) / (b["t"] - a["t"])))
            for a, b in zip(kept, kept[1:], strict=False)]


def rates(samples: list[dict[str, Any]], key: str, max_points: int = 200) -> list[tuple[float, float]]:
    """The rate of each interval as a staircase: ``(start, rate), (end, rate)`` per interval."""
    return [p for t0, t1, r in intervals(samples, key, max_points) for p in ((t0, r), (t1, r))]


def levels(samples: list[dict[str, Any]], key: str, max_points: int = 200) -> list[tuple[float, float]]:
    """An instantaneous value (requests in flight) over time: the mean of every bucket of samples, at
    most ``max_points`` points."""
    if not samples:
        return []
    size = max(1, -(-len(samples) // max_points))
    out = []
    for i in range(0, len(samples), size):
        bucket = samples[i:i + size]
        out.append((float(bucket[-1]["t"]), sum(float(p.get(key, 0)) for p in bucket) / len(bucket)))
    return out
