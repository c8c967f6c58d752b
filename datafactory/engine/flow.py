"""The runner's bookkeeping for the record flow's steps: how many records each step took in, how many
it rejected, and the time spent in its own code (datatrove's per-step stats).

``seconds`` is time on the event loop inside the step — not the time its records waited for a
response or for a batch to fill (waiting costs no CPU and overlaps across rows) — so the numbers add
up to where the engine's CPU goes. They land in ``stats.json`` under ``steps``::

    "steps": {"input": {"in": 1000, "rejected": 3, "seconds": 0.004}, "request": {...}, ...}
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter
from typing import Any

from datafactory.engine.stats import Stats

# the flow's steps in the order records pass them (one entry each in stats.json)
STEP_ORDER = ("input", "request", "parse", "shape", "gates", "async_gates", "pair", "ordered_gates")


@dataclass(slots=True)
class StepCount:
    taken: int = 0
    rejected: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"in": self.taken, "rejected": self.rejected, "seconds": round(self.seconds, 4)}


class StepStats:
    """Per-step counters, published as ``stats.sections["steps"]`` (the same dict object, kept current)."""

    def __init__(self, stats: Stats | None = None, steps: tuple[str, ...] = STEP_ORDER) -> None:
        self.counts = {name: StepCount() for name in steps}
        self._section: dict[str, Any] = {}
        if stats is not None:
            # batch mode runs the flow in passes, one processor each: the counts go on from the last pass
            for name, c in (stats.sections.get("steps") or {}).items():
                if name in self.counts and "in" in c:
                    self.counts[name] = StepCount(c["in"], c["rejected"], c["seconds"])
            stats.sections["steps"] = self._section

    def add(self, step: str, taken: int, rejected: int, started: float) -> None:
        """Count ``taken`` records in and ``rejected`` out of ``step``, which ran since ``started``
        (a ``perf_counter()`` value)."""
        c = self.counts[step]
        c.taken += taken
        c.rejected += rejected
        c.seconds += perf_counter() - started

    def count(self, step: str, taken: int, rejected: int) -> None:
        """Count without timing (an async step times its synchronous parts itself, with ``time``)."""
        c = self.counts[step]
        c.taken += taken
        c.rejected += rejected

    def time(self, step: str, seconds: float) -> None:
        """Add ``seconds`` a step measured itself (the synchronous part of an async step)."""
        self.counts[step].seconds += seconds

    def publish(self) -> dict[str, Any]:
        """Refresh the stats.json section from the counters (the steps that saw a record)."""
        self._section.clear()
        self._section.update({name: c.to_json() for name, c in self.counts.items() if c.taken})
        return self._section


now = perf_counter
