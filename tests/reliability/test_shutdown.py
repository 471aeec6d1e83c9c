"""Graceful shutdown of ``canopy serve`` under load, as a real process (two workers, and one): SIGTERM
closes the listener, lets the requests in flight finish (up to ``CANOPY_GRACEFUL_TIMEOUT``),
and every request a client sent either completed — its answer received and its planting in the
ledger — or was never applied. Past the timeout, what is still running is abandoned unapplied."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.core import migrate
from tests.conftest import TestServers, _plain_dsn, drop_database, fresh_database
from tests.helpers import Player
from tests.planting.conftest import add_item, create_ngo, fund, quick_players
from tests.processes import CANOPY, clean_env, free_port, wait_for
from tests.reliability.conftest import Served
from tests.reliability.test_faults_postgres import ADMIN
from tests.reliability.test_faults_worker import JWT_SECRET

pytestmark = pytest.mark.slow

CLIENTS = 24
COST = 100


@pytest.fixture
def database(test_servers: TestServers) -> Iterator[str]:
    url = fresh_database(test_servers, "canopy_shutdown")
    migrate.upgrade(url)
    yield url
    drop_database(test_servers, url)


async def seed(
    serve: Served, database: str, redis_url: str, count: int = CLIENTS
) -> tuple[list[Player], str]:
    async with serve(dsn=_plain_dsn(database), database_url=database, redis_url=redis_url) as (
        app,
        client,
    ):
        ngo = await create_ngo(client, ADMIN)
        item = await add_item(client, ADMIN, ngo.id, cost_g=COST, budget=100_000)
        players = await quick_players(app, count)
        for p in players:
            await fund(app, p.id, 1_000_000)
    return players, str(item["id"])


def start(
    database: str, redis_url: str, tmp_path: Path, timeout: int, workers: int
) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    env = clean_env(
        CANOPY_DATABASE_URL=database,
        CANOPY_REDIS_URL=redis_url,
        CANOPY_DATA_DIR=str(tmp_path / "data"),
        CANOPY_JWT_SECRET=JWT_SECRET,
        CANOPY_GRACEFUL_TIMEOUT=str(timeout),
        CANOPY_RULES_REFRESH_SECONDS="0",
        CANOPY_LOG_FORMAT="text",
    )
    proc = subprocess.Popen(
        [CANOPY, "serve", "--port", str(port), "--workers", str(workers), "--no-migrate"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        return proc.poll() is not None or httpx.get(base + "/readyz", timeout=1).status_code == 200

    wait_for(ready, 90, "canopy serve ready")
    assert proc.poll() is None, proc.communicate()[0]
    return proc, base


async def planted_keys(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT idempotency_key FROM plantings")
        return {r["idempotency_key"] for r in rows}
    finally:
        await conn.close()


async def hold_item(dsn: str, item: str) -> asyncpg.Connection:
    """Every planting of ``item`` queues behind this lock: requests stay in flight."""
    conn = await asyncpg.connect(dsn)
    await conn.execute("BEGIN")
    await conn.execute("SELECT 1 FROM catalog_items WHERE id = $1 FOR UPDATE", uuid.UUID(item))
    return conn


async def in_flight(dsn: str, n: int, timeout: float = 20) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while (
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'canopy-hot' AND wait_event_type = 'Lock'"
            )
            < n
        ):
            assert time.monotonic() < deadline, f"{n} requests in flight"
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


ANSWERED_AT: dict[str, float] = {}


async def load(
    base: str, players: list[Player], item: str, stop: asyncio.Event
) -> dict[str, int | str]:
    """Each player plants again and again, a new key each time, until ``stop`` or the server
    is gone; what each key got back (a status, or the transport error), and when
    (:data:`ANSWERED_AT`)."""
    outcomes: dict[str, int | str] = {}

    async def one(player: Player) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            n = 0
            while not stop.is_set():
                key = f"{player.handle}-{n}"
                n += 1
                try:
                    response = await client.post(
                        "/v1/plantings",
                        json={"item_id": item},
                        headers=player.headers | {"Idempotency-Key": key},
                    )
                    outcomes[key] = response.status_code
                    ANSWERED_AT[key] = time.monotonic()
                except httpx.TransportError as exc:
                    outcomes[key] = type(exc).__name__
                    if isinstance(exc, httpx.ConnectError):
                        return  # the listener is closed

    await asyncio.gather(*(one(p) for p in players))
    return outcomes


class TestGracefulShutdown:
    async def test_sigterm_under_load_finishes_what_is_in_flight(
        self, serve: Served, database: str, test_servers: TestServers, tmp_path: Path
    ) -> None:
        dsn = _plain_dsn(database)
        players, item = await seed(serve, database, test_servers.redis_url)
        proc, base = start(database, test_servers.redis_url, tmp_path, timeout=20, workers=2)
        stop = asyncio.Event()
        try:
            traffic = asyncio.create_task(load(base, players, item, stop))
            await asyncio.sleep(1.0)  # steady load
            blocker = await hold_item(dsn, item)
            await in_flight(dsn, 4)  # requests queued behind the lock, in flight
            sigterm_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            # the listener closes while those requests are still waiting
            await asyncio.to_thread(_until_refused, base)
            await asyncio.sleep(0.5)
            await blocker.execute("ROLLBACK")  # now they may finish
            await blocker.close()
            out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
            stopped_in = time.monotonic() - sigterm_at
            stop.set()
            outcomes = await traffic
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, out
        assert stopped_in < 20, f"took {stopped_in:.1f} s to stop"

        completed = {k for k, v in outcomes.items() if v == 201}
        unanswered = {k for k, v in outcomes.items() if v != 201}
        applied = await planted_keys(dsn)
        assert completed <= applied, "a request answered 201 was not applied"
        assert not (unanswered & applied), "a request without its answer was applied"
        assert applied <= set(outcomes)
        # the requests in flight at the SIGTERM were answered after it, with their 201
        assert len([k for k in completed if ANSWERED_AT[k] > sigterm_at]) >= 4, outcomes
        assert {v for v in outcomes.values() if v != 201} <= {
            "ConnectError",
            "RemoteProtocolError",
            "ReadError",
            503,
        }, outcomes

    async def test_past_the_timeout_requests_still_running_are_never_applied(
        self, serve: Served, database: str, test_servers: TestServers, tmp_path: Path
    ) -> None:
        dsn = _plain_dsn(database)
        players, item = await seed(serve, database, test_servers.redis_url, 6)
        proc, base = start(database, test_servers.redis_url, tmp_path, timeout=2, workers=1)
        stop = asyncio.Event()
        blocker = await hold_item(dsn, item)
        try:
            traffic = asyncio.create_task(load(base, players[:6], item, stop))
            await in_flight(dsn, 6)
            sigterm_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
            stopped_in = time.monotonic() - sigterm_at
            stop.set()
            outcomes = await traffic
        finally:
            await blocker.execute("ROLLBACK")
            await blocker.close()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, out
        assert stopped_in < 10, f"took {stopped_in:.1f} s to stop with a 2 s timeout"
        assert "timeout graceful shutdown exceeded" in out
        assert 201 not in outcomes.values()
        # the abandoned statements were cancelled with their connections: nothing applied
        await asyncio.sleep(0.5)
        assert await planted_keys(dsn) == set()


def _until_refused(base: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(base + "/healthz", timeout=1)
        except httpx.ConnectError:
            return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("canopy serve still accepting connections after SIGTERM")


class TestStartupFailure:
    def test_one_worker_that_cannot_start_exits_non_zero(
        self, test_servers: TestServers, tmp_path: Path
    ) -> None:
        """``canopy serve`` runs uvicorn's server itself (to close the listener at SIGTERM):
        an app that fails to start (here: an unmigrated database) must still fail the process,
        so a supervisor or container runtime sees it."""
        empty = fresh_database(test_servers, "canopy_unmigrated")
        try:
            env = clean_env(
                CANOPY_DATABASE_URL=empty,
                CANOPY_REDIS_URL=test_servers.redis_url,
                CANOPY_DATA_DIR=str(tmp_path / "data"),
                CANOPY_JWT_SECRET=JWT_SECRET,
                CANOPY_LOG_FORMAT="text",
            )
            done = subprocess.run(
                [CANOPY, "serve", "--port", str(free_port()), "--workers", "1", "--no-migrate"],
                env=env,
                capture_output=True,
                text=True,
                timeout=90,
            )
        finally:
            drop_database(test_servers, empty)
        assert done.returncode == 3, done.stdout + done.stderr
        assert "Application startup failed" in done.stdout + done.stderr
