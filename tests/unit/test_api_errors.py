"""Errors of the HTTP API: the protocol's codes, a status each, the same JSON shape."""

from __future__ import annotations

import json

from gateways.http.errors import (
    API_ONLY,
    STATUS,
    ApiError,
    error_body,
    error_headers,
    from_validation,
)
from gateways.protocol import ERROR_CODES

# Codes that only make sense on a WebSocket connection.
WEBSOCKET_ONLY = {
    "binary_not_supported",
    "unknown_type",
    "auth_timeout",
    "too_many_events",
    "not_joined",
    "idle_timeout",
    "slow_consumer",
}


def test_every_protocol_code_a_request_can_meet_has_a_status() -> None:
    missing = set(ERROR_CODES) - WEBSOCKET_ONLY - set(STATUS)
    assert not missing
    assert set(API_ONLY) <= set(STATUS)


def test_the_statuses_of_the_brief() -> None:
    assert ApiError("bad_json").status == 400
    assert ApiError("message_too_large").status == 413
    assert ApiError("token_expired").status == 401
    assert ApiError("event_not_found").status == 404
    assert ApiError("rate_limited").status == 429


def test_the_body_is_code_and_message() -> None:
    doc = json.loads(error_body("rate_limited", "60 posts per minute", 41250))
    assert doc == {
        "error": {"code": "rate_limited", "message": "60 posts per minute", "retry_after_ms": 41250}
    }
    assert json.loads(error_body("bad_json"))["error"]["message"] == ERROR_CODES["bad_json"]


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert error_headers("rate_limited", 41250)["Retry-After"] == "42"
    assert error_headers("rate_limited", 10)["Retry-After"] == "1"
    assert error_headers("unavailable", None)["Retry-After"] == "1"


def test_refused_tokens_say_bearer() -> None:
    assert 'error="invalid_token"' in error_headers("token_expired", None)["WWW-Authenticate"]
    assert error_headers("not_authenticated", None)["WWW-Authenticate"].startswith("Bearer")


def test_validation_errors_map_to_the_protocols_codes() -> None:
    broken = from_validation([{"type": "json_invalid", "loc": ("body", 7), "msg": "x"}])
    assert broken.code == "bad_json"
    not_object = from_validation([{"type": "model_attributes_type", "loc": ("body",), "msg": "x"}])
    assert not_object.code == "bad_json"
    missing = from_validation(
        [{"type": "missing", "loc": ("body", "text"), "msg": "Field required"}]
    )
    assert (missing.code, missing.message) == ("missing_field", "`text` is required")
    wrong = from_validation([{"type": "int_parsing", "loc": ("query", "limit"), "msg": "bad"}])
    assert wrong.code == "invalid_field" and "`limit`" in wrong.message


def test_moderator_action_codes_have_their_statuses_and_sentences() -> None:
    from gateways.moderation import CODES

    for code, (status, _) in CODES.items():
        assert ApiError(code).status == status, code
    assert ApiError("already_reviewed").status == 409
    assert ApiError("comment_not_found").status == 404
    assert ApiError("user_not_found").message == CODES["user_not_found"][1]
