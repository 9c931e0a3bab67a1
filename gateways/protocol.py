"""The gateway's WebSocket protocol, sans I/O: frames in, requests and frames out.

One :class:`Session` per connection. The I/O layer (``gateways/server.py``) feeds it
what the client sent and the clock, then does what it says::

    session.receive_text(frame, now_ms)     # or receive_binary(...), tick(now_ms)
    for request in session.events_received():
        ...                                 # Join / Leave / Post / SetMode / Moderate: I/O
    for frame in session.data_to_send():
        ...                                 # send these text frames, in order
    if session.close_code is not None:
        ...                                 # then close with (close_code, close_reason)

The session checks everything that needs no server: JSON, types, fields, authentication
(the verifier is pure CPU), permissions, the per-user post rate, a per-connection
message rate, the authentication deadline, token expiry and idleness. Requests it
emits are well-formed and allowed; the I/O layer answers them with the frame builders
below (``joined``, ``ack``, ``error``, ...), so every frame's shape lives in this file
and in ``docs/protocol.md``.

Subprotocol ``livecomments.v1``: JSON text frames, one object each, with a ``type``.
A client request may carry an ``id`` (string, ≤ 64 chars) echoed in its reply.
"""

from __future__ import annotations

import enum
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from gateways import error_codes as E
from gateways.auth import ANONYMOUS_VIEWER, AuthError, Identity

SUBPROTOCOL: Final = "livecomments.v1"

# The close codes and the error sentences come from the one table of error codes.
CLOSE_NORMAL: Final = E.CLOSE_NORMAL
CLOSE_GOING_AWAY: Final = E.CLOSE_GOING_AWAY
CLOSE_MESSAGE_TOO_BIG: Final = E.CLOSE_MESSAGE_TOO_BIG
CLOSE_INTERNAL_ERROR: Final = E.CLOSE_INTERNAL_ERROR
CLOSE_AUTH_TIMEOUT: Final = E.CLOSE_AUTH_TIMEOUT
CLOSE_TOKEN_EXPIRED: Final = E.CLOSE_TOKEN_EXPIRED
CLOSE_BAD_TOKEN: Final = E.CLOSE_BAD_TOKEN
CLOSE_IDLE: Final = E.CLOSE_IDLE
CLOSE_SLOW_CONSUMER: Final = E.CLOSE_SLOW_CONSUMER
ERROR_CODES: Final[dict[str, str]] = E.websocket_sentences()

Mode = Literal["all", "top"]
MODES: Final = ("all", "top")
MAX_REQUEST_ID: Final = 64
MAX_EVENT_ID: Final = 128
MAX_NONCE: Final = 64


@dataclass(frozen=True, slots=True)
class Since:
    """Where a client stands in an event: the last comment it has, by epoch and position."""

    epoch: int
    position: int


@dataclass(frozen=True, slots=True)
class Join:
    event_id: str
    since: Since | None
    mode: Mode
    request_id: str | None
    identity: Identity


@dataclass(frozen=True, slots=True)
class Leave:
    event_id: str
    request_id: str | None


@dataclass(frozen=True, slots=True)
class SetMode:
    event_id: str
    mode: Mode
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Post:
    event_id: str
    text: str
    nonce: str | None
    reply_to: str | None
    request_id: str | None
    identity: Identity


@dataclass(frozen=True, slots=True)
class Moderate:
    """A moderator's action (``action`` one of :data:`MODERATE_ACTIONS`) with its
    validated fields, by their protocol names (``docs/protocol.md``); absent optional
    fields are left out. The identity is a moderator, broadcaster or admin by its token;
    the moderation service still checks whom it acts on."""

    action: str
    params: dict[str, Any]
    request_id: str | None
    identity: Identity


Request = Join | Leave | SetMode | Post | Moderate


@dataclass(frozen=True, slots=True)
class Limits:
    """Figures the session enforces (from settings; see ``Session.from_settings``)."""

    max_message_bytes: int = 4096
    auth_timeout_ms: int = 5000
    idle_timeout_ms: int = 300_000
    posts_per_minute: int = 60
    max_events: int = 20
    # Control messages (join, leave, mode, ping...) per connection: a token bucket.
    messages_per_s: float = 20.0
    messages_burst: int = 50


