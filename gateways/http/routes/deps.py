"""What every route depends on: the API's context, the caller, common answers.

``ApiContext`` is built once per app by ``create_app`` and kept on ``app.state``;
handlers receive it with ``ctx: Ctx`` (a FastAPI dependency), so no handler closes over
module state and a test can build an app around a context of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import Depends, Header, Request, Response
from fastapi import Path as InPath

from deploy.settings import Settings
from gateways.auth import AuthError, Identity, TokenVerifier
from gateways.http import models as m
from gateways.http import pages
from gateways.http.backends import Backends
from gateways.http.errors import ApiError
from gateways.moderation import ModeratorActions
from gateways.protocol import PostRate
from schemas.clock import now_ms
from schemas.records import LiveEvent

BEARER: Final = "bearer "
Auth = Annotated[str | None, Header(description="`Bearer <JWT>`")]
HeldPosition = Annotated[int, InPath(ge=0, lt=2**62, description="the held comment's position")]

# OpenAPI descriptions of the errors routes answer with.
ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: {"model": m.ErrorOut, "description": "bad_json, missing_field, invalid_field"},
    404: {"model": m.ErrorOut, "description": "event_not_found"},
    503: {"model": m.ErrorOut, "description": "unavailable: a server is not answering"},
}
AUTHED: Final[dict[int | str, dict[str, Any]]] = {
    **ERRORS,
    401: {"model": m.ErrorOut, "description": "not_authenticated, bad_token, token_expired"},
    403: {"model": m.ErrorOut, "description": "not_authorized (and the posting refusals)"},
}


@dataclass(frozen=True, slots=True)
class ApiContext:
    """What the routes share: settings, the backends and the per-process limits."""

    settings: Settings
    backends: Backends
    verifier: TokenVerifier
    post_rate: PostRate

    @classmethod
    def build(cls, settings: Settings, api_id: str) -> ApiContext:
        return cls(
            settings=settings,
            backends=Backends(settings, api_id),
            verifier=TokenVerifier.from_settings(settings),
            post_rate=PostRate(settings.posts_per_minute),
        )

    def identity(self, authorization: str | None, *, required: bool) -> Identity | None:
        if not authorization:
            if required:
                raise ApiError("not_authenticated", "send `Authorization: Bearer <token>`")
            return None
        if not authorization.lower().startswith(BEARER):
            raise ApiError("bad_token", "the Authorization scheme must be Bearer")
        try:
            return self.verifier.verify(authorization[len(BEARER) :].strip())
        except AuthError as e:
            raise ApiError(e.code, e.message) from e

    def moderator(self, authorization: str | None) -> Identity:
        who = self.identity(authorization, required=True)
        assert who is not None
        if not who.is_moderator:
            raise ApiError("not_authorized", "a moderator, broadcaster or admin role is required")
        return who

    def timeout_left(self, user_id: str) -> int | None:
        """Milliseconds until the user's timeout ends (None if not timed out)."""
        profile = self.backends.state.user(user_id)
        until = profile.timeout_until if profile is not None else None
        return None if until is None else max(0, until - now_ms())

    async def known_event(self, event_id: str) -> LiveEvent:
        event = await self.backends.event(checked_event_id(event_id))
        if event is None:
            raise ApiError("event_not_found", f"no event {event_id!r}")
        return event

    @property
    def actions(self) -> ModeratorActions:
        assert self.backends.actions is not None
        return self.backends.actions


def context(request: Request) -> ApiContext:
    """The app's context (set by ``create_app``)."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(context)]


def checked_event_id(event_id: str) -> str:
    if not pages.valid_event_id(event_id):
        raise ApiError("invalid_field", "`event_id` has characters an event id never has")
    return event_id


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)
