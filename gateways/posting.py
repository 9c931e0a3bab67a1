"""Posting a comment: envelope check, comment id, CommentSubmitted to Kafka, then the ack.

Transport-free, so the WebSocket gateway and the HTTP API share it::

    poster = Poster(settings, codec, producer, redis, state, gateway_id)
    result = await poster.submit(identity, event_id, text, nonce=..., reply_to=...)
    # result.comment.comment_id is acked: Kafka (acks=all, idempotent) has the record

The envelope check is the pipeline's own ``validate`` with no history (sizes, Unicode,
event known and live, user banned or timed out, members-only), so a poster learns most
refusals at once with the pipeline's codes; the pipeline checks again with history
(duplicates, slow mode, per-event rate) and is the judge.

A client nonce (per user and event) maps to one comment id in Redis (``SET NX`` with a TTL): a
retry gets the same comment id back. If the first attempt was acked the retry is
answered without producing again; if it was not (Kafka failed, the gateway died before
the ack), the retry produces the same comment id again, and the pipeline drops it as a
``duplicate`` if the first record did arrive after all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from typing import Any, Final

from connectors.kafka_producer import OutputProducer
from connectors.topics import COMMENTS_SUBMITTED
from deploy.settings import Settings
from gateways.auth import Identity
from schemas import clock
from schemas.codec import AvroCodec
from schemas.records import CommentSubmitted, LiveEvent, UserProfile
from topologies.stages.validate import CommentLimits, Rejected, validate

_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ACKED: Final = "|acked"


def new_comment_id(now_ms: int | None = None) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, 26 Crockford base-32
    characters. Sorting ids sorts by submission time (to the millisecond)."""
    ms = clock.now_ms() if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def nonce_key(user_id: str, event_id: str, nonce: str) -> str:
    return f"nonce:{{{event_id}}}:{user_id}:{nonce}"


class PostError(Exception):
    """A post that was not accepted; ``code`` is a protocol/API error code."""

    def __init__(self, code: str, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


@dataclass(frozen=True, slots=True)
class Posted:
    comment: CommentSubmitted
    duplicate: bool  # the nonce was seen and its comment already acked


def check_envelope(
    comment: CommentSubmitted,
    *,
    event: LiveEvent | None,
    user: UserProfile | None,
    limits: CommentLimits,
) -> CommentSubmitted:
    """The comment with its text normalised, or :class:`PostError` with the pipeline's
    reason code (``empty_text``, ``text_too_long``, ``event_not_found`` for an unknown
    event, ``event_not_live``, ``user_banned``, ``user_timed_out`` with the ms left of
    the timeout as ``retry_after_ms``, ``members_only``, ``invalid_field``)."""
    verdict = validate(comment, offset=0, event=event, user=user, history=(), limits=limits)
    if isinstance(verdict, Rejected):
        code = verdict.reason
        if code == "missing_field":
            code = "invalid_field"
        retry_after_ms = None
        if code == "user_timed_out" and user is not None and user.timeout_until is not None:
            retry_after_ms = max(1, user.timeout_until - comment.submitted_at)
        raise PostError(code, verdict.detail, retry_after_ms)
    return verdict.comment


def pending_view(comment: CommentSubmitted, identity: Identity) -> dict[str, Any]:
    """The poster's own comment as shown to them before it is published."""
    return {
        "comment_id": comment.comment_id,
        "event_id": comment.event_id,
        "user_id": comment.user_id,
        "display_name": identity.name,
        "text": comment.text,
        "reply_to": comment.reply_to,
        "submitted_at": comment.submitted_at,
        "pending": True,
    }


class Poster:
    def __init__(
        self,
        *,
        codec: AvroCodec,
        producer: OutputProducer,
        redis: Any,
        state: Any,
        gateway_id: str,
        limits: CommentLimits,
        nonce_ttl_s: int,
        produce_timeout_s: float = 30.0,
    ) -> None:
        self._codec = codec
        self._producer = producer
        self._redis = redis
        self._state = state  # connectors.state_reader.StateReader: event(), user(), sync()
        self._gateway_id = gateway_id
        self._limits = limits
        self._nonce_ttl_s = nonce_ttl_s
        self._timeout = produce_timeout_s

    @classmethod
    def for_edge(cls, settings: Settings, backbone: Any, gateway_id: str) -> Poster:
        """The poster of an edge process (gateway, API) over its connections
        (``connectors.services.Backbone``), with the limits of the settings."""
        return cls(
            codec=backbone.codec,
            producer=backbone.producer,
            redis=backbone.redis,
            state=backbone.state,
            gateway_id=gateway_id,
            limits=CommentLimits(
                max_chars=settings.comment_max_chars, posts_per_minute=settings.posts_per_minute
            ),
            nonce_ttl_s=settings.gateway_nonce_ttl_s,
        )

    async def submit(
        self,
        identity: Identity,
        event_id: str,
        text: str,
        *,
        nonce: str | None = None,
        reply_to: str | None = None,
        trace_parent: str | None = None,
        now_ms: int | None = None,
    ) -> Posted:
        """Produce the comment and return once Kafka acknowledged it."""
        now = clock.now_ms() if now_ms is None else now_ms
        if not identity.can_post:
            raise PostError("not_authorized", "anonymous viewers cannot post")
        draft = CommentSubmitted(
            comment_id=new_comment_id(now),
            event_id=event_id,
            user_id=identity.user_id,
            text=text,
            client_nonce=nonce,
            reply_to=reply_to,
            submitted_at=now,
            gateway_id=self._gateway_id,
            trace_parent=trace_parent,
        )
        event = self._state.event(event_id)
        if event is None:
            # Created a moment ago? Catch up with events.settings once.
            await self._state.sync(timeout_s=2.0)
            event = self._state.event(event_id)
        comment = check_envelope(
            draft, event=event, user=self._state.user(identity.user_id), limits=self._limits
        )
        if nonce is not None:
            comment, acked = await self._claim_nonce(comment, nonce)
            if acked:
                return Posted(comment, duplicate=True)
        try:
            await self._producer.deliver(
                COMMENTS_SUBMITTED,
                event_id.encode(),
                self._codec.encode(COMMENTS_SUBMITTED, comment),
                self._timeout,
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:
            # The client's retry (same nonce) is safe: the nonce dedupes it.
            raise PostError("post_failed", f"Kafka did not take the comment: {e}") from e
        if nonce is not None:
            await self._mark_acked(comment, nonce)
        return Posted(comment, duplicate=False)

    async def _claim_nonce(
        self, comment: CommentSubmitted, nonce: str
    ) -> tuple[CommentSubmitted, bool]:
        key = nonce_key(comment.user_id, comment.event_id, nonce)
        try:
            previous = await self._redis.set(
                key, comment.comment_id, nx=True, ex=self._nonce_ttl_s, get=True
            )
        except Exception as e:
            raise PostError("unavailable", f"nonce store (Redis) not answering: {e}") from e
        if previous is None:
            return comment, False
        value = previous.decode() if isinstance(previous, bytes) else str(previous)
        acked = value.endswith(_ACKED)
        comment_id = value.removesuffix(_ACKED)
        return CommentSubmitted(**{**comment.to_avro(), "comment_id": comment_id}), acked

    async def _mark_acked(self, comment: CommentSubmitted, nonce: str) -> None:
        # Best effort: without it a retry produces again, and the pipeline drops the copy.
        with contextlib.suppress(Exception):
            await self._redis.set(
                nonce_key(comment.user_id, comment.event_id, nonce),
                comment.comment_id + _ACKED,
                xx=True,
                keepttl=True,
            )
