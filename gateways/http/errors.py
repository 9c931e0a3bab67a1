"""Errors of the HTTP API: the WebSocket protocol's stable codes, each with a status.

Every error answers ``{"error": {"code": ..., "message": ...}}`` (plus ``retry_after_ms``
where waiting helps, with a ``Retry-After`` header in whole seconds). Codes, sentences and
statuses come from the one table, ``gateways.error_codes``; the few codes only HTTP has
(``not_found``, ``method_not_allowed``, ``event_exists``, ``precondition_failed``,
``internal_error``) are the table's rows with ``websocket=False``.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from gateways.error_codes import ERRORS, http_status, http_statuses

# Produced from the one table (gateways.error_codes); kept under their old names.
API_ONLY: Final[dict[str, str]] = {
    row.code: row.sentence for row in ERRORS.values() if not row.websocket
}
MESSAGES: Final[dict[str, str]] = {row.code: row.sentence for row in ERRORS.values()}
STATUS: Final[dict[str, int]] = http_statuses()


class ApiError(Exception):
    """An error a client can meet: answered with its code's status and the JSON body."""

    def __init__(
        self, code: str, message: str | None = None, *, retry_after_ms: int | None = None
    ) -> None:
        self.code = code
        self.message = message or MESSAGES.get(code, code)
        self.retry_after_ms = retry_after_ms
        super().__init__(self.message)

    @property
    def status(self) -> int:
        return status_of(self.code)


def status_of(code: str) -> int:
    return http_status(code)


def error_body(code: str, message: str | None = None, retry_after_ms: int | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message or MESSAGES.get(code, code)}
    if retry_after_ms is not None:
        error["retry_after_ms"] = max(0, int(retry_after_ms))
    return json.dumps({"error": error}, ensure_ascii=False, separators=(",", ":")).encode()


def error_headers(code: str, retry_after_ms: int | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if retry_after_ms is not None:
        # Retry-After takes whole seconds; rounding down would invite a retry too early.
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_ms / 1000)))
    elif code in ("unavailable", "post_failed"):
        headers["Retry-After"] = "1"
    if code in ("not_authenticated", "bad_token", "token_expired"):
        error = "" if code == "not_authenticated" else ' error="invalid_token"'
        headers["WWW-Authenticate"] = f'Bearer realm="livecomments"{error}'
    return headers


def from_validation(errors: list[dict[str, Any]]) -> ApiError:
    """The API error for FastAPI's request validation errors (pydantic's list).

    A body that is not a JSON object is ``bad_json``, as a frame is in the protocol; a
    missing field is ``missing_field``; anything else names the field in ``invalid_field``.
    """
    for e in errors:
        kind = str(e.get("type", ""))
        loc = tuple(e.get("loc", ()))
        if kind == "json_invalid" or (
            loc == ("body",) and kind in ("missing", "model_attributes_type", "dict_type")
        ):
            if isinstance(e.get("input"), bytes):
                return ApiError(
                    "bad_json", "send the body as JSON (Content-Type: application/json)"
                )
            return ApiError("bad_json", "the body must be a JSON object")
    first = errors[0] if errors else {}
    parts = [str(part) for part in first.get("loc", ()) if part != "body"]
    where = ".".join(parts[1:] if parts and parts[0] in ("query", "path", "header") else parts)
    if first.get("type") == "missing":
        return ApiError("missing_field", f"`{where}` is required")
    return ApiError("invalid_field", f"`{where}`: {first.get('msg', 'invalid')}")
