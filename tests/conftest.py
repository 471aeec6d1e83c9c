"""Test infrastructure: real PostgreSQL and Redis, never mocks.

- ``CANOPY_TEST_DATABASE_URL`` / ``CANOPY_TEST_REDIS_URL`` name servers to use (CI sets them);
  unset, the embedded PostgreSQL/Redis are started under ``.canopy-test/``.
- Each run (each pytest-xdist worker) gets a fresh database created on that server, migrated with
  ``alembic upgrade head``, and dropped at the end, and a Redis database of its own. Each test that
  touches data starts from empty tables and an empty Redis database, so tests are independent,
  and concurrency tests can commit for real.
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from app.config import Settings, normalize_database_url
from app.core import migrate
from app.core.clock import FrozenClock
from app.core.embedded import EmbeddedServer, ensure_postgres, ensure_redis
from app.main import create_app
from app.models import metadata
from app.rules.schema import LimitsRules
from tests.rediscluster import RedisCluster, redis_server_binary
from tests.roundtrips import Meter, proxied

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-token-0123456789-0123456789"
GENEROUS_LIMIT = "100000/minute"


@dataclass
class TestServers:
    __test__ = False  # a fixture value, not a test class

    database_url: str  # the per-run database, asyncpg dialect
    redis_url: str
    admin_dsn: str  # plain asyncpg DSN of the server's maintenance database


def _plain_dsn(url: str) -> str:
    return (
        make_url(normalize_database_url(url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


async def _create_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def fresh_database(servers: TestServers, prefix: str = "canopy_test") -> str:
    """Create an empty database on the test server; returns its asyncpg URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    asyncio.run(_create_database(servers.admin_dsn, name))
    return make_url(servers.database_url).set(database=name).render_as_string(hide_password=False)


def drop_database(servers: TestServers, url: str) -> None:
    asyncio.run(_drop_database(servers.admin_dsn, make_url(url).database or ""))


def _worker() -> int:
    """This process's number under pytest-xdist (``make test`` runs two): 0 without it."""
    number = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return int(number) if number.isdigit() else 0


def _redis_for_worker(url: str, worker: int) -> str:
    """Each xdist worker flushes its own Redis database: the given one for worker 0, the ones
    below it (wrapping at 0 to 15) for the others."""
    if worker == 0:
        return url
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return parts._replace(path=f"/{(base - worker) % 16}").geturl()


@pytest.fixture(scope="session")
def test_servers() -> Iterator[TestServers]:
    started: list[EmbeddedServer] = []
    worker = _worker()
    # embedded servers: one pair per xdist worker, each under its own directory
    data_dir = ROOT / ".canopy-test" / (f"gw{worker}" if worker else "")
    db_url = os.environ.get("CANOPY_TEST_DATABASE_URL")
    redis_url = os.environ.get("CANOPY_TEST_REDIS_URL")
    if redis_url:
        redis_url = _redis_for_worker(redis_url, worker)
    try:
        if not db_url:
            pg = ensure_postgres(data_dir)
            started.append(pg)
            db_url = pg.url
        if not redis_url:
            rd = ensure_redis(data_dir)
            started.append(rd)
            redis_url = rd.url
        base = TestServers(normalize_database_url(db_url), redis_url, _plain_dsn(db_url))
        run_url = fresh_database(base)
        migrate.upgrade(run_url)
        servers = TestServers(run_url, redis_url, base.admin_dsn)
        yield servers
        drop_database(servers, run_url)
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A real 3-master Redis Cluster on free local ports, started on first use, for the run."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed; the Redis Cluster tests need it")
    cluster = RedisCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 29, 4, 0, tzinfo=UTC))


@pytest.fixture
def settings(test_servers: TestServers, tmp_path: Path) -> Settings:
    return Settings(
        database_url=test_servers.database_url,
        redis_url=test_servers.redis_url,
        data_dir=tmp_path / "data",
        admin_token=SecretStr(ADMIN_TOKEN),
        jwt_secret=SecretStr("test-jwt-secret-that-is-long-enough-0123456789"),
        webhook_allow_private=False,
        # game tests move the clock by days; the token-expiry test uses this value explicitly
        access_token_ttl=timedelta(days=365),
        rules_refresh_seconds=0,  # hot-publishing tests turn the watcher on themselves
        # argon2 at its production cost would dominate the suite; tests need correctness only
        argon2_time_cost=1,
        argon2_memory_kib=1024,
    )


