"""What moderators do over HTTP: removals, held comments, measures on users.

Every handler is a thin shell over ``gateways.moderation.ModeratorActions``, the code
the gateway's ``moderate`` messages run too.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Response

from gateways.http import models as m
from gateways.http import pages
from gateways.http.routes.deps import (
    AUTHED,
    Auth,
    Ctx,
    HeldPosition,
    checked_event_id,
    json_response,
)

router = APIRouter(tags=["moderation"])

MODERATED: Final[dict[int | str, dict[str, Any]]] = {
    **AUTHED,
    403: {
        "model": m.ErrorOut,
        "description": "not_authorized: not a moderator, or the "
        "target user is a moderator, broadcaster or admin (or yourself)",
    },
}
REVIEWED: Final[dict[int | str, dict[str, Any]]] = {
    **MODERATED,
    404: {"model": m.ErrorOut, "description": "event_not_found, comment_not_found"},
    409: {"model": m.ErrorOut, "description": "already_reviewed"},
}
ON_USER: Final[dict[int | str, dict[str, Any]]] = {
    **MODERATED,
    404: {
        "model": m.ErrorOut,
        "description": "user_not_found (lifting a measure of a user "
        "without a profile), event_not_found",
    },
}


def _user_action(summary: str) -> dict[str, Any]:
    return {
        "status_code": 202,
        "response_model": m.UserActionOut,
        "summary": summary,
        "responses": ON_USER,
    }


@router.post(
    "/v1/events/{event_id}/removals",
    status_code=202,
    response_model=m.RemovalOut,
    summary="remove a comment (or every comment of a user) from every tier; moderators",
    responses=AUTHED,
)
@router.post(
    # The first name of this resource, kept for clients written against it.
    "/v1/events/{event_id}/retractions",
    status_code=202,
    response_model=m.RemovalOut,
    summary="the old name of `/removals`",
    responses=AUTHED,
    deprecated=True,
)
async def remove(
    ctx: Ctx, event_id: str, body: m.RemovalIn, authorization: Auth = None
) -> Response:
    who = ctx.moderator(authorization)
    checked_event_id(event_id)
    done = await ctx.actions.remove(
        who,
        event_id,
        comment_id=body.comment_id,
        position=body.position,
        user_id=body.user_id,
        scope=body.scope,
        reason=body.reason,
    )
    position = done["position"]
    # Position unknown (every comment of a user): all the event's pages.
    purge = [f"lc:{event_id}"] if position is None else pages.purge_keys(event_id, [position])
    return json_response(done | {"purge": purge}, 202)


@router.get(
    "/v1/events/{event_id}/held",
    response_model=m.HeldPageOut,
    summary="comments held for review, oldest first; moderators",
    responses=MODERATED,
)
async def held(
    ctx: Ctx,
    event_id: str,
    after: Annotated[
        int | None, Query(ge=-1, lt=2**62, description="held comments after this position")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    authorization: Auth = None,
) -> Response:
    who = ctx.moderator(authorization)
    page = await ctx.actions.held(who, checked_event_id(event_id), after=after, limit=limit)
    return json_response(page, headers={"Cache-Control": "no-store"})


async def _review(
    ctx: Ctx, event_id: str, position: int, decision: str, authorization: str | None
) -> Response:
    who = ctx.moderator(authorization)
    done = await ctx.actions.review(who, checked_event_id(event_id), position, decision)
    return json_response(done, 202)


@router.post(
    "/v1/events/{event_id}/held/{position}/approve",
    status_code=202,
    response_model=m.ReviewOut,
    summary="publish a held comment (at the position of the approval); moderators",
    responses=REVIEWED,
)
async def approve(
    ctx: Ctx, event_id: str, position: HeldPosition, authorization: Auth = None
) -> Response:
    return await _review(ctx, event_id, position, "approve", authorization)


@router.post(
    "/v1/events/{event_id}/held/{position}/reject",
    status_code=202,
    response_model=m.ReviewOut,
    summary="never publish a held comment; moderators",
    responses=REVIEWED,
)
async def reject(
    ctx: Ctx, event_id: str, position: HeldPosition, authorization: Auth = None
) -> Response:
    return await _review(ctx, event_id, position, "reject", authorization)


@router.post("/v1/users/{user_id}/timeout", **_user_action("no posts for a while; moderators"))
async def timeout(
    ctx: Ctx, user_id: str, body: m.TimeoutIn, authorization: Auth = None
) -> Response:
    who = ctx.moderator(authorization)
    done = await ctx.actions.timeout(
        who,
        user_id,
        body.duration_s,
        body.reason,
        event_id=body.event_id,
        clear=body.clear,
    )
    return json_response(done, 202)


@router.delete("/v1/users/{user_id}/timeout", **_user_action("lift a timeout; moderators"))
async def untimeout(ctx: Ctx, user_id: str, authorization: Auth = None) -> Response:
    return json_response(await ctx.actions.untimeout(ctx.moderator(authorization), user_id), 202)


@router.post("/v1/users/{user_id}/ban", **_user_action("no posts until unbanned; moderators"))
async def ban(
    ctx: Ctx, user_id: str, body: m.BanIn | None = None, authorization: Auth = None
) -> Response:
    who = ctx.moderator(authorization)
    given = body or m.BanIn()
    done = await ctx.actions.ban(
        who, user_id, given.reason, event_id=given.event_id, clear=given.clear
    )
    return json_response(done, 202)


@router.delete("/v1/users/{user_id}/ban", **_user_action("lift a ban; moderators"))
async def unban(ctx: Ctx, user_id: str, authorization: Auth = None) -> Response:
    return json_response(await ctx.actions.unban(ctx.moderator(authorization), user_id), 202)


@router.post(
    "/v1/users/{user_id}/hide",
    **_user_action("shadow a user: their comments are shown to them alone; moderators"),
)
async def hide(ctx: Ctx, user_id: str, authorization: Auth = None) -> Response:
    return json_response(await ctx.actions.hide(ctx.moderator(authorization), user_id), 202)


@router.delete("/v1/users/{user_id}/hide", **_user_action("stop shadowing a user; moderators"))
async def unhide(ctx: Ctx, user_id: str, authorization: Auth = None) -> Response:
    return json_response(await ctx.actions.unhide(ctx.moderator(authorization), user_id), 202)


@router.get(
    "/v1/users/{user_id}/moderation",
    response_model=m.UserModerationOut,
    summary="a user's bans, timeout, hiding and roles; moderators",
    responses={**MODERATED, 404: {"model": m.ErrorOut, "description": "user_not_found"}},
)
async def user_moderation(ctx: Ctx, user_id: str, authorization: Auth = None) -> Response:
    who = ctx.moderator(authorization)
    status = await ctx.actions.user_status(who, user_id)
    return json_response(status, headers={"Cache-Control": "no-store"})
