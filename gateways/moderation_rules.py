"""The moderator's rules, pure: what is valid, who may act on whom, the records built.

No I/O and no clock: ``gateways.moderation.ModeratorActions`` (the service) reads state,
writes records and passes the time in. Tested without a server in
``tests/unit/test_moderator_actions.py``.

Who may act on whom: the acting identity needs a moderator role (``moderator``,
``broadcaster`` or ``admin``, from its token). A user action (timeout, ban, hide and
their reversals) or a removal is refused with ``not_authorized`` when the target
user's profile carries a role as high as the actor's (``moderator`` < ``broadcaster``
< ``admin``): a moderator cannot act on another moderator, a broadcaster or an
admin. Nobody times out, bans or hides themselves.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from gateways.auth import Identity
from gateways.error_codes import MODERATION_CODES, http_status, sentence
from schemas.records import (
    CommentRetracted,
    LiveEvent,
    RetractionScope,
    Strictness,
    UserProfile,
)

MIN_TIMEOUT_S: Final = 10
MAX_TIMEOUT_S: Final = 86_400
MAX_HELD_PAGE: Final = 500
MAX_ID: Final = 128
MAX_REASON: Final = 200
MAX_SLOW_MODE_S: Final = 86_400
# How far back a removal by comment id alone (no position, no user) looks for it.
FIND_BY_ID_ROWS: Final = 2_000
FAR_POSITION: Final = 2**62

CODES: Final[dict[str, tuple[int, str]]] = {
    code: (http_status(code), sentence(code)) for code in MODERATION_CODES
}
"""The codes a moderator action can fail with: status and the default sentence."""

RANKS: Final[dict[str, int]] = {"moderator": 1, "broadcaster": 2, "admin": 3}
DECISIONS: Final[dict[str, str]] = {"approve": "APPROVE", "reject": "REJECT"}
SCOPES: Final[dict[str, RetractionScope]] = {
    "comment": RetractionScope.COMMENT,
    "user_comments": RetractionScope.USER_COMMENTS,
}


class ModerationError(Exception):
    """A moderator action that was refused: ``code`` (stable), a sentence, a status."""

    def __init__(self, code: str, message: str | None = None, status: int | None = None) -> None:
        default_status, default_message = CODES.get(code, (400, code))
        self.code = code
        self.message = message or default_message
        self.status = default_status if status is None else status
        super().__init__(self.message)


# -- pure: validation ----------------------------------------------------------------------


def checked_id(value: Any, name: str) -> str:
    """A user id or comment id: a string of 1 to 128 printable characters."""
    if value is None:
        raise ModerationError("missing_field", f"`{name}` is required")
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID or not value.isprintable():
        raise ModerationError("invalid_field", f"`{name}`: 1 to {MAX_ID} printable characters")
    return value


def checked_event_id(value: Any) -> str:
    """The protocol's rule: ASCII letters, digits and ``._:@-``, at most 128."""
    if value is None:
        raise ModerationError("missing_field", "`event_id` is required")
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_ID
        or not value.isascii()
        or not all(c.isalnum() or c in "._:@-" for c in value)
    ):
        raise ModerationError("invalid_field", "`event_id` has characters an event id never has")
    return value


def checked_int(value: Any, name: str, low: int, high: int) -> int:
    if value is None:
        raise ModerationError("missing_field", f"`{name}` is required")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ModerationError("invalid_field", f"`{name}`: an integer from {low} to {high}")
    return value


def checked_position(value: Any, name: str = "position") -> int:
    return checked_int(value, name, 0, FAR_POSITION - 1)


def checked_duration(duration_s: Any) -> int:
    """A timeout's length in seconds: 10 s to 24 h."""
    return checked_int(duration_s, "duration_s", MIN_TIMEOUT_S, MAX_TIMEOUT_S)


