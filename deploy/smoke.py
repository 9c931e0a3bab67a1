"""`livecomments smoke`: one comment through every real server of the stack and back.

Kafka (Avro in the Confluent wire format, schema from the registry), Cassandra and
Redis each answer a write and a read. Prints one line per step with its milliseconds;
exits non-zero naming the step that failed.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, TextIO

from deploy.settings import Settings


def run(settings: Settings, out: TextIO = sys.stdout) -> int:
    from cassandra.cluster import Cluster
    from confluent_kafka import Consumer, Producer, TopicPartition
    from redis import Redis

    from connectors.topics import COMMENTS_SUBMITTED
    from schemas.codec import AvroCodec
    from schemas.records import CommentSubmitted

    marker = uuid.uuid4().hex[:12]
    comment = CommentSubmitted(
        comment_id=f"smoke-{marker}",
        event_id=f"smoke-event-{marker}",
        user_id="smoke-user",
        text="Hello from the smoke test 👋",
        submitted_at=int(time.time() * 1000),
        gateway_id="smoke",
    )

    def step(name: str, fn: Callable[[], str]) -> None:
        t0 = time.perf_counter()
        detail = fn()
        out.write(f"  {name:<28} {(time.perf_counter() - t0) * 1000:8.1f} ms  {detail}\n")

    with AvroCodec(settings) as codec:
        step("registry: schemas", lambda: f"{len(codec.register_all())} subjects")
        payload = codec.encode(COMMENTS_SUBMITTED, comment)

        delivered: list[tuple[Any, Any]] = []

        def produce() -> str:
            producer = Producer(
                {
                    "bootstrap.servers": settings.bootstrap_servers,
                    "acks": "all",
                    "enable.idempotence": True,
                }
            )
            producer.produce(
                COMMENTS_SUBMITTED,
                key=comment.event_id.encode(),
                value=payload,
                on_delivery=lambda err, msg: (
                    delivered.append((msg.partition(), msg.offset())) if err is None else None
                ),
            )
            producer.flush(30)
            if not delivered:
                raise RuntimeError("Kafka did not acknowledge the record")
            return f"acked at partition {delivered[0][0]} offset {delivered[0][1]}"

        def consume() -> str:
            partition, offset = delivered[0]
            consumer = Consumer(
                {
                    "bootstrap.servers": settings.bootstrap_servers,
                    "group.id": f"smoke-{marker}",
                    "enable.auto.commit": False,
                }
            )
            consumer.assign([TopicPartition(COMMENTS_SUBMITTED, partition, offset)])
            try:
                msg = consumer.poll(10.0)
            finally:
                consumer.close()
            if msg is None or msg.error():
                raise RuntimeError(f"could not read the record back: {msg and msg.error()}")
            back = codec.decode_as(msg.value() or b"", CommentSubmitted)
            if back != comment:
                raise RuntimeError("the record read back differs from the one written")
            return "decoded, equal to what was written"

        step("kafka: produce (acks=all)", produce)
        step("kafka: consume + decode", consume)

    def cassandra() -> str:
        from datetime import UTC, datetime

        published = datetime.fromtimestamp(comment.submitted_at / 1000, tz=UTC)
        cluster = Cluster(settings.cassandra_contact_points, port=settings.cassandra_port)
        try:
            session = cluster.connect(settings.cassandra_keyspace)
            session.execute(
                "INSERT INTO comments_by_user (user_id, submitted_at, comment_id, event_id, "
                "position) VALUES (%s, %s, %s, %s, %s) USING TTL 3600",
                (comment.user_id, published, comment.comment_id, comment.event_id, delivered[0][1]),
            )
            row = session.execute(
                "SELECT event_id FROM comments_by_user "
                "WHERE user_id = %s AND submitted_at = %s AND comment_id = %s",
                (comment.user_id, published, comment.comment_id),
            ).one()
        finally:
            cluster.shutdown()
        if row is None or row.event_id != comment.event_id:
            raise RuntimeError("the row read back differs")
        return "row written and read"

    def redis() -> str:
        key = f"smoke:{marker}"
        with Redis.from_url(settings.redis_address) as r:
            r.xadd(key, {"comment_id": comment.comment_id}, id=f"{delivered[0][1] + 1}-0")
            entries = r.xrange(key)
            r.delete(key)
        if len(entries) != 1:
            raise RuntimeError("the stream entry was not read back")
        return "stream entry written and read"

    step("cassandra: upsert + read", cassandra)
    step("redis: xadd + xrange", redis)
    out.write("smoke: every server answered\n")
    return 0
