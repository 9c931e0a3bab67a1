"""Global state: every event's settings and every user's profile, in every process.

``events.settings`` and ``users.profiles`` are compacted topics: the event-sourced state
of events and users. Each worker reads all their partitions from the beginning (no
consumer group) and then follows them, so validate, moderate and enrich look up any
event or user locally. Faust's ``GlobalTable`` does the same job but hangs in partition
assignment and recovery on this stack (see docs/operations.md), so this is a small
reader of its own. A tombstone (null value) deletes.

It lives in connectors (it reads Kafka; workers, gateways and the API all use it) and
takes what to do when the reader dies as ``on_failure``: a worker without its state
would judge comments on stale settings, so the default ends the process loudly.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.topics import EVENTS_SETTINGS, USERS_PROFILES
from deploy.settings import Settings
from schemas.codec import AvroCodec
from schemas.errors import CodecError
from schemas.records import LiveEvent, UserProfile

log = logging.getLogger(__name__)


def exit_process(error: BaseException) -> None:
    """The default ``on_failure``: stop at once so the supervisor restarts the process."""
    log.critical("global state reader died: %r", error)
    os._exit(70)


class StateReader:
    """Every event's ``LiveEvent`` and every user's ``UserProfile``, kept current."""

    def __init__(
        self,
        settings: Settings,
        codec: AvroCodec,
        *,
        on_failure: Callable[[BaseException], None] = exit_process,
    ) -> None:
        self._settings = settings
        self._codec = codec
        self._on_failure = on_failure
        self.events: dict[str, LiveEvent] = {}
        self.users: dict[str, UserProfile] = {}
        self.ready = asyncio.Event()
        # Next offset to apply per partition ("users.profiles/0" → 42): how far this
        # process's view goes (the worker's /healthz shows it).
        self.applied: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    def event(self, event_id: str) -> LiveEvent | None:
        return self.events.get(event_id)

    def user(self, user_id: str) -> UserProfile | None:
        return self.users.get(user_id)

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap_servers,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            partitions = await asyncio.to_thread(self._partitions, self._settings)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(consumer, ends), name="global-state")
        self._task.add_done_callback(self._follower_done)

    def _follower_done(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self._on_failure(error)

    @staticmethod
    def _partitions(settings: Settings) -> list[TopicPartition]:
        from connectors.kafka_admin import admin_client

        topics = admin_client(settings.bootstrap_servers).list_topics(timeout=10).topics
        partitions = [
            TopicPartition(topic, p)
            for topic in (EVENTS_SETTINGS, USERS_PROFILES)
            if topic in topics
            for p in sorted(topics[topic].partitions)
        ]
        if not partitions:
            raise RuntimeError(f"topics {EVENTS_SETTINGS} and {USERS_PROFILES} not found")
        return partitions

    async def sync(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything written to the state topics until now is applied.

        For a comment naming an event this worker does not know (yet): the event may
        have been created a moment ago. Returns False if the deadline passed first.
        """
        consumer = self._consumer
        if consumer is None:
            return False
        partitions = list(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            positions = [await consumer.position(tp) for tp in partitions]
            if all(pos >= ends[tp] for pos, tp in zip(positions, partitions, strict=True)):
                await asyncio.sleep(0)  # let the follower apply what it fetched last
                return True
            await asyncio.sleep(0.02)
        return False

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._consumer:
            await self._consumer.stop()

    async def _follow(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        pending = {tp for tp, end in ends.items() if end > 0}
        if not pending:
            self.ready.set()
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    self._apply(tp.topic, record.key, record.value)
                if records:
                    self.applied[f"{tp.topic}/{tp.partition}"] = records[-1].offset + 1
                if tp in pending and records and records[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
            if pending and not batches:
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
            if not pending and not self.ready.is_set():
                log.info(
                    "global state loaded: %d events, %d users", len(self.events), len(self.users)
                )
                self.ready.set()

    def _apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        ident = key.decode()
        table: dict[str, Any] = self.events if topic == EVENTS_SETTINGS else self.users
        if value is None:
            table.pop(ident, None)
            return
        try:
            record = self._codec.decode(value)
        except CodecError as e:
            log.error("skipping undecodable %s record %r: %s", topic, ident, e)
            return
        if isinstance(record, LiveEvent | UserProfile):
            table[ident] = record
