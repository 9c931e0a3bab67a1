"""Writes prepared batches to their tiers while the next batches are prepared.

A worker's batch has two halves: *preparing* it (decode, validate, moderate, enrich:
CPU, plus a few Cassandra reads) and *writing* it (Kafka acks=all, Cassandra, Redis:
mostly waiting). Done one batch after the other, a busy worker spends most of its time
waiting on the previous batch's acks. :class:`BatchWriter` lets the next batch be
prepared while the previous ones are written, and keeps every guarantee of the serial
loop:

- each tier (``publish``, ``persist``, ``fanout``, ...) takes the batches in the order
  they came, one after the other: a tier never holds batch N+1 without batch N, so an
  event's Redis stream and its Kafka partition stay in position order even when a write
  is retried;
- a batch is acknowledged (its offsets may be committed) once every tier has it, and
  strictly in order: an offset is never committed past a batch that is not written;
- at most ``depth`` batches are in flight; the taker waits for room.

A failed write is retried in place (:func:`until_done`), never skipped: the batches
behind it wait.

A tier off the viewers' path (Kafka's ``comments.published``, Cassandra) may be a
:class:`Coalescer` instead: the batches that arrive within its linger, or while its
previous write is out, go out as one write, in their order. At a low rate every comment
is its own batch, and the servers' cost is per request (≈ 1 ms of broker or Cassandra CPU
each on a small node), so fewer requests is most of the cost; the batches still wait for
their write before they are acknowledged.

On shutdown :meth:`BatchWriter.cancel` stops everything and nothing more is
acknowledged; the uncommitted batches are processed again by the partition's next owner
(every write is idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from topologies import metrics as M

log = logging.getLogger(__name__)

T = TypeVar("T")
Write = Callable[[], Awaitable[None]]


async def until_done(name: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run one step of a batch to completion, retrying in place; never skip it.

    Every step of a batch is idempotent, so running it again after any error is safe;
    only cancellation (worker shutdown) leaves, and then nothing is acknowledged.
    """
    delay = 0.1
    while True:
        try:
            return await fn(*args)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: batch failed; retrying it in %.1fs", name, delay)
            M.batch_retries.labels(name).inc()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


@dataclass(slots=True)
class PreparedBatch:
    """What is left to do of a batch once it is planned: its writes, by tier, and what
    to do once they are all done (metrics, analytics)."""

    tiers: list[tuple[str, Write]] = field(default_factory=list)
    finish: Callable[[], None] = lambda: None


class Coalescer:
    """One tier's writes of several batches as one: :meth:`add` a batch's items, await
    what it returns. Items are written in the order they were added; one write is out at
    a time (a failed one is retried in place before the next), so the tier's order holds
    as in a chained tier. A write waits until ``linger_s`` after the first item it
    carries arrived; items that arrived while the previous write was out go as soon as
    it is done (they have waited for it already)."""

    def __init__(
        self,
        name: str,
        write: Callable[[list[Any]], Awaitable[None]],
        linger_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._write = write
        self._linger_s = linger_s
        self._clock = clock
        self._items: list[Any] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._first_at = 0.0
        self._flusher: asyncio.Task[None] | None = None
        self.writes = 0  # how many writes went out (for tests and metrics)

    def add(self, items: Sequence[Any]) -> asyncio.Future[None]:
        """Queue ``items``; the future resolves once a write carried them."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._waiters:
            self._first_at = self._clock()
        self._items.extend(items)
        self._waiters.append(waiter)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=f"coalesce-{self.name}")
        return waiter

    def close(self) -> None:
        """Stop (worker shutdown): what was not written is not acknowledged."""
        if self._flusher is not None:
            self._flusher.cancel()
        for waiter in self._waiters:
            waiter.cancel()
        self._items, self._waiters = [], []

    async def _flush(self) -> None:
        while self._waiters:
            wait = self._first_at + self._linger_s - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            items, waiters = self._items, self._waiters
            self._items, self._waiters = [], []
            try:
                await until_done(self.name, self._write, items)
            except BaseException:
                for waiter in waiters:
                    waiter.cancel()
                raise
            self.writes += 1
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            if self._waiters:
                # They arrived while this write was out: they have waited already.
                self._first_at = min(self._first_at, self._clock() - self._linger_s)


class BatchWriter:
    def __init__(
        self,
        depth: int,
        ack: Callable[[list[Any]], None],
        *,
        self_ordered: frozenset[str] = frozenset(),
    ) -> None:
        """``self_ordered``: tiers that keep their own order (a :class:`Coalescer`), so a
        batch's write there is not held behind the previous batch's."""
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._ack = ack
        self._room = asyncio.Semaphore(depth)
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._in_flight: deque[tuple[list[Any], asyncio.Task[None]]] = deque()
        self._stopped = False
        self._self_ordered = self_ordered

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def submit(self, messages: list[Any], batch: PreparedBatch) -> None:
        """Start writing ``batch``; ``messages`` are acknowledged once it is written and
        every batch submitted before it is. Waits while ``depth`` batches are in flight."""
        await self._room.acquire()
        if self._stopped:
            self._room.release()
            raise asyncio.CancelledError
        tier_tasks = []
        for name, write in batch.tiers:
            if name in self._self_ordered:
                tier_tasks.append(asyncio.create_task(until_done(name, write)))
                continue
            task = asyncio.create_task(self._tier(name, write, self._tails.get(name)))
            self._tails[name] = task
            tier_tasks.append(task)
        done = asyncio.create_task(self._batch(tier_tasks, batch.finish))
        self._in_flight.append((messages, done))
        done.add_done_callback(self._acknowledge)

    async def drain(self) -> None:
        """Wait until every submitted batch is written and acknowledged."""
        while self._in_flight:
            await asyncio.wait([self._in_flight[-1][1]])

    def cancel(self) -> None:
        """Stop writing (worker shutdown): nothing in flight is acknowledged."""
        self._stopped = True
        for _, task in self._in_flight:
            task.cancel()
        for task in self._tails.values():
            task.cancel()
        self._in_flight.clear()
        self._tails.clear()

    @staticmethod
    async def _tier(name: str, write: Write, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
            if previous.cancelled():
                raise asyncio.CancelledError
        await until_done(name, write)

    async def _batch(self, tiers: list[asyncio.Task[None]], finish: Callable[[], None]) -> None:
        try:
            await asyncio.gather(*tiers)
        finally:
            self._room.release()
        try:
            finish()
        except Exception:  # metrics and analytics must never hold a batch back
            log.exception("after-batch bookkeeping failed")

    def _acknowledge(self, _: asyncio.Task[None]) -> None:
        while self._in_flight and self._in_flight[0][1].done():
            messages, task = self._in_flight.popleft()
            if task.cancelled() or task.exception() is not None:
                # Only shutdown gets here: acknowledge nothing after it either.
                self.cancel()
                return
            self._ack(messages)
