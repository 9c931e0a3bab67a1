"""The project's producer for its own topics: librdkafka (confluent-kafka), idempotent,
acks=all, batching with a short linger.

Why librdkafka and not aiokafka or Faust's producer: producing one record costs ≈ 3 µs
of client CPU with librdkafka and ≈ 18 µs with aiokafka (pure-Python record batches and
murmur2), and the pipeline produces two or three records per comment (FACTS.md).
Records are compressed by the client with the codec of their topic's
``compression.type`` (one librdkafka producer per codec), so the broker stores them as
they come; keys are hashed with Java's murmur2 like every producer of the project
(``connectors/kafka_clients.py``).

librdkafka reports deliveries on the thread that polls it: each producer has one
poller thread, and a whole batch (:meth:`OutputProducer.send_many`) wakes the event
loop once, when its last record is acknowledged, not once per record.

An idempotent producer can hit a fatal error (its sequence lost after a broker
restart): then it is replaced by a new one (a new producer id) before the error is
raised, so the caller's retry goes through (:class:`ProduceError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable
from typing import Any

from aiokafka.errors import KafkaError as _AIOKafkaError
from confluent_kafka import KafkaError, KafkaException, Producer

from connectors.kafka_clients import producer_config
from connectors.topics import kafka_topics
from deploy.settings import Settings

log = logging.getLogger(__name__)

Record = tuple[str, bytes | None, bytes]  # topic, key, value


class ProduceError(_AIOKafkaError):  # type: ignore[misc]
    """Kafka did not acknowledge a record. The producer is usable again (it was
    replaced if the error was fatal): retry the whole batch, every write is idempotent.

    A subclass of aiokafka's ``KafkaError`` so callers written for either client catch it.
    """


class _Pending:
    """One awaited batch: resolved on the loop when its last record is acknowledged."""

    __slots__ = ("error", "future", "left", "lock", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.left = count
        self.error: KafkaError | None = None
        # A batch spans the producers of several codecs, each with its poller thread.
        self.lock = threading.Lock()

    def delivered(self, err: KafkaError | None, _msg: Any) -> None:
        with self.lock:
            if err is not None and self.error is None:
                self.error = err
            self.left -= 1
            last = self.left == 0
        if last:
            self.loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if self.future.done():
            return
        if self.error is not None:
            self.future.set_exception(ProduceError(str(self.error)))
        else:
            self.future.set_result(None)


class _Client:
    """One librdkafka producer and the thread that polls it for deliveries."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.producer = Producer(config)
        self.fatal = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="kafka-producer", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    def produce(self, topic: str, key: bytes | None, value: bytes, on_delivery: Any) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:
                # The local queue is full: let deliveries drain it (the poller runs).
                self.producer.flush(0.05)

    def close(self, timeout_s: float) -> None:
        with contextlib.suppress(Exception):
            self.producer.flush(timeout_s)
        self._stop.set()
        self._thread.join(timeout_s + 1)


def _close_later(client: _Client) -> None:
    """Close a replaced producer on a thread of its own: its records in flight are
    delivered or time out (``message.timeout.ms``) and their batches hear it."""
    threading.Thread(target=client.close, args=(35.0,), name="kafka-producer-close").start()


class OutputProducer:
    def __init__(self, settings: Settings, *, linger_ms: int | None = None) -> None:
        self._settings = settings
        self._linger_ms = settings.producer_linger_ms if linger_ms is None else linger_ms
        self._by_codec: dict[str, _Client] = {}
        self._codec_of = {
            spec.name: spec.config.get("compression.type", "snappy")
            for spec in kafka_topics(settings)
        }

    async def start(self) -> None:
        for codec in sorted(set(self._codec_of.values())):
            self._open(codec)
        # librdkafka connects lazily: ask for metadata once so a dead broker shows here.
        client = next(iter(self._by_codec.values()))
        await asyncio.to_thread(client.producer.list_topics, timeout=10)

    def _on_error(self, err: KafkaError) -> None:
        # librdkafka's global errors (a broker down for a while) are retried inside it;
        # only a fatal one needs a new producer.
        if err.fatal():
            log.error("kafka producer fatal error: %s; it will be replaced", err)
            for client in self._by_codec.values():
                client.fatal = True
        else:
            log.warning("kafka producer: %s", err)

    def _open(self, codec: str) -> _Client:
        client = _Client(
            producer_config(
                self._settings,
                **{
                    "compression.type": codec,
                    "linger.ms": self._linger_ms,
                    "batch.size": 512 * 1024,
                    "message.timeout.ms": 30_000,
                    "error_cb": self._on_error,
                },
            )
        )
        self._by_codec[codec] = client
        return client

    def _client(self, topic: str) -> _Client:
        codec = self._codec_of.get(topic, "snappy")
        client = self._by_codec.get(codec)
        if client is None or client.fatal:
            if client is not None:
                _close_later(client)
            client = self._open(codec)
        return client

    async def stop(self) -> None:
        clients, self._by_codec = list(self._by_codec.values()), {}
        for client in clients:
            await asyncio.to_thread(client.close, 10.0)

    async def reset(self) -> None:
        """Replace every producer (a new producer id). Kept for callers that reset after
        an error; :meth:`send_many` already replaces a producer whose error was fatal.
        Records still in flight in the old ones are delivered or fail (their callers
        hear it) before those close, off the event loop."""
        old, self._by_codec = list(self._by_codec.values()), {}
        for client in old:
            _close_later(client)

    def send_many(self, records: Iterable[Record]) -> asyncio.Future[None]:
        """Queue every record now; the future resolves when Kafka acknowledged all of
        them (or fails with :class:`ProduceError` on the first that failed)."""
        batch = list(records)
        pending = _Pending(asyncio.get_running_loop(), len(batch))
        if not batch:
            pending.future.set_result(None)
            return pending.future
        for topic, key, value in batch:
            self._client(topic).produce(topic, key, value, pending.delivered)
        pending.future.add_done_callback(self._check_fatal)
        return pending.future

    def _check_fatal(self, future: asyncio.Future[None]) -> None:
        if future.cancelled() or future.exception() is None:
            return
        fatal = [codec for codec, c in self._by_codec.items() if c.fatal]
        for codec in fatal:
            _close_later(self._by_codec.pop(codec))

    async def deliver(self, topic: str, key: bytes | None, value: bytes, timeout_s: float) -> None:
        """One record, returned once Kafka acknowledged it. Raises :class:`ProduceError`
        (or ``TimeoutError``); a producer whose error was fatal (a lost sequence after a
        broker restart) has replaced itself by then, so the caller's retry goes through
        a new one."""
        await asyncio.wait_for(self.send_many([(topic, key, value)]), timeout_s)

    async def send(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        """Queue one record; the returned future resolves when Kafka acknowledged it."""
        return self.send_many([(topic, key, value)])


__all__ = ["KafkaException", "OutputProducer", "ProduceError", "Record"]
