"""Health, readiness and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateways.http.routes.deps import Ctx, json_response

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="the process is alive")
async def healthz(ctx: Ctx) -> dict[str, Any]:
    return {"ok": True, "api_id": ctx.backends.api_id}


@router.get(
    "/readyz",
    summary="Kafka, Cassandra and Redis answer (503 naming what does not)",
    responses={503: {"description": "a server is not reachable"}},
)
async def readyz(ctx: Ctx) -> Response:
    checks = await ctx.backends.checks()
    ok = all(v == "ok" for v in checks.values())
    return json_response({"ok": ok, "checks": checks}, 200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
