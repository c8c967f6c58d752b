"""The record flow's registered steps (parse → validate → shape → gates → pair).

Each gate step is registered here by its YAML name (``quality.<name>``) with a frozen config dataclass
that is its only schema and source of defaults: the pipeline checker derives its keys (types, defaults,
did-you-mean) from the dataclass, the README key table is generated from the same fields' docs, and
``build`` makes the gate from it. The gate algorithms live in :mod:`datafactory.quality`; the flow's
other steps live here too (``source``, ``request``, ``parse``, ``shape``, ``pair``), and the engine
(``engine/process.py``) wires and counts them; :mod:`datafactory.steps.reads` decides, once at config time,
which output column or schema property each gate reads, so a resume seeds it from exactly that.
"""

from datafactory.steps.registry import STEPS, StepConfig, register

__all__ = ["STEPS", "StepConfig", "register"]
