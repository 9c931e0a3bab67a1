"""Every error code a client can meet: the one table the gateway, the API and docs share.

Each code has one sentence (the default ``message`` of an ``error`` frame and of an HTTP
error body), its HTTP status when a request can meet it, and the WebSocket close code
when the gateway closes the connection with it. ``gateways.protocol.ERROR_CODES``,
``gateways.moderation.CODES`` and ``gateways.http.errors`` are produced from this table,
and ``tests/unit/test_error_codes.py`` checks the tables of docs/protocol.md and
docs/api.md against it.

To add a code: add a row here, then a row to docs/protocol.md's "Error codes" table
(if a WebSocket client can meet it) and to docs/api.md's "Errors" table (if a request
can); the unit test says what is missing.

This module imports nothing from the project: every layer of the edge may read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001  # drain: reconnect elsewhere
CLOSE_MESSAGE_TOO_BIG: Final = 1009
CLOSE_INTERNAL_ERROR: Final = 1011
CLOSE_AUTH_TIMEOUT: Final = 4001
CLOSE_TOKEN_EXPIRED: Final = 4002
CLOSE_BAD_TOKEN: Final = 4003
CLOSE_IDLE: Final = 4004
CLOSE_SLOW_CONSUMER: Final = 4008


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str
    sentence: str
    """The default message: a sentence for people, stable enough to show as is."""
    http_status: int | None
    """Status of an HTTP error with this code; None when only a WebSocket meets it."""
    close_code: int | None = None
    """WebSocket close code when the gateway closes with this error; None: stays open."""
    websocket: bool = True
    """False for the few codes only the HTTP API has (no such path, ETag mismatch...)."""


_TABLE: Final[tuple[ErrorCode, ...]] = (
    # The request itself.
    ErrorCode("bad_json", "the frame is not a JSON object", 400),
    ErrorCode(
        "binary_not_supported",
        "binary frames are not part of livecomments.v1; send JSON text",
        None,
    ),
    ErrorCode("unknown_type", "no such message type", None),
    ErrorCode("missing_field", "a required field is missing", 400),
    ErrorCode("invalid_field", "a field has the wrong type or value", 400),
    ErrorCode(
        "message_too_large",
        "the frame is larger than the gateway accepts",
        413,
        CLOSE_MESSAGE_TOO_BIG,
    ),
    # Who is asking.
    ErrorCode("not_authenticated", "send `auth` first", 401),
    ErrorCode("auth_timeout", "no `auth` in time", None, CLOSE_AUTH_TIMEOUT),
    # bad_token closes only at the first `auth`; a refused refresh keeps the connection.
    ErrorCode("bad_token", "the token was refused", 401, CLOSE_BAD_TOKEN),
    ErrorCode("token_expired", "the token has expired", 401, CLOSE_TOKEN_EXPIRED),
    ErrorCode("not_authorized", "this identity may not do that", 403),
    # Limits.
    ErrorCode("rate_limited", "too many requests; retry after `retry_after_ms`", 429),
    ErrorCode("too_many_events", "this connection has joined as many events as it may", None),
    ErrorCode("not_joined", "join the event first", None),
    # Events, comments, users.
    ErrorCode("event_not_found", "no such event", 404),
    ErrorCode("event_not_live", "the event does not take comments now", 409),
    ErrorCode("empty_text", "the comment has no visible text", 422),
    ErrorCode("text_too_long", "the comment is too long", 422),
    ErrorCode("user_banned", "the user is banned", 403),
    ErrorCode("user_timed_out", "the user is timed out", 403),
    ErrorCode("members_only", "only members may post in this event", 403),
    ErrorCode(
        "post_failed",
        "Kafka did not acknowledge the record; retry with the same nonce or key",
        503,
    ),
    ErrorCode("unavailable", "a server the gateway needs is not answering; retry later", 503),
    ErrorCode("comment_not_found", "no such comment (or no such held comment) in this event", 404),
    ErrorCode("user_not_found", "no such user", 404),
    ErrorCode("already_reviewed", "a moderator already decided about this held comment", 409),
    # The connection.
    ErrorCode("idle_timeout", "nothing sent and nothing joined for too long", None, CLOSE_IDLE),
    ErrorCode(
        "slow_consumer",
        "the connection could not keep up with its events",
        None,
        CLOSE_SLOW_CONSUMER,
    ),
    # Only the HTTP API has these.
    ErrorCode("not_found", "no such resource", 404, websocket=False),
    ErrorCode(
        "method_not_allowed", "this resource does not take that method", 405, websocket=False
    ),
    ErrorCode("event_exists", "an event with this id exists already", 409, websocket=False),
    ErrorCode(
        "precondition_failed",
        "the resource changed since you read it (If-Match)",
        412,
        websocket=False,
    ),
    ErrorCode("internal_error", "the server failed; the error is logged", 500, websocket=False),
)

ERRORS: Final[dict[str, ErrorCode]] = {row.code: row for row in _TABLE}
"""Every code, by name."""

MODERATION_CODES: Final[tuple[str, ...]] = (
    "not_authorized",
    "event_not_found",
    "comment_not_found",
    "user_not_found",
    "already_reviewed",
    "invalid_field",
    "missing_field",
    "post_failed",
)
"""The codes a moderator action can fail with (``gateways.moderation``)."""


def sentence(code: str) -> str:
    """The default message of ``code`` (the code itself for an unknown one)."""
    row = ERRORS.get(code)
    return row.sentence if row else code


def http_status(code: str) -> int:
    """HTTP status of ``code``; 400 for a code a request cannot meet or an unknown one."""
    row = ERRORS.get(code)
    return row.http_status if row and row.http_status is not None else 400


def websocket_sentences() -> dict[str, str]:
    """Code → sentence for every code a WebSocket client can meet."""
    return {row.code: row.sentence for row in _TABLE if row.websocket}


def http_statuses() -> dict[str, int]:
    """Code → status for every code a request can meet."""
    return {row.code: row.http_status for row in _TABLE if row.http_status is not None}
