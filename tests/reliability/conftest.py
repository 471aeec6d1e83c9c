"""Fixtures for the fault tests: a private PostgreSQL (one per run, restartable), a private
Redis (one per test, stoppable), and the app served in-process against them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis

from app.config import Settings
from app.core.clock import FrozenClock
from app.main import create_app
from app.models import metadata
from app.rules.schema import LimitsRules
from tests.conftest import GENEROUS_LIMIT, set_limits
from tests.reliability.servers import PrivatePostgres, RedisServer


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    """Started on first use and kept for the run: tests may terminate its backends, stop and
    restart it (each test leaves it running)."""
    server = PrivatePostgres().start()
    yield server
    server.close()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


async def clean(dsn: str, redis_url: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    redis = Redis.from_url(redis_url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


Served = Callable[..., Any]


@pytest.fixture
def serve(settings: Settings, clock: FrozenClock) -> Served:
    """``async with serve(database_url=..., redis_url=..., **settings) as (app, client)``: the
    app on those servers, started from empty tables and an empty Redis database."""

    @asynccontextmanager
    async def served(
        *, dsn: str, database_url: str, redis_url: str, **changes: Any
    ) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
        await clean(dsn, redis_url)
        configured = settings.model_copy(
            update={"database_url": database_url, "redis_url": redis_url, **changes}
        )
        app = create_app(configured, clock=clock, run_worker=False)
        async with LifespanManager(app):
            set_limits(app, **{name: GENEROUS_LIMIT for name in LimitsRules.model_fields})
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield app, c

    return served
