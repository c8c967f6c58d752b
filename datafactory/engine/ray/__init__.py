"""The Ray Data engine (``datafactory augment P --engine ray``): the same record flow on an actor pool.

Nothing here is imported unless a run asks for ``engine="ray"`` (``pip install -e ".[ray]"``), so the
core install stays light. The parts:

* ``driver.py``: ``run_ray`` — prepare as the asyncio engine, map the rows on Ray, collect, export;
* ``feed.py``: the rows still to do, keyed as the asyncio engine keys them;
* ``worker.py``: ``RowWorker``, the async callable class ``map_batches`` runs on each actor;
* ``limiter.py``: one limiter actor — RPM, TPM and the 429 pause across all workers;
* ``responses.py``: each worker's response file in the run dir (durable on arrival, read by all);
* ``collect.py``: gates with memory (global dedup) in input order, commits, the workers' counters;
* ``keys.py`` + ``shuffle.py``: the other way to decide global dedup, by a Ray shuffle of the workers'
  exact and LSH band keys (the driver's kept set; ``ray_dedup``);
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datafactory.errors import ConfigError, RayExtraMissing

if TYPE_CHECKING:
    from datafactory.config.pipeline import Pipeline
    from datafactory.engine.progress import Progress
    from datafactory.engine.stats import Stats

ENGINES = ("asyncio", "ray")
DEDUP_MODES = ("auto", "driver", "shuffle")  # where global dedup is decided (engine/ray/driver.py dedup_mode)


def run_ray(pipeline: Pipeline | str | Path, overrides: dict[str, Any], progress: Progress, *, engine: str = "ray",
            address: str | None = None, workers: int | None = None, dedup: str = "auto",
            handle_signals: bool = True) -> Stats:
    """``augment(..., engine="ray")``: checks (engine name, Ray installed, workers), the same preparation
    as the asyncio engine (config, API key, input preflight), then ``driver.run_ray``."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}", key="engine")
    if dedup not in DEDUP_MODES:
        raise ConfigError(f"unknown ray dedup {dedup!r}; choose one of {', '.join(DEDUP_MODES)}", key="ray_dedup")
    if workers is not None and workers < 1:
        raise ConfigError(f"needs at least one worker, got {workers}", key="workers")
    if importlib.util.find_spec("ray") is None:
        raise RayExtraMissing('--engine ray needs Ray Data: pip install -e ".[ray]" (or pip install "ray[data]")')
    from datafactory.engine.augment import _prepare
    from datafactory.engine.ray.driver import run_ray as run

    pipe, key = _prepare(pipeline, overrides)
    return run(pipe, key, progress, address=address, workers=workers, dedup=dedup, handle_signals=handle_signals)
