"""Writing the event-sourced state of events and users (compacted topics).

``events.settings`` holds each event's current :class:`LiveEvent`, ``users.profiles``
each user's :class:`UserProfile`; the newest record per key wins. Workers follow both
topics (``connectors/state_reader.py``), so a change reaches validate and moderate within a
moment, without a restart.
"""

from __future__ import annotations

from typing import Any, TypeVar

from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.kafka_clients import producer_config
from connectors.topics import EVENTS_SETTINGS, USERS_PROFILES
from deploy.settings import Settings
from schemas.codec import AvroCodec
from schemas.records import LiveEvent, UserProfile

R = TypeVar("R", LiveEvent, UserProfile)


class StateWriter:
    def __init__(self, settings: Settings, codec: AvroCodec) -> None:
        self._settings = settings
        self._codec = codec
        self._producer = Producer(producer_config(settings))

    def put_event(self, event: LiveEvent) -> None:
        self._put(EVENTS_SETTINGS, event.event_id, event)

    def put_user(self, user: UserProfile) -> None:
        self._put(USERS_PROFILES, user.user_id, user)

    def _put(self, topic: str, key: str, record: Any) -> None:
        errors: list[str] = []
        self._producer.produce(
            topic,
            key=key.encode(),
            value=self._codec.encode(topic, record),
            on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
        )
        if self._producer.flush(30) != 0 or errors:
            raise RuntimeError(f"writing {topic}/{key} failed: {errors or 'timeout'}")

    def get_event(self, event_id: str) -> LiveEvent | None:
        return self._latest(EVENTS_SETTINGS, event_id, LiveEvent)

    def get_user(self, user_id: str) -> UserProfile | None:
        return self._latest(USERS_PROFILES, user_id, UserProfile)

    def _latest(self, topic: str, key: str, record_type: type[R]) -> R | None:
        """The newest record for ``key``: scans the (compacted, small) topic."""
        consumer = Consumer(
            {
                "bootstrap.servers": self._settings.bootstrap_servers,
                "group.id": "livecomments-state-reader",
                "enable.auto.commit": False,
            }
        )
        try:
            md = consumer.list_topics(topic, timeout=10).topics[topic]
            found: bytes | None = None
            wanted = key.encode()
            for p in md.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                low, high = int(low or 0), int(high or 0)
                if high <= low:
                    continue
                consumer.assign([TopicPartition(topic, p, low)])
                while True:
                    msg = consumer.poll(5.0)
                    if msg is None:
                        break
                    if msg.error():
                        continue
                    if msg.key() == wanted:
                        found = msg.value()
                    if (msg.offset() or 0) >= high - 1:
                        break
            if found is None:
                return None
            return self._codec.decode_as(found, record_type)
        finally:
            consumer.close()
