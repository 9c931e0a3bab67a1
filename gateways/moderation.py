"""What a moderator can do, shared by the HTTP API and the WebSocket gateway.

Build one per process, from what the edge already holds::

    actions = ModeratorActions(
        codec=codec,                 # schemas.codec.AvroCodec, schemas registered
        producer=producer,           # connectors.kafka_producer.OutputProducer, started
        store=store,                 # connectors.cassandra_store.CommentStore
        event=lookup_event,          # (event_id) -> LiveEvent | None, sync or async
        user=lookup_user,            # (user_id) -> UserProfile | None, sync or async
        written=state.sync,          # optional: awaited after each state write
    )
    result = await actions.review(identity, "final-2026", 49533, "approve")

``event`` and ``user`` should answer with the *latest* record (e.g. ``await
state.sync(); return state.user(user_id)`` on ``connectors.state_reader.StateReader``):
a ban or a timeout is a read-modify-write of the user's ``UserProfile``, and starting
from a stale profile would undo a change made a moment ago elsewhere. ``written``,
when given, is awaited after each write to ``users.profiles`` or ``events.settings``,
so the caller's own state reads its write (a timed-out user's next post is refused by
this very process).

Every method takes the acting :class:`~gateways.auth.Identity`, writes its records to
Kafka (idempotent producer, acks=all) and returns, once Kafka acknowledged them, a
JSON-able dict. Anything a caller can get wrong raises :class:`ModerationError` with
a stable code (the same in the protocol, the API and the docs) and an HTTP status.

The rules (validation, who may act on whom, the records built) are pure functions in
``gateways.moderation_rules``, re-exported here; this module is the service that reads
state, writes records and waits for Kafka.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from connectors.kafka_producer import OutputProducer
from connectors.topics import (
    COMMENTS_RETRACTED,
    COMMENTS_SUBMITTED,
    EVENTS_SETTINGS,
    USERS_PROFILES,
)
from gateways.auth import Identity
from gateways.moderation_rules import (
    CODES,
    DECISIONS,
    FAR_POSITION,
    FIND_BY_ID_ROWS,
    MAX_HELD_PAGE,
    MAX_ID,
    MAX_REASON,
    MAX_SLOW_MODE_S,
    MAX_TIMEOUT_S,
    MIN_TIMEOUT_S,
    RANKS,
    SCOPES,
    ModerationError,
    changed_profile,
    checked_bool,
    checked_decision,
    checked_duration,
    checked_event_id,
    checked_id,
    checked_int,
    checked_position,
    checked_reason,
    checked_strictness,
    event_view,
    held_page,
    rank,
    require_may_act_on,
    require_moderator,
    user_retraction,
    user_view,
)
from schemas.clock import now_ms
from schemas.codec import AvroCodec
from schemas.records import (
    CommentRetracted,
    LiveEvent,
    RetractionScope,
    UserProfile,
)

# The rules are re-exported: callers have long imported them from here.
__all__ = [
    "CODES",
    "DECISIONS",
    "FAR_POSITION",
    "FIND_BY_ID_ROWS",
    "MAX_HELD_PAGE",
    "MAX_ID",
    "MAX_REASON",
    "MAX_SLOW_MODE_S",
    "MAX_TIMEOUT_S",
    "MIN_TIMEOUT_S",
    "RANKS",
    "SCOPES",
    "ModerationError",
    "ModeratorActions",
    "changed_profile",
    "checked_bool",
    "checked_decision",
    "checked_duration",
    "checked_event_id",
    "checked_id",
    "checked_int",
    "checked_position",
    "checked_reason",
    "checked_strictness",
    "event_view",
    "held_page",
    "rank",
    "require_may_act_on",
    "require_moderator",
    "user_retraction",
    "user_view",
]

log = logging.getLogger(__name__)


class Held(Protocol):
    """What is used of ``connectors.cassandra_store.HeldComment``."""

    position: int
    comment_id: str
    decision: str | None

    def to_json(self) -> dict[str, Any]: ...

    def as_review(self, decision: str, reviewed_by: str, now_ms: int) -> Any: ...


class Store(Protocol):
    """What is used of ``connectors.cassandra_store.CommentStore``."""

    async def held(
        self, event_id: str, *, after: int | None = None, limit: int = 50, pending_only: bool = True
    ) -> list[Any]: ...

    async def held_one(self, event_id: str, position: int) -> Any: ...

    async def after(self, event_id: str, position: int, limit: int) -> list[Any]: ...

    async def before(self, event_id: str, position: int, limit: int) -> list[Any]: ...


async def _answer(lookup: Callable[[str], Any], key: str) -> Any:
    found = lookup(key)
    if inspect.isawaitable(found):
        found = await found
    return found


# -- the service ---------------------------------------------------------------------------


class ModeratorActions:
    """Moderator actions as records on Kafka (see the module doc for the constructor)."""

    def __init__(
        self,
        *,
        codec: AvroCodec,
        producer: OutputProducer,
        store: Store,
        event: Callable[[str], Any],
        user: Callable[[str], Any],
        written: Callable[[], Awaitable[Any]] | None = None,
        clock: Callable[[], int] = now_ms,
        produce_timeout_s: float = 30.0,
    ) -> None:
        self._codec = codec
        self._producer = producer
        self._store = store
        self._event = event
        self._user = user
        self._written = written
        self._clock = clock
        self._timeout = produce_timeout_s

    @classmethod
    def for_edge(
        cls,
        backbone: Any,
        *,
        event: Callable[[str], Any],
        user: Callable[[str], Any],
        written: Callable[[], Awaitable[Any]] | None = None,
    ) -> ModeratorActions:
        """The actions of an edge process over its connections
        (``connectors.services.Backbone``); ``event``/``user`` read its state."""
        return cls(
            codec=backbone.codec,
            producer=backbone.producer,
            store=backbone.store,
            event=event,
            user=user,
            written=written,
        )

    # -- lookups and writes

    async def _known_event(self, event_id: Any) -> LiveEvent:
        event: LiveEvent | None = await _answer(self._event, checked_event_id(event_id))
        if event is None or event.deleted:
            raise ModerationError("event_not_found", f"no event {event_id!r}")
        return event

    async def _profile(self, user_id: str) -> UserProfile | None:
        profile: UserProfile | None = await _answer(self._user, user_id)
        return profile

    async def _produce(self, topic: str, key: str, record: Any) -> None:
        """One record, returned once Kafka acknowledged it (``post_failed`` if not)."""
        try:
            await self._producer.deliver(
                topic, key.encode(), self._codec.encode(topic, record), self._timeout
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:
            raise ModerationError("post_failed", f"Kafka did not take the record: {e}") from e

    async def _state_written(self) -> None:
        if self._written is not None:
            try:
                await self._written()
            except Exception as e:  # the write is acked; reading it back is a courtesy
                log.warning("state sync after a moderator action failed: %s", e)

    # -- held comments

    async def held(
        self, who: Identity, event_id: Any, after: Any = None, limit: Any = 50
    ) -> dict[str, Any]:
        """Held comments awaiting a decision, by position, those after ``after``."""
        require_moderator(who)
        event = await self._known_event(event_id)
        if after is not None:
            after = checked_int(after, "after", -1, FAR_POSITION - 1)
        n = checked_int(50 if limit is None else limit, "limit", 1, MAX_HELD_PAGE)
        items = await self._store.held(event.event_id, after=after, limit=n, pending_only=True)
        return held_page(event.event_id, items, n)

    async def review(
        self, who: Identity, event_id: Any, position: Any, decision: Any
    ) -> dict[str, Any]:
        """Approve or reject the comment held at ``position``: a ``CommentSubmitted``
        with ``review`` to ``comments.submitted``. The pipeline publishes an approved
        comment at the review's own position (keeping its comment_id) and ignores a
        second decision; here a decision already recorded is ``already_reviewed``."""
        require_moderator(who)
        chosen = checked_decision(decision)
        event = await self._known_event(event_id)
        at = checked_position(position)
        held: Held | None = await self._store.held_one(event.event_id, at)
        if held is None:
            raise ModerationError("comment_not_found", f"nothing held at position {at}")
        if held.decision is not None:
            raise ModerationError(
                "already_reviewed", f"held comment {held.comment_id} was decided: {held.decision}"
            )
        record = held.as_review(chosen, who.user_id, self._clock())
        await self._produce(COMMENTS_SUBMITTED, event.event_id, record)
        log.info("%s %s held %s/%s", who.user_id, chosen.lower(), event.event_id, at)
        return {
            "event_id": event.event_id,
            "position": at,
            "comment_id": held.comment_id,
            "decision": chosen.lower(),
            "status": "accepted",
        }

    # -- removals

    async def remove(
        self,
        who: Identity,
        event_id: Any,
        comment_id: Any = None,
        position: Any = None,
        user_id: Any = None,
        scope: Any = "comment",
        reason: Any = "removed_by_moderator",
    ) -> dict[str, Any]:
        """Remove a published comment (by ``position`` or ``comment_id``), or with
        ``scope="user_comments"`` every comment of ``user_id`` in the event: a
        ``CommentRetracted`` to ``comments.retracted``. The author is found in
        Cassandra when not given."""
        require_moderator(who)
        kind = SCOPES.get(scope) if isinstance(scope, str) else None
        if kind is None:
            raise ModerationError("invalid_field", "`scope`: comment or user_comments")
        event = await self._known_event(event_id)
        why = checked_reason(reason, "removed_by_moderator")
        if comment_id is not None:
            comment_id = checked_id(comment_id, "comment_id")
        if position is not None:
            position = checked_position(position)
        if user_id is not None:
            user_id = checked_id(user_id, "user_id")
        if kind is RetractionScope.USER_COMMENTS:
            if user_id is None:
                raise ModerationError("missing_field", "`user_id` is required")
            comment_id = position = None
        else:
            if comment_id is None and position is None:
                raise ModerationError("missing_field", "`comment_id` or `position` is required")
            if user_id is None:
                row = await self._find(event.event_id, comment_id, position)
                user_id, comment_id, position = row.user_id, row.comment_id, row.position
        author = await self._profile(user_id)
        require_may_act_on(who, user_id, author, self_ok=True)
        record = CommentRetracted(
            event_id=event.event_id,
            scope=kind,
            comment_id=comment_id,
            user_id=user_id,
            position=position,
            reason=why,
            actor=who.user_id,
            retracted_at=self._clock(),
        )
        await self._produce(COMMENTS_RETRACTED, event.event_id, record)
        return {
            "event_id": event.event_id,
            "scope": kind.value.lower(),
            "user_id": user_id,
            "comment_id": comment_id,
            "position": position,
            "reason": why,
        }

    async def _find(self, event_id: str, comment_id: str | None, position: int | None) -> Any:
        """The stored comment at ``position`` (checked against ``comment_id``), or the one
        with ``comment_id`` among the event's newest ``FIND_BY_ID_ROWS``."""
        if position is not None:
            rows = await self._store.after(event_id, position - 1, 1)
            found = rows[0] if rows and rows[0].position == position else None
            if found is not None and comment_id in (None, found.comment_id):
                return found
        else:
            for row in await self._store.before(event_id, FAR_POSITION, FIND_BY_ID_ROWS):
                if row.comment_id == comment_id:
                    return row
        where = f"at position {position}" if position is not None else f"{comment_id!r}"
        raise ModerationError("comment_not_found", f"no published comment {where} in {event_id}")

    # -- users

    async def user_status(self, who: Identity, user_id: Any) -> dict[str, Any]:
        """A user's moderation state (``user_not_found`` if they have no profile)."""
        require_moderator(who)
        uid = checked_id(user_id, "user_id")
        profile = await self._profile(uid)
        if profile is None:
            raise ModerationError("user_not_found", f"no profile for {uid!r}")
        return user_view(uid, profile, self._clock())

    async def _change_user(
        self,
        who: Identity,
        user_id: Any,
        *,
        create: bool,
        clear_in: tuple[str, str] | None = None,
        **changes: Any,
    ) -> dict[str, Any]:
        """Read the latest profile, check who acts on whom, write the changed profile,
        then (``clear_in`` = (event_id, reason)) retract the user's comments there."""
        require_moderator(who)
        uid = checked_id(user_id, "user_id")
        current = await self._profile(uid)
        if current is None and not create:
            raise ModerationError("user_not_found", f"no profile for {uid!r}")
        require_may_act_on(who, uid, current)
        now = self._clock()
        profile = changed_profile(current, uid, now, **changes)
        await self._produce(USERS_PROFILES, uid, profile)
        retracted_in: str | None = None
        if clear_in is not None:
            event_id, reason = clear_in
            record = user_retraction(event_id, uid, reason=reason, actor=who.user_id, now=now)
            await self._produce(COMMENTS_RETRACTED, event_id, record)
            retracted_in = event_id
        await self._state_written()
        return user_view(uid, profile, now) | {"retracted_in": retracted_in}

    async def _clear_target(self, event_id: Any, clear: bool) -> str | None:
        if event_id is None:
            return None
        event = await self._known_event(event_id)
        return event.event_id if clear else None

    async def timeout(
        self,
        who: Identity,
        user_id: Any,
        duration_s: Any,
        reason: Any = None,
        event_id: Any = None,
        clear: Any = False,
    ) -> dict[str, Any]:
        """No posts from the user for ``duration_s`` (10 s to 24 h), everywhere; with
        ``event_id`` and ``clear`` their comments in that event are removed too."""
        require_moderator(who)
        seconds = checked_duration(duration_s)
        why = checked_reason(reason, "timed_out_by_moderator")
        clear_event = await self._clear_target(event_id, checked_bool(clear, "clear", False))
        result = await self._change_user(
            who,
            user_id,
            create=True,
            clear_in=(clear_event, "user_timed_out") if clear_event else None,
            timeout_until=self._clock() + seconds * 1000,
        )
        log.info("%s timed out %s for %ss: %s", who.user_id, result["user_id"], seconds, why)
        return result | {"duration_s": seconds, "reason": why}

    async def untimeout(self, who: Identity, user_id: Any) -> dict[str, Any]:
        return await self._change_user(who, user_id, create=False, timeout_until=None)

    async def ban(
        self,
        who: Identity,
        user_id: Any,
        reason: Any = None,
        event_id: Any = None,
        clear: Any = True,
    ) -> dict[str, Any]:
        """No posts from the user, everywhere, until unbanned; with ``event_id`` (and
        ``clear``, the default) their comments in that event are removed too."""
        require_moderator(who)
        why = checked_reason(reason, "banned_by_moderator")
        clear_event = await self._clear_target(event_id, checked_bool(clear, "clear", True))
        result = await self._change_user(
            who,
            user_id,
            create=True,
            clear_in=(clear_event, "user_banned") if clear_event else None,
            banned=True,
        )
        log.info("%s banned %s: %s", who.user_id, result["user_id"], why)
        return result | {"reason": why}

    async def unban(self, who: Identity, user_id: Any) -> dict[str, Any]:
        return await self._change_user(who, user_id, create=False, banned=False)

    async def hide(self, who: Identity, user_id: Any) -> dict[str, Any]:
        """Shadow the user: their comments are shown only to them (``visible_to``)."""
        return await self._change_user(who, user_id, create=True, hidden=True)

    async def unhide(self, who: Identity, user_id: Any) -> dict[str, Any]:
        return await self._change_user(who, user_id, create=False, hidden=False)

    # -- event settings

    async def event_settings(
        self, who: Identity, event_id: Any, *, slow_mode_s: Any = None, strictness: Any = None
    ) -> dict[str, Any]:
        """Change an event's slow mode (seconds between a user's posts, 0 = off) and/or
        moderation strictness; returns the event's full view."""
        require_moderator(who)
        changes: dict[str, Any] = {}
        if slow_mode_s is not None:
            changes["slow_mode_s"] = checked_int(slow_mode_s, "slow_mode_s", 0, MAX_SLOW_MODE_S)
        if strictness is not None:
            changes["strictness"] = checked_strictness(strictness)
        event = await self._known_event(event_id)
        if changes:
            event = replace(event, **changes, updated_at=max(self._clock(), event.updated_at + 1))
            await self._produce(EVENTS_SETTINGS, event.event_id, event)
            await self._state_written()
        return event_view(event, full=True)
