"""The workers' producer: aiokafka, idempotent, acks=all, batching with a short linger.

Faust's own producer goes through a small buffer drained one record at a time (its
"producer buffer full" warnings); the pipeline sends a whole batch and awaits the acks
together, so it talks to aiokafka directly. Records are compressed by the client with
the codec of their topic's ``compression.type``, so the broker stores them as they come.
aiokafka hashes keys with Java's murmur2, like every other producer of the project.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaProducer

from connectors.topics import topic_specs
from deploy.settings import Settings


class OutputProducer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._by_codec: dict[str, AIOKafkaProducer] = {}
        self._codec_of = {
            spec.name: spec.config.get("compression.type", "snappy")
            for spec in topic_specs(settings)
        }

    async def start(self) -> None:
        for codec in sorted(set(self._codec_of.values())):
            await self._open(codec)

    async def _open(self, codec: str) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=512 * 1024,
            compression_type=codec,
            request_timeout_ms=30_000,
        )
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self._by_codec[codec] = producer
        return producer

    async def stop(self) -> None:
        for producer in self._by_codec.values():
            await producer.stop()
        self._by_codec.clear()

    async def reset(self) -> None:
        """Close every producer (after a fatal producer error); the next send opens a
        new one, with a new producer id."""
        old, self._by_codec = list(self._by_codec.values()), {}
        for producer in old:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def send(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[Any]:
        """Queue one record; the returned future resolves when Kafka acknowledged it."""
        codec = self._codec_of.get(topic, "snappy")
        producer = self._by_codec.get(codec) or await self._open(codec)
        future: asyncio.Future[Any] = await producer.send(topic, value=value, key=key)
        return future
