"""Numbered messages back in order, each once: the bus delivers at least once and a
redelivered message may overtake the ones after it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_WINDOW = 32


@dataclass
class InOrder(Generic[T]):
    """Releases items by their sequence number, in order and once.

    `next_seq` None: the first number seen starts the count (a consumer that joins a
    stream late). An item older than what was released, or already held, is a repeat
    and is dropped. A gap waits for its item until more than `window` later ones are
    held; then it is skipped, so one lost message cannot stall the stream for ever.
    """

    next_seq: int | None = 1
    window: int = DEFAULT_WINDOW
    held: dict[int, T] = field(default_factory=dict)
    repeats: int = 0
    skipped: int = 0

    def push(self, seq: int, item: T) -> list[T]:
        if self.next_seq is None:
            self.next_seq = seq
        if seq < self.next_seq or seq in self.held:
            self.repeats += 1
            return []
        self.held[seq] = item
        return self._release()

    def _release(self) -> list[T]:
        out: list[T] = []
        assert self.next_seq is not None
        while self.held:
            if self.next_seq not in self.held:
                if len(self.held) <= self.window:
                    break
                first = min(self.held)
                self.skipped += first - self.next_seq
                self.next_seq = first
            out.append(self.held.pop(self.next_seq))
            self.next_seq += 1
        return out
