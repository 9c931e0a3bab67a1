"""validate: is this submission acceptable at all? (before any moderation)

Checks, in order, each with a stable reason code (the same codes reach the poster through
the gateway and data teams through ``comments.rejected``):

``missing_field``, ``invalid_field``, ``empty_text``, ``text_too_long``,
``event_not_found``, ``event_not_live``, ``user_banned``, ``user_timed_out``,
``members_only``, ``duplicate``, ``slow_mode``, ``rate_limited``.

Time is the submission's own ``submitted_at`` and history is filtered by Kafka offset, so
re-processing a record after a crash reaches the same verdict as the first time: posts
recorded at or after this record's offset are ignored, they are "the future" for it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Final

from schemas.records import CommentSubmitted, EventStatus, LiveEvent, UserProfile

MAX_ID_LENGTH: Final = 128
HISTORY_KEPT: Final = 64
# Long enough for slow modes up to 10 minutes and for replays of a lagging partition.
HISTORY_KEEP_MS: Final = 600_000
_ID = re.compile(r"^[A-Za-z0-9._:@\-]+$")
# Characters a comment never needs: C0/C1 controls are turned into spaces (newlines and
# tabs included: a comment is one line), these invisible or direction-changing ones are
# dropped. U+200D (zero-width joiner) stays: emoji sequences need it.
_INVISIBLE: Final = dict.fromkeys(
    [
        0x00AD,
        0x034F,
        0x061C,
        0x115F,
        0x1160,
        0x17B4,
        0x17B5,
        0x180E,
        0x200B,
        0x200C,
        0x200E,
        0x200F,
        0x202A,
        0x202B,
        0x202C,
        0x202D,
        0x202E,
        0x2060,
        0x2061,
        0x2062,
        0x2063,
        0x2064,
        0x2066,
        0x2067,
        0x2068,
        0x2069,
        0x3164,
        0xFEFF,
        0xFFA0,
    ]
)
_SPACES = re.compile(r"\s+")
# What shows nothing on its own: controls, format characters (the joiner U+200D, tags),
# combining marks without a base (variation selectors among them), separators.
_NOTHING_VISIBLE: Final = frozenset({"Cc", "Cf", "Mn", "Me", "Zs", "Zl", "Zp"})
PRIVILEGED_ROLES: Final = frozenset({"moderator", "broadcaster", "admin"})
MEMBER_ROLES: Final = PRIVILEGED_ROLES | {"member"}


STATE_LAG_REASONS: Final = frozenset({"event_not_found", "event_not_live"})
"""Reasons that may only mean this process has not read the event's newest state yet:
catch up with the state topics once and judge again before dead-lettering."""


@dataclass(frozen=True, slots=True)
class CommentLimits:
    """What a comment may be: its length and its author's pace (not the connection's
    limits, which are ``gateways.protocol.Limits``)."""

    max_chars: int = 500
    posts_per_minute: int = 60


@dataclass(frozen=True, slots=True)
class PastPost:
    """One earlier post of a user in an event, as validate remembers it (not the
    ``post`` request of the protocol, which is ``gateways.protocol.Post``)."""

    offset: int
    at_ms: int
    comment_id: str
    # SimHash of the text (topologies/moderation/normalize.py): the moderate stage's
    # repeated-message rule compares it; 0 for posts remembered before it existed.
    fingerprint: int = field(default=0, compare=False)
    # Moderation held or blocked it: a strike (the moderate stage's user context).
    flagged: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class Accepted:
    comment: CommentSubmitted


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    detail: str


Verdict = Accepted | Rejected


def normalize_text(text: str) -> str:
    """NFC, controls to spaces, invisible characters dropped, whitespace collapsed."""
    text = text.translate(_INVISIBLE)
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    # NFC last: a dropped character may have split a base from its combining mark.
    text = unicodedata.normalize("NFC", text)
    return _SPACES.sub(" ", text).strip()


def _has_visible(text: str) -> bool:
    return any(unicodedata.category(c) not in _NOTHING_VISIBLE for c in text)


def _bad_id(value: str) -> bool:
    return len(value) > MAX_ID_LENGTH or _ID.match(value) is None


def validate(
    comment: CommentSubmitted,
    *,
    offset: int,
    event: LiveEvent | None,
    user: UserProfile | None,
    history: tuple[PastPost, ...],
    limits: CommentLimits,
) -> Verdict:
    for name in ("comment_id", "event_id", "user_id"):
        value = getattr(comment, name)
        if not value:
            return Rejected("missing_field", f"{name} is empty")
        if _bad_id(value):
            return Rejected("invalid_field", f"{name} is not a valid id")

    text = normalize_text(comment.text)
    if not _has_visible(text):
        return Rejected("empty_text", "the comment has no visible text")
    if len(text) > limits.max_chars:
        return Rejected(
            "text_too_long", f"{len(text)} characters, at most {limits.max_chars} allowed"
        )

    if event is None or event.deleted:
        return Rejected("event_not_found", f"no event {comment.event_id!r}")
    if event.status is not EventStatus.LIVE:
        return Rejected("event_not_live", f"event is {event.status.value.lower()}")

    now = comment.submitted_at
    roles = frozenset(user.roles) if user else frozenset()
    if user is not None:
        if user.banned:
            return Rejected("user_banned", "the user is banned")
        if user.timeout_until is not None and user.timeout_until > now:
            remaining = user.timeout_until - now
            return Rejected("user_timed_out", f"timed out for {remaining} ms more")
    if event.members_only and not roles & MEMBER_ROLES:
        return Rejected("members_only", "only members may post in this event")

    earlier = [p for p in history if p.offset < offset]
    if any(p.comment_id == comment.comment_id for p in earlier):
        return Rejected("duplicate", f"comment {comment.comment_id} was already submitted")

    privileged = bool(roles & PRIVILEGED_ROLES)
    if event.slow_mode_s > 0 and earlier and not privileged:
        wait = earlier[-1].at_ms + event.slow_mode_s * 1000 - now
        if wait > 0:
            return Rejected("slow_mode", f"slow mode: wait {wait} ms")

    recent = [p for p in earlier if p.at_ms > now - 60_000]
    if len(recent) >= limits.posts_per_minute and not privileged:
        wait = recent[-limits.posts_per_minute].at_ms + 60_000 - now
        return Rejected("rate_limited", f"{limits.posts_per_minute} per minute: wait {wait} ms")

    if text != comment.text:
        comment = replace(comment, text=text)
    return Accepted(comment)


def remember(
    history: tuple[PastPost, ...],
    post: PastPost,
    *,
    keep_ms: int = HISTORY_KEEP_MS,
    keep_max: int = HISTORY_KEPT,
) -> tuple[PastPost, ...]:
    """History after ``post``: only what rate limit, slow mode and dedup still need.

    Re-recording an offset (a replay) replaces nothing twice: posts at or after the new
    one's offset are dropped first, so history stays ordered by offset.
    """
    kept = [p for p in history if p.offset < post.offset and p.at_ms > post.at_ms - keep_ms]
    kept.append(post)
    return tuple(kept[-keep_max:])