class PostRate:
    """Posts per user per minute, shared by every connection of a gateway process.

    A sliding window of the user's last post times; privileged users are not limited
    (the pipeline exempts them too). Pure: the caller passes the time.
    """

    def __init__(self, per_minute: int, max_users: int = 200_000) -> None:
        self._per_minute = per_minute
        self._max_users = max_users
        self._times: dict[str, deque[int]] = {}

    def check(self, user_id: str, now_ms: int) -> int:
        """0 and the post is counted, or how many ms until the user may post again."""
        times = self._times.get(user_id)
        if times is None:
            if len(self._times) >= self._max_users:
                self._forget(now_ms)
            times = self._times[user_id] = deque()
        while times and times[0] <= now_ms - 60_000:
            times.popleft()
        if len(times) >= self._per_minute:
            return times[0] + 60_000 - now_ms
        times.append(now_ms)
        return 0

    def _forget(self, now_ms: int) -> None:
        for user in [u for u, t in self._times.items() if not t or t[-1] <= now_ms - 60_000]:
            del self._times[user]


class State(enum.Enum):
    AUTHENTICATING = "authenticating"
    OPEN = "open"
    CLOSING = "closing"


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def error(
    code: str,
    message: str | None = None,
    *,
    request_id: str | None = None,
    event_id: str | None = None,
    retry_after_ms: int | None = None,
) -> str:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message or ERROR_CODES[code]}
    if request_id is not None:
        frame["id"] = request_id
    if event_id is not None:
        frame["event_id"] = event_id
    if retry_after_ms is not None:
        frame["retry_after_ms"] = max(0, int(retry_after_ms))
    return _dumps(frame)


def welcome(identity: Identity, gateway_id: str, request_id: str | None = None) -> str:
    frame: dict[str, Any] = {
        "type": "welcome",
        "protocol": SUBPROTOCOL,
        "gateway_id": gateway_id,
        "user_id": identity.user_id,
        "name": identity.name,
        "roles": list(identity.roles),
        "anonymous": identity.anonymous,
        "expires_at": identity.expires_at_ms,
    }
    if request_id is not None:
        frame["id"] = request_id
    return _dumps(frame)


def joined(
    event_id: str,
    *,
    epoch: int | None,
    position: int | None,
    recovered: int,
    complete: bool,
    truncated: bool,
    mode: Mode,
    hot: bool,
    request_id: str | None,
    reason: str | None = None,
) -> str:
    frame: dict[str, Any] = {
        "type": "joined",
        "event_id": event_id,
        "epoch": epoch,
        "position": position,
        "recovered": recovered,
        "complete": complete,
        "truncated": truncated,
        "mode": mode,
        "hot": hot,
    }
    if reason is not None:
        frame["reason"] = reason
    if request_id is not None:
        frame["id"] = request_id
    return _dumps(frame)


def left(event_id: str, request_id: str | None) -> str:
    frame: dict[str, Any] = {"type": "left", "event_id": event_id}
    if request_id is not None:
        frame["id"] = request_id
    return _dumps(frame)


def mode_set(event_id: str, mode: Mode, hot: bool, request_id: str | None) -> str:
    frame: dict[str, Any] = {"type": "mode", "event_id": event_id, "mode": mode, "hot": hot}
    if request_id is not None:
        frame["id"] = request_id
    return _dumps(frame)


def ack(
    event_id: str, comment_id: str, nonce: str | None, duplicate: bool, request_id: str | None
) -> str:
    frame: dict[str, Any] = {
        "type": "ack",
        "event_id": event_id,
        "comment_id": comment_id,
        "nonce": nonce,
        "duplicate": duplicate,
    }
    if request_id is not None:
        frame["id"] = request_id
    return _dumps(frame)


def pending(comment: dict[str, Any]) -> str:
    return _dumps({"type": "pending", "event_id": comment["event_id"], "comment": comment})


