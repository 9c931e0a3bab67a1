"""Reading a range of one partition, outside any consumer group (librdkafka).

A worker that takes a partition over rebuilds what it keeps in memory about the
partition's recent past (each user's recent posts: rate limit, slow mode, duplicates,
strikes) from the log itself: the records just before the offset it resumes from.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from deploy.settings import Settings

Record = tuple[int, bytes | None, int]  # offset, value, timestamp ms


def read_range(
    settings: Settings, topic: str, partition: int, start: int, end: int, timeout_s: float = 30.0
) -> list[Record]:
    """Records of ``topic``/``partition`` with ``start <= offset < end`` (blocking: call
    it in a thread). Fewer if the log no longer has them (retention) or the deadline
    passed: the caller gets the recent past it could read, in offset order."""
    if end <= start:
        return []
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            # assign() never joins this group; the id is required, never committed.
            "group.id": f"livecomments-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    out: list[Record] = []
    try:
        consumer.assign([TopicPartition(topic, partition, max(start, 0) or OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            messages = consumer.consume(num_messages=5000, timeout=0.5)
            done = False
            for m in messages:
                error = m.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:  # nothing more there
                        done = True
                        break
                    continue
                offset = m.offset()
                if offset is None:
                    continue
                if offset >= end:
                    done = True
                    break
                if offset >= start:
                    out.append((offset, m.value(), m.timestamp()[1]))
            if done:
                break
    finally:
        consumer.close()
    return out
