"""The step registry: YAML name → config dataclass (lm-eval's registry idea, with did-you-mean)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from datafactory.quality.gate import Gate
    from datafactory.steps.reads import GateContext


class StepConfig(Protocol):
    """A step's frozen config dataclass: its fields are the YAML keys; ``build`` makes the step."""

    def build(self, ctx: GateContext) -> Gate | None: ...


C = TypeVar("C", bound=type)
STEPS: dict[str, Any] = {}  # YAML name -> config dataclass, in flow order (registration order)


def register(name: str) -> Callable[[C], C]:
    """Class decorator: register a step config dataclass under its YAML name."""
    def add(cls: C) -> C:
        if name in STEPS:
            raise ValueError(f"step {name!r} is registered twice")
        STEPS[name] = cls
        return cls
    return add


def load_steps() -> dict[str, Any]:
    """The registry with every built-in step registered (importing the modules that define them)."""
    import datafactory.steps.gates  # noqa: F401  (registers the gate steps)

    return STEPS
