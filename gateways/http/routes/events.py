"""Events: list, read, create and change their settings."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response

from gateways.http import models as m
from gateways.http import pages
from gateways.http.errors import ApiError
from gateways.http.routes.deps import AUTHED, ApiContext, Auth, Ctx, json_response
from gateways.moderation import event_view
from schemas.clock import now_ms
from schemas.records import (
    EventStatus,
    LinkPolicy,
    LiveEvent,
    ModerationThresholds,
    Strictness,
)

router = APIRouter(tags=["events"])


def event_changes(body: m.EventSettingsIn) -> dict[str, Any]:
    """``LiveEvent`` fields for the settings given (the API's lowercase → the records')."""
    given = body.model_dump(exclude_unset=True, exclude={"event_id"})
    changes: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            raise ApiError("invalid_field", f"`{name}` may not be null")
        if name == "status":
            changes[name] = EventStatus(value.upper())
        elif name == "strictness":
            changes[name] = Strictness(value.upper())
        elif name == "link_policy":
            changes[name] = LinkPolicy(value.upper())
        elif name in ("blocked_terms", "allowed_terms", "allowed_domains"):
            changes[name] = tuple(value)
        elif name == "thresholds":
            changes[name] = ModerationThresholds(**value)
        else:
            changes[name] = value
    return changes


def _etag(event: LiveEvent) -> str:
    return pages.etag(json.dumps(event_view(event, full=True), sort_keys=True).encode())


@router.get(
    "/v1/events",
    response_model=m.EventList,
    summary="events that are live or scheduled, newest change first",
)
async def list_events(
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    authorization: Auth = None,
) -> Response:
    who = ctx.identity(authorization, required=False)
    full = who is not None and who.is_moderator
    events = [
        e
        for e in ctx.backends.state.events.values()
        if not e.deleted and e.status is not EventStatus.ENDED
    ]
    events.sort(key=lambda e: (-e.updated_at, e.event_id))
    items = [event_view(e, full=full) for e in events[:limit]]
    return json_response({"items": items}, headers={"Cache-Control": "no-cache"})


@router.get(
    "/v1/events/{event_id}",
    response_model=m.EventOut,
    summary="an event (moderation settings for moderators)",
    responses=AUTHED,
)
async def get_event(ctx: Ctx, event_id: str, authorization: Auth = None) -> Response:
    who = ctx.identity(authorization, required=False)
    event = await ctx.known_event(event_id)
    full = who is not None and who.is_moderator
    doc = event_view(event, full=full)
    headers = {
        "ETag": _etag(event),
        "Cache-Control": "private, no-cache" if full else "public, max-age=5",
        "Vary": "Authorization",
    }
    return json_response(doc, headers=headers)


@router.post(
    "/v1/events",
    status_code=201,
    response_model=m.EventOut,
    summary="create an event (moderator, broadcaster or admin)",
    responses={**AUTHED, 409: {"model": m.ErrorOut, "description": "event_exists"}},
)
async def create_event(ctx: Ctx, body: m.EventCreate, authorization: Auth = None) -> Response:
    ctx.moderator(authorization)
    backends = ctx.backends
    # Up to the end of events.settings, however recent the last catch-up: creating
    # over an event another process just made would reset its settings.
    await backends.state.sync(timeout_s=5.0)
    if await backends.event(body.event_id) is not None:
        raise ApiError("event_exists", f"event {body.event_id!r} exists; PATCH it")
    now = now_ms()
    event = LiveEvent(
        event_id=body.event_id,
        title=body.title,
        status=EventStatus.LIVE,
        created_at=now,
        updated_at=now,
    )
    event = replace(event, **event_changes(body))
    await _write_event(ctx, event)
    return json_response(
        event_view(event, full=True),
        201,
        headers={"Location": f"/v1/events/{event.event_id}"},
    )


@router.patch(
    "/v1/events/{event_id}",
    response_model=m.EventOut,
    summary="change an event's settings (moderator, broadcaster or admin)",
    responses={**AUTHED, 412: {"model": m.ErrorOut, "description": "precondition_failed"}},
)
async def patch_event(
    ctx: Ctx,
    event_id: str,
    body: m.EventSettingsIn,
    authorization: Auth = None,
    if_match: Annotated[str | None, Header(description="the ETag of GET")] = None,
) -> Response:
    ctx.moderator(authorization)
    event = await ctx.known_event(event_id)
    if if_match is not None and not pages.etag_matches(if_match, _etag(event)):
        raise ApiError("precondition_failed")
    changed = replace(event, **event_changes(body), updated_at=max(now_ms(), event.updated_at + 1))
    await _write_event(ctx, changed)
    return json_response(event_view(changed, full=True))


async def _write_event(ctx: ApiContext, event: LiveEvent) -> None:
    backends = ctx.backends
    try:
        await asyncio.to_thread(backends.writer.put_event, event)
    except Exception as e:
        raise ApiError("unavailable", f"events.settings did not take the change: {e}") from e
    # Read your writes: this process follows events.settings too.
    await backends.state.sync(timeout_s=5.0)
