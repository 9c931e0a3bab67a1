"""The HTTP API as an ASGI app (FastAPI): REST for posting, history, events,
moderation, health.

    app = create_app(settings)     # connects to the servers in its lifespan

It reuses what the WebSocket gateway uses, so both edges judge the same way: the
``Poster`` (envelope check, ULID, ``CommentSubmitted`` acked by Kafka, nonces in
Redis), the ``TokenVerifier`` (same claims, same codes), the per-user ``PostRate``,
the ``History`` item form of Cassandra rows, and ``StateWriter`` for event settings
(as ``livecomments events`` does), and ``ModeratorActions`` (``gateways/moderation.py``)
for everything a moderator does — the gateway's ``moderate`` messages run the very same
code. This module composes the app: the routers (``routes/``, one per resource), the
context they depend on (``routes/deps.py``), the connections (``backends.py``), error
handlers and the body guard. The paging and caching rules are in ``pages``, the error
codes in ``errors``; ``docs/api.md`` is the reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deploy.settings import Settings
from gateways.http.backends import Backends
from gateways.http.errors import ApiError, error_body, error_headers, from_validation
from gateways.http.routes import ROUTERS
from gateways.http.routes.deps import ApiContext
from gateways.moderation import ModerationError
from gateways.protocol import SUBPROTOCOL

__all__ = ["Backends", "Guard", "create_app", "error_response"]

log = logging.getLogger(__name__)

WEB_DIR: Final = Path(__file__).resolve().parent.parent / "web"
EVENT_BODY_MAX: Final = 64 * 1024  # event settings carry term lists; comments are small

REQUESTS = Counter(
    "api_requests_total", "HTTP requests by route, method and status", ["route", "method", "status"]
)
LATENCY = Histogram(
    "api_request_seconds",
    "HTTP request time by route and method",
    ["route", "method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)


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


def create_app(settings: Settings, *, port: int | None = None) -> ASGIApp:
    api_port = settings.api_port if port is None else port
    ctx = ApiContext.build(settings, f"api-{settings.host}:{api_port}")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ctx.backends.start()
        log.info("api %s ready on %s:%s", ctx.backends.api_id, settings.host, api_port)
        try:
            yield
        finally:
            await ctx.backends.stop()

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
    app.state.ctx = ctx

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

    _handle_errors(app)
    for router in ROUTERS:
        app.include_router(router)
    if WEB_DIR.is_dir():
        app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="web")

    return Guard(app, settings.gateway_max_message_bytes)


def _handle_errors(app: FastAPI) -> None:
    """Every error answers the one JSON shape with a stable code."""

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