def checked_reason(value: Any, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or not 0 < len(value) <= MAX_REASON or not value.isprintable():
        raise ModerationError("invalid_field", f"`reason`: 1 to {MAX_REASON} printable characters")
    return value


def checked_bool(value: Any, name: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ModerationError("invalid_field", f"`{name}`: true or false")
    return value


def checked_decision(value: Any) -> str:
    """``approve`` or ``reject`` (any case) as the record's ``APPROVE`` or ``REJECT``."""
    if value is None:
        raise ModerationError("missing_field", "`decision` is required")
    decision = DECISIONS.get(value.lower()) if isinstance(value, str) else None
    if decision is None:
        raise ModerationError("invalid_field", "`decision`: approve or reject")
    return decision


def checked_strictness(value: Any) -> Strictness:
    if isinstance(value, str) and value.upper() in Strictness.__members__:
        return Strictness(value.upper())
    raise ModerationError("invalid_field", "`strictness`: relaxed, standard or strict")


# -- pure: who may act on whom -------------------------------------------------------------


def rank(roles: tuple[str, ...] | list[str]) -> int:
    """0 for a viewer; moderator 1, broadcaster 2, admin 3 (the highest role held)."""
    return max((RANKS.get(r, 0) for r in roles), default=0)


def require_moderator(who: Identity) -> None:
    if who.anonymous or not who.is_moderator:
        raise ModerationError(
            "not_authorized", "a moderator, broadcaster or admin role is required"
        )


def require_may_act_on(
    who: Identity, user_id: str, target: UserProfile | None, *, self_ok: bool = False
) -> None:
    """``not_authorized`` unless ``who`` outranks the target user (see the module doc)."""
    require_moderator(who)
    if user_id == who.user_id:
        if self_ok:
            return
        raise ModerationError("not_authorized", "a moderator cannot act on themselves")
    if target is not None and rank(target.roles) >= rank(who.roles):
        role = max(target.roles, key=lambda r: RANKS.get(r, 0))
        raise ModerationError("not_authorized", f"{user_id!r} is a {role}: ask someone above them")


# -- pure: the records ---------------------------------------------------------------------


def changed_profile(
    current: UserProfile | None, user_id: str, now: int, **changes: Any
) -> UserProfile:
    """The user's profile with ``changes``, started from ``current`` (a user without a
    profile gets one named after their id); ``updated_at`` always moves forward."""
    if current is None:
        return UserProfile(user_id=user_id, display_name=user_id, updated_at=now, **changes)
    return replace(current, **changes, updated_at=max(now, current.updated_at + 1))


def user_retraction(
    event_id: str, user_id: str, *, reason: str, actor: str, now: int
) -> CommentRetracted:
    """Every comment of ``user_id`` in ``event_id`` removed (a ban's or timeout's clear)."""
    return CommentRetracted(
        event_id=event_id,
        scope=RetractionScope.USER_COMMENTS,
        user_id=user_id,
        reason=reason,
        actor=actor,
        retracted_at=now,
    )


def user_view(user_id: str, profile: UserProfile | None, now: int) -> dict[str, Any]:
    """A user's moderation state; a timeout that has run out shows as null."""
    if profile is None:
        return {"user_id": user_id, "banned": False, "timeout_until": None, "hidden": False,
                "roles": []}  # fmt: skip
    until = profile.timeout_until
    return {
        "user_id": user_id,
        "banned": profile.banned,
        "timeout_until": until if until is not None and until > now else None,
        "hidden": profile.hidden,
        "roles": list(profile.roles),
    }


def event_view(e: LiveEvent, *, full: bool) -> dict[str, Any]:
    """An event as the API and the protocol show it; moderation settings only to
    moderators (``full``)."""
    view: dict[str, Any] = {
        "event_id": e.event_id,
        "title": e.title,
        "status": e.status.value.lower(),
        "created_at": e.created_at,
        "updated_at": e.updated_at,
        "slow_mode_s": e.slow_mode_s,
        "anonymous_read": e.anonymous_read,
        "members_only": e.members_only,
        "hot_rate_per_s": e.hot_rate_per_s,
    }
    if full:
        view |= {
            "strictness": e.strictness.value.lower(),
            "blocked_terms": list(e.blocked_terms),
            "allowed_terms": list(e.allowed_terms),
            "link_policy": e.link_policy.value.lower(),
            "allowed_domains": list(e.allowed_domains),
            "thresholds": e.thresholds.to_avro(),
        }
    return view


def held_page(event_id: str, items: list[Any], limit: int) -> dict[str, Any]:
    """A page of held comments; ``next_after`` is the ``after`` of the next page, null
    when this page was not full (no more now)."""
    return {
        "event_id": event_id,
        "items": [h.to_json() for h in items],
        "next_after": items[-1].position if len(items) >= limit and items else None,
    }
