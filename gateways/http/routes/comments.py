"""Posting a comment and reading an event's history by cursor."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Final

from fastapi import APIRouter, Header, Query, Request, Response
from prometheus_client import Counter

from gateways.history import FAR_POSITION, stored_entry
from gateways.http import models as m
from gateways.http import pages
from gateways.http.errors import ApiError
from gateways.http.routes.deps import AUTHED, Auth, Ctx, checked_event_id, json_response
from gateways.posting import PostError, pending_view
from gateways.protocol import MAX_NONCE
from schemas.clock import now_ms

READ_TIMEOUT_S: Final = 5.0

POSTS = Counter("api_posts_total", "comments posted over HTTP by outcome", ["outcome"])
PAGES = Counter("api_history_pages_total", "history pages served by kind", ["kind"])

router = APIRouter(tags=["comments"])


@router.post(
    "/v1/events/{event_id}/comments",
    status_code=202,
    response_model=m.AckOut,
    summary="post a comment; answered once Kafka acknowledged it",
    responses={
        **AUTHED,
        409: {"model": m.ErrorOut, "description": "event_not_live"},
        413: {"model": m.ErrorOut, "description": "message_too_large"},
        422: {"model": m.ErrorOut, "description": "empty_text, text_too_long"},
        429: {"model": m.ErrorOut, "description": "rate_limited (Retry-After)"},
    },
)
async def post_comment(
    ctx: Ctx,
    event_id: str,
    body: m.CommentIn,
    authorization: Auth = None,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=MAX_NONCE, description="the nonce, as a header"),
    ] = None,
) -> Response:
    who = ctx.identity(authorization, required=True)
    poster = ctx.backends.poster
    assert who is not None and poster is not None
    checked_event_id(event_id)
    nonce = body.nonce
    if idempotency_key is not None:
        if not idempotency_key or not idempotency_key.isprintable():
            raise ApiError("invalid_field", "`Idempotency-Key`: 1 to 64 printable characters")
        if nonce is not None and nonce != idempotency_key:
            raise ApiError("invalid_field", "`nonce` and `Idempotency-Key` differ")
        nonce = idempotency_key
    if nonce is not None and not nonce.isprintable():
        raise ApiError("invalid_field", "`nonce`: printable characters only")
    if not who.is_moderator:
        wait = ctx.post_rate.check(who.user_id, now_ms())
        if wait > 0:
            POSTS.labels("rate_limited").inc()
            raise ApiError(
                "rate_limited",
                f"{ctx.settings.posts_per_minute} posts per minute",
                retry_after_ms=wait,
            )
    try:
        posted = await poster.submit(who, event_id, body.text, nonce=nonce, reply_to=body.reply_to)
    except PostError as e:
        POSTS.labels(e.code).inc()
        retry = e.retry_after_ms
        if retry is None and e.code == "user_timed_out":
            retry = ctx.timeout_left(who.user_id)
        raise ApiError(e.code, e.message, retry_after_ms=retry) from e
    POSTS.labels("duplicate" if posted.duplicate else "acked").inc()
    c = posted.comment
    return json_response(
        {
            "event_id": c.event_id,
            "comment_id": c.comment_id,
            "nonce": c.client_nonce,
            "duplicate": posted.duplicate,
            "comment": pending_view(c, who),
        },
        202,
    )


@router.get(
    "/v1/events/{event_id}/comments",
    summary="history by cursor: full pages are immutable and CDN-cacheable",
    responses={
        200: {"model": m.PageOut},
        304: {"description": "If-None-Match matched the page's ETag"},
        **AUTHED,
    },
)
async def history(
    ctx: Ctx,
    request: Request,
    event_id: str,
    before: Annotated[
        int | None, Query(ge=0, lt=2**62, description="the comments before this position")
    ] = None,
    after: Annotated[
        int | None,
        Query(ge=-1, lt=2**62, description="the comments after this position (-1: from the start)"),
    ] = None,
    limit: Annotated[int | None, Query(ge=1, description="comments per page")] = None,
    authorization: Auth = None,
) -> Response:
    settings = ctx.settings
    event = await ctx.known_event(event_id)
    if not event.anonymous_read:
        ctx.identity(authorization, required=True)
    try:
        cursor = pages.choose(
            before,
            after,
            limit,
            default=settings.api_page_size,
            maximum=settings.api_page_max,
        )
    except pages.CursorError as e:
        raise ApiError("invalid_field", str(e)) from e
    try:
        items, successor = await asyncio.wait_for(
            read_page(ctx.backends.store, event_id, cursor), READ_TIMEOUT_S
        )
    except TimeoutError as e:
        raise ApiError("unavailable", "Cassandra did not answer in time") from e
    page = pages.Page(event_id, cursor, tuple(items), pages.is_whole(cursor, items, successor))
    body = page.body()
    tag = pages.etag(body)
    public = event.anonymous_read
    headers = {
        "ETag": tag,
        "Cache-Control": pages.cache_control(
            page.whole,
            public=public,
            whole_max_age_s=settings.api_page_max_age_s,
            live_max_age_s=settings.api_live_max_age_s,
        ),
    }
    if public:
        headers["Surrogate-Key"] = pages.surrogate_keys(event_id, items)
    else:
        headers["Vary"] = "Authorization"
    if pages.etag_matches(request.headers.get("if-none-match"), tag):
        PAGES.labels("not_modified").inc()
        return Response(status_code=304, headers=headers)
    PAGES.labels("whole" if page.whole else "partial").inc()
    return Response(body, media_type="application/json", headers=headers)


async def read_page(
    store: Any, event_id: str, cursor: pages.Cursor
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    successor: dict[str, Any] | None = None
    if cursor.direction == "after":
        assert cursor.position is not None
        rows = await public_rows(store, event_id, cursor.position, cursor.limit, newer=True)
    else:
        top = FAR_POSITION if cursor.position is None else cursor.position
        rows = list(reversed(await public_rows(store, event_id, top, cursor.limit, newer=False)))
        if cursor.direction == "before" and len(rows) == cursor.limit:
            following = await public_rows(store, event_id, rows[-1].position, 1, newer=True)
            successor = stored_entry(following[0]).fields if following else None
    return [stored_entry(r).fields for r in rows], successor


async def public_rows(
    store: Any, event_id: str, position: int, limit: int, *, newer: bool
) -> list[Any]:
    """Up to ``limit`` public comments after (``newer``: oldest first) or before
    (newest first) ``position``. A shadow comment (``visible_to`` set) is its
    author's alone and never on a page anyone else, or a CDN, may see."""
    found: list[Any] = []
    while len(found) < limit:
        want = limit - len(found)
        if newer:
            rows = await store.after(event_id, position, want)
        else:
            rows = await store.before(event_id, position, want)
        found.extend(pages.public(rows))
        if len(rows) < want:
            break
        position = rows[-1].position
    return found
