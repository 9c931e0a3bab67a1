"""Typed Python records for the Avro schemas in ``schemas/avro``.

One frozen dataclass per schema, with the same name and the same field names, so a
field means the same thing in the schema, the code and the docs. Each record converts
itself with ``to_avro()`` (a dict fastavro writes) and ``from_avro(datum)`` (from the
dict fastavro reads).

Representation choices, made for the per-comment hot path:

- Times are ``int`` milliseconds since the Unix epoch, UTC (:data:`EpochMillis`), the
  very value Avro's ``timestamp-millis`` stores. No ``datetime`` is built per record; the
  codec reads and writes timestamps as plain longs (see ``catalog.parse_wire_schema``).
  Stock Avro consumers still see the logical type and get datetimes.
- Avro enums are :class:`enum.StrEnum`, so a member is its symbol string and fastavro
  writes it as is.
- Avro arrays are tuples (immutable like the record); Avro maps are plain dicts typed
  as read-only ``Mapping``. Treat them as read-only: records are values.
- Conversions are written out field by field rather than generated from the dataclass
  fields: it is the cheapest form, and ``tests/unit/test_records.py`` checks that the
  field names match the schema, so the explicit lists cannot drift unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol, Self, TypeAlias, TypeVar

from schemas.names import NAMESPACE

EpochMillis: TypeAlias = int
"""UTC milliseconds since the Unix epoch (Avro ``timestamp-millis``)."""


class AvroRecord(Protocol):
    """What the codec needs from a record class."""

    SCHEMA_NAME: ClassVar[str]

    def to_avro(self) -> dict[str, Any]: ...

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> Self: ...


R = TypeVar("R", bound=AvroRecord)


class Decision(StrEnum):
    APPROVE = "APPROVE"
    HOLD_FOR_REVIEW = "HOLD_FOR_REVIEW"
    BLOCK = "BLOCK"


class RetractionScope(StrEnum):
    COMMENT = "COMMENT"
    USER_COMMENTS = "USER_COMMENTS"


class ReviewDecision(StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


class EventStatus(StrEnum):
    SCHEDULED = "SCHEDULED"
    LIVE = "LIVE"
    ENDED = "ENDED"


class Strictness(StrEnum):
    RELAXED = "RELAXED"
    STANDARD = "STANDARD"
    STRICT = "STRICT"


class LinkPolicy(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    ALLOW_LIST = "ALLOW_LIST"


@dataclass(frozen=True, slots=True, kw_only=True)
class Review:
    """A moderator's decision about a held comment (nested in ``CommentSubmitted``)."""

    decision: ReviewDecision
    reviewed_by: str
    reviewed_at: EpochMillis
    held_position: int

    def to_avro(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reviewed_by": self.reviewed_by,
            "reviewed_at": self.reviewed_at,
            "held_position": self.held_position,
        }

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> Self:
        return cls(
            decision=ReviewDecision(datum["decision"]),
            reviewed_by=datum["reviewed_by"],
            reviewed_at=datum["reviewed_at"],
            held_position=datum["held_position"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CommentSubmitted:
    """A viewer posted a comment and a gateway accepted it (``comments.submitted``)."""

    SCHEMA_NAME: ClassVar[str] = f"{NAMESPACE}.CommentSubmitted"

    comment_id: str
    event_id: str
    user_id: str
    text: str
    client_nonce: str | None = None
    reply_to: str | None = None
    submitted_at: EpochMillis
    gateway_id: str
    trace_parent: str | None = None
    language_hint: str | None = None
    # Set: a moderator's decision about the held comment ``comment_id``, not a post.
    review: Review | None = None

    def to_avro(self) -> dict[str, Any]:
        return {
            "comment_id": self.comment_id,
            "event_id": self.event_id,
            "user_id": self.user_id,
            "text": self.text,
            "client_nonce": self.client_nonce,
            "reply_to": self.reply_to,
            "submitted_at": self.submitted_at,
            "gateway_id": self.gateway_id,
            "trace_parent": self.trace_parent,
            "language_hint": self.language_hint,
            "review": None if self.review is None else self.review.to_avro(),
        }

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> Self:
        return cls(
            comment_id=datum["comment_id"],
            event_id=datum["event_id"],
            user_id=datum["user_id"],
            text=datum["text"],
            client_nonce=datum["client_nonce"],
            reply_to=datum["reply_to"],
            submitted_at=datum["submitted_at"],
            gateway_id=datum["gateway_id"],
            trace_parent=datum["trace_parent"],
            language_hint=datum["language_hint"],
            review=None if datum.get("review") is None else Review.from_avro(datum["review"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CommentModerated:
    """Moderation's decision about a comment (``moderation.events``).

    Repeats the submitted comment's fields (see the schema's doc for why), so a held
    comment approved later is published from this record alone: :meth:`submitted`
    gives the original back.
    """

    SCHEMA_NAME: ClassVar[str] = f"{NAMESPACE}.CommentModerated"

    comment_id: str
    event_id: str
    user_id: str
    decision: Decision
    scores: Mapping[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    language: str | None = None
    moderated_at: EpochMillis
    latency_ms: float = 0.0
    engine_version: str
    reviewed_by: str | None = None
    text: str
    client_nonce: str | None = None
    reply_to: str | None = None
    submitted_at: EpochMillis
    gateway_id: str
    trace_parent: str | None = None
    language_hint: str | None = None

    @classmethod
    def of(
        cls,
        submitted: CommentSubmitted,
        *,
        decision: Decision,
        moderated_at: EpochMillis,
        engine_version: str,
        scores: Mapping[str, float] | None = None,
        reasons: tuple[str, ...] = (),
        language: str | None = None,
        latency_ms: float = 0.0,
        reviewed_by: str | None = None,
    ) -> Self:
        """The decision about ``submitted``, carrying its fields along."""
        return cls(
            comment_id=submitted.comment_id,
            event_id=submitted.event_id,
            user_id=submitted.user_id,
            decision=decision,
            scores={} if scores is None else scores,
            reasons=reasons,
            language=language,
            moderated_at=moderated_at,
            latency_ms=latency_ms,
            engine_version=engine_version,
            reviewed_by=reviewed_by,
            text=submitted.text,
            client_nonce=submitted.client_nonce,
            reply_to=submitted.reply_to,
            submitted_at=submitted.submitted_at,
            gateway_id=submitted.gateway_id,
            trace_parent=submitted.trace_parent,
            language_hint=submitted.language_hint,
        )

    def submitted(self) -> CommentSubmitted:
        """The comment as it was submitted, rebuilt from the repeated fields."""
        return CommentSubmitted(
            comment_id=self.comment_id,
            event_id=self.event_id,
            user_id=self.user_id,
            text=self.text,
            client_nonce=self.client_nonce,
            reply_to=self.reply_to,
            submitted_at=self.submitted_at,
            gateway_id=self.gateway_id,
            trace_parent=self.trace_parent,
            language_hint=self.language_hint,
        )

    def to_avro(self) -> dict[str, Any]:
        return {
            "comment_id": self.comment_id,
            "event_id": self.event_id,
            "user_id": self.user_id,
            "decision": self.decision,
            "scores": self.scores,
            "reasons": self.reasons,
            "language": self.language,
            "moderated_at": self.moderated_at,
            "latency_ms": self.latency_ms,
            "engine_version": self.engine_version,
            "reviewed_by": self.reviewed_by,
            "text": self.text,
            "client_nonce": self.client_nonce,
            "reply_to": self.reply_to,
            "submitted_at": self.submitted_at,
            "gateway_id": self.gateway_id,
            "trace_parent": self.trace_parent,
            "language_hint": self.language_hint,
        }

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> Self:
        return cls(
            comment_id=datum["comment_id"],
            event_id=datum["event_id"],
            user_id=datum["user_id"],
            decision=Decision(datum["decision"]),
            scores=datum["scores"],
            reasons=tuple(datum["reasons"]),
            language=datum["language"],
            moderated_at=datum["moderated_at"],
            latency_ms=datum["latency_ms"],
            engine_version=datum["engine_version"],
            reviewed_by=datum["reviewed_by"],
            text=datum["text"],
            client_nonce=datum["client_nonce"],
            reply_to=datum["reply_to"],
            submitted_at=datum["submitted_at"],
            gateway_id=datum["gateway_id"],
            trace_parent=datum["trace_parent"],
            language_hint=datum["language_hint"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CommentPublished:
    """A comment visible to every viewer of its event (``comments.published``)."""

    SCHEMA_NAME: ClassVar[str] = f"{NAMESPACE}.CommentPublished"

    comment_id: str
    event_id: str
    user_id: str
    display_name: str
    roles: tuple[str, ...] = ()
    badges: tuple[str, ...] = ()
    text: str
    reply_to: str | None = None
    language: str | None = None
    position: int
    previous_position: int | None = None
    epoch: int
    submitted_at: EpochMillis
    published_at: EpochMillis
    trace_parent: str | None = None
    # Set: a shadow comment of a hidden user, shown to this user (its author) alone.
    visible_to: str | None = None

    def to_avro(self) -> dict[str, Any]:
        return {
            "comment_id": self.comment_id,
            "event_id": self.event_id,
            "user_id": self.user_id,
            "display_name": self.display_name,
            "roles": self.roles,
            "badges": self.badges,
            "text": self.text,
            "reply_to": self.reply_to,
            "language": self.language,
            "position": self.position,
            "previous_position": self.previous_position,
            "epoch": self.epoch,
            "submitted_at": self.submitted_at,
            "published_at": self.published_at,
            "trace_parent": self.trace_parent,
            "visible_to": self.visible_to,
        }

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> Self:
        return cls(
            comment_id=datum["comment_id"],
            event_id=datum["event_id"],
            user_id=datum["user_id"],
            display_name=datum["display_name"],
            roles=tuple(datum["roles"]),
            badges=tuple(datum["badges"]),
            text=datum["text"],
            reply_to=datum["reply_to"],
            language=datum["language"],
            position=datum["position"],
            previous_position=datum["previous_position"],
            epoch=datum["epoch"],
            submitted_at=datum["submitted_at"],
            published_at=datum["published_at"],
            trace_parent=datum["trace_parent"],
            visible_to=datum.get("visible_to"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CommentRetracted:
    """Published comments were removed (``comments.retracted``)."""

    SCHEMA_NAME: ClassVar[str] = f"{NAMESPACE}.CommentRetracted"

    event_id: str
    scope: RetractionScope = RetractionScope.COMMENT
    comment_id: str | None = None
    user_id: str
    position: int | None = None
    reason: str
    actor: str
    retracted_at: EpochMillis

    def to_avro(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "scope": self.scope,
            "comment_id": self.comment_id,
            "user_id": self.user_id,
            "position": self.position,
            "reason": self.reason,
            "actor": self.actor,
            "retracted_at": self.retracted_at,
        }

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> Self:
        return cls(
            event_id=datum["event_id"],
            scope=RetractionScope(datum["scope"]),
            comment_id=datum["comment_id"],
            user_id=datum["user_id"],
            position=datum["position"],
            reason=datum["reason"],
            actor=datum["actor"],
            retracted_at=datum["retracted_at"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CommentDelivered:
    """A gateway delivered a comment to its viewers (``comments.delivered``)."""

    SCHEMA_NAME: ClassVar[str] = f"{NAMESPACE}.CommentDelivered"

    comment_id: str
    event_id: str
    gateway_id: str
    viewers: int
    delivered_at: EpochMillis
    latency_ms: float

    def to_avro(self) -> dict[str, Any]:
        return {
            "comment_id": self.comment_id,
            "event_id": self.event_id,
            "gateway_id": self.gateway_id,
            "viewers": self.viewers,
            "delivered_at": self.delivered_at,
            "latency_ms": self.latency_ms,
        }

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> Self:
        return cls(
            comment_id=datum["comment_id"],
            event_id=datum["event_id"],
            gateway_id=datum["gateway_id"],
            viewers=datum["viewers"],
            delivered_at=datum["delivered_at"],
            latency_ms=datum["latency_ms"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CommentRejected:
    """A dead letter with its reason and original bytes (``comments.rejected``)."""

    SCHEMA_NAME: ClassVar[str] = f"{NAMESPACE}.CommentRejected"

    reason: str
    detail: str
    stage: str
    event_id: str | None = None
    comment_id: str | None = None
    user_id: str | None = None
    gateway_id: str | None = None
    source_topic: str
    source_partition: int
    source_offset: int
    raw: bytes | None = None
    rejected_at: EpochMillis
    trace_parent: str | None = None

    def to_avro(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "detail": self.detail,
            "stage": self.stage,
            "event_id": self.event_id,
            "comment_id": self.comment_id,
            "user_id": self.user_id,
            "gateway_id": self.gateway_id,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "raw": self.raw,
            "rejected_at": self.rejected_at,
            "trace_parent": self.trace_parent,
        }

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> Self:
        return cls(
            reason=datum["reason"],
            detail=datum["detail"],
            stage=datum["stage"],
            event_id=datum["event_id"],
            comment_id=datum["comment_id"],
            user_id=datum["user_id"],
            gateway_id=datum["gateway_id"],
            source_topic=datum["source_topic"],
            source_partition=datum["source_partition"],
            source_offset=datum["source_offset"],
            raw=datum["raw"],
            rejected_at=datum["rejected_at"],
            trace_parent=datum["trace_parent"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalyticsEvent:
    """Comment counts of one event over one window (``analytics.events``)."""

    SCHEMA_NAME: ClassVar[str] = f"{NAMESPACE}.AnalyticsEvent"

    event_type: str
    event_id: str
    window_start: EpochMillis
    window_end: EpochMillis
    window_s: int
    comments: int
    unique_commenters: int
    languages: Mapping[str, int] = field(default_factory=dict)
    decisions: Mapping[str, int] = field(default_factory=dict)

    def to_avro(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "event_id": self.event_id,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "window_s": self.window_s,
            "comments": self.comments,
            "unique_commenters": self.unique_commenters,
            "languages": self.languages,
            "decisions": self.decisions,
        }

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> Self:
        return cls(
            event_type=datum["event_type"],
            event_id=datum["event_id"],
            window_start=datum["window_start"],
            window_end=datum["window_end"],
            window_s=datum["window_s"],
            comments=datum["comments"],
            unique_commenters=datum["unique_commenters"],
            languages=datum["languages"],
            decisions=datum["decisions"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ModerationThresholds:
    """Score thresholds of the moderation decision; defaults are the platform's."""

    SCHEMA_NAME: ClassVar[str] = f"{NAMESPACE}.ModerationThresholds"

    toxicity_block: float = 0.7
    toxicity_review: float = 0.5
    spam_block: float = 0.8
    spam_review: float = 0.6

    def to_avro(self) -> dict[str, Any]:
        return {
            "toxicity_block": self.toxicity_block,
            "toxicity_review": self.toxicity_review,
            "spam_block": self.spam_block,
            "spam_review": self.spam_review,
        }

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> Self:
        return cls(
            toxicity_block=datum["toxicity_block"],
            toxicity_review=datum["toxicity_review"],
            spam_block=datum["spam_block"],
            spam_review=datum["spam_review"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveEvent:
    """Current settings of a live event (compacted ``events.settings``)."""

    SCHEMA_NAME: ClassVar[str] = f"{NAMESPACE}.LiveEvent"

    event_id: str
    title: str
    status: EventStatus
    created_at: EpochMillis
    updated_at: EpochMillis
    slow_mode_s: int = 0
    anonymous_read: bool = True
    members_only: bool = False
    strictness: Strictness = Strictness.STANDARD
    blocked_terms: tuple[str, ...] = ()
    allowed_terms: tuple[str, ...] = ()
    link_policy: LinkPolicy = LinkPolicy.DENY
    allowed_domains: tuple[str, ...] = ()
    thresholds: ModerationThresholds = ModerationThresholds()
    hot_rate_per_s: int = 100
    deleted: bool = False

    def to_avro(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "title": self.title,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "slow_mode_s": self.slow_mode_s,
            "anonymous_read": self.anonymous_read,
            "members_only": self.members_only,
            "strictness": self.strictness,
            "blocked_terms": self.blocked_terms,
            "allowed_terms": self.allowed_terms,
            "link_policy": self.link_policy,
            "allowed_domains": self.allowed_domains,
            "thresholds": self.thresholds.to_avro(),
            "hot_rate_per_s": self.hot_rate_per_s,
            "deleted": self.deleted,
        }

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> Self:
        return cls(
            event_id=datum["event_id"],
            title=datum["title"],
            status=EventStatus(datum["status"]),
            created_at=datum["created_at"],
            updated_at=datum["updated_at"],
            slow_mode_s=datum["slow_mode_s"],
            anonymous_read=datum["anonymous_read"],
            members_only=datum["members_only"],
            strictness=Strictness(datum["strictness"]),
            blocked_terms=tuple(datum["blocked_terms"]),
            allowed_terms=tuple(datum["allowed_terms"]),
            link_policy=LinkPolicy(datum["link_policy"]),
            allowed_domains=tuple(datum["allowed_domains"]),
            thresholds=ModerationThresholds.from_avro(datum["thresholds"]),
            hot_rate_per_s=datum["hot_rate_per_s"],
            deleted=datum["deleted"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class UserProfile:
    """What the pipeline knows about a user (compacted ``users.profiles``)."""

    SCHEMA_NAME: ClassVar[str] = f"{NAMESPACE}.UserProfile"

    user_id: str
    display_name: str
    roles: tuple[str, ...] = ()
    badges: tuple[str, ...] = ()
    verified: bool = False
    banned: bool = False
    timeout_until: EpochMillis | None = None
    hidden: bool = False
    updated_at: EpochMillis

    def to_avro(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "display_name": self.display_name,
            "roles": self.roles,
            "badges": self.badges,
            "verified": self.verified,
            "banned": self.banned,
            "timeout_until": self.timeout_until,
            "hidden": self.hidden,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> Self:
        return cls(
            user_id=datum["user_id"],
            display_name=datum["display_name"],
            roles=tuple(datum["roles"]),
            badges=tuple(datum["badges"]),
            verified=datum["verified"],
            banned=datum["banned"],
            timeout_until=datum["timeout_until"],
            hidden=datum["hidden"],
            updated_at=datum["updated_at"],
        )


_TOP_LEVEL: tuple[type[AvroRecord], ...] = (
    CommentSubmitted,
    CommentModerated,
    CommentPublished,
    CommentRetracted,
    CommentDelivered,
    CommentRejected,
    AnalyticsEvent,
    LiveEvent,
    UserProfile,
)

RECORD_TYPES: Mapping[str, type[AvroRecord]] = {cls.SCHEMA_NAME: cls for cls in _TOP_LEVEL}
"""Top-level record classes by Avro full name (``livecomments.v1.CommentPublished``).

Each has its own ``.avsc`` file; ``ModerationThresholds`` is nested in ``LiveEvent``
and is not listed.
"""
