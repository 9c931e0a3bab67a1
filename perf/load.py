"""Synthetic load: events and comments written to the real topics, with their acks.

A comment counts as *acknowledged* when Kafka acknowledged its CommentSubmitted
(acks=all, idempotent producer) — the same moment a gateway acks a poster.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from connectors.kafka_clients import producer_config
from connectors.state_writer import StateWriter
from connectors.topics import COMMENTS_SUBMITTED
from deploy.settings import Settings
from schemas.codec import AvroCodec
from schemas.records import CommentSubmitted, EventStatus, LiveEvent

PHRASES = (
    "What a goal!",
    "Unbelievable save by the keeper",
    "¡Qué golazo!",
    "Quel match incroyable",
    "Was für ein Spiel",
    "这球太漂亮了",
    "すごい",
    "Que jogada linda",
    "Come on you reds",
    "Referee needs glasses",
    "Best concert ever 🎶",
    "Drop the beat!!",
    "GG well played",
)


@dataclass(slots=True)
class Acked:
    comment_id: str
    event_id: str
    partition: int
    offset: int
    submitted_at: int


@dataclass
class LoadResult:
    acked: list[Acked] = field(default_factory=list)
    failed: int = 0
    unresolved: int = 0  # neither acked nor failed when the final flush gave up
    started: float = 0.0
    finished: float = 0.0

    @property
    def seconds(self) -> float:
        return self.finished - self.started


def make_events(settings: Settings, codec: AvroCodec, count: int, prefix: str) -> list[str]:
    writer = StateWriter(settings, codec)
    ids = [f"{prefix}-{i:04d}" for i in range(count)]
    now = int(time.time() * 1000)
    for event_id in ids:
        writer.put_event(
            LiveEvent(
                event_id=event_id,
                title=f"Load {event_id}",
                status=EventStatus.LIVE,
                created_at=now,
                updated_at=now,
            )
        )
    return ids


def comments(events: list[str], total: int, users: int = 5000) -> Iterator[CommentSubmitted]:
    run = uuid.uuid4().hex[:8]
    for i in range(total):
        yield CommentSubmitted(
            comment_id=f"{run}-{i:08d}",
            event_id=events[i % len(events)],
            user_id=f"user-{(i * 7919) % users}",
            text=PHRASES[i % len(PHRASES)],
            submitted_at=int(time.time() * 1000),
            gateway_id="perf",
        )


def produce(
    settings: Settings,
    codec: AvroCodec,
    items: Iterator[CommentSubmitted],
    *,
    rate: float = 0.0,
    raw_extra: list[tuple[bytes, bytes]] | None = None,
    flush_timeout_s: float = 330.0,
) -> LoadResult:
    """Write every comment (paced at ``rate`` per second if > 0) and wait for the acks."""
    result = LoadResult()
    producer = Producer(producer_config(settings, **{"queue.buffering.max.messages": 1_000_000}))

    def on_delivery(err: Any, msg: Any, c: CommentSubmitted) -> None:
        if err is not None:
            result.failed += 1
            return
        result.acked.append(
            Acked(c.comment_id, c.event_id, msg.partition(), msg.offset(), c.submitted_at)
        )

    def callback(c: CommentSubmitted) -> Callable[[Any, Any], None]:
        return lambda err, msg: on_delivery(err, msg, c)

    result.started = time.perf_counter()
    for sent, c in enumerate(items):
        if rate > 0:
            due = result.started + sent / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            c = CommentSubmitted(**{**c.to_avro(), "submitted_at": int(time.time() * 1000)})
        while True:
            try:
                producer.produce(
                    COMMENTS_SUBMITTED,
                    key=c.event_id.encode(),
                    value=codec.encode(COMMENTS_SUBMITTED, c),
                    on_delivery=callback(c),
                )
                break
            except BufferError:
                producer.poll(0.05)
        if sent % 1000 == 999:
            producer.poll(0)
    for key, value in raw_extra or []:
        producer.produce(COMMENTS_SUBMITTED, key=key, value=value)
    # Until every comment is acked or has failed: librdkafka gives up on a message after
    # its message.timeout.ms (300 s by default), so a broker that is down for minutes
    # (the restart_kafka drill) ends in failures, not in comments left uncounted.
    result.unresolved = producer.flush(flush_timeout_s)
    result.finished = time.perf_counter()
    return result
