"""The worker's batch writer: overlap without losing order or acknowledging too early."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from topologies.writer import BatchWriter, Coalescer, PreparedBatch


class Tier:
    """A tier whose writes finish when the test says so; it records what it did."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.name = name
        self.gates: dict[int, asyncio.Event] = {}
        self.failures: dict[int, int] = {}

    def write(self, batch: int) -> Any:
        gate = self.gates.setdefault(batch, asyncio.Event())

        async def run() -> None:
            self.log.append(f"{self.name}{batch} start")
            await gate.wait()
            if self.failures.get(batch, 0) > 0:
                self.failures[batch] -= 1
                self.log.append(f"{self.name}{batch} failed")
                raise RuntimeError("tier down")
            self.log.append(f"{self.name}{batch} done")

        return run

    def release(self, batch: int) -> None:
        self.gates.setdefault(batch, asyncio.Event()).set()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """A plain test that runs ``scenario`` on a fresh event loop."""

    def test() -> None:
        asyncio.run(scenario())

    test.__name__ = scenario.__name__
    return test


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def batch(n: int, *tiers: Tier) -> PreparedBatch:
    return PreparedBatch(tiers=[(t.name, t.write(n)) for t in tiers])


@run
async def test_a_tier_takes_batches_in_order_even_when_a_later_one_is_ready() -> None:
    log: list[str] = []
    kafka = Tier(log, "kafka")
    acked: list[list[Any]] = []
    writer = BatchWriter(4, acked.append)
    await writer.submit(["m1"], batch(1, kafka))
    await writer.submit(["m2"], batch(2, kafka))
    kafka.release(2)
    await settle()
    assert "kafka2 start" not in log  # waits for batch 1 in the same tier
    kafka.release(1)
    await writer.drain()
    assert log == ["kafka1 start", "kafka1 done", "kafka2 start", "kafka2 done"]
    assert acked == [["m1"], ["m2"]]


@run
async def test_batches_are_acknowledged_in_order_when_tiers_finish_out_of_order() -> None:
    log: list[str] = []
    kafka, redis = Tier(log, "kafka"), Tier(log, "redis")
    acked: list[list[Any]] = []
    writer = BatchWriter(4, acked.append)
    await writer.submit(["m1"], batch(1, kafka))  # batch 1 writes Kafka only
    await writer.submit(["m2"], batch(2, redis))  # batch 2 Redis only: not chained to 1
    redis.release(2)
    await settle()
    assert "redis2 done" in log
    assert acked == []  # batch 2 is written, but batch 1 is not: nothing committed past it
    kafka.release(1)
    await writer.drain()
    assert acked == [["m1"], ["m2"]]


@run
async def test_a_failed_write_is_retried_in_place_and_holds_the_batches_behind_it() -> None:
    log: list[str] = []
    kafka = Tier(log, "kafka")
    kafka.failures[1] = 1
    acked: list[list[Any]] = []
    writer = BatchWriter(4, acked.append)
    await writer.submit(["m1"], batch(1, kafka))
    await writer.submit(["m2"], batch(2, kafka))
    kafka.release(1)
    kafka.release(2)
    await writer.drain()
    assert log == [
        "kafka1 start",
        "kafka1 failed",
        "kafka1 start",
        "kafka1 done",
        "kafka2 start",
        "kafka2 done",
    ]
    assert acked == [["m1"], ["m2"]]


@run
async def test_the_taker_waits_while_depth_batches_are_in_flight() -> None:
    log: list[str] = []
    kafka = Tier(log, "kafka")
    writer = BatchWriter(2, lambda messages: None)
    await writer.submit(["m1"], batch(1, kafka))
    await writer.submit(["m2"], batch(2, kafka))
    third = asyncio.create_task(writer.submit(["m3"], batch(3, kafka)))
    await settle()
    assert not third.done()
    kafka.release(1)
    await asyncio.wait_for(third, 1)
    kafka.release(2)
    kafka.release(3)
    await writer.drain()


@run
async def test_nothing_is_acknowledged_after_cancel() -> None:
    log: list[str] = []
    kafka = Tier(log, "kafka")
    acked: list[list[Any]] = []
    writer = BatchWriter(4, acked.append)
    await writer.submit(["m1"], batch(1, kafka))
    writer.cancel()
    kafka.release(1)
    await settle()
    assert acked == []
    with pytest.raises(asyncio.CancelledError):
        await writer.submit(["m2"], batch(2, kafka))


@run
async def test_finish_runs_after_every_tier_has_the_batch() -> None:
    log: list[str] = []
    kafka, redis = Tier(log, "kafka"), Tier(log, "redis")
    writer = BatchWriter(4, lambda messages: None)
    prepared = batch(1, kafka, redis)
    prepared.finish = lambda: log.append("finish")
    await writer.submit(["m1"], prepared)
    kafka.release(1)
    await settle()
    assert "finish" not in log
    redis.release(1)
    await writer.drain()
    assert log[-1] == "finish"


class Sink:
    """A store whose writes finish when the test says so; it records each write."""

    def __init__(self) -> None:
        self.writes: list[list[Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_next = 0

    async def write(self, items: list[Any]) -> None:
        await self.gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("store down")
        self.writes.append(list(items))


@run
async def test_batches_within_the_linger_go_out_as_one_write_in_order() -> None:
    sink = Sink()
    tier = Coalescer("persist", sink.write, linger_s=0.05)
    waiters = [tier.add([f"b{n}-1", f"b{n}-2"]) for n in range(3)]
    await asyncio.wait_for(asyncio.gather(*waiters), 2)
    assert sink.writes == [["b0-1", "b0-2", "b1-1", "b1-2", "b2-1", "b2-2"]]


@run
async def test_what_arrives_during_a_write_goes_next_and_a_failed_write_is_retried_first() -> None:
    sink = Sink()
    tier = Coalescer("publish", sink.write, linger_s=0.0)
    sink.gate.clear()
    sink.fail_next = 1
    first = tier.add(["a"])
    await settle()
    second = tier.add(["b"])
    third = tier.add(["c"])
    await settle()
    assert not first.done() and not second.done()
    sink.gate.set()
    await asyncio.wait_for(asyncio.gather(first, second, third), 5)
    # "a" failed once and was written again before "b" and "c" (together).
    assert sink.writes == [["a"], ["b", "c"]]


@run
async def test_a_closed_coalescer_acknowledges_nothing() -> None:
    sink = Sink()
    tier = Coalescer("persist", sink.write, linger_s=10.0)
    waiter = tier.add(["x"])
    tier.close()
    await settle()
    assert waiter.cancelled() and sink.writes == []


@run
async def test_a_self_ordered_tier_is_not_held_behind_the_previous_batch() -> None:
    log: list[str] = []
    redis = Tier(log, "redis")
    sink = Sink()
    tier = Coalescer("persist", sink.write, linger_s=0.05)
    acked: list[list[Any]] = []
    writer = BatchWriter(4, acked.append, self_ordered=frozenset({"persist"}))
    for n in (1, 2):
        batch = PreparedBatch(
            tiers=[("redis", redis.write(n)), ("persist", lambda n=n: tier.add([n]))]
        )
        await writer.submit([f"m{n}"], batch)
    redis.release(1)
    redis.release(2)
    await writer.drain()
    assert sink.writes == [[1, 2]]  # both batches in one write: not chained
    assert acked == [["m1"], ["m2"]]
