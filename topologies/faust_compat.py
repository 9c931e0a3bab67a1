"""Every adaptation of Faust and aiokafka internals, in one place.

The topology (``topologies/app.py``) and the worker's entry point (``deploy/worker.py``)
use Faust's public API plus the functions here; no other module of the project names a
private attribute of Faust or aiokafka. Each workaround names the upstream behaviour it
answers and the upstream issue where one exists, and has a test in
``tests/unit/test_faust_compat.py`` that drives the real Faust/aiokafka code path on the
pinned versions (faust-streaming 0.15.3, aiokafka 0.14.0) and fails if the patch stops
taking effect. Bump those pins only with those tests green.

1. :func:`short_fetch_wait` — Faust creates its aiokafka consumer with
   ``fetch_max_wait_ms=1500``, fixed, with no setting for it
   (``AIOKafkaConsumerThread._create_worker_consumer``); aiokafka leaves a partition with
   buffered records out of the next fetch (``Fetcher._get_actions_per_node``), so a busy
   partition's new records waited behind idle ones for the whole 1.5 s. No upstream
   issue found (faust-streaming, robinhood/faust and aiokafka searched).
2. :func:`guard_read_offsets` — Faust's per-partition "read offset" goes stale across a
   rebalance and its fetch loop silently drops re-fetched records below it (its log line
   ``DROPPED MESSAGE ROFF``): robinhood/faust#115 (first record after a rebalance
   dropped), faust-streaming/faust#34 (first record after an offset reset ignored),
   robinhood/faust PR #542 (the partial upstream fix: reset only on a seek to 0). The
   fetch loop also counts a jump above it as a gap and acknowledges it by itself; gap
   handling committed wrong offsets in faust-streaming/faust#312 and #606. Our kill -9
   drill lost comments this way.
3. :func:`batch_intake` — Faust hands records to streams one at a time, each with its
   own ``Event``, channel put and two tasks (``wait_first``): ≈ 100 to 160 µs of CPU per
   record (FACTS.md); robinhood/faust#563 (consumption ~10x slower than a plain
   ``AIOKafkaConsumer``), #310 (bulk processing). For the topics given, the fetch loop
   hands whole fetches to a :class:`BatchIntake` instead, and the agent takes batches
   from it (acknowledging through the consumer as a stream would). It replaces
   ``Consumer._drain_messages`` with a copy; the test pins the hash of the original's
   source so an upgrade that changes it is noticed.
4. :func:`as_current` — a table write needs Faust's "current event" to pick its
   changelog partition, which only a stream iterating one record at a time sets:
   faust-streaming/faust#497 ("Cannot modify table key from outside of stream
   iteration" under ``Stream.take``). A batch agent sets it for a write on behalf of a
   record.
5. :func:`committed_offset`, :func:`read_offset` — the consumer's own records of where
   a partition resumed and how far it was read, which Faust keeps private (no public
   accessor; no upstream issue found).
6. :func:`worker_argv`, :func:`run_worker` — the worker is started by Faust's own
   command line (``App.main``: signals, logging, its web server), which reads its flags
   from ``sys.argv`` and nowhere else; the settings object already decided every flag,
   so the argv is written here. Not a private name, but a process-global rewrite that
   belongs with the other adaptations.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

from faust.streams import _current_event
from faust.transport import consumer as _consumer_module
from faust.transport.drivers import aiokafka as _driver

_PATCHED = "_livecomments"


def _patched(fn: Any) -> bool:
    return bool(getattr(fn, _PATCHED, False))


def _mark(fn: Any) -> Any:
    setattr(fn, _PATCHED, True)
    return fn


# -- 1. the consumer's fetch wait ------------------------------------------------------


def short_fetch_wait(max_wait_ms: int) -> None:
    """Faust creates its aiokafka consumer with ``fetch_max_wait_ms=1500``, fixed.

    Upstream: ``faust.transport.drivers.aiokafka.AIOKafkaConsumerThread.
    _create_worker_consumer`` hard-codes it (no setting, no upstream issue found); the
    created consumer's ``_fetch_max_wait_ms`` is what ``AIOKafkaConsumer.start`` hands
    to its ``Fetcher``.

    aiokafka leaves a partition with unconsumed buffered records out of the next fetch;
    if the partitions left in it are idle, the broker holds that fetch for the whole
    wait, and the busy partition's new records wait with it: a 1.5 s stall, measured as
    p99 submit → live of ~1.6 s with two workers. A short wait bounds the stall.
    """
    cls = _driver.AIOKafkaConsumerThread
    original = cls._create_worker_consumer
    if _patched(original):
        cast(Any, original)._max_wait_ms[0] = max_wait_ms
        return
    wait = [max_wait_ms]

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = wait[0]  # read by consumer.start()
        return consumer

    create._max_wait_ms = wait  # type: ignore[attr-defined]
    cls._create_worker_consumer = _mark(create)  # type: ignore[method-assign]


# -- 2. the read offsets ---------------------------------------------------------------


class ReadOffsets(dict[Any, Any]):
    """Faust's per-partition "read offset", blind for the topics we guard.

    Upstream: ``faust.transport.consumer.Consumer._read_offset``, read by
    ``_drain_messages`` (``[]``) and written by it, ``seek``, ``perform_seek`` and the
    aiokafka driver's ``_seek_wait``. The stale-offset drop is robinhood/faust#115 and
    faust-streaming/faust#34; robinhood/faust PR #542 only resets it on a seek to 0.

    Faust's fetch loop drops every record whose offset is below the partition's read
    offset, and counts a jump above it as a gap that it acknowledges by itself. Both
    trust the read offset, which goes stale across a rebalance: a record delivered to a
    stream buffer that the rebalance then cleared still moved it forward, and the
    records re-fetched from the committed offset were dropped silently, or a gap was
    committed. That was the kill -9 drill's loss (1,000 records dropped, 591 comments
    lost in one run). Our processing is idempotent and in offset order per partition,
    so a re-delivered record is harmless and a skipped one is not: for our topics the
    read offset reads as unknown (``[]`` and ``.get`` alike), which delivers everything
    and never invents a gap.
    """

    def __init__(self, topics: frozenset[str]) -> None:
        super().__init__()
        self._topics = topics

    def __getitem__(self, tp: Any) -> Any:
        if tp.topic in self._topics:
            return None
        return super().get(tp)

    def get(self, tp: Any, default: Any = None) -> Any:
        if tp.topic in self._topics:
            return default
        return super().get(tp, default)

    def last_read(self, tp: Any) -> Any:
        """What Faust recorded, guarded or not (for lag reports)."""
        return super().get(tp)


_guarded: set[str] = set()


def guard_read_offsets(topics: frozenset[str]) -> None:
    """Every Faust consumer created from now on reads ``topics``' read offsets as unknown."""
    _guarded.update(topics)
    original = _driver.Consumer.__init__
    if _patched(original):
        return

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._read_offset = ReadOffsets(frozenset(_guarded))

    _driver.Consumer.__init__ = _mark(init)  # type: ignore[method-assign]


