"""Every Kafka topic of the product with its partitions and configs (DESIGN.md, Topics).

What a topic is (name, key field, value schema) is spelled once in ``schemas.names``;
this module adds how it is deployed. Partition counts come from settings: production
uses the DESIGN.md figures (100 for the comment topics); a laptop uses a handful.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deploy.settings import Settings
from schemas.names import (
    ANALYTICS_EVENTS,
    COMMENTS_DELIVERED,
    COMMENTS_PUBLISHED,
    COMMENTS_REJECTED,
    COMMENTS_RETRACTED,
    COMMENTS_SUBMITTED,
    EVENTS_SETTINGS,
    MODERATION_EVENTS,
    TOPICS_BY_NAME,
    USERS_PROFILES,
    TopicSpec,
)

# Re-exported: callers have long imported topic names from here.
__all__ = [
    "ANALYTICS_EVENTS",
    "COMMENTS_DELIVERED",
    "COMMENTS_PUBLISHED",
    "COMMENTS_REJECTED",
    "COMMENTS_RETRACTED",
    "COMMENTS_SUBMITTED",
    "DAY_MS",
    "EVENTS_SETTINGS",
    "HOUR_MS",
    "MODERATION_EVENTS",
    "USERS_PROFILES",
    "KafkaTopic",
    "TopicSpec",
    "kafka_topics",
]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True, slots=True)
class KafkaTopic:
    """A topic as created in Kafka: its spec plus partitions and topic configs."""

    spec: TopicSpec
    partitions: int
    config: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.topic

    @property
    def key(self) -> str:
        return self.spec.key_field

    @property
    def doc(self) -> str:
        return self.spec.doc


def kafka_topics(settings: Settings) -> list[KafkaTopic]:
    comments = settings.partitions_comments
    min_isr = str(min(2, settings.replication_factor))

    def log(retention_ms: int, compression: str) -> dict[str, str]:
        return {
            "cleanup.policy": "delete",
            "retention.ms": str(retention_ms),
            "compression.type": compression,
            "min.insync.replicas": min_isr,
        }

    compacted = {
        "cleanup.policy": "compact",
        "min.compaction.lag.ms": "0",
        "segment.ms": str(HOUR_MS),
        "min.insync.replicas": min_isr,
    }
    layout: list[tuple[str, int, dict[str, str]]] = [
        (COMMENTS_SUBMITTED, comments, log(DAY_MS, "snappy")),
        (COMMENTS_PUBLISHED, comments, log(DAY_MS, "snappy")),
        (COMMENTS_RETRACTED, comments, log(7 * DAY_MS, "snappy")),
        (COMMENTS_DELIVERED, comments, log(7 * DAY_MS, "lz4")),
        # The same codec as comments.published: a batch's records share one producer,
        # so one produce request per batch instead of one per codec.
        (COMMENTS_REJECTED, settings.partitions_rejected, log(7 * DAY_MS, "snappy")),
        (MODERATION_EVENTS, settings.partitions_moderation, log(7 * DAY_MS, "snappy")),
        (ANALYTICS_EVENTS, settings.partitions_analytics, log(30 * DAY_MS, "lz4")),
        (EVENTS_SETTINGS, settings.partitions_state, dict(compacted)),
        (USERS_PROFILES, settings.partitions_state, dict(compacted)),
    ]
    return [KafkaTopic(TOPICS_BY_NAME[name], parts, config) for name, parts, config in layout]