def gap(event_id: str, epoch: int | None, position: int | None, reason: str) -> str:
    frame = {"type": "gap", "event_id": event_id, "epoch": epoch, "position": position}
    return _dumps({**frame, "reason": reason})


def presence(event_id: str, viewers: int) -> str:
    return _dumps({"type": "presence", "event_id": event_id, "viewers": viewers})


def reconnect(after_ms: int, reason: str) -> str:
    return _dumps({"type": "reconnect", "after_ms": after_ms, "reason": reason})


def token_expiring(expires_at_ms: int) -> str:
    return _dumps({"type": "token_expiring", "expires_at": expires_at_ms})


def moderated(action: str, result: dict[str, Any], request_id: str | None) -> str:
    """The reply to a ``moderate`` request: the moderation service's result, as is."""
    frame: dict[str, Any] = {"type": "moderated", "action": action}
    if request_id is not None:
        frame["id"] = request_id
    frame["result"] = result
    return _dumps(frame)


def items_frame(kind: str, event_id_json: str, items: list[str]) -> str:
    """``comments`` or ``retracted`` with items that are already JSON (from the live
    tier): concatenated, never parsed again, so every viewer gets the same bytes."""
    return f'{{"type":"{kind}","event_id":{event_id_json},"items":[{",".join(items)}]}}'


