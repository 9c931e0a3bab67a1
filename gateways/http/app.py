"""The HTTP API as an ASGI app (FastAPI): REST for posting, history, events,
moderation, health.

    app = create_app(settings)     # connects to the servers in its lifespan

It reuses what the WebSocket gateway uses, so both edges judge the same way: the
``Poster`` (envelope check, ULID, ``CommentSubmitted`` acked by Kafka, nonces in
Redis), the ``TokenVerifier`` (same claims, same codes), the per-user ``PostRate``,
the ``History`` item form of Cassandra rows, and ``StateWriter`` for event settings
(as ``livecomments events`` does), and ``ModeratorActions`` (``gateways/moderation.py``)
for everything a moderator does — the gateway's ``moderate`` messages run the very same
code. The paging and caching rules are in ``pages``, the error codes in ``errors``;
``docs/api.md`` is the reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Final

import redis.asyncio as aioredis
from fastapi import FastAPI, Header, Query, Request, Response
from fastapi import Path as InPath
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.kafka_producer import OutputProducer
from deploy.settings import Settings
from gateways.auth import AuthError, Identity, TokenVerifier, mint_token
from gateways.history import FAR_POSITION, stored_entry
from gateways.http import models as m
from gateways.http import pages
from gateways.http.errors import ApiError, error_body, error_headers, from_validation
from gateways.moderation import ModerationError, ModeratorActions, event_view
from gateways.posting import Poster, PostError, pending_view
from gateways.protocol import MAX_NONCE, SUBPROTOCOL, PostRate
from schemas.clock import now_ms
from schemas.codec import AvroCodec
from schemas.records import (
    EventStatus,
    LinkPolicy,
    LiveEvent,
    ModerationThresholds,
    Strictness,
    UserProfile,
)
from topologies.stages.validate import CommentLimits

log = logging.getLogger(__name__)

WEB_DIR: Final = Path(__file__).resolve().parent.parent / "web"
EVENT_BODY_MAX: Final = 64 * 1024  # event settings carry term lists; comments are small
READ_TIMEOUT_S: Final = 5.0
CHECK_TIMEOUT_S: Final = 2.0
SYNC_FRESH_S: Final = 0.25

REQUESTS = Counter(
    "api_requests_total", "HTTP requests by route, method and status", ["route", "method", "status"]
)
LATENCY = Histogram(
    "api_request_seconds",
    "HTTP request time by route and method",
    ["route", "method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)
POSTS = Counter("api_posts_total", "comments posted over HTTP by outcome", ["outcome"])
PAGES = Counter("api_history_pages_total", "history pages served by kind", ["kind"])

BEARER: Final = "bearer "
Auth = Annotated[str | None, Header(description="`Bearer <JWT>`")]
HeldPosition = Annotated[int, InPath(ge=0, lt=2**62, description="the held comment's position")]


class Backends:
    """Connections to Redis, Cassandra, Kafka and the registry, and what is built on them."""

    def __init__(self, settings: Settings, api_id: str) -> None:
        self.settings = settings
        self.api_id = api_id
        self.redis: Any = None
        self.store: Any = None
        self.codec: AvroCodec | None = None
        self.producer: OutputProducer | None = None
        self.state: Any = None
        self.writer: Any = None
        self.poster: Poster | None = None
        self.actions: ModeratorActions | None = None
        self.admin: Any = None
        self._sync: asyncio.Task[bool] | None = None
        self._synced_at = float("-inf")

    async def start(self) -> None:
        from connectors.cassandra_store import CommentStore
        from connectors.kafka_admin import admin_client
        from connectors.state_reader import StateReader
        from connectors.state_writer import StateWriter

        s = self.settings
        self.redis = aioredis.Redis.from_url(s.redis_address, socket_timeout=10)
        await self.redis.ping()
        self.codec = AvroCodec(s)
        await asyncio.to_thread(self.codec.register_all)
        self.store = await asyncio.to_thread(CommentStore, s)
        self.producer = OutputProducer(s)
        await self.producer.start()
        self.state = StateReader(s, self.codec)
        await self.state.start()
        await self.state.ready.wait()
        self.writer = StateWriter(s, self.codec)
        self.admin = admin_client(s.bootstrap_servers)
        self.poster = Poster(
            codec=self.codec,
            producer=self.producer,
            redis=self.redis,
            state=self.state,
            gateway_id=self.api_id,
            limits=CommentLimits(
                max_chars=s.comment_max_chars, posts_per_minute=s.posts_per_minute
            ),
            nonce_ttl_s=s.gateway_nonce_ttl_s,
        )
        self.actions = ModeratorActions(
            codec=self.codec,
            producer=self.producer,
            store=self.store,
            event=self.latest_event,
            user=self.latest_user,
            written=self.synced,
        )

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
        if self.state is not None:
            await self.state.stop()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        if self.redis is not None:
            await self.redis.aclose()
        if self.codec is not None:
            self.codec.close()

    async def event(self, event_id: str) -> LiveEvent | None:
        """The event's current settings; one catch-up with events.settings if unknown."""
        event: LiveEvent | None = self.state.event(event_id)
        if event is None:
            await self.catch_up()
            event = self.state.event(event_id)
        return None if event is None or event.deleted else event

    async def synced(self) -> None:
        """Up to the end of events.settings and users.profiles (read your writes)."""
        await self.state.sync(timeout_s=5.0)

    async def latest_event(self, event_id: str) -> LiveEvent | None:
        """The event as last written, for a read-modify-write of its settings."""
        await self.synced()
        event: LiveEvent | None = self.state.event(event_id)
        return None if event is None or event.deleted else event

    async def latest_user(self, user_id: str) -> UserProfile | None:
        """The user's profile as last written: a ban must not undo a timeout set a
        moment ago by another process."""
        await self.synced()
        user: UserProfile | None = self.state.user(user_id)
        return user

    async def catch_up(self) -> None:
        """Read events.settings up to its end. Requests for unknown events share one
        catch-up, and one that ended within ``SYNC_FRESH_S`` counts: a flood of made-up
        event ids must not become a flood of offset requests to Kafka."""
        loop = asyncio.get_running_loop()
        if self._sync is None:
            if loop.time() - self._synced_at < SYNC_FRESH_S:
                return
            self._sync = loop.create_task(self.state.sync(timeout_s=2.0))
        task = self._sync
        try:
            await asyncio.shield(task)
        finally:
            if self._sync is task and task.done():
                self._sync = None
                self._synced_at = loop.time()

    async def checks(self) -> dict[str, str]:
        """Each server the API needs: "ok" or what failed."""

        async def kafka() -> None:
            await asyncio.to_thread(self.admin.list_topics, timeout=CHECK_TIMEOUT_S)

        async def cassandra() -> None:
            # The store retries reads until they succeed: the deadline is ours.
            await self.store.before("readyz-probe", 1, 1)

        async def redis() -> None:
            await self.redis.ping()

        async def one(check: Callable[[], Awaitable[None]]) -> str:
            try:
                await asyncio.wait_for(check(), CHECK_TIMEOUT_S + 1)
            except TimeoutError:
                return "timeout"
            except Exception as e:
                return f"{type(e).__name__}: {e}"
            return "ok"

        names = ("kafka", "cassandra", "redis")
        results = await asyncio.gather(one(kafka), one(cassandra), one(redis))
        found = dict(zip(names, results, strict=True))
        found["state"] = "ok" if self.state.ready.is_set() else "loading events.settings"
        return found