# Emptying the tables before each test: TRUNCATE makes new files for every table and index
# (about 50 ms for all of them, most of a small test's time), DELETE of a few rows takes well under
# a millisecond. So tests DELETE (children first) and restart the sequences, and every
# TRUNCATE_EVERY-th clean TRUNCATEs instead, so the dead rows DELETE leaves never pile up.
TRUNCATE_EVERY = 50
_cleans = 0


@functools.cache
def _clean_statements() -> tuple[str, str]:
    tables = [f'"{t.name}"' for t in metadata.sorted_tables]
    truncate = f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"
    deletes = "; ".join(f"DELETE FROM {t}" for t in reversed(tables))
    # every sequence of the schema (serial and identity columns) back to its start, as RESTART
    # IDENTITY does
    restart = """
        DO $$ DECLARE s regclass; BEGIN
            FOR s IN SELECT c.oid FROM pg_class c
                     WHERE c.relkind = 'S' AND c.relnamespace = 'public'::regnamespace LOOP
                EXECUTE format('ALTER SEQUENCE %s RESTART', s);
            END LOOP;
        END $$"""
    return truncate, f"BEGIN; {deletes}; {restart}; COMMIT"


async def _clean(test_servers: TestServers) -> None:
    global _cleans
    truncate, delete = _clean_statements()
    conn = await asyncpg.connect(_plain_dsn(test_servers.database_url))
    try:
        await conn.execute(truncate if _cleans % TRUNCATE_EVERY == 0 else delete)
        _cleans += 1
    finally:
        await conn.close()
    redis = Redis.from_url(test_servers.redis_url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


def require_tcp_server(servers: TestServers) -> None:
    """Skip a test that needs the PostgreSQL server over TCP with matching client tools (CI's
    machine server), not the embedded one on a unix socket."""
    if make_url(servers.database_url).host is None:
        pytest.skip("needs CANOPY_TEST_DATABASE_URL (a TCP server whose pg_dump matches it)")


def set_limits(app: FastAPI, **limits: str) -> None:
    """Replace rate limits on a running test app (the rules object is immutable: swap a copy)."""
    registry = app.state.rules_registry
    now = app.state.clock.now()
    rules = registry.at(now).rules
    registry.replace_active_rules(
        rules.model_copy(update={"limits": rules.limits.model_copy(update=limits)}), now
    )


@pytest.fixture
async def app(
    settings: Settings, clock: FrozenClock, test_servers: TestServers
) -> AsyncIterator[FastAPI]:
    await _clean(test_servers)
    application = create_app(settings, clock=clock, run_worker=False)
    async with LifespanManager(application):
        # most tests register many users from one address; rate-limit tests lower these again
        set_limits(
            application,
            **{name: GENEROUS_LIMIT for name in LimitsRules.model_fields},
        )
        yield application


@pytest.fixture
async def metered(
    settings: Settings, clock: FrozenClock, test_servers: TestServers
) -> AsyncIterator[tuple[FastAPI, Meter]]:
    """An app whose PostgreSQL and Redis traffic goes through round-trip counting proxies, with
    one hot connection (so a warmed-up statement is always prepared on it) and no background
    polls (so what the proxies count is the request's own traffic)."""
    await _clean(test_servers)
    db = make_url(test_servers.database_url)
    if db.host is None:  # the embedded server listens on a unix socket only
        pytest.skip(
            "round trips are counted through a TCP proxy: run with CANOPY_TEST_DATABASE_URL "
            "(as .ci/run does)"
        )
    rd = urlsplit(test_servers.redis_url)
    async with (
        proxied(db.host or "127.0.0.1", db.port or 5432) as pg,
        proxied(rd.hostname or "127.0.0.1", rd.port or 6379) as redis,
    ):
        counted = settings.model_copy(
            update={
                "database_url": db.set(host="127.0.0.1", port=pg.port).render_as_string(
                    hide_password=False
                ),
                "redis_url": rd._replace(netloc=f"127.0.0.1:{redis.port}").geturl(),
                "hot_pool_size": 1,
                "revocation_poll_seconds": 0,
            }
        )
        application = create_app(counted, clock=clock, run_worker=False)
        async with LifespanManager(application):
            set_limits(application, **{name: GENEROUS_LIMIT for name in LimitsRules.model_fields})
            yield application, Meter(pg, redis)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