class Session:
    """One connection's protocol state. Build with the connection's open time."""

    # One per connection, tens of thousands per process: no __dict__ (docs/performance.md).
    __slots__ = (
        "_gateway_id",
        "_last_activity_ms",
        "_opened_ms",
        "_out",
        "_post_rate",
        "_requests",
        "_tokens",
        "_tokens_at",
        "_verify",
        "_warned_expiry",
        "close_code",
        "close_reason",
        "events",
        "identity",
        "limits",
        "state",
    )

    def __init__(
        self,
        verify: Callable[[str], Identity],
        gateway_id: str,
        now_ms: int,
        *,
        limits: Limits | None = None,
        post_rate: PostRate | None = None,
    ) -> None:
        self._verify = verify
        self._gateway_id = gateway_id
        self.limits = limits or Limits()
        self._post_rate = post_rate or PostRate(self.limits.posts_per_minute)
        self.state = State.AUTHENTICATING
        self.identity: Identity | None = None
        self.events: set[str] = set()
        self.close_code: int | None = None
        self.close_reason = ""
        self._opened_ms = now_ms
        self._last_activity_ms = now_ms
        self._warned_expiry = False
        self._tokens = float(self.limits.messages_burst)
        self._tokens_at = now_ms
        self._requests: list[Request] = []
        self._out: list[str] = []

    def events_received(self) -> list[Request]:
        """Requests to carry out, in order; each must be answered (see module doc)."""
        requests, self._requests = self._requests, []
        return requests

    def data_to_send(self) -> list[str]:
        """Frames to send now, in order."""
        out, self._out = self._out, []
        return out

    def send(self, frame: str) -> None:
        """Queue a frame built by the I/O layer (a reply) behind the session's own."""
        self._out.append(frame)

    def fail(self, code: int, reason: str, frame: str | None = None) -> None:
        """Send ``frame`` (an error) if given, then close with ``code``."""
        if frame is not None:
            self._out.append(frame)
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        self.state = State.CLOSING

    def left_event(self, event_id: str) -> None:
        """The I/O layer could not join (or dropped) ``event_id``: forget it."""
        self.events.discard(event_id)

    # -- input ---------------------------------------------------------------------------

    def receive_binary(self, data: bytes, now_ms: int) -> None:
        if self.state is State.CLOSING:
            return
        if len(data) > self.limits.max_message_bytes:
            self._too_large(len(data))
            return
        self._last_activity_ms = now_ms
        self._out.append(error("binary_not_supported"))

    def receive_text(self, data: str, now_ms: int) -> None:
        if self.state is State.CLOSING:
            return
        size = len(data.encode()) if len(data) * 4 > self.limits.max_message_bytes else len(data)
        if size > self.limits.max_message_bytes:
            self._too_large(size)
            return
        self._last_activity_ms = now_ms
        try:
            message = json.loads(data)
        except ValueError:
            self._out.append(error("bad_json"))
            return
        if not isinstance(message, dict):
            self._out.append(error("bad_json"))
            return
        request_id = message.get("id")
        if request_id is not None and not (
            isinstance(request_id, str) and len(request_id) <= MAX_REQUEST_ID
        ):
            self._out.append(error("invalid_field", "`id` must be a string of ≤ 64 characters"))
            return
        kind = message.get("type")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self._out.append(error("unknown_type", f"unknown type {kind!r}", request_id=request_id))
            return
        if kind != "auth" and self.state is State.AUTHENTICATING:
            self._out.append(error("not_authenticated", request_id=request_id))
            return
        if kind not in ("auth", "post") and not self._take_token(now_ms):
            wait = int((1 - self._tokens) / self.limits.messages_per_s * 1000) + 1
            self._out.append(error("rate_limited", request_id=request_id, retry_after_ms=wait))
            return
        try:
            handler(self, message, request_id, now_ms)
        except _Invalid as e:
            self._out.append(error(e.code, e.message, request_id=request_id))

    def tick(self, now_ms: int) -> None:
        """Enforce deadlines: call about once a second."""
        if self.state is State.CLOSING:
            return
        if self.state is State.AUTHENTICATING:
            if now_ms - self._opened_ms >= self.limits.auth_timeout_ms:
                self.fail(CLOSE_AUTH_TIMEOUT, "auth_timeout", error("auth_timeout"))
            return
        identity = self.identity
        assert identity is not None
        expires = identity.expires_at_ms
        if expires is not None:
            if now_ms >= expires:
                self.fail(CLOSE_TOKEN_EXPIRED, "token_expired", error("token_expired"))
                return
            if not self._warned_expiry and expires - now_ms <= 60_000:
                self._warned_expiry = True
                self._out.append(token_expiring(expires))
        if not self.events and now_ms - self._last_activity_ms >= self.limits.idle_timeout_ms:
            self.fail(CLOSE_IDLE, "idle_timeout", error("idle_timeout"))

    # -- handlers ------------------------------------------------------------------------

    def _too_large(self, size: int) -> None:
        limit = self.limits.max_message_bytes
        self.fail(
            CLOSE_MESSAGE_TOO_BIG,
            "message_too_large",
            error("message_too_large", f"{size} bytes; at most {limit}"),
        )

    def _take_token(self, now_ms: int) -> bool:
        elapsed = max(0, now_ms - self._tokens_at) / 1000
        self._tokens_at = now_ms
        self._tokens = min(
            float(self.limits.messages_burst), self._tokens + elapsed * self.limits.messages_per_s
        )
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _auth(self, m: dict[str, Any], request_id: str | None, now_ms: int) -> None:
        token = m.get("token")
        if token is not None and not isinstance(token, str):
            raise _Invalid("invalid_field", "`token` must be a string or null")
        if not token:
            if self.identity is not None and not self.identity.anonymous:
                raise _Invalid("not_authorized", "an authenticated connection stays authenticated")
            identity = ANONYMOUS_VIEWER
        else:
            try:
                identity = self._verify(token)
            except AuthError as e:
                if self.state is State.AUTHENTICATING:
                    close = CLOSE_TOKEN_EXPIRED if e.code == "token_expired" else CLOSE_BAD_TOKEN
                    self.fail(close, e.code, error(e.code, e.message, request_id=request_id))
                    return
                raise _Invalid(e.code, e.message) from e
            if identity.expires_at_ms is not None and identity.expires_at_ms <= now_ms:
                raise _Invalid("token_expired", "the token has expired")
            current = self.identity
            signed_in = current is not None and not current.anonymous
            # A refresh: the same user with a later expiry, nobody else.
            if signed_in and current is not None and identity.user_id != current.user_id:
                raise _Invalid("not_authorized", "a refreshed token must name the same user")
            self._warned_expiry = False
        # An anonymous viewer signing in keeps its joins: a user reads at least as much.
        self.identity = identity
        self.state = State.OPEN
        self._out.append(welcome(identity, self._gateway_id, request_id))

    def _join(self, m: dict[str, Any], request_id: str | None, now_ms: int) -> None:
        event_id = _event_id(m)
        mode = _mode(m)
        since = _since(m.get("since"))
        if event_id not in self.events and len(self.events) >= self.limits.max_events:
            raise _Invalid("too_many_events", f"at most {self.limits.max_events} events")
        assert self.identity is not None
        self.events.add(event_id)
        self._requests.append(Join(event_id, since, mode, request_id, self.identity))

    def _leave(self, m: dict[str, Any], request_id: str | None, now_ms: int) -> None:
        event_id = _event_id(m)
        if event_id not in self.events:
            raise _Invalid("not_joined", f"not joined to {event_id!r}")
        self.events.discard(event_id)
        self._requests.append(Leave(event_id, request_id))

    def _mode(self, m: dict[str, Any], request_id: str | None, now_ms: int) -> None:
        event_id = _event_id(m)
        if event_id not in self.events:
            raise _Invalid("not_joined", f"not joined to {event_id!r}")
        self._requests.append(SetMode(event_id, _mode(m), request_id))

    def _post(self, m: dict[str, Any], request_id: str | None, now_ms: int) -> None:
        event_id = _event_id(m)
        text = m.get("text")
        if text is None:
            raise _Invalid("missing_field", "`text` is required")
        if not isinstance(text, str):
            raise _Invalid("invalid_field", "`text` must be a string")
        nonce = m.get("nonce")
        if nonce is not None and not (
            isinstance(nonce, str) and 0 < len(nonce) <= MAX_NONCE and nonce.isprintable()
        ):
            raise _Invalid("invalid_field", f"`nonce`: a string of 1 to {MAX_NONCE} characters")
        reply_to = m.get("reply_to")
        if reply_to is not None and not (isinstance(reply_to, str) and 0 < len(reply_to) <= 128):
            raise _Invalid("invalid_field", "`reply_to` must be a comment id")
        identity = self.identity
        assert identity is not None
        if not identity.can_post:
            raise _Invalid("not_authorized", "anonymous viewers cannot post; send a token")
        if not identity.is_moderator:
            wait = self._post_rate.check(identity.user_id, now_ms)
            if wait > 0:
                self._out.append(
                    error(
                        "rate_limited",
                        f"{self.limits.posts_per_minute} posts per minute",
                        request_id=request_id,
                        event_id=event_id,
                        retry_after_ms=wait,
                    )
                )
                return
        self._requests.append(Post(event_id, text, nonce, reply_to, request_id, identity))

    def _moderate(self, m: dict[str, Any], request_id: str | None, now_ms: int) -> None:
        identity = self.identity
        assert identity is not None
        if not identity.is_moderator:
            raise _Invalid("not_authorized", "only moderators, broadcasters and admins moderate")
        action = m.get("action")
        if action is None:
            raise _Invalid("missing_field", "`action` is required")
        fields = MODERATE_ACTIONS.get(action) if isinstance(action, str) else None
        if fields is None:
            names = ", ".join(MODERATE_ACTIONS)
            raise _Invalid("invalid_field", f"`action` must be one of {names}")
        params: dict[str, Any] = {}
        for name, (parse, required) in fields.items():
            value = m.get(name)
            if value is None:
                if required:
                    raise _Invalid("missing_field", f"`{name}` is required for {action}")
                continue
            params[name] = parse(name, value)
        if action == "remove" and "comment_id" not in params and "position" not in params:
            raise _Invalid("missing_field", "remove needs `comment_id` or `position`")
        self._requests.append(Moderate(action, params, request_id, identity))

    def _ping(self, m: dict[str, Any], request_id: str | None, now_ms: int) -> None:
        frame: dict[str, Any] = {"type": "pong", "time": now_ms}
        if request_id is not None:
            frame["id"] = request_id
        self._out.append(_dumps(frame))


