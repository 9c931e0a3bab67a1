"""Bodies of the HTTP API, as published in its OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateways.protocol import MAX_NONCE

Term = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Status = Literal["scheduled", "live", "ended"]


class ErrorDetail(BaseModel):
    code: str = Field(description="stable code, the same as the WebSocket protocol's")
    message: str = Field(description="a sentence for people")
    retry_after_ms: int | None = Field(None, description="when waiting helps: how long")


class ErrorOut(BaseModel):
    error: ErrorDetail


class CommentIn(BaseModel):
    model_config = ConfigDict(strict=True)

    text: str = Field(description="the comment; at most 500 characters after normalisation")
    nonce: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NONCE)] | None = Field(
        None,
        description="client nonce: the same nonce gets the same comment_id back "
        "(the `Idempotency-Key` header does the same)",
    )
    reply_to: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        None, description="the comment_id this one answers"
    )


class PendingComment(BaseModel):
    comment_id: str
    event_id: str
    user_id: str
    display_name: str
    text: str
    reply_to: str | None
    submitted_at: int
    pending: bool


class AckOut(BaseModel):
    event_id: str
    comment_id: str = Field(description="a ULID; Kafka has acknowledged the comment")
    nonce: str | None
    duplicate: bool = Field(description="the nonce was seen and its comment already acked")
    comment: PendingComment


class PageOut(BaseModel):
    event_id: str
    items: list[dict[str, Any]] = Field(
        description="comments in the event's order, oldest first, as in the protocol's "
        "`comments` frames; a removed one is `{comment_id, event_id, position, "
        "previous_position, epoch, removed: true}`"
    )
    whole: bool = Field(description="the page is full and can never change (but by a removal)")
    older: str | None = Field(description="the page before this one")
    newer: str | None = Field(description="the page after this one")


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    toxicity_block: float = Field(0.7, ge=0, le=1)
    toxicity_review: float = Field(0.5, ge=0, le=1)
    spam_block: float = Field(0.8, ge=0, le=1)
    spam_review: float = Field(0.6, ge=0, le=1)


class EventSettingsIn(BaseModel):
    """Settings of an event; in a PATCH only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    status: Status | None = None
    slow_mode_s: int | None = Field(None, ge=0, le=86_400, description="seconds between posts")
    anonymous_read: bool | None = None
    members_only: bool | None = None
    strictness: Literal["relaxed", "standard", "strict"] | None = None
    blocked_terms: list[Term] | None = Field(None, max_length=1000)
    allowed_terms: list[Term] | None = Field(None, max_length=1000)
    link_policy: Literal["allow", "deny", "allow_list"] | None = None
    allowed_domains: list[Term] | None = Field(None, max_length=1000)
    hot_rate_per_s: int | None = Field(None, ge=1, le=1_000_000)
    thresholds: Thresholds | None = None


class EventCreate(EventSettingsIn):
    event_id: Annotated[
        str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")
    ]
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class EventOut(BaseModel):
    event_id: str
    title: str
    status: Status
    created_at: int
    updated_at: int
    slow_mode_s: int
    anonymous_read: bool
    members_only: bool
    hot_rate_per_s: int
    strictness: str | None = Field(None, description="moderators only")
    blocked_terms: list[str] | None = Field(None, description="moderators only")
    allowed_terms: list[str] | None = Field(None, description="moderators only")
    link_policy: str | None = Field(None, description="moderators only")
    allowed_domains: list[str] | None = Field(None, description="moderators only")
    thresholds: Thresholds | None = Field(None, description="moderators only")


class EventList(BaseModel):
    items: list[EventOut]


Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=200)]
EventId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")
]


class RemovalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Literal["comment", "user_comments"] = "comment"
    user_id: Id | None = Field(
        None,
        description="the author; required for `user_comments`, looked up when not given "
        "for `comment`",
    )
    comment_id: Id | None = None
    position: int | None = Field(None, ge=0, lt=2**62)
    reason: Reason | None = Field(None, description="default `removed_by_moderator`")


class RemovalOut(BaseModel):
    event_id: str
    scope: str
    user_id: str
    comment_id: str | None
    position: int | None
    reason: str
    purge: list[str] = Field(description="Surrogate-Key tags of cached pages to purge")


class HeldCommentOut(BaseModel):
    event_id: str
    position: int = Field(description="where it was held: the key of approve and reject")
    comment_id: str
    user_id: str
    text: str
    reply_to: str | None
    submitted_at: int
    language: str | None
    scores: dict[str, float] = Field(description="the models' scores, e.g. toxicity, spam")
    reasons: list[str] = Field(description="why moderation held it")
    held_at: int
    decision: Literal["APPROVE", "REJECT"] | None = Field(description="null while pending")
    reviewed_by: str | None
    reviewed_at: int | None


class HeldPageOut(BaseModel):
    event_id: str
    items: list[HeldCommentOut] = Field(description="pending held comments by position")
    next_after: int | None = Field(
        description="`after` of the next page; null when this page was not full"
    )


class ReviewOut(BaseModel):
    event_id: str
    position: int
    comment_id: str
    decision: Literal["approve", "reject"]
    status: Literal["accepted"] = Field(
        description="Kafka has the decision; the pipeline publishes an approved comment "
        "within a moment, at a new position, with the same comment_id"
    )


class TimeoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    duration_s: int = Field(ge=10, le=86_400, description="10 seconds to 24 hours")
    reason: Reason | None = None
    event_id: EventId | None = Field(None, description="the event the timeout is about")
    clear: bool = Field(False, description="with `event_id`: remove their comments there")


class BanIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: Reason | None = None
    event_id: EventId | None = Field(None, description="the event the ban is about")
    clear: bool = Field(True, description="with `event_id`: remove their comments there")


class UserModerationOut(BaseModel):
    user_id: str
    banned: bool
    timeout_until: int | None = Field(description="ms since the epoch; null when not timed out")
    hidden: bool = Field(description="shadowed: their comments are shown to them alone")
    roles: list[str]


class UserActionOut(UserModerationOut):
    retracted_in: str | None = Field(
        description="the event whose comments of the user are being removed (`clear`)"
    )
    duration_s: int | None = None
    reason: str | None = None


class TokenOut(BaseModel):
    token: str
    user_id: str
    roles: list[str]
    expires_at: int


class ConfigOut(BaseModel):
    gateway_url: str
    dev_tokens: bool
    protocol: str
