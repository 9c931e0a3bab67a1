"""What the web page asks for: where the gateway is, and development tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from gateways.auth import mint_token
from gateways.http import models as m
from gateways.http.errors import ApiError
from gateways.http.routes.deps import Ctx, json_response
from gateways.protocol import SUBPROTOCOL
from schemas.clock import now_ms

router = APIRouter(tags=["web"])

DEV_TOKEN_TTL_S = 3600


@router.get("/v1/config", response_model=m.ConfigOut, summary="for the web page")
async def config(ctx: Ctx, request: Request) -> dict[str, Any]:
    settings = ctx.settings
    url = settings.api_gateway_url
    if not url:
        host = request.url.hostname or settings.host
        url = f"ws://{host}:{settings.gateway_port}/"
    return {"gateway_url": url, "dev_tokens": settings.api_dev_tokens, "protocol": SUBPROTOCOL}


@router.get(
    "/v1/dev/token",
    response_model=m.TokenOut,
    summary="a development token (only when LIVECOMMENTS_API_DEV_TOKENS is on)",
    responses={404: {"model": m.ErrorOut, "description": "not_found: dev tokens are off"}},
)
async def dev_token(
    ctx: Ctx,
    user: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")],
    name: Annotated[str | None, Query(max_length=64)] = None,
    role: Annotated[list[str] | None, Query(description="moderator, broadcaster, admin")] = None,
) -> Response:
    settings = ctx.settings
    if not settings.api_dev_tokens:
        raise ApiError("not_found", "development tokens are off (LIVECOMMENTS_API_DEV_TOKENS)")
    roles = tuple(role or ())
    if any(r not in ("moderator", "broadcaster", "admin", "member") for r in roles):
        raise ApiError("invalid_field", "`role`: moderator, broadcaster, admin or member")
    token = mint_token(settings, user, name=name, roles=roles, ttl_s=DEV_TOKEN_TTL_S)
    return json_response(
        {
            "token": token,
            "user_id": user,
            "roles": list(roles),
            "expires_at": now_ms() + DEV_TOKEN_TTL_S * 1000,
        },
        headers={"Cache-Control": "no-store"},
    )