class _Invalid(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _event_id(m: dict[str, Any]) -> str:
    value = m.get("event_id")
    if value is None:
        raise _Invalid("missing_field", "`event_id` is required")
    if not isinstance(value, str) or not value or len(value) > MAX_EVENT_ID:
        raise _Invalid("invalid_field", "`event_id` must be a non-empty string")
    if not all(c.isalnum() or c in "._:@-" for c in value) or not value.isascii():
        raise _Invalid("invalid_field", "`event_id` has characters an event id never has")
    return value


def _mode(m: dict[str, Any]) -> Mode:
    value = m.get("mode", "all")
    if value == "all":
        return "all"
    if value == "top":
        return "top"
    raise _Invalid("invalid_field", "`mode` must be 'all' or 'top'")


def _since(value: Any) -> Since | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Invalid("invalid_field", "`since` must be {epoch, position}")
    epoch, position = value.get("epoch"), value.get("position")
    for name, v in (("epoch", epoch), ("position", position)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**63:
            raise _Invalid("invalid_field", f"`since.{name}` must be a non-negative integer")
    assert isinstance(epoch, int) and isinstance(position, int)
    return Since(epoch, position)


def _id_field(name: str, value: Any) -> str:
    if name == "event_id":
        return _event_id({"event_id": value})
    if not isinstance(value, str) or not 0 < len(value) <= 128 or not value.isprintable():
        raise _Invalid("invalid_field", f"`{name}` must be a string of 1 to 128 characters")
    return value


def _reason(name: str, value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_REASON or not value.isprintable():
        raise _Invalid("invalid_field", f"`{name}`: 1 to {MAX_REASON} printable characters")
    return value


def _integer(low: int, high: int) -> Callable[[str, Any], int]:
    def parse(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _Invalid("invalid_field", f"`{name}` must be an integer from {low} to {high}")
        return value

    return parse


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("invalid_field", f"`{name}` must be true or false")
    return value


def _strictness(name: str, value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in STRICTNESS:
        raise _Invalid("invalid_field", f"`{name}` must be one of {', '.join(STRICTNESS)}")
    return value.upper()


MAX_REASON: Final = 200
STRICTNESS: Final = ("RELAXED", "STANDARD", "STRICT")
_Field = tuple[Callable[[str, Any], Any], bool]  # parser, required
_POSITION: Final[_Field] = (_integer(0, 2**63 - 1), True)
_EVENT: Final[_Field] = (_id_field, True)
_USER: Final[_Field] = (_id_field, True)
_REASON: Final[_Field] = (_reason, False)

MODERATE_ACTIONS: Final[dict[str, dict[str, _Field]]] = {
    "held": {
        "event_id": _EVENT,
        "after": (_integer(0, 2**63 - 1), False),
        "limit": (_integer(1, 500), False),
    },
    "approve": {"event_id": _EVENT, "position": _POSITION},
    "reject": {"event_id": _EVENT, "position": _POSITION},
    "remove": {
        "event_id": _EVENT,
        "comment_id": (_id_field, False),
        "position": (_integer(0, 2**63 - 1), False),
        "reason": _REASON,
    },
    "timeout": {
        "user_id": _USER,
        "duration_s": (_integer(10, 86_400), True),
        "reason": _REASON,
        "event_id": (_id_field, False),
        "clear": (_flag, False),
    },
    "untimeout": {"user_id": _USER},
    "ban": {
        "user_id": _USER,
        "reason": _REASON,
        "event_id": (_id_field, False),
        "clear": (_flag, False),
    },
    "unban": {"user_id": _USER},
    "hide": {"user_id": _USER},
    "unhide": {"user_id": _USER},
    "slow_mode": {"event_id": _EVENT, "seconds": (_integer(0, 86_400), True)},
    "strictness": {"event_id": _EVENT, "strictness": (_strictness, True)},
}
"""Every ``moderate`` action and its fields (docs/protocol.md; gateways/moderation.py)."""

_Handler = Callable[[Session, dict[str, Any], "str | None", int], None]

_HANDLERS: Final[dict[str, _Handler]] = {
    "auth": Session._auth,
    "join": Session._join,
    "leave": Session._leave,
    "mode": Session._mode,
    "post": Session._post,
    "ping": Session._ping,
    "moderate": Session._moderate,
}
