"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter, Request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from redis.asyncio import RedisCluster
from sqlalchemy import text
from starlette.responses import Response

from app.core.errors import Unauthorized, problem_response
from app.core.security import constant_time_equals

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process is up."""
    return {"status": "ok"}


async def _check_db(request: Request) -> None:
    async with request.app.state.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _check_redis(request: Request) -> None:
    redis = request.app.state.redis
    if isinstance(redis, RedisCluster):
        # every primary must answer (each holds a share of the keys); a replica down is no reason
        # to take the API out of the load balancer
        await redis.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        await redis.ping()


@router.get("/readyz", responses={503: {"description": "names what is down"}})
async def readyz(request: Request) -> Response:
    """200 when PostgreSQL and Redis both answer within 2 s; else 503 naming what is down."""
    checks: dict[str, str] = {}
    for name, check in (("postgresql", _check_db), ("redis", _check_redis)):
        try:
            await asyncio.wait_for(check(request), timeout=2.0)
            checks[name] = "ok"
        except Exception:
            checks[name] = "down"
    down = [name for name, state in checks.items() if state != "ok"]
    if down:
        return problem_response(
            503, "not_ready", "Not ready", f"Unavailable: {', '.join(down)}", checks=checks
        )
    return Response(
        b'{"status":"ok","checks":{"postgresql":"ok","redis":"ok"}}', media_type="application/json"
    )


@router.get(
    "/metrics",
    include_in_schema=True,
    response_class=Response,
    responses={401: {"description": "CANOPY_METRICS_TOKEN is set and was not presented"}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text format, aggregated across uvicorn workers when running several (each
    request counted once, whichever worker served it). With ``CANOPY_METRICS_TOKEN`` set, only
    ``Authorization: Bearer <token>`` may read it."""
    token = request.app.state.settings.metrics_token
    if token is not None and not constant_time_equals(
        request.headers.get("authorization", ""), f"Bearer {token.get_secret_value()}"
    ):
        raise Unauthorized("GET /metrics needs the metrics token")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        data = generate_latest(registry)
    else:
        data = generate_latest(REGISTRY)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