class Guard:
    """Outermost ASGI layer: bounded bodies (413 before the app reads a byte too many)
    and request metrics by route template, method and status."""

    def __init__(self, app: ASGIApp, comment_max_bytes: int) -> None:
        self.app = app
        self.comment_max_bytes = comment_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            limit = (
                self.comment_max_bytes if scope["path"].endswith("/comments") else EVENT_BODY_MAX
            )
            body = await _read_body(scope, receive, limit)
            if body is None:
                await _send_error(
                    sending, ApiError("message_too_large", f"the body is over {limit} bytes")
                )
                return
            await self.app(scope, _replay(body), sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None)
            if template is None:
                template = "unmatched"
            elif template == "":
                template = "/"  # the web page's static files
            method = scope.get("method", "")
            REQUESTS.labels(template, method, str(status[0])).inc()
            LATENCY.labels(template, method).observe(time.perf_counter() - started)


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None if it is larger than ``limit``."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                if int(value) > limit:
                    return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = [False]

    async def receive() -> Message:
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        # After the body the app only waits for a disconnect; never return one early.
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    return receive


async def _send_error(send: Send, e: ApiError) -> None:
    body = error_body(e.code, e.message, e.retry_after_ms)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [
        (k.lower().encode(), v.encode()) for k, v in error_headers(e.code, e.retry_after_ms).items()
    ]
    await send({"type": "http.response.start", "status": e.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_response(e: ApiError) -> Response:
    return Response(
        error_body(e.code, e.message, e.retry_after_ms),
        status_code=e.status,
        media_type="application/json",
        headers=error_headers(e.code, e.retry_after_ms),
    )


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


# -- event views ---------------------------------------------------------------------------


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


# -- the app ---------------------------------------------------------------------------------


def create_app(settings: Settings, *, port: int | None = None) -> ASGIApp:
    api_port = settings.api_port if port is None else port
    backends = Backends(settings, f"api-{settings.host}:{api_port}")
    verifier = TokenVerifier.from_settings(settings)
    post_rate = PostRate(settings.posts_per_minute)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await backends.start()
        log.info("api %s ready on %s:%s", backends.api_id, settings.host, api_port)
        try:
            yield
        finally:
            await backends.stop()

    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": m.ErrorOut, "description": "bad_json, missing_field, invalid_field"},
        404: {"model": m.ErrorOut, "description": "event_not_found"},
        503: {"model": m.ErrorOut, "description": "unavailable: a server is not answering"},
    }
    authed: dict[int | str, dict[str, Any]] = {
        **errors,
        401: {"model": m.ErrorOut, "description": "not_authenticated, bad_token, token_expired"},
        403: {"model": m.ErrorOut, "description": "not_authorized (and the posting refusals)"},
    }

    app = FastAPI(
        title="livecomments HTTP API",
        version="1",
        description="Post comments, read an event's history by cursor (CDN-cacheable pages), "
        "create and change events. Live comments come over the WebSocket protocol "
        f'`{SUBPROTOCOL}` (docs/protocol.md). Errors: `{{"error": {{"code", "message"}}}}` '
        "with the protocol's stable codes.",
        lifespan=lifespan,
        # Tokens travel in a header, never in cookies: a JSON body without its content
        # type (curl -d) is no cross-site risk here, so it is read as JSON.
        strict_content_type=False,
    )

    origins = [o.strip() for o in settings.api_cors_origins.split(",") if o.strip()]
    if origins:
        # Viewers' web apps on other origins post and read history from the browser.
        # No credentials: the token is a header the app sets, so `*` is safe here.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "If-Match",
                "If-None-Match",
            ],
            expose_headers=["ETag", "Retry-After", "Location"],
            max_age=600,
        )

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> Response:
        return error_response(e)

    @app.exception_handler(ModerationError)
    async def _moderation_error(_: Request, e: ModerationError) -> Response:
        return error_response(ApiError(e.code, e.message))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> Response:
        return error_response(from_validation(list(e.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> Response:
        if e.status_code == 405:
            return error_response(ApiError("method_not_allowed"))
        if e.status_code == 404:
            return error_response(ApiError("not_found"))
        return error_response(ApiError("invalid_field", str(e.detail)))

    @app.exception_handler(Exception)
    async def _crash(request: Request, e: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(ApiError("internal_error"))

    def identity(authorization: str | None, *, required: bool) -> Identity | None:
        if not authorization:
            if required:
                raise ApiError("not_authenticated", "send `Authorization: Bearer <token>`")
            return None
        if not authorization.lower().startswith(BEARER):
            raise ApiError("bad_token", "the Authorization scheme must be Bearer")
        try:
            return verifier.verify(authorization[len(BEARER) :].strip())
        except AuthError as e:
            raise ApiError(e.code, e.message) from e

    def moderator(authorization: str | None) -> Identity:
        who = identity(authorization, required=True)
        assert who is not None
        if not who.is_moderator:
            raise ApiError("not_authorized", "a moderator, broadcaster or admin role is required")
        return who

    def timeout_left(user_id: str) -> int | None:
        """Milliseconds until the user's timeout ends (None if not timed out)."""
        profile = backends.state.user(user_id)
        until = profile.timeout_until if profile is not None else None
        return None if until is None else max(0, until - now_ms())

    def checked_event_id(event_id: str) -> str:
        if not pages.valid_event_id(event_id):
            raise ApiError("invalid_field", "`event_id` has characters an event id never has")
        return event_id

    async def known_event(event_id: str) -> LiveEvent:
        event = await backends.event(checked_event_id(event_id))
        if event is None:
            raise ApiError("event_not_found", f"no event {event_id!r}")
        return event

    # -- health --------------------------------------------------------------------------

    @app.get("/healthz", tags=["operations"], summary="the process is alive")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "api_id": backends.api_id}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Kafka, Cassandra and Redis answer (503 naming what does not)",
        responses={503: {"description": "a server is not reachable"}},
    )
    async def readyz() -> Response:
        checks = await backends.checks()
        ok = all(v == "ok" for v in checks.values())
        return json_response({"ok": ok, "checks": checks}, 200 if ok else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # -- comments ------------------------------------------------------------------------

    @app.post(
        "/v1/events/{event_id}/comments",
        tags=["comments"],
        status_code=202,
        response_model=m.AckOut,
        summary="post a comment; answered once Kafka acknowledged it",
        responses={
            **authed,
            409: {"model": m.ErrorOut, "description": "event_not_live"},
            413: {"model": m.ErrorOut, "description": "message_too_large"},
            422: {"model": m.ErrorOut, "description": "empty_text, text_too_long"},
            429: {"model": m.ErrorOut, "description": "rate_limited (Retry-After)"},
        },
    )
    async def post_comment(
        event_id: str,
        body: m.CommentIn,
        authorization: Auth = None,
        idempotency_key: Annotated[
            str | None,
            Header(max_length=MAX_NONCE, description="the nonce, as a header"),
        ] = None,
    ) -> Response:
        who = identity(authorization, required=True)
        assert who is not None and backends.poster is not None
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
            wait = post_rate.check(who.user_id, now_ms())
            if wait > 0:
                POSTS.labels("rate_limited").inc()
                raise ApiError(
                    "rate_limited",
                    f"{settings.posts_per_minute} posts per minute",
                    retry_after_ms=wait,
                )
        try:
            posted = await backends.poster.submit(
                who, event_id, body.text, nonce=nonce, reply_to=body.reply_to
            )
        except PostError as e:
            POSTS.labels(e.code).inc()
            retry = e.retry_after_ms
            if retry is None and e.code == "user_timed_out":
                retry = timeout_left(who.user_id)
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

    @app.get(
        "/v1/events/{event_id}/comments",
        tags=["comments"],
        summary="history by cursor: full pages are immutable and CDN-cacheable",
        responses={
            200: {"model": m.PageOut},
            304: {"description": "If-None-Match matched the page's ETag"},
            **authed,
        },
    )
    async def history(
        request: Request,
        event_id: str,
        before: Annotated[
            int | None, Query(ge=0, lt=2**62, description="the comments before this position")
        ] = None,
        after: Annotated[
            int | None,
            Query(
                ge=-1, lt=2**62, description="the comments after this position (-1: from the start)"
            ),
        ] = None,
        limit: Annotated[int | None, Query(ge=1, description="comments per page")] = None,
        authorization: Auth = None,
    ) -> Response:
        event = await known_event(event_id)
        if not event.anonymous_read:
            identity(authorization, required=True)
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
            items, successor = await asyncio.wait_for(read_page(event_id, cursor), READ_TIMEOUT_S)
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
        event_id: str, cursor: pages.Cursor
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        successor: dict[str, Any] | None = None
        if cursor.direction == "after":
            assert cursor.position is not None
            rows = await public_rows(event_id, cursor.position, cursor.limit, newer=True)
        else:
            top = FAR_POSITION if cursor.position is None else cursor.position
            rows = list(reversed(await public_rows(event_id, top, cursor.limit, newer=False)))
            if cursor.direction == "before" and len(rows) == cursor.limit:
                following = await public_rows(event_id, rows[-1].position, 1, newer=True)
                successor = stored_entry(following[0]).fields if following else None
        return [stored_entry(r).fields for r in rows], successor

    async def public_rows(event_id: str, position: int, limit: int, *, newer: bool) -> list[Any]:
        """Up to ``limit`` public comments after (``newer``: oldest first) or before
        (newest first) ``position``. A shadow comment (``visible_to`` set) is its
        author's alone and never on a page anyone else, or a CDN, may see."""
        store = backends.store
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

    @app.post(
        "/v1/events/{event_id}/removals",
        tags=["moderation"],
        status_code=202,
        response_model=m.RemovalOut,
        summary="remove a comment (or every comment of a user) from every tier; moderators",
        responses=authed,
    )
    @app.post(
        # The first name of this resource, kept for clients written against it.
        "/v1/events/{event_id}/retractions",
        tags=["moderation"],
        status_code=202,
        response_model=m.RemovalOut,
        summary="the old name of `/removals`",
        responses=authed,
        deprecated=True,
    )
    async def remove(event_id: str, body: m.RemovalIn, authorization: Auth = None) -> Response:
        who = moderator(authorization)
        checked_event_id(event_id)
        done = await actions().remove(
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

    # -- moderation: held comments and users -------------------------------------------------

    def actions() -> ModeratorActions:
        assert backends.actions is not None
        return backends.actions

    moderated: dict[int | str, dict[str, Any]] = {
        **authed,
        403: {
            "model": m.ErrorOut,
            "description": "not_authorized: not a moderator, or the "
            "target user is a moderator, broadcaster or admin (or yourself)",
        },
    }

    @app.get(
        "/v1/events/{event_id}/held",
        tags=["moderation"],
        response_model=m.HeldPageOut,
        summary="comments held for review, oldest first; moderators",
        responses=moderated,
    )
    async def held(
        event_id: str,
        after: Annotated[
            int | None, Query(ge=-1, lt=2**62, description="held comments after this position")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        authorization: Auth = None,
    ) -> Response:
        who = moderator(authorization)
        page = await actions().held(who, checked_event_id(event_id), after=after, limit=limit)
        return json_response(page, headers={"Cache-Control": "no-store"})

    async def review(
        event_id: str, position: int, decision: str, authorization: str | None
    ) -> Response:
        who = moderator(authorization)
        done = await actions().review(who, checked_event_id(event_id), position, decision)
        return json_response(done, 202)

    reviewed: dict[int | str, dict[str, Any]] = {
        **moderated,
        404: {"model": m.ErrorOut, "description": "event_not_found, comment_not_found"},
        409: {"model": m.ErrorOut, "description": "already_reviewed"},
    }

    @app.post(
        "/v1/events/{event_id}/held/{position}/approve",
        tags=["moderation"],
        status_code=202,
        response_model=m.ReviewOut,
        summary="publish a held comment (at the position of the approval); moderators",
        responses=reviewed,
    )
    async def approve(
        event_id: str, position: HeldPosition, authorization: Auth = None
    ) -> Response:
        return await review(event_id, position, "approve", authorization)

    @app.post(
        "/v1/events/{event_id}/held/{position}/reject",
        tags=["moderation"],
        status_code=202,
        response_model=m.ReviewOut,
        summary="never publish a held comment; moderators",
        responses=reviewed,
    )
    async def reject(event_id: str, position: HeldPosition, authorization: Auth = None) -> Response:
        return await review(event_id, position, "reject", authorization)

    on_user: dict[int | str, dict[str, Any]] = {
        **moderated,
        404: {
            "model": m.ErrorOut,
            "description": "user_not_found (lifting a measure of a user "
            "without a profile), event_not_found",
        },
    }

    def user_action(summary: str) -> dict[str, Any]:
        return {
            "tags": ["moderation"],
            "status_code": 202,
            "response_model": m.UserActionOut,
            "summary": summary,
            "responses": on_user,
        }

    @app.post("/v1/users/{user_id}/timeout", **user_action("no posts for a while; moderators"))
    async def timeout(user_id: str, body: m.TimeoutIn, authorization: Auth = None) -> Response:
        who = moderator(authorization)
        done = await actions().timeout(
            who,
            user_id,
            body.duration_s,
            body.reason,
            event_id=body.event_id,
            clear=body.clear,
        )
        return json_response(done, 202)

    @app.delete("/v1/users/{user_id}/timeout", **user_action("lift a timeout; moderators"))
    async def untimeout(user_id: str, authorization: Auth = None) -> Response:
        return json_response(await actions().untimeout(moderator(authorization), user_id), 202)

    @app.post("/v1/users/{user_id}/ban", **user_action("no posts until unbanned; moderators"))
    async def ban(
        user_id: str, body: m.BanIn | None = None, authorization: Auth = None
    ) -> Response:
        who = moderator(authorization)
        given = body or m.BanIn()
        done = await actions().ban(
            who, user_id, given.reason, event_id=given.event_id, clear=given.clear
        )
        return json_response(done, 202)

    @app.delete("/v1/users/{user_id}/ban", **user_action("lift a ban; moderators"))
    async def unban(user_id: str, authorization: Auth = None) -> Response:
        return json_response(await actions().unban(moderator(authorization), user_id), 202)

    @app.post(
        "/v1/users/{user_id}/hide",
        **user_action("shadow a user: their comments are shown to them alone; moderators"),
    )
    async def hide(user_id: str, authorization: Auth = None) -> Response:
        return json_response(await actions().hide(moderator(authorization), user_id), 202)

    @app.delete("/v1/users/{user_id}/hide", **user_action("stop shadowing a user; moderators"))
    async def unhide(user_id: str, authorization: Auth = None) -> Response:
        return json_response(await actions().unhide(moderator(authorization), user_id), 202)

    @app.get(
        "/v1/users/{user_id}/moderation",
        tags=["moderation"],
        response_model=m.UserModerationOut,
        summary="a user's bans, timeout, hiding and roles; moderators",
        responses={**moderated, 404: {"model": m.ErrorOut, "description": "user_not_found"}},
    )
    async def user_moderation(user_id: str, authorization: Auth = None) -> Response:
        who = moderator(authorization)
        status = await actions().user_status(who, user_id)
        return json_response(status, headers={"Cache-Control": "no-store"})

    # -- events --------------------------------------------------------------------------

    @app.get(
        "/v1/events",
        tags=["events"],
        response_model=m.EventList,
        summary="events that are live or scheduled, newest change first",
    )
    async def list_events(
        limit: Annotated[int, Query(ge=1, le=500)] = 100, authorization: Auth = None
    ) -> Response:
        who = identity(authorization, required=False)
        full = who is not None and who.is_moderator
        events = [
            e
            for e in backends.state.events.values()
            if not e.deleted and e.status is not EventStatus.ENDED
        ]
        events.sort(key=lambda e: (-e.updated_at, e.event_id))
        items = [event_view(e, full=full) for e in events[:limit]]
        return json_response({"items": items}, headers={"Cache-Control": "no-cache"})

    @app.get(
        "/v1/events/{event_id}",
        tags=["events"],
        response_model=m.EventOut,
        summary="an event (moderation settings for moderators)",
        responses=authed,
    )
    async def get_event(event_id: str, authorization: Auth = None) -> Response:
        who = identity(authorization, required=False)
        event = await known_event(event_id)
        full = who is not None and who.is_moderator
        doc = event_view(event, full=full)
        headers = {
            "ETag": pages.etag(json.dumps(event_view(event, full=True), sort_keys=True).encode()),
            "Cache-Control": "private, no-cache" if full else "public, max-age=5",
            "Vary": "Authorization",
        }
        return json_response(doc, headers=headers)

    @app.post(
        "/v1/events",
        tags=["events"],
        status_code=201,
        response_model=m.EventOut,
        summary="create an event (moderator, broadcaster or admin)",
        responses={**authed, 409: {"model": m.ErrorOut, "description": "event_exists"}},
    )
    async def create_event(body: m.EventCreate, authorization: Auth = None) -> Response:
        moderator(authorization)
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
        await write_event(event)
        return json_response(
            event_view(event, full=True),
            201,
            headers={"Location": f"/v1/events/{event.event_id}"},
        )

    @app.patch(
        "/v1/events/{event_id}",
        tags=["events"],
        response_model=m.EventOut,
        summary="change an event's settings (moderator, broadcaster or admin)",
        responses={**authed, 412: {"model": m.ErrorOut, "description": "precondition_failed"}},
    )
    async def patch_event(
        event_id: str,
        body: m.EventSettingsIn,
        authorization: Auth = None,
        if_match: Annotated[str | None, Header(description="the ETag of GET")] = None,
    ) -> Response:
        moderator(authorization)
        event = await known_event(event_id)
        if if_match is not None:
            current = pages.etag(json.dumps(event_view(event, full=True), sort_keys=True).encode())
            if not pages.etag_matches(if_match, current):
                raise ApiError("precondition_failed")
        changed = replace(
            event, **event_changes(body), updated_at=max(now_ms(), event.updated_at + 1)
        )
        await write_event(changed)
        return json_response(event_view(changed, full=True))

    async def write_event(event: LiveEvent) -> None:
        try:
            await asyncio.to_thread(backends.writer.put_event, event)
        except Exception as e:
            raise ApiError("unavailable", f"events.settings did not take the change: {e}") from e
        # Read your writes: this process follows events.settings too.
        await backends.state.sync(timeout_s=5.0)

    # -- the web page's helpers ------------------------------------------------------------

    @app.get("/v1/config", tags=["web"], response_model=m.ConfigOut, summary="for the web page")
    async def config(request: Request) -> dict[str, Any]:
        url = settings.api_gateway_url
        if not url:
            host = request.url.hostname or settings.host
            url = f"ws://{host}:{settings.gateway_port}/"
        return {"gateway_url": url, "dev_tokens": settings.api_dev_tokens, "protocol": SUBPROTOCOL}

    @app.get(
        "/v1/dev/token",
        tags=["web"],
        response_model=m.TokenOut,
        summary="a development token (only when LIVECOMMENTS_API_DEV_TOKENS is on)",
        responses={404: {"model": m.ErrorOut, "description": "not_found: dev tokens are off"}},
    )
    async def dev_token(
        user: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")],
        name: Annotated[str | None, Query(max_length=64)] = None,
        role: Annotated[
            list[str] | None, Query(description="moderator, broadcaster, admin")
        ] = None,
    ) -> Response:
        if not settings.api_dev_tokens:
            raise ApiError("not_found", "development tokens are off (LIVECOMMENTS_API_DEV_TOKENS)")
        roles = tuple(role or ())
        if any(r not in ("moderator", "broadcaster", "admin", "member") for r in roles):
            raise ApiError("invalid_field", "`role`: moderator, broadcaster, admin or member")
        ttl = 3600
        token = mint_token(settings, user, name=name, roles=roles, ttl_s=ttl)
        return json_response(
            {
                "token": token,
                "user_id": user,
                "roles": list(roles),
                "expires_at": now_ms() + ttl * 1000,
            },
            headers={"Cache-Control": "no-store"},
        )

    if WEB_DIR.is_dir():
        app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="web")

    return Guard(app, settings.gateway_max_message_bytes)
