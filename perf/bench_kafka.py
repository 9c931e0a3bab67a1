"""kafka-baseline: what raw confluent-kafka does on this stack, for ratios."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic

from connectors.kafka_admin import admin_client
from connectors.kafka_clients import producer_config
from deploy.settings import Settings

TOPIC = "perf.baseline"


def ensure_topic(settings: Settings) -> None:
    admin = admin_client(settings.bootstrap_servers)
    if TOPIC not in admin.list_topics(timeout=10).topics:
        futures = admin.create_topics(
            [NewTopic(TOPIC, settings.partitions_comments, 1, config={"retention.ms": "3600000"})]
        )
        for f in futures.values():
            f.result(30)


def produce_rate(settings: Settings, n: int, size: int = 200) -> float:
    producer = Producer(producer_config(settings, **{"queue.buffering.max.messages": 2_000_000}))
    value = b"x" * size
    t0 = time.perf_counter()
    for i in range(n):
        while True:
            try:
                producer.produce(TOPIC, key=f"event-{i % 50}".encode(), value=value)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)
    return n / (time.perf_counter() - t0)


def consume_rate(settings: Settings, n: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"perf-{uuid.uuid4().hex}",
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([TOPIC])
    while not consumer.assignment():
        consumer.poll(0.2)
    time.sleep(1.0)  # let the assignment settle at the end of the log before producing
    produce_rate(settings, n)
    got = 0
    t0 = time.perf_counter()
    while got < n:
        msgs = consumer.consume(10_000, timeout=2.0)
        if not msgs:
            break
        got += sum(1 for m in msgs if not m.error())
    elapsed = time.perf_counter() - t0
    consumer.close()
    return got / elapsed if elapsed > 0 else 0.0


def run(settings: Settings, quick: bool) -> dict[str, Any]:
    n = 100_000 if quick else 500_000
    ensure_topic(settings)
    produce = produce_rate(settings, n)
    consume = consume_rate(settings, n)
    return {
        "bench": "kafka-baseline",
        "quick": quick,
        "params": {
            "messages": n,
            "value_bytes": 200,
            "acks": "all",
            "idempotence": True,
            "linger_ms": 5,
            "partitions": settings.partitions_comments,
        },
        "metrics": {"produce_msgs_per_s": round(produce), "consume_msgs_per_s": round(consume)},
        "notes": [
            "confluent-kafka on loopback against the stack's single broker; the whole "
            "stack shares the machine's cores"
        ],
    }