# -- 3. batches straight from the fetch loop -------------------------------------------


class BatchIntake:
    """Records of one topic as Faust's consumer fetched them, taken in batches.

    :meth:`take` returns what is there at once (up to ``max_batch``), or waits for the
    next fetch when there is nothing: an idle pipeline processes a record as soon as it
    arrives, a busy one takes bigger batches. Taken records are tracked by the consumer
    like a stream's (a rebalance waits for them to be acknowledged, then commits);
    :meth:`ack` acknowledges them. Buffered records of partitions this worker no longer
    owns are dropped on revocation (:meth:`drop_partitions`); the new owner reads them
    from the committed offset.
    """

    def __init__(self, topic: str, *, max_batch: int, high_water: int) -> None:
        self.topic = topic
        self.max_batch = max_batch
        self.high_water = high_water
        self.consumer: Any = None
        self._buffer: deque[Any] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def add(self, message: Any) -> None:
        self._buffer.append(message)
        if len(self._buffer) >= self.high_water:
            self._room.clear()

    def added(self) -> None:
        """The fetch loop is done with one fetch: wake the taker once."""
        if self._buffer:
            self._ready.set()

    async def room(self) -> None:
        await self._room.wait()

    def buffered(self) -> int:
        return len(self._buffer)

    async def take(self) -> list[Any]:
        """What is buffered (up to ``max_batch``), or the next fetch. The caller tracks
        what it keeps (:meth:`track`) before it awaits anything."""
        while not self._buffer:
            self._ready.clear()
            await self._ready.wait()
        buffer = self._buffer
        batch = [buffer.popleft() for _ in range(min(self.max_batch, len(buffer)))]
        if len(buffer) < self.high_water:
            self._room.set()
        return batch

    def track(self, messages: list[Any]) -> None:
        """Pending acknowledgement, as a stream's records are: a rebalance waits for
        them (Faust's ``wait_empty``) before it commits and hands the partition on."""
        # Consumer.track_message, without its per-record sensor call (Faust's Monitor
        # keeps per-record stats we do not read; ≈ 20 µs a record): the rebalance waits
        # on this set only.
        self.consumer._unacked_messages.update(messages)

    def ack(self, messages: list[Any]) -> None:
        ack = self.consumer.ack
        for message in messages:
            ack(message)

    def drop_partitions(self, keep: Callable[[Any], bool]) -> int:
        """Forget buffered records whose partition fails ``keep``; returns how many."""
        before = len(self._buffer)
        self._buffer = deque(m for m in self._buffer if keep(m.tp))
        if len(self._buffer) < self.high_water:
            self._room.set()
        return before - len(self._buffer)

    async def batches(self) -> AsyncIterator[list[Any]]:
        while True:
            yield await self.take()


_intakes: dict[str, BatchIntake] = {}

