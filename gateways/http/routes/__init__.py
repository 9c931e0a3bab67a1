"""The HTTP API's routes, one router per resource; ``gateways.http.app`` mounts them.

Each handler takes what it needs as FastAPI dependencies: the request's
:class:`~gateways.http.routes.deps.ApiContext` (settings, backends, token verifier,
per-user post rate) and its headers. To add an endpoint, add it to the router of its
resource (or a new module here, listed in ``ROUTERS``) and to docs/api.md.
"""

from __future__ import annotations

from fastapi import APIRouter

from gateways.http.routes import comments, events, moderation, operations, web

ROUTERS: tuple[APIRouter, ...] = (
    operations.router,
    comments.router,
    moderation.router,
    events.router,
    web.router,
)
