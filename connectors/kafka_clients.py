"""Kafka client configs shared by every producer of the project.

Every producer must put an event's records in the same partition, whatever its client
library: positions are offsets inside one partition. aiokafka and Faust hash keys with
Java's murmur2; librdkafka's default (``consistent_random``, CRC32) would send the same
``event_id`` elsewhere, so confluent-kafka producers are set to ``murmur2_random``.
"""

from __future__ import annotations

from typing import Any

from deploy.settings import Settings


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "partitioner": "murmur2_random",
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "snappy",
    }
    config.update(overrides)
    return config
