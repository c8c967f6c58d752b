"""One lm-eval run's settings (:class:`EvalJob`): the only place their defaults live.

The recipe's ``eval:`` section (:class:`datafactory.config.recipe_model.EvalSpec`) takes its defaults
from here, so a recipe and a direct ``run_eval`` call evaluate the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# lm-eval model type per backend (the registry the recipe's eval.backend choices come from)
BACKENDS = {"hf": "hf", "vllm": "vllm"}


@dataclass
class EvalJob:
    """Everything one lm-eval run needs; JSON-serialisable so it can be handed to a child process."""

    model_path: str
    tasks: list[str] = field(default_factory=lambda: ["gsm8k"])
    num_fewshot: int | None = 5
    limit: float | None = None
    apply_chat_template: bool = True  # instruct models answer GSM8K in their chat format
    backend: str = "hf"
    batch_size: int | str = 8
    gen_kwargs: dict[str, Any] | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    trust_remote_code: bool = False
    offline_data: dict[str, str] | None = None  # {"train": jsonl, "test": jsonl}: no Hub access
    task_dir: str | None = None  # where offline task YAMLs are written
    seed: int = 1234

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalJob:
        return cls(**data)
