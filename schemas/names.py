"""Names every layer spells the same way: topics, their key fields, the Avro namespace.

This module imports no project module (and nothing beyond the standard library), so
schemas, connectors, topologies and gateways can all read it without an import running
up the layers. Topic *configuration* (partitions, retention, compression) is deployment
policy and lives in ``connectors.topics``; what a topic *is* lives here.
"""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE = "livecomments.v1"
"""Avro namespace of every record schema (``livecomments.v1.CommentPublished``)."""

COMMENTS_SUBMITTED = "comments.submitted"
COMMENTS_PUBLISHED = "comments.published"
# The topic keeps its historical name (renaming a topic is a data migration); it
# carries the moderator's removals and bans.
COMMENTS_RETRACTED = "comments.retracted"
COMMENTS_REJECTED = "comments.rejected"
COMMENTS_DELIVERED = "comments.delivered"
MODERATION_EVENTS = "moderation.events"
ANALYTICS_EVENTS = "analytics.events"
EVENTS_SETTINGS = "events.settings"
USERS_PROFILES = "users.profiles"

EVENT_ID = "event_id"
USER_ID = "user_id"
EVENT_TYPE = "event_type"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic: its name, the value field its key is taken from, its value schema."""

    topic: str
    key_field: str
    value_schema: str
    """Avro full name of the value schema."""
    doc: str = ""

    @property
    def name(self) -> str:
        """The topic name (the spelling ``connectors.topics`` and Kafka use)."""
        return self.topic

    def subject(self, topic_prefix: str = "") -> str:
        """Registry subject of the value schema (TopicNameStrategy)."""
        return f"{topic_prefix}{self.topic}-value"

    def key_of(self, record: object) -> bytes | None:
        """The Kafka key for ``record``: its key field as UTF-8, or None if unset."""
        value = getattr(record, self.key_field)
        return None if value is None else str(value).encode()


def _spec(topic: str, key_field: str, record: str, doc: str) -> TopicSpec:
    return TopicSpec(topic, key_field, f"{NAMESPACE}.{record}", doc)


TOPICS: tuple[TopicSpec, ...] = (
    _spec(
        COMMENTS_SUBMITTED,
        EVENT_ID,
        "CommentSubmitted",
        "write path: CommentSubmitted from the gateways",
    ),
    _spec(
        MODERATION_EVENTS,
        USER_ID,
        "CommentModerated",
        "CommentModerated: the audit of every decision",
    ),
    _spec(
        COMMENTS_PUBLISHED,
        EVENT_ID,
        "CommentPublished",
        "replay tier: CommentPublished with position and epoch",
    ),
    _spec(
        COMMENTS_RETRACTED,
        EVENT_ID,
        "CommentRetracted",
        "CommentRetracted: removals and bans, to every tier",
    ),
    _spec(
        COMMENTS_DELIVERED,
        EVENT_ID,
        "CommentDelivered",
        "CommentDelivered: delivery receipts from the gateways",
    ),
    _spec(COMMENTS_REJECTED, EVENT_ID, "CommentRejected", "dead letters with a reason code"),
    _spec(
        ANALYTICS_EVENTS,
        EVENT_TYPE,
        "AnalyticsEvent",
        "AnalyticsEvent windows for data teams",
    ),
    _spec(
        EVENTS_SETTINGS,
        EVENT_ID,
        "LiveEvent",
        "LiveEvent: event-sourced state of events (compacted)",
    ),
    _spec(
        USERS_PROFILES,
        USER_ID,
        "UserProfile",
        "UserProfile: event-sourced state of users (compacted)",
    ),
)
"""Every topic of the platform, one spec each."""

TOPICS_BY_NAME: dict[str, TopicSpec] = {spec.topic: spec for spec in TOPICS}
