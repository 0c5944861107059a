"""Transport-neutral records: what a source hands the pipeline and a sink receives."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Partition:
    topic: str
    index: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.index}]"


@dataclass(frozen=True)
class Message:
    """One input record. `value` is the raw payload: parsing it is the pipeline's first step."""

    partition: Partition
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None
