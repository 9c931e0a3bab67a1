"""The worker's contiguity gate: no record is processed past a hole in its partition.

Kafka is not involved: the gate only reads the offsets of the records it is handed and
Faust's record of the committed offsets, asks the consumer to seek, and has the intake
track what it keeps.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from deploy.settings import Settings
from topologies.app import Runtime


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass
class Message:
    tp: TP
    offset: int


@dataclass
class Intake:
    tracked: list[Any] = field(default_factory=list)

    def track(self, messages: list[Any]) -> None:
        self.tracked.extend(messages)


@dataclass
class Consumer:
    _committed_offset: dict[TP, int | None] = field(default_factory=dict)
    seeks: list[tuple[TP, int]] = field(default_factory=list)

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


@dataclass
class App:
    consumer: Consumer


P0, P1 = TP("comments.submitted", 0), TP("comments.submitted", 1)


def events(tp: TP, *offsets: int) -> list[Any]:
    return [Message(tp, o) for o in offsets]


def gate(committed: dict[TP, int | None] | None = None) -> tuple[Runtime, Consumer]:
    consumer = Consumer(dict(committed or {}))
    return Runtime(Settings(), App(consumer)), consumer  # type: ignore[arg-type]


def offsets(batch: list[Any]) -> list[tuple[int, int]]:
    return [(m.tp.partition, m.offset) for m in batch]


def test_a_contiguous_batch_passes_whole() -> None:
    rt, consumer = gate({P0: 10})
    batch = asyncio.run(rt.contiguous(events(P0, 10, 11, 12) + events(P1, 4, 5), Intake()))
    assert offsets(batch) == [(0, 10), (0, 11), (0, 12), (1, 4), (1, 5)]
    assert consumer.seeks == []


def test_records_past_a_hole_are_left_out_and_the_partition_sought_back() -> None:
    rt, consumer = gate({P0: 10, P1: 4})
    batch = asyncio.run(rt.contiguous(events(P0, 10, 11, 15, 16) + events(P1, 4, 5), Intake()))
    assert offsets(batch) == [(0, 10), (0, 11), (1, 4), (1, 5)]
    assert consumer.seeks == [(P0, 12)]


def test_a_hole_at_the_start_of_an_assignment_is_caught_from_the_committed_offset() -> None:
    rt, consumer = gate({P0: 3600})
    batch = asyncio.run(rt.contiguous(events(P0, 3641, 3642), Intake()))
    assert batch == []
    assert consumer.seeks == [(P0, 3600)]


def test_after_the_seek_the_missing_records_are_taken_in_order() -> None:
    rt, consumer = gate({P0: 10})
    asyncio.run(rt.contiguous(events(P0, 10, 11), Intake()))
    assert asyncio.run(rt.contiguous(events(P0, 14, 15), Intake())) == []
    batch = asyncio.run(rt.contiguous(events(P0, 12, 13, 14, 15), Intake()))
    assert offsets(batch) == [(0, 12), (0, 13), (0, 14), (0, 15)]
    assert consumer.seeks == [(P0, 12)]


def test_a_redelivery_is_kept_processing_is_idempotent() -> None:
    rt, consumer = gate({P0: 10})
    asyncio.run(rt.contiguous(events(P0, 10, 11, 12), Intake()))
    batch = asyncio.run(rt.contiguous(events(P0, 10, 11, 12, 13), Intake()))
    assert offsets(batch) == [(0, 10), (0, 11), (0, 12), (0, 13)]
    assert consumer.seeks == []


def test_a_partition_never_committed_takes_whatever_comes_first() -> None:
    rt, consumer = gate({})
    batch = asyncio.run(rt.contiguous(events(P0, 0, 1), Intake()))
    assert offsets(batch) == [(0, 0), (0, 1)]
    assert consumer.seeks == []


def test_the_records_kept_are_tracked_before_the_seek() -> None:
    rt, _consumer = gate({P0: 10})
    intake = Intake()
    batch = asyncio.run(rt.contiguous(events(P0, 10, 11, 15), intake))
    assert intake.tracked == batch
    assert offsets(intake.tracked) == [(0, 10), (0, 11)]


def test_a_partition_lost_in_a_rebalance_is_forgotten() -> None:
    rt, consumer = gate({P0: 10})
    asyncio.run(rt.contiguous(events(P0, 10, 11), Intake()))
    rt.keep_partitions({1})
    consumer._committed_offset[P0] = 500  # another worker went on meanwhile
    batch = asyncio.run(rt.contiguous(events(P0, 500, 501), Intake()))
    assert offsets(batch) == [(0, 500), (0, 501)]
    assert consumer.seeks == []
