from __future__ import annotations

import logging

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text

from app.config import Settings
from app.core.clock import FrozenClock
from app.main import create_app, warn_without_autovacuum
from tests.helpers import assert_problem, register


class TestHealth:
    async def test_healthz(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")
        assert response.status_code == 200 and response.json() == {"status": "ok"}

    async def test_healthz_is_answered_at_the_edge_yet_counted_and_documented(
        self, client: httpx.AsyncClient
    ) -> None:
        for _ in range(3):
            assert (await client.get("/healthz")).status_code == 200
        head = await client.head("/healthz")
        assert head.status_code == 200 and head.content == b""
        text = (await client.get("/metrics")).text
        line = next(
            x
            for x in text.splitlines()
            if x.startswith(
                'canopy_http_requests_total{method="GET",route="/healthz",status="200"}'
            )
        )
        assert float(line.split()[-1]) >= 3
        assert "/healthz" in (await client.get("/openapi.json")).json()["paths"]

    async def test_readyz_when_everything_answers(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["checks"] == {"postgresql": "ok", "redis": "ok"}

    async def test_readyz_names_redis_when_it_is_down(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        real = app.state.redis
        app.state.redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
        try:
            response = await client.get("/readyz")
        finally:
            await app.state.redis.aclose()
            app.state.redis = real
        body = assert_problem(response, 503, "not_ready")
        assert body["checks"] == {"postgresql": "ok", "redis": "down"}
        assert "redis" in body["detail"]

    async def test_readyz_names_postgresql_when_it_is_down(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        real = app.state.engine
        app.state.engine = create_async_engine(
            "postgresql+asyncpg://postgres@127.0.0.1:1/none", connect_args={"timeout": 0.5}
        )
        try:
            response = await client.get("/readyz")
        finally:
            await app.state.engine.dispose()
            app.state.engine = real
        body = assert_problem(response, 503, "not_ready")
        assert body["checks"]["postgresql"] == "down"


class TestObservability:
    async def test_request_id_is_generated_and_echoed(self, client: httpx.AsyncClient) -> None:
        generated = await client.get("/healthz")
        assert len(generated.headers["x-request-id"]) == 32
        echoed = await client.get("/healthz", headers={"X-Request-ID": "trace-abc.123"})
        assert echoed.headers["x-request-id"] == "trace-abc.123"
        # something that could inject into logs is replaced, not echoed
        hostile = await client.get("/healthz", headers={"X-Request-ID": "a b\tc" + "x" * 200})
        assert hostile.headers["x-request-id"] != "a b\tc" + "x" * 200

    async def test_request_id_is_on_error_responses_too(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/missing", headers={"X-Request-ID": "rid-404"})
        assert response.status_code == 404 and response.headers["x-request-id"] == "rid-404"

    async def test_metrics_count_requests_by_route_template(
        self, client: httpx.AsyncClient
    ) -> None:
        alice = await register(client, "alice")
        await client.get("/v1/me", headers=alice.headers)
        await client.get("/v1/me")
        text = (await client.get("/metrics")).text
        assert 'canopy_http_requests_total{method="GET",route="/v1/me",status="200"}' in text
        assert 'canopy_http_requests_total{method="GET",route="/v1/me",status="401"}' in text
        assert (
            'canopy_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/v1/me"}'
            in text
        )

    async def test_unmatched_paths_share_one_label(self, client: httpx.AsyncClient) -> None:
        await client.get("/v1/random-123")
        await client.get("/v1/random-456")
        text = (await client.get("/metrics")).text
        assert 'route="unmatched",status="404"' in text
        assert "random-123" not in text

    async def test_logs_are_json_with_the_request_id(self, capsys) -> None:  # type: ignore[no-untyped-def]
        import json
        import logging

        from app.core.observability import configure_logging, request_id_var

        configure_logging("INFO", "json")
        token = request_id_var.set("rid-log")
        try:
            logging.getLogger("canopy.test").info("hello", extra={"user_count": 3})
        finally:
            request_id_var.reset(token)
        line = capsys.readouterr().err.strip().splitlines()[-1]
        record = json.loads(line)
        assert record["message"] == "hello" and record["request_id"] == "rid-log"
        assert record["level"] == "INFO" and record["user_count"] == 3


class TestAutovacuumWarning:
    async def test_start_warns_exactly_when_the_server_runs_without_autovacuum(
        self, settings: Settings, clock: FrozenClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="canopy")
        application = create_app(settings, clock=clock, run_worker=False)
        async with (
            LifespanManager(application),
            application.state.sessionmaker() as session,
        ):
            setting = await session.scalar(text("SHOW autovacuum"))
        warned = any("autovacuum = off" in r.getMessage() for r in caplog.records)
        assert warned == (setting == "off")

    def test_the_warning_names_the_remedy(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.WARNING, logger="canopy")
        assert warn_without_autovacuum("off") is True
        assert "VACUUM (ANALYZE)" in caplog.text
        assert warn_without_autovacuum("on") is False
