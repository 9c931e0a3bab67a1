"""Each Faust/aiokafka workaround in topologies/faust_compat.py still takes effect.

Every test drives the real code path of the pinned faust-streaming / aiokafka (a real
``faust.App`` and its consumer, built without connecting: no broker, no network) and
observes the patched behaviour, so an upgrade that routes around a patch fails here
instead of losing comments in production. Only the network edge of a path is replaced
(the records a fetch returns, the committed offsets a broker would answer).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import itertools
from collections.abc import AsyncIterator, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import click
import faust
import pytest
from aiokafka import AIOKafkaConsumer
from faust.cli.faust import cli as faust_cli
from faust.transport import consumer as faust_consumer
from faust.types import TP, Message

from topologies import faust_compat as compat

# faust-streaming 0.15.3's Consumer._drain_messages, which compat's batch fast path is a
# copy of. If this changes, re-read the new upstream loop, carry its changes into
# faust_compat._patch_drain's copy, then update the hash.
UPSTREAM_DRAIN_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"

_apps = itertools.count()
_built: list[faust.App] = []


def _app() -> faust.App:
    """A real Faust app, never started: building its consumer connects to nothing."""
    app = faust.App(
        f"compat-test-{next(_apps)}",
        broker="kafka://127.0.0.1:1",
        store="memory://",
        web_enabled=False,
    )
    _built.append(app)
    return app


@pytest.fixture(autouse=True)
def _close_consumer_threads() -> Iterator[None]:
    yield
    # Faust's consumer makes its thread's event loop when built; a started thread
    # closes it on stop, these are never started.
    while _built:
        _built.pop().consumer._thread.thread_loop.close()


def _message(topic: str, partition: int, offset: int) -> Message:
    return Message(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=0.0,
        timestamp_type=0,
        headers=[],
        key=b"k",
        value=b"v",
        checksum=None,
    )


async def _fetch_loop(
    consumer: Any, fetched: Sequence[Message], drain: Any = None, fetcher: Any = None
) -> list[Any]:
    """Run the consumer's fetch loop (Faust's ``_drain_messages``, as installed, or
    ``drain``) over one fetch of ``fetched``; return what it handed to the streams.
    With ``fetcher`` (a Faust ``Fetcher``), the loop is started the way Faust's fetcher
    starts it."""
    delivered: list[Any] = []
    if fetcher is None:
        fetcher = SimpleNamespace(_stopped=asyncio.Event())

    async def callback(message: Any) -> None:
        delivered.append(message)

    async def getmany(**_: Any) -> AsyncIterator[tuple[TP, Message]]:  # (timeout=)
        for message in fetched:
            yield message.tp, message
        fetcher._stopped.set()  # one fetch, then the loop ends

    consumer.callback = callback
    consumer.getmany = getmany
    if isinstance(fetcher, faust_consumer.Fetcher):
        await faust_consumer.Fetcher._fetcher.fun(fetcher)  # the body of its task
    else:
        await (drain or type(consumer)._drain_messages)(consumer, fetcher)
    return delivered


# -- 1. the consumer's fetch wait ------------------------------------------------------


def test_faust_creates_its_aiokafka_consumer_with_the_short_fetch_wait() -> None:
    async def scenario() -> None:
        compat.short_fetch_wait(7)
        thread = _app().consumer._thread
        consumer = thread._create_consumer(asyncio.get_running_loop())
        try:
            assert isinstance(consumer, AIOKafkaConsumer)
            assert consumer._fetch_max_wait_ms == 7
        finally:
            await consumer.stop()

    asyncio.run(scenario())


def test_aiokafka_hands_the_consumers_fetch_wait_to_its_fetcher() -> None:
    # What the patch sets is only read where the consumer builds its Fetcher (start()
    # connects, so it is read, not run).
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)


# -- 2. the read offsets ---------------------------------------------------------------


def test_a_guarded_topics_records_below_a_stale_read_offset_still_reach_the_stream() -> None:
    async def scenario() -> None:
        compat.guard_read_offsets(frozenset({"compat.guarded"}))
        consumer = _app().consumer
        assert isinstance(consumer._read_offset, compat.ReadOffsets)
        guarded, other = TP("compat.guarded", 0), TP("compat.other", 0)
        # Faust's own seek records the read offset; a rebalance then leaves it stale.
        for tp in (guarded, other):
            consumer._read_offset[tp] = 100
        fetched = [_message("compat.guarded", 0, 50), _message("compat.other", 0, 50)]
        for drain in (compat.UPSTREAM_DRAIN, None):  # Faust's loop, and the one installed
            delivered = await _fetch_loop(consumer, fetched, drain)
            # The unguarded topic shows the upstream drop the guard prevents.
            assert [m.topic for m in delivered] == ["compat.guarded"]

    asyncio.run(scenario())


def test_a_jump_past_a_guarded_read_offset_is_not_acknowledged_as_a_gap() -> None:
    async def scenario() -> None:
        compat.guard_read_offsets(frozenset({"compat.guarded"}))
        app = _app()
        for name in ("compat.guarded", "compat.other"):  # subscribed, acks on (Faust's own)
            app.topics.add(app.topic(name))
        await app.topics._update_indices()
        consumer = app.consumer
        guarded, other = TP("compat.guarded", 0), TP("compat.other", 0)
        for tp in (guarded, other):
            consumer._read_offset[tp] = 100
        fetched = [_message("compat.guarded", 0, 200), _message("compat.other", 0, 200)]
        delivered = await _fetch_loop(consumer, fetched, compat.UPSTREAM_DRAIN)
        assert [m.offset for m in delivered] == [200, 200]
        # Upstream acknowledges 101..199 of the unguarded topic as a gap on its own.
        assert consumer._gap.get(other)
        assert not consumer._gap.get(guarded)
        # What Faust recorded is still there for the lag report.
        assert compat.read_offset(consumer, guarded) == 200

    asyncio.run(scenario())


def test_a_guarded_read_offset_reads_as_unknown_by_index_and_by_get() -> None:
    offsets = compat.ReadOffsets(frozenset({"compat.guarded"}))
    guarded, other = TP("compat.guarded", 0), TP("compat.other", 0)
    offsets[guarded] = offsets[other] = 7
    assert offsets[guarded] is None and offsets.get(guarded) is None
    assert offsets[other] == 7 and offsets.get(other) == 7
    assert offsets.last_read(guarded) == 7


# -- 3. batches straight from the fetch loop -------------------------------------------


def test_the_fetch_loop_hands_an_intake_topics_records_to_the_intake_whole() -> None:
    async def scenario() -> None:
        intake = compat.batch_intake(
            compat.BatchIntake("compat.batched", max_batch=10, high_water=100)
        )
        consumer = _app().consumer
        fetched = [_message("compat.batched", p, o) for p, o in ((0, 1), (1, 5), (0, 2))]
        fetched.append(_message("compat.streamed", 0, 3))
        delivered = await _fetch_loop(consumer, fetched)
        assert [m.topic for m in delivered] == ["compat.streamed"]
        assert intake.consumer is consumer
        batch = await asyncio.wait_for(intake.take(), 1.0)
        assert [(m.partition, m.offset) for m in batch] == [(0, 1), (1, 5), (0, 2)]

    asyncio.run(scenario())


def test_fausts_fetcher_runs_the_patched_fetch_loop() -> None:
    async def scenario() -> None:
        intake = compat.batch_intake(
            compat.BatchIntake("compat.fetched", max_batch=10, high_water=100)
        )
        app = _app()
        delivered = await _fetch_loop(
            app.consumer, [_message("compat.fetched", 0, 9)], fetcher=faust_consumer.Fetcher(app)
        )
        assert delivered == []
        assert [m.offset for m in await asyncio.wait_for(intake.take(), 1.0)] == [9]

    asyncio.run(scenario())


def test_the_upstream_fetch_loop_the_batch_path_copies_is_unchanged() -> None:
    source = inspect.getsource(compat.UPSTREAM_DRAIN)
    assert hashlib.sha256(source.encode()).hexdigest() == UPSTREAM_DRAIN_SHA256


# -- 4. the current event --------------------------------------------------------------


def test_a_table_write_as_a_records_event_goes_to_that_records_partition() -> None:
    async def scenario() -> None:
        app = _app()
        table = app.Table("compat-epochs", default=int, partitions=4)
        sent: list[tuple[int | None, Any, Any]] = []
        send = table.send_changelog

        def record(partition: int | None, key: Any, value: Any, **kwargs: Any) -> Any:
            sent.append((partition, key, value))
            return send(partition, key, value, **kwargs)

        table.send_changelog = record  # type: ignore[method-assign]
        try:
            table["outside"] = 1
            raise AssertionError("Faust accepted a table write outside any event")
        except TypeError:
            pass  # upstream's refusal, which as_current answers
        with compat.as_current(compat.MessageEvent(_message("compat.source", 3, 10))):
            table["inside"] = 2
        assert sent == [(3, "inside", 2)]

    asyncio.run(scenario())


# -- 5. private offsets ----------------------------------------------------------------


def test_the_committed_offset_is_where_fausts_seek_resumed_the_partition() -> None:
    async def scenario() -> None:
        consumer = _app().consumer
        tp = TP("compat.resumed", 2)

        async def broker_answer() -> dict[TP, int]:  # what the broker holds as committed
            return {tp: 42}

        consumer.seek_to_committed = broker_answer
        await consumer.perform_seek()  # Faust's own path after an assignment
        assert compat.committed_offset(consumer, tp) == 42
        assert compat.committed_offset(consumer, TP("compat.resumed", 0)) is None

    asyncio.run(scenario())


def test_the_read_offset_is_the_last_record_fausts_fetch_loop_delivered() -> None:
    async def scenario() -> None:
        consumer = _app().consumer
        tp = TP("compat.read", 1)
        assert compat.read_offset(consumer, tp) is None
        await _fetch_loop(consumer, [_message("compat.read", 1, o) for o in (4, 5)])
        assert compat.read_offset(consumer, tp) == 5

    asyncio.run(scenario())


# -- 6. starting a worker --------------------------------------------------------------


def test_fausts_worker_command_accepts_the_flags_written_for_it() -> None:
    argv = compat.worker_argv(loglevel="info", web_port=6066, web_host="127.0.0.1")
    assert argv[1] == "worker"
    root = click.Context(faust_cli)
    command = faust_cli.get_command(root, argv[1])
    assert command is not None
    parsed = command.make_context(argv[1], argv[2:], parent=root)  # click refuses unknowns
    assert parsed.params["web_port"] == 6066
    assert parsed.params["web_host"] == "127.0.0.1"
    assert parsed.params["web_bind"] == "127.0.0.1"
