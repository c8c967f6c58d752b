"""``provider.batch``: how batch mode (``provider.mode: batch``) splits, submits and polls provider batches."""

from __future__ import annotations

from dataclasses import dataclass, field

from datafactory.config.spec import doc, positive

MODES = ("online", "batch")
DEFAULT_MAX_REQUESTS = 50_000          # both providers' per-file request cap
DEFAULT_MAX_BYTES = {"openai": 200 * 1024 * 1024, "zhipuai": 100 * 1024 * 1024}  # per input file
DEFAULT_POLL_S = 30.0
WINDOWS = ("24h",)


@dataclass(frozen=True)
class BatchConfig:
    max_requests: int = field(default=DEFAULT_MAX_REQUESTS, metadata=doc(
        "requests per provider batch (input file)", check=positive))
    max_bytes: int | None = field(default=None, metadata=doc(
        "bytes per batch input file", check=positive, shown="200 MB openai / 100 MB zhipuai"))
    poll_s: float = field(default=DEFAULT_POLL_S, metadata=doc("seconds between two looks at running batches",
                                                               check=positive))
    completion_window: str = field(default="24h", metadata=doc("the provider's completion window",
                                                               choices=WINDOWS))
    wait: bool = field(default=True, metadata=doc(
        "wait for the batches and finish the run (`--no-wait`: submit, exit, rerun to collect)"))

    def bytes_for(self, kind: str) -> int:
        """The per-file byte cap: the configured one, else the provider's."""
        if self.max_bytes is not None:
            return self.max_bytes
        return DEFAULT_MAX_BYTES.get(kind, DEFAULT_MAX_BYTES["zhipuai"])
