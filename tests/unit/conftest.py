"""Fixtures of the unit tests: no I/O, no servers."""

from __future__ import annotations

import pytest

from schemas.records import (
    AnalyticsEvent,
    AvroRecord,
    CommentDelivered,
    CommentModerated,
    CommentPublished,
    CommentRejected,
    CommentRetracted,
    CommentSubmitted,
    Decision,
    EventStatus,
    LinkPolicy,
    LiveEvent,
    ModerationThresholds,
    RetractionScope,
    Strictness,
    UserProfile,
)

T0 = 1_764_300_000_123  # 2025-11-28T03:20:00.123Z
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def full_records() -> list[AvroRecord]:
    """One record of every class with every optional field set (non-ASCII text too)."""
    submitted = CommentSubmitted(
        comment_id="01JDZ8Q4J1M3V7X9K2T5R8W6YB",
        event_id="evt-cup-final",
        user_id="u-42",
        text="Quel but !! 🔥 ¡Golazo!",
        client_nonce="n-7",
        reply_to="01JDZ8Q3ZZZZZZZZZZZZZZZZZZ",
        submitted_at=T0,
        gateway_id="gw-3",
        trace_parent=TRACE,
        language_hint="fr-FR",
    )
    return [
        submitted,
        CommentModerated.of(
            submitted,
            decision=Decision.HOLD_FOR_REVIEW,
            moderated_at=T0 + 9,
            engine_version="rules-14+onnx-2025.11",
            scores={"toxicity": 0.55, "spam": 0.125},
            reasons=("toxicity_above_review",),
            language="fr",
            latency_ms=3.25,
            reviewed_by="mod-1",
        ),
        CommentPublished(
            comment_id=submitted.comment_id,
            event_id=submitted.event_id,
            user_id="u-42",
            display_name="Zoé",
            roles=("member", "moderator"),
            badges=("verified",),
            text=submitted.text,
            reply_to=submitted.reply_to,
            language="fr",
            position=9_000_000_001,
            previous_position=9_000_000_000,
            epoch=2,
            submitted_at=T0,
            published_at=T0 + 40,
            trace_parent=TRACE,
        ),
        CommentRetracted(
            event_id="evt-cup-final",
            scope=RetractionScope.USER_COMMENTS,
            comment_id=submitted.comment_id,
            user_id="u-42",
            position=9_000_000_001,
            reason="user_banned",
            actor="mod-1",
            retracted_at=T0 + 60_000,
        ),
        CommentDelivered(
            comment_id=submitted.comment_id,
            event_id="evt-cup-final",
            gateway_id="gw-7",
            viewers=48_213,
            delivered_at=T0 + 52,
            latency_ms=12.5,
        ),
        CommentRejected(
            reason="rate_limited",
            detail="u-42 posted 61 comments within a minute; the limit is 60.",
            stage="validate",
            event_id="evt-cup-final",
            comment_id=submitted.comment_id,
            user_id="u-42",
            gateway_id="gw-3",
            source_topic="comments.submitted",
            source_partition=3,
            source_offset=77_123,
            raw=b"\x00\x00\x00\x00\x01\xff\x00binary",
            rejected_at=T0 + 5,
            trace_parent=TRACE,
        ),
        AnalyticsEvent(
            event_type="comment_window",
            event_id="evt-cup-final",
            window_start=T0 - 123,
            window_end=T0 + 9_877,
            window_s=10,
            comments=5_400,
            unique_commenters=3_100,
            languages={"en": 4_000, "fr": 1_300, "und": 100},
            decisions={"APPROVE": 5_000, "HOLD_FOR_REVIEW": 250, "BLOCK": 100, "REJECTED": 50},
        ),
        LiveEvent(
            event_id="evt-cup-final",
            title="Cup final — live",
            status=EventStatus.LIVE,
            created_at=T0 - 86_400_000,
            updated_at=T0,
            slow_mode_s=5,
            anonymous_read=False,
            members_only=True,
            strictness=Strictness.STRICT,
            blocked_terms=("spoiler",),
            allowed_terms=("killer",),
            link_policy=LinkPolicy.ALLOW_LIST,
            allowed_domains=("example.org",),
            thresholds=ModerationThresholds(
                toxicity_block=0.65, toxicity_review=0.45, spam_block=0.75, spam_review=0.55
            ),
            hot_rate_per_s=250,
            deleted=False,
        ),
        UserProfile(
            user_id="u-42",
            display_name="Zoé",
            roles=("member",),
            badges=("verified", "subscriber_12m"),
            verified=True,
            banned=False,
            timeout_until=T0 + 600_000,
            hidden=True,
            updated_at=T0,
        ),
    ]


def minimal_records() -> list[AvroRecord]:
    """One record of every class with only the required fields (defaults elsewhere)."""
    return [
        CommentSubmitted(
            comment_id="c1", event_id="e1", user_id="u1", text="", submitted_at=0, gateway_id="g"
        ),
        CommentModerated(
            comment_id="c1",
            event_id="e1",
            user_id="u1",
            decision=Decision.APPROVE,
            moderated_at=1,
            engine_version="v",
            text="hi",
            submitted_at=0,
            gateway_id="g",
        ),
        CommentPublished(
            comment_id="c1",
            event_id="e1",
            user_id="u1",
            display_name="u",
            text="hi",
            position=0,
            epoch=0,
            submitted_at=0,
            published_at=1,
        ),
        CommentRetracted(
            event_id="e1", user_id="u1", reason="deleted_by_author", actor="u1", retracted_at=2
        ),
        CommentDelivered(
            comment_id="c1",
            event_id="e1",
            gateway_id="g",
            viewers=0,
            delivered_at=3,
            latency_ms=0.0,
        ),
        CommentRejected(
            reason="not_wire_format",
            detail="empty value",
            stage="decode",
            source_topic="comments.submitted",
            source_partition=0,
            source_offset=0,
            rejected_at=4,
        ),
        AnalyticsEvent(
            event_type="comment_window",
            event_id="e1",
            window_start=0,
            window_end=10_000,
            window_s=10,
            comments=0,
            unique_commenters=0,
        ),
        LiveEvent(
            event_id="e1", title="t", status=EventStatus.SCHEDULED, created_at=0, updated_at=0
        ),
        UserProfile(user_id="u1", display_name="u", updated_at=0),
    ]


@pytest.fixture
def submitted() -> CommentSubmitted:
    record = full_records()[0]
    assert isinstance(record, CommentSubmitted)
    return record


@pytest.fixture(params=["full", "minimal"])
def every_record(request: pytest.FixtureRequest) -> list[AvroRecord]:
    """Every record class, once filled in and once minimal."""
    return full_records() if request.param == "full" else minimal_records()
