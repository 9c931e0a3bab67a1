"""Fakes shared by the gateway's delivery and hub tests: a connection, a clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateways.fanout import payload_of

LIMIT = 1_000_000  # the hub's write-buffer limit in these tests


@dataclass
class FakeViewer:
    """A connection whose transport buffers ``capacity`` frames before it is full."""

    capacity: int = 4
    queue: list[bytes] = field(default_factory=list)  # payloads written, oldest first
    raw: list[bytes] = field(default_factory=list)  # the very bytes written
    closed: bool = False
    posted: set[str] = field(default_factory=set)
    viewer_id: str | None = "v"

    def buffered(self) -> int:
        return -1 if self.closed else len(self.queue) * (LIMIT // self.capacity)

    def write(self, data: bytes) -> None:
        self.raw.append(data)
        self.queue.append(payload_of(data))

    def write_below(self, data: bytes, limit: int) -> bool:
        size = self.buffered()
        if not 0 <= size < limit:
            return False
        self.write(data)
        return True

    def close_slow(self) -> None:
        self.closed = True


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
