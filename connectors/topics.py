"""Every Kafka topic of the product, with its key and configs (DESIGN.md, Topics).

The one place topic names are spelled. Partition counts come from settings: production
uses the DESIGN.md figures (100 for the comment topics); a laptop uses a handful.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deploy.settings import Settings

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

COMMENTS_SUBMITTED = "comments.submitted"
COMMENTS_PUBLISHED = "comments.published"
COMMENTS_RETRACTED = "comments.retracted"
COMMENTS_REJECTED = "comments.rejected"
COMMENTS_DELIVERED = "comments.delivered"
MODERATION_EVENTS = "moderation.events"
ANALYTICS_EVENTS = "analytics.events"
EVENTS_SETTINGS = "events.settings"
USERS_PROFILES = "users.profiles"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    key: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    doc: str = ""


def topic_specs(settings: Settings) -> list[TopicSpec]:
    comments = settings.partitions_comments

    def log(retention_ms: int, compression: str) -> dict[str, str]:
        return {
            "cleanup.policy": "delete",
            "retention.ms": str(retention_ms),
            "compression.type": compression,
            "min.insync.replicas": str(min(2, settings.replication_factor)),
        }

    compacted = {
        "cleanup.policy": "compact",
        "min.compaction.lag.ms": "0",
        "segment.ms": str(HOUR_MS),
        "min.insync.replicas": str(min(2, settings.replication_factor)),
    }
    return [
        TopicSpec(
            COMMENTS_SUBMITTED,
            "event_id",
            comments,
            log(DAY_MS, "snappy"),
            "write path: CommentSubmitted from the gateways",
        ),
        TopicSpec(
            COMMENTS_PUBLISHED,
            "event_id",
            comments,
            log(DAY_MS, "snappy"),
            "replay tier: CommentPublished with position and epoch",
        ),
        TopicSpec(
            COMMENTS_RETRACTED,
            "event_id",
            comments,
            log(7 * DAY_MS, "snappy"),
            "CommentRetracted: removals and bans, to every tier",
        ),
        TopicSpec(
            COMMENTS_DELIVERED,
            "event_id",
            comments,
            log(7 * DAY_MS, "lz4"),
            "CommentDelivered: delivery receipts from the gateways",
        ),
        TopicSpec(
            COMMENTS_REJECTED,
            "event_id",
            settings.partitions_rejected,
            # The same codec as comments.published: a batch's records share one producer,
            # so one produce request per batch instead of one per codec.
            log(7 * DAY_MS, "snappy"),
            "dead letters with a reason code",
        ),
        TopicSpec(
            MODERATION_EVENTS,
            "user_id",
            settings.partitions_moderation,
            log(7 * DAY_MS, "snappy"),
            "CommentModerated: the audit of every decision",
        ),
        TopicSpec(
            ANALYTICS_EVENTS,
            "event_type",
            settings.partitions_analytics,
            log(30 * DAY_MS, "lz4"),
            "AnalyticsEvent windows for data teams",
        ),
        TopicSpec(
            EVENTS_SETTINGS,
            "event_id",
            settings.partitions_state,
            dict(compacted),
            "LiveEvent: event-sourced state of events (compacted)",
        ),
        TopicSpec(
            USERS_PROFILES,
            "user_id",
            settings.partitions_state,
            dict(compacted),
            "UserProfile: event-sourced state of users (compacted)",
        ),
    ]
