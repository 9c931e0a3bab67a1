"""Moderator actions over the WebSocket protocol, without servers: the ``moderate``
message in the sans-I/O session, the ``moderated`` reply, and how each action maps to
the moderation service."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from deploy.settings import Settings
from gateways import protocol as P
from gateways.auth import TokenVerifier, mint_token
from gateways.server import service_call

SECRET = "unit-test-secret-0123456789-abcdefghij"
T0 = int(time.time()) * 1000


def authed(user: str = "mod", roles: tuple[str, ...] = ("moderator",), **limits: Any) -> P.Session:
    token = mint_token(
        Settings(gateway_jwt_secret=SECRET), user, roles=roles, ttl_s=3600, now_s=T0 / 1000
    )
    s = P.Session(TokenVerifier(SECRET).verify, "gw-test", T0, limits=P.Limits(**limits))
    s.receive_text(json.dumps({"type": "auth", "token": token}), T0)
    assert json.loads(s.data_to_send()[0])["type"] == "welcome"
    return s


def send(s: P.Session, message: dict[str, Any], at: int = T0) -> list[dict[str, Any]]:
    s.receive_text(json.dumps(message), at)
    return [json.loads(f) for f in s.data_to_send()]


def moderate(action: str, **fields: Any) -> dict[str, Any]:
    return {"type": "moderate", "action": action, "id": "m1", **fields}


@pytest.mark.parametrize(
    ("message", "params"),
    [
        (moderate("held", event_id="e1"), {"event_id": "e1"}),
        (
            moderate("held", event_id="e1", after=41, limit=20),
            {"event_id": "e1", "after": 41, "limit": 20},
        ),
        (moderate("approve", event_id="e1", position=7), {"event_id": "e1", "position": 7}),
        (moderate("reject", event_id="e1", position=0), {"event_id": "e1", "position": 0}),
        (
            moderate("remove", event_id="e1", comment_id="01ABC", reason="spam"),
            {"event_id": "e1", "comment_id": "01ABC", "reason": "spam"},
        ),
        (moderate("remove", event_id="e1", position=9), {"event_id": "e1", "position": 9}),
        (
            moderate("timeout", user_id="troll", duration_s=600, event_id="e1", clear=True),
            {"user_id": "troll", "duration_s": 600, "event_id": "e1", "clear": True},
        ),
        (moderate("untimeout", user_id="troll"), {"user_id": "troll"}),
        (
            moderate("ban", user_id="troll", reason="abuse"),
            {"user_id": "troll", "reason": "abuse"},
        ),
        (moderate("unban", user_id="troll"), {"user_id": "troll"}),
        (moderate("hide", user_id="troll"), {"user_id": "troll"}),
        (moderate("unhide", user_id="troll"), {"user_id": "troll"}),
        (moderate("slow_mode", event_id="e1", seconds=30), {"event_id": "e1", "seconds": 30}),
        (
            moderate("strictness", event_id="e1", strictness="strict"),
            {"event_id": "e1", "strictness": "STRICT"},
        ),
    ],
)
def test_every_moderate_action_becomes_one_request_with_its_checked_fields(
    message: dict[str, Any], params: dict[str, Any]
) -> None:
    s = authed()
    assert send(s, message) == []
    [request] = s.events_received()
    assert isinstance(request, P.Moderate)
    assert (request.action, request.params, request.request_id) == (
        message["action"],
        params,
        "m1",
    )
    assert request.identity.user_id == "mod"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "moderate", "event_id": "e1"}, "missing_field"),
        (moderate("explode", event_id="e1"), "invalid_field"),
        (moderate(["held"]), "invalid_field"),  # type: ignore[arg-type]
        (moderate("held"), "missing_field"),
        (moderate("held", event_id="bad event"), "invalid_field"),
        (moderate("held", event_id="e1", limit=0), "invalid_field"),
        (moderate("held", event_id="e1", limit=501), "invalid_field"),
        (moderate("approve", event_id="e1"), "missing_field"),
        (moderate("approve", event_id="e1", position=-1), "invalid_field"),
        (moderate("approve", event_id="e1", position="7"), "invalid_field"),
        (moderate("reject", event_id="e1", position=True), "invalid_field"),
        (moderate("remove", event_id="e1"), "missing_field"),
        (moderate("remove", event_id="e1", comment_id=""), "invalid_field"),
        (moderate("remove", event_id="e1", position=3, reason="x" * 201), "invalid_field"),
        (moderate("timeout", user_id="troll"), "missing_field"),
        (moderate("timeout", user_id="troll", duration_s=9), "invalid_field"),
        (moderate("timeout", user_id="troll", duration_s=86_401), "invalid_field"),
        (moderate("timeout", user_id="troll", duration_s=60, clear="yes"), "invalid_field"),
        (moderate("ban", user_id=42), "invalid_field"),
        (moderate("hide"), "missing_field"),
        (moderate("slow_mode", event_id="e1", seconds=-5), "invalid_field"),
        (moderate("strictness", event_id="e1", strictness="harsh"), "invalid_field"),
    ],
)
def test_a_malformed_moderate_gets_its_error_code_and_no_request(
    message: dict[str, Any], code: str
) -> None:
    s = authed()
    out = send(s, message)
    assert [(f["type"], f["code"]) for f in out] == [("error", code)]
    assert s.events_received() == []


@pytest.mark.parametrize("roles", [(), ("member",), ("verified",)])
def test_a_non_moderator_gets_not_authorized_whatever_the_action(roles: tuple[str, ...]) -> None:
    s = authed("viewer", roles)
    for message in (
        moderate("remove", event_id="e1", position=3),
        moderate("timeout", user_id="other", duration_s=60),
        moderate("no-such-action"),
    ):
        out = send(s, message)
        assert [(f["code"], f.get("id")) for f in out] == [("not_authorized", "m1")]
    assert s.events_received() == []


def test_an_anonymous_viewer_cannot_moderate() -> None:
    s = P.Session(TokenVerifier(SECRET).verify, "gw-test", T0)
    send(s, {"type": "auth"})
    assert send(s, moderate("hide", user_id="x"))[0]["code"] == "not_authorized"


@pytest.mark.parametrize("roles", [("moderator",), ("broadcaster",), ("admin",)])
def test_moderators_broadcasters_and_admins_may_moderate(roles: tuple[str, ...]) -> None:
    s = authed("staff", roles)
    send(s, moderate("hide", user_id="troll"))
    assert [type(r) for r in s.events_received()] == [P.Moderate]


def test_moderate_is_a_control_message_under_the_connections_rate_limit() -> None:
    s = authed(messages_burst=3, messages_per_s=1.0)
    for _ in range(3):
        assert send(s, moderate("hide", user_id="troll")) == []
    out = send(s, moderate("hide", user_id="troll"))
    assert out[0]["code"] == "rate_limited" and out[0]["retry_after_ms"] > 0
    assert len(s.events_received()) == 3
    assert send(s, moderate("hide", user_id="troll"), at=T0 + 1500) == []


def test_moderate_before_auth_is_not_authenticated() -> None:
    s = P.Session(TokenVerifier(SECRET).verify, "gw-test", T0)
    assert send(s, moderate("hide", user_id="x"))[0]["code"] == "not_authenticated"


def test_the_moderated_reply_carries_the_action_the_id_and_the_services_result() -> None:
    frame = json.loads(P.moderated("timeout", {"user_id": "troll", "timeout_until": 5}, "m1"))
    assert frame == {
        "type": "moderated",
        "action": "timeout",
        "id": "m1",
        "result": {"user_id": "troll", "timeout_until": 5},
    }
    assert "id" not in json.loads(P.moderated("hide", {}, None))


def test_the_services_error_codes_have_sentences_in_the_protocol() -> None:
    from gateways.moderation import CODES

    assert set(CODES) <= set(P.ERROR_CODES)


@pytest.mark.parametrize(
    ("action", "params", "call"),
    [
        ("held", {"event_id": "e1", "limit": 5}, ("held", {"event_id": "e1", "limit": 5})),
        (
            "approve",
            {"event_id": "e1", "position": 7},
            ("review", {"event_id": "e1", "position": 7, "decision": "approve"}),
        ),
        (
            "reject",
            {"event_id": "e1", "position": 7},
            ("review", {"event_id": "e1", "position": 7, "decision": "reject"}),
        ),
        (
            "remove",
            {"event_id": "e1", "comment_id": "c"},
            ("remove", {"event_id": "e1", "comment_id": "c"}),
        ),
        (
            "timeout",
            {"user_id": "u", "duration_s": 60},
            ("timeout", {"user_id": "u", "duration_s": 60}),
        ),
        ("unhide", {"user_id": "u"}, ("unhide", {"user_id": "u"})),
        (
            "slow_mode",
            {"event_id": "e1", "seconds": 0},
            ("event_settings", {"event_id": "e1", "slow_mode_s": 0}),
        ),
        (
            "strictness",
            {"event_id": "e1", "strictness": "STRICT"},
            ("event_settings", {"event_id": "e1", "strictness": "STRICT"}),
        ),
    ],
)
def test_each_action_calls_its_moderation_service_method(
    action: str, params: dict[str, Any], call: tuple[str, dict[str, Any]]
) -> None:
    from gateways.moderation import ModeratorActions

    assert service_call(action, params) == call
    assert callable(getattr(ModeratorActions, call[0]))


def test_every_protocol_action_has_a_service_method() -> None:
    from gateways.moderation import ModeratorActions

    for action, fields in P.MODERATE_ACTIONS.items():
        method, _ = service_call(action, {name: 1 for name in fields})
        assert callable(getattr(ModeratorActions, method, None)), action
