"""The gateway's sans-I/O protocol core and its authentication: no sockets, no servers."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from deploy.settings import Settings
from gateways import protocol as P
from gateways.auth import AuthError, TokenVerifier, mint_token

SECRET = "unit-test-secret-0123456789-abcdefghij"
T0 = int(time.time()) * 1000  # PyJWT checks exp and iat against the real clock


def verifier() -> TokenVerifier:
    return TokenVerifier(SECRET)


def token(user: str = "alice", roles: tuple[str, ...] = (), ttl_s: int = 3600) -> str:
    return mint_token(
        Settings(gateway_jwt_secret=SECRET), user, roles=roles, ttl_s=ttl_s, now_s=T0 / 1000
    )


def session(**limits: Any) -> P.Session:
    return P.Session(verifier().verify, "gw-test", T0, limits=P.Limits(**limits))


def frames(s: P.Session) -> list[dict[str, Any]]:
    return [json.loads(f) for f in s.data_to_send()]


def authed(user: str = "alice", roles: tuple[str, ...] = (), **limits: Any) -> P.Session:
    s = session(**limits)
    s.receive_text(json.dumps({"type": "auth", "token": token(user, roles)}), T0)
    assert frames(s)[0]["type"] == "welcome"
    return s


def send(s: P.Session, message: dict[str, Any], at: int = T0) -> list[dict[str, Any]]:
    s.receive_text(json.dumps(message), at)
    return frames(s)


def test_auth_with_a_token_welcomes_the_user_with_name_and_roles() -> None:
    s = session()
    out = send(s, {"type": "auth", "token": token("bob", ("moderator",)), "id": "a1"})
    assert out == [
        {
            "type": "welcome",
            "protocol": "livecomments.v1",
            "gateway_id": "gw-test",
            "user_id": "bob",
            "name": "bob",
            "roles": ["moderator"],
            "anonymous": False,
            "expires_at": T0 + 3_600_000,
            "id": "a1",
        }
    ]
    assert s.state is P.State.OPEN


def test_auth_without_a_token_makes_an_anonymous_viewer_who_cannot_post() -> None:
    s = session()
    assert send(s, {"type": "auth"})[0]["anonymous"] is True
    out = send(s, {"type": "post", "event_id": "e1", "text": "hi"})
    assert out[0]["code"] == "not_authorized"
    assert s.events_received() == []


def test_anything_before_auth_is_refused_and_no_auth_in_5_s_closes_4001() -> None:
    s = session()
    assert send(s, {"type": "join", "event_id": "e1"})[0]["code"] == "not_authenticated"
    s.tick(T0 + 4_999)
    assert s.close_code is None
    s.tick(T0 + 5_000)
    assert (s.close_code, frames(s)[0]["code"]) == (P.CLOSE_AUTH_TIMEOUT, "auth_timeout")


def test_a_forged_token_closes_4003_and_an_expired_one_4002() -> None:
    forged = jwt.encode({"sub": "eve", "exp": T0 // 1000 + 60}, "other-key-" * 4, "HS256")
    s = session()
    assert send(s, {"type": "auth", "token": forged})[0]["code"] == "bad_token"
    assert s.close_code == P.CLOSE_BAD_TOKEN
    s = session()
    expired = mint_token(Settings(gateway_jwt_secret=SECRET), "late", ttl_s=-5)
    assert send(s, {"type": "auth", "token": expired})[0]["code"] == "token_expired"
    assert s.close_code == P.CLOSE_TOKEN_EXPIRED


def test_alg_none_and_hs_rs_confusion_are_refused() -> None:
    unsigned = jwt.encode({"sub": "eve", "exp": 2**33}, key=None, algorithm="none")
    with pytest.raises(AuthError) as e:
        verifier().verify(unsigned)
    assert e.value.code == "bad_token"
    with pytest.raises(AuthError):
        verifier().verify(jwt.encode({"sub": "eve", "exp": 2**33}, SECRET, "HS512"))


def test_rs256_tokens_are_accepted_with_the_public_key() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    v = TokenVerifier(SECRET, public.decode())
    claims = {"sub": "idp-user", "name": "Ida", "roles": ["member"], "exp": int(time.time()) + 60}
    identity = v.verify(jwt.encode(claims, key, algorithm="RS256"))
    assert (identity.user_id, identity.name, identity.roles) == ("idp-user", "Ida", ("member",))
    # Without the public key configured, RS256 is not accepted at all.
    with pytest.raises(AuthError):
        verifier().verify(jwt.encode(claims, key, algorithm="RS256"))


def test_token_expiry_is_enforced_on_an_open_connection_with_a_warning_first() -> None:
    s = authed()
    s.receive_text(json.dumps({"type": "join", "event_id": "e1"}), T0)
    s.events_received()
    s.tick(T0 + 3_600_000 - 60_000)
    assert frames(s) == [{"type": "token_expiring", "expires_at": T0 + 3_600_000}]
    s.tick(T0 + 3_600_000)
    assert frames(s)[0]["code"] == "token_expired"
    assert s.close_code == P.CLOSE_TOKEN_EXPIRED


def test_a_refreshed_token_must_name_the_same_user() -> None:
    s = authed("alice")
    refreshed = mint_token(
        Settings(gateway_jwt_secret=SECRET), "alice", ttl_s=7200, now_s=T0 / 1000
    )
    assert send(s, {"type": "auth", "token": refreshed})[0]["type"] == "welcome"
    other = mint_token(Settings(gateway_jwt_secret=SECRET), "mallory", now_s=T0 / 1000)
    assert send(s, {"type": "auth", "token": other})[0]["code"] == "not_authorized"
    assert s.identity is not None and s.identity.user_id == "alice"
    assert s.close_code is None


def test_join_emits_a_request_with_since_and_mode() -> None:
    s = authed()
    send(
        s,
        {
            "type": "join",
            "event_id": "final-2026",
            "since": {"epoch": 7, "position": 41},
            "mode": "top",
            "id": "j",
        },
    )
    (req,) = s.events_received()
    assert isinstance(req, P.Join)
    assert (req.event_id, req.since, req.mode, req.request_id) == (
        "final-2026",
        P.Since(7, 41),
        "top",
        "j",
    )


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "join"}, "missing_field"),
        ({"type": "join", "event_id": ""}, "invalid_field"),
        ({"type": "join", "event_id": "a b"}, "invalid_field"),
        ({"type": "join", "event_id": 5}, "invalid_field"),
        ({"type": "join", "event_id": "e", "since": {"epoch": 1}}, "invalid_field"),
        ({"type": "join", "event_id": "e", "since": {"epoch": 1, "position": -1}}, "invalid_field"),
        (
            {"type": "join", "event_id": "e", "since": {"epoch": True, "position": 1}},
            "invalid_field",
        ),
        ({"type": "join", "event_id": "e", "mode": "some"}, "invalid_field"),
        ({"type": "leave", "event_id": "e"}, "not_joined"),
        ({"type": "mode", "event_id": "e", "mode": "top"}, "not_joined"),
        ({"type": "post", "event_id": "e"}, "missing_field"),
        ({"type": "post", "event_id": "e", "text": 3}, "invalid_field"),
        ({"type": "post", "event_id": "e", "text": "x", "nonce": ""}, "invalid_field"),
        ({"type": "post", "event_id": "e", "text": "x", "reply_to": 9}, "invalid_field"),
        ({"type": "dance"}, "unknown_type"),
        ({"no": "type"}, "unknown_type"),
        ({"type": "ping", "id": 5}, "invalid_field"),
    ],
)
def test_bad_requests_get_their_error_code_and_the_connection_stays_up(
    message: dict[str, Any], code: str
) -> None:
    s = authed()
    out = send(s, message)
    assert out[0]["type"] == "error" and out[0]["code"] == code, out
    assert out[0]["message"]
    assert s.events_received() == []
    assert s.close_code is None


def test_broken_json_and_binary_frames_are_errors_not_disconnects() -> None:
    s = authed()
    s.receive_text("{nope", T0)
    s.receive_text("[1, 2]", T0)
    s.receive_binary(b"\x00\x01", T0)
    assert [f["code"] for f in frames(s)] == ["bad_json", "bad_json", "binary_not_supported"]
    assert s.close_code is None


def test_a_frame_over_the_limit_closes_1009() -> None:
    s = authed(max_message_bytes=4096)
    s.receive_text(json.dumps({"type": "post", "event_id": "e", "text": "é" * 2100}), T0)
    assert frames(s)[0]["code"] == "message_too_large"
    assert s.close_code == P.CLOSE_MESSAGE_TOO_BIG


def test_posts_are_limited_per_user_across_connections_with_retry_after() -> None:
    rate = P.PostRate(3)
    one = P.Session(verifier().verify, "gw", T0, post_rate=rate)
    two = P.Session(verifier().verify, "gw", T0, post_rate=rate)
    for s in (one, two):
        send(s, {"type": "auth", "token": token("alice")})
    post = {"type": "post", "event_id": "e", "text": "hi"}
    send(one, post, T0)
    send(two, post, T0 + 1000)
    send(one, post, T0 + 2000)
    out = send(two, post, T0 + 3000)
    assert out[0]["code"] == "rate_limited"
    assert out[0]["retry_after_ms"] == 57_000
    assert len(one.events_received()) + len(two.events_received()) == 3
    assert send(two, post, T0 + 60_000) == []
    assert len(two.events_received()) == 1


def test_moderators_are_not_post_rate_limited() -> None:
    s = authed("mod", ("moderator",), posts_per_minute=1)
    for _ in range(5):
        send(s, {"type": "post", "event_id": "e", "text": "pinned"})
    assert len(s.events_received()) == 5


def test_a_flood_of_joins_is_rate_limited_and_capped_per_connection() -> None:
    s = authed(max_events=3, messages_per_s=10, messages_burst=5)
    codes = [
        (send(s, {"type": "join", "event_id": f"e{i}"}) or [{"code": "ok"}])[0]["code"]
        for i in range(8)
    ]
    assert codes == ["ok", "ok", "ok", "too_many_events", "too_many_events"] + ["rate_limited"] * 3
    assert len(s.events_received()) == 3


def test_idle_connections_without_events_close_4004_but_viewers_stay() -> None:
    viewer = authed()
    send(viewer, {"type": "join", "event_id": "e"})
    idle = authed()
    for s in (viewer, idle):
        s.tick(T0 + 300_000)
    assert idle.close_code == P.CLOSE_IDLE
    assert viewer.close_code is None


def test_frames_built_for_the_io_layer_have_their_documented_shape() -> None:
    assert json.loads(P.error("rate_limited", retry_after_ms=1500, request_id="p")) == {
        "type": "error",
        "code": "rate_limited",
        "message": P.ERROR_CODES["rate_limited"],
        "id": "p",
        "retry_after_ms": 1500,
    }
    items = ['{"position":1}', '{"position":2}']
    assert json.loads(P.items_frame("comments", '"e"', items)) == {
        "type": "comments",
        "event_id": "e",
        "items": [{"position": 1}, {"position": 2}],
    }
    assert json.loads(P.gap("e", 3, 9, "slow_consumer"))["position"] == 9


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_messages = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["auth", "join", "leave", "mode", "post", "ping", "x"])
        | st.text(max_size=5),
        "event_id": st.text(max_size=10) | _json_values,
        "since": _json_values,
        "text": st.text(max_size=50) | _json_values,
        "mode": st.sampled_from(["all", "top"]) | _json_values,
        "nonce": _json_values,
        "id": _json_values,
        "token": _json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_messages | st.text(max_size=40) | st.binary(max_size=40), max_size=12))
def test_random_frames_never_crash_the_session_and_every_reply_is_a_documented_frame(
    inputs: list[Any],
) -> None:
    s = authed()
    for i, item in enumerate(inputs):
        now = T0 + i * 10
        if isinstance(item, bytes):
            s.receive_binary(item, now)
        elif isinstance(item, str):
            s.receive_text(item, now)
        else:
            s.receive_text(json.dumps(item), now)
        for frame in s.data_to_send():
            out = json.loads(frame)
            assert out["type"] in {"error", "welcome", "pong", "token_expiring"}
            if out["type"] == "error":
                assert out["code"] in P.ERROR_CODES
        for request in s.events_received():
            assert isinstance(request, P.Join | P.Leave | P.SetMode | P.Post)
            assert request.event_id in s.events or isinstance(request, P.Leave | P.Post)