# Faust's own fetch loop, which :func:`_patch_drain` replaces by a copy of it with the
# batch fast path. The copy is only right while the original is the one it was copied
# from: tests/unit/test_faust_compat.py pins this source's SHA-256.
UPSTREAM_DRAIN = _consumer_module.Consumer._drain_messages


def batch_intake(intake: BatchIntake) -> BatchIntake:
    """Route ``intake.topic``'s records to ``intake`` instead of Faust's streams.

    The topic must still be subscribed through an agent (Faust assigns its partitions,
    co-partitions tables and commits acknowledged offsets as for any agent); the agent
    takes its batches from the intake and never iterates its stream.
    """
    _intakes[intake.topic] = intake
    _patch_drain()
    return intake


def _patch_drain() -> None:
    """Replace ``faust.transport.consumer.Consumer._drain_messages`` (called by Faust's
    ``Fetcher._fetcher``) with the copy below. Why a copy and not a wrapper: the loop is
    one function with no hook between "fetched" and "handed to the stream", and the
    per-record work it does is the cost we remove (robinhood/faust#563)."""
    cls = _consumer_module.Consumer
    if _patched(cls._drain_messages):
        return

    async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover
        """Faust 0.15.3's ``Consumer._drain_messages``, with the batch fast path.

        Identical to the original for every topic without an intake; records of a topic
        with one go to it without a per-record callback, then the loop waits (per
        fetch, not per record) for room if the intake is full or the flow suspended.
        """
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = _consumer_module.CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        intakes = _intakes
        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = cast(AsyncIterator[Any], getmany(timeout=1.0))
                await self.sleep(0)
                if not self.should_stop:
                    touched: set[BatchIntake] = set()
                    async for tp, message in ait:
                        intake = intakes.get(tp.topic)
                        if intake is not None:
                            if intake.consumer is None:
                                intake.consumer = self
                            intake.add(message)
                            touched.add(intake)
                            continue
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                    for intake in touched:
                        intake.added()
                        if intake.buffered() >= intake.high_water:
                            await self.wait_first(intake.room(), self.suspend_flow.wait())
                    unset_flag(flag_consumer_fetching)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)

    cls._drain_messages = _mark(_drain_messages)  # type: ignore[method-assign]


# -- 4. the current event --------------------------------------------------------------


@contextlib.contextmanager
def as_current(record: Any) -> Iterator[None]:
    """Make ``record`` (a Faust ``Event`` or a ``ConsumerMessage`` wrapped in one) the
    current event, so a table write goes to its partition's changelog.

    Faust only knows "the current event" while a stream iterates one by one; a batch
    agent writes tables on behalf of a record of its batch. Upstream: the context
    variable ``faust.streams._current_event``, read by ``Table.partition_for_key``;
    without it a write raises "Cannot modify table key from outside of stream
    iteration" (faust-streaming/faust#497).
    """
    token = _current_event.set(weakref.ref(record))
    try:
        yield
    finally:
        _current_event.reset(token)


class MessageEvent:
    """The least of a Faust ``Event`` a table write needs: ``.message`` (for its
    partition). Batches from an intake carry messages, not events."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, message: Any) -> None:
        self.message = message


# -- 5. private offsets ----------------------------------------------------------------
# Faust keeps both in private maps of its consumer and has no public accessor. Read as
# attributes, not with a default: if an upgrade renames them, this fails loudly (and
# its test fails) instead of reading "unknown" forever.


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """The offset this consumer resumed from / last committed for ``tp`` (next to read).

    Upstream: ``Consumer._committed_offset``, set by ``perform_seek`` and commits."""
    offsets: dict[Any, int | None] = consumer._committed_offset
    return offsets.get(tp)


def read_offset(consumer: Any, tp: Any) -> int | None:
    """The last offset Faust's fetch loop recorded as read for ``tp`` (None: unknown).

    Upstream: ``Consumer._read_offset`` (a :class:`ReadOffsets` for guarded topics)."""
    offsets = consumer._read_offset
    if isinstance(offsets, ReadOffsets):
        return cast(int | None, offsets.last_read(tp))
    return cast(int | None, offsets.get(tp))


# -- 6. starting a worker --------------------------------------------------------------


def worker_argv(*, loglevel: str, web_port: int, web_host: str) -> list[str]:
    """Faust's ``worker`` command line for flags the settings object already decided.

    Faust applies these only through its command line (``faust.cli.worker``): the web
    server's port, host and bind address, and the log level.
    """
    return [
        "livecomments-worker",
        "worker",
        "--loglevel",
        loglevel,
        "--web-port",
        str(web_port),
        "--web-host",
        web_host,
        "--web-bind",
        web_host,
    ]


def run_worker(app: Any, argv: list[str]) -> None:
    """Start ``app`` as a Faust worker (signals, logging, web server); returns at exit.

    ``App.main`` runs Faust's command line, which reads ``sys.argv`` and nothing else.
    """
    sys.argv = argv
    app.main()
