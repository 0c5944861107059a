"""Which input offsets may be committed: the highest *contiguous* finished offset per partition.

Events finish out of order (a short video overtakes a long one). Committing the highest finished
offset would skip the unfinished ones on a restart, so the tracker only advances a partition's
commit position over a gap-free run of finished offsets. Kafka's committed offset is the *next*
offset to read, so `committable()` returns ``last finished + 1``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from consumer.messages import Partition


@dataclass
class _PartitionState:
    pending: set[int] = field(default_factory=set)
    highest_done: int | None = None
    committed: int | None = None

    def commit_position(self) -> int | None:
        """Offsets may have gaps (transaction markers, compaction), so derive from what is left."""
        if self.pending:
            return min(self.pending)
        return None if self.highest_done is None else self.highest_done + 1


class OffsetTracker:
    """Thread-safe: workers call `finish`; the poll loop calls the rest."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._partitions: dict[Partition, _PartitionState] = {}

    def track(self, partition: Partition, offset: int) -> None:
        """Register an offset handed to the pipeline (in poll order)."""
        with self._lock:
            self._partitions.setdefault(partition, _PartitionState()).pending.add(offset)

    def finish(self, partition: Partition, offset: int) -> None:
        """Mark an offset finished: its verdict or dead letter is acknowledged by the broker."""
        with self._lock:
            state = self._partitions.get(partition)
            if state is None or offset not in state.pending:
                return  # partition revoked meanwhile: nothing to commit for it
            state.pending.discard(offset)
            if state.highest_done is None or offset > state.highest_done:
                state.highest_done = offset

    def committable(self) -> dict[Partition, int]:
        """Offsets to commit now (only partitions that advanced since the last commit)."""
        with self._lock:
            result: dict[Partition, int] = {}
            for partition, state in self._partitions.items():
                position = state.commit_position()
                if position is not None and position != state.committed:
                    result[partition] = position
            return result

    def committed(self, offsets: dict[Partition, int]) -> None:
        """Record a successful commit."""
        with self._lock:
            for partition, offset in offsets.items():
                if partition in self._partitions:
                    self._partitions[partition].committed = offset

    def in_flight(self, partitions: set[Partition] | None = None) -> int:
        with self._lock:
            return sum(
                len(state.pending)
                for partition, state in self._partitions.items()
                if partitions is None or partition in partitions
            )

    def forget(self, partitions: set[Partition]) -> None:
        """Drop revoked or lost partitions; late `finish` calls for them are ignored."""
        with self._lock:
            for partition in partitions:
                self._partitions.pop(partition, None)
