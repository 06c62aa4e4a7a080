"""In-order offset commits when clips finish out of order (at-least-once delivery).

Kafka's committed offset means "everything before this is done". Clips of different partitions, and retries, finish
in any order, so for each partition we keep the offsets handed out and commit only up to the first one that is not
finished (acknowledged by the broker). A crash then redelivers at most the unfinished tail, never skips a clip.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from kafka.structs import TopicPartition


@dataclass
class _Partition:
    pending: deque[list[int | bool]] = field(default_factory=deque)  # [offset, done] in offset order
    ready: int | None = None  # one past the finished prefix: what should be committed
    committed: int | None = None  # what the broker has accepted, None before the first commit
    last_started: int = -1


class OffsetTracker:
    """Offsets started/finished per partition → the offsets safe to commit."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _Partition] = {}

    def start(self, tp: TopicPartition, offset: int) -> None:
        part = self._parts.setdefault(tp, _Partition())
        if offset <= part.last_started:
            raise ValueError(f"offset {offset} of {tp} handed out twice or out of order")
        part.last_started = offset
        part.pending.append([offset, False])

    def finish(self, tp: TopicPartition, offset: int) -> None:
        """Mark one offset done; unknown partitions (revoked meanwhile) are ignored on purpose."""
        part = self._parts.get(tp)
        if part is None:
            return
        for entry in part.pending:
            if entry[0] == offset:
                entry[1] = True
                return

    def committable(self) -> dict[TopicPartition, int]:
        """Per partition, the next offset to commit (one past the done prefix), where it moved since last commit."""
        out: dict[TopicPartition, int] = {}
        for tp, part in self._parts.items():
            while part.pending and part.pending[0][1]:
                part.ready = int(part.pending.popleft()[0]) + 1
            if part.ready is not None and part.ready != part.committed:
                out[tp] = part.ready
        return out

    def committed(self, tp: TopicPartition, offset: int) -> None:
        if tp in self._parts:
            self._parts[tp].committed = offset

    def committed_offset(self, tp: TopicPartition) -> int | None:
        part = self._parts.get(tp)
        return part.committed if part else None

    def in_flight(self, tp: TopicPartition | None = None) -> int:
        parts = [self._parts[tp]] if tp is not None and tp in self._parts else ([] if tp is not None else self._parts.values())
        return sum(1 for p in parts for e in p.pending if not e[1])

    def drop(self, tps: list[TopicPartition]) -> None:
        """Forget revoked partitions: their unfinished offsets must not be committed by this worker."""
        for tp in tps:
            self._parts.pop(tp, None)

    def partitions(self) -> list[TopicPartition]:
        return list(self._parts)
