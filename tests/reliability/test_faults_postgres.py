"""PostgreSQL faults, on a PostgreSQL of the tests' own (never the machine's shared server):

- a backend terminated in the middle of a request → 503 ``unavailable`` with ``Retry-After``,
  nothing half-applied, and a retry with the same ``Idempotency-Key`` applies exactly once
  (the hot path's one statement, and the cold path's session transaction);
- the server restarted under a running app → requests during the restart answer 503 (never
  500), and once it is back no request fails on a pooled connection the restart killed;
- a real deadlock inside a hot statement → retried within the request (bounded: with no retry
  left it is a 503, nothing applied).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from app.core.clock import FrozenClock
from tests.conftest import ADMIN_TOKEN
from tests.helpers import Player, assert_problem
from tests.planting.conftest import add_item, create_ngo, fund, quick_players
from tests.reliability.conftest import Served
from tests.reliability.servers import PrivatePostgres, terminate_backends
from tests.social.helpers_social import mint

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
COST = 17_900  # one saxaul


@pytest.fixture
async def on_private_pg(
    serve: Served, private_pg: PrivatePostgres, test_servers: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with serve(
        dsn=private_pg.dsn,
        database_url=private_pg.url,
        redis_url=test_servers.redis_url,
        revocation_poll_seconds=0.2,
    ) as served:
        yield served


async def ledger_ok(client: httpx.AsyncClient) -> None:
    report = (await client.get("/admin/v1/ledger/check", headers=ADMIN)).json()
    assert report["ok"], report


async def state(dsn: str, user_id: str) -> tuple[int, int, int]:
    """(balance, plantings, ledger entries) of a user, read behind the app's back."""
    conn = await asyncpg.connect(dsn)
    try:
        uid = uuid.UUID(user_id)
        row = await conn.fetchrow(
            "SELECT (SELECT balance_g FROM users WHERE id = $1) AS balance, "
            "(SELECT count(*) FROM plantings WHERE user_id = $1) AS plantings, "
            "(SELECT count(*) FROM ledger_entries WHERE user_id = $1) AS entries",
            uid,
        )
        assert row is not None
        return int(row["balance"]), int(row["plantings"]), int(row["entries"])
    finally:
        await conn.close()


async def hold_user_row(dsn: str, user_id: str) -> asyncpg.Connection:
    """A transaction holding the user's row lock (the app's statements queue behind it)."""
    conn = await asyncpg.connect(dsn)
    await conn.execute("BEGIN")
    await conn.execute("UPDATE users SET updated_at = updated_at WHERE id = $1", uuid.UUID(user_id))
    return conn


async def funded_planter(app: FastAPI, client: httpx.AsyncClient) -> tuple[Player, str]:
    ngo = await create_ngo(client, ADMIN)
    item = await add_item(client, ADMIN, ngo.id)
    [player] = await quick_players(app, 1)
    await fund(app, player.id, COST + 100)
    return player, str(item["id"])


async def ripe_collector(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock
) -> tuple[Player, int]:
    [player] = await quick_players(app, 1)
    await mint(client, clock, player, 2)
    clock.advance(timedelta(days=1))
    return player, 160


class TestBackendTerminatedMidRequest:
    async def test_hot_planting_fails_cleanly_and_its_retry_applies_once(
        self, on_private_pg: tuple[FastAPI, httpx.AsyncClient], private_pg: PrivatePostgres
    ) -> None:
        app, client = on_private_pg
        player, item = await funded_planter(app, client)
        before = await state(private_pg.dsn, player.id)
        headers = player.headers | {"Idempotency-Key": "plant-once"}
        body = {"item_id": item, "quantity": 1}

        blocker = await hold_user_row(private_pg.dsn, player.id)
        try:
            request = asyncio.create_task(client.post("/v1/plantings", json=body, headers=headers))
            # the hot statement is running (queued on the row lock) when its backend dies
            assert await terminate_backends(
                private_pg.dsn, application="canopy-hot", waiting_on_lock=True
            )
            failed = await request
        finally:
            await blocker.execute("ROLLBACK")
            await blocker.close()

        assert_problem(failed, 503, "unavailable")
        assert int(failed.headers["retry-after"]) >= 1
        assert await state(private_pg.dsn, player.id) == before  # nothing half-applied

        first = await client.post("/v1/plantings", json=body, headers=headers)
        again = await client.post("/v1/plantings", json=body, headers=headers)
        assert first.status_code == 201, first.text
        assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true"
        assert again.json() == first.json()
        balance, plantings, _ = await state(private_pg.dsn, player.id)
        assert (balance, plantings) == (before[0] - COST, 1)
        await ledger_ok(client)

    async def test_cold_collect_under_a_key_fails_cleanly_and_its_retry_applies_once(
        self,
        on_private_pg: tuple[FastAPI, httpx.AsyncClient],
        private_pg: PrivatePostgres,
        clock: FrozenClock,
    ) -> None:
        app, client = on_private_pg
        player, ripe = await ripe_collector(app, client, clock)
        before = await state(private_pg.dsn, player.id)
        headers = player.headers | {"Idempotency-Key": "collect-once"}

        blocker = await hold_user_row(private_pg.dsn, player.id)
        try:
            request = asyncio.create_task(
                client.post("/v1/forest/collect", json={}, headers=headers)
            )
            # with a key the collect runs in the request's session (the cold path's pool)
            assert await terminate_backends(
                private_pg.dsn, application="canopy", waiting_on_lock=True
            )
            failed = await request
        finally:
            await blocker.execute("ROLLBACK")
            await blocker.close()

        assert_problem(failed, 503, "unavailable")
        assert "retry-after" in failed.headers
        assert await state(private_pg.dsn, player.id) == before

        first = await client.post("/v1/forest/collect", json={}, headers=headers)
        again = await client.post("/v1/forest/collect", json={}, headers=headers)
        assert first.status_code == 200, first.text
        assert first.json()["collected_g"] == ripe
        assert again.json() == first.json()
        assert again.headers.get("idempotent-replayed") == "true"
        assert (await state(private_pg.dsn, player.id))[0] == before[0] + ripe
        await ledger_ok(client)


class TestPostgresRestarted:
    async def test_the_app_recovers_and_no_request_meets_a_dead_pooled_connection(
        self, on_private_pg: tuple[FastAPI, httpx.AsyncClient], private_pg: PrivatePostgres
    ) -> None:
        app, client = on_private_pg
        players = await quick_players(app, 6)
        ngo = await create_ngo(client, ADMIN)
        item = str((await add_item(client, ADMIN, ngo.id, cost_g=100, budget=1000))["id"])
        for p in players:
            await fund(app, p.id, 10_000)

        def requests(round_: int) -> list[Any]:
            """Hot (plantings, forest) and cold (lists, me) requests of every player at once:
            enough to use every pooled connection of both pools."""
            calls = []
            for n, p in enumerate(players):
                key = {"Idempotency-Key": f"r{round_}-{n}"}
                calls += [
                    client.post("/v1/plantings", json={"item_id": item}, headers=p.headers | key),
                    client.get("/v1/forest", headers=p.headers),
                    client.get("/v1/plantings", headers=p.headers),
                    client.get("/v1/me", headers=p.headers),
                ]
            return calls

        warm = await asyncio.gather(*requests(0))
        assert {r.status_code for r in warm} == {200, 201}, [r.text for r in warm]
        hot_pool = app.state.pg.pool
        assert hot_pool.get_size() > 1

        # during the restart: every answer is a success or a clean 503, never a 500
        restart = asyncio.create_task(asyncio.to_thread(private_pg.restart))
        during: list[httpx.Response] = []
        round_ = 1
        while not restart.done():
            during += await asyncio.gather(*requests(round_))
            round_ += 1
        await restart
        for r in during:
            if r.status_code >= 500:
                assert_problem(r, 503, "unavailable")
                assert "retry-after" in r.headers

        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        # the pools still hold connections the restart killed: none of them may fail a request
        for attempt in range(3):
            after = await asyncio.gather(*requests(100 + attempt))
            failures = [
                (r.request.url.path, r.status_code, r.text) for r in after if r.status_code >= 400
            ]
            assert not failures, failures
        # a login revoked by another process after the restart is refused here within a second
        # or so: the revocation listener (or its poll) reconnected too
        conn = await asyncpg.connect(private_pg.dsn)
        try:
            await conn.execute(
                "UPDATE auth_sessions SET revoked_at = now() WHERE user_id = $1",
                uuid.UUID(players[0].id),
            )
        finally:
            await conn.close()
        deadline = time.monotonic() + 5
        while (await client.get("/v1/me", headers=players[0].headers)).status_code != 401:
            assert time.monotonic() < deadline, "a revoked login still accepted after the restart"
            await asyncio.sleep(0.1)
        await ledger_ok(client)


class TestDeadlockRetriedInsideTheRequest:
    async def _deadlock_a_collect(
        self, client: httpx.AsyncClient, dsn: str, player: Player
    ) -> tuple[httpx.Response, float]:
        """Make the collect's statement a real deadlock's victim: it locks the ball, then queues
        on the user's row held by a transaction that then asks for the ball."""
        conn = await asyncpg.connect(dsn)
        try:
            ball = await conn.fetchval(
                "SELECT id FROM energy_balls WHERE user_id = $1 AND remaining_g > 0 LIMIT 1",
                uuid.UUID(player.id),
            )
            await conn.execute("SET deadlock_timeout = '10s'")  # so the request is the victim
            await conn.execute("BEGIN")
            await conn.execute(
                "UPDATE users SET updated_at = updated_at WHERE id = $1", uuid.UUID(player.id)
            )
            started = time.monotonic()
            request = asyncio.create_task(
                client.post("/v1/forest/collect", json={}, headers=player.headers)
            )
            await _until_waiting(dsn, "canopy-hot")
            # the cycle: this waits for the request's ball lock; PostgreSQL aborts the request's
            # statement (40P01) after its deadlock_timeout, and this gets the ball
            await conn.execute("SELECT 1 FROM energy_balls WHERE id = $1 FOR UPDATE", ball)
            await conn.execute("COMMIT")
            response = await request
            return response, time.monotonic() - started
        finally:
            await conn.close()

    async def test_a_deadlocked_collect_is_retried_and_succeeds(
        self,
        on_private_pg: tuple[FastAPI, httpx.AsyncClient],
        private_pg: PrivatePostgres,
        clock: FrozenClock,
    ) -> None:
        app, client = on_private_pg
        player, ripe = await ripe_collector(app, client, clock)
        deadlocks = await _deadlocks(private_pg.dsn)
        response, _ = await self._deadlock_a_collect(client, private_pg.dsn, player)
        assert response.status_code == 200, response.text
        assert response.json()["collected_g"] == ripe
        await _until(lambda: _deadlocks(private_pg.dsn), deadlocks + 1)
        await ledger_ok(client)

    async def test_with_no_retry_left_the_deadlock_is_a_clean_503(
        self,
        on_private_pg: tuple[FastAPI, httpx.AsyncClient],
        private_pg: PrivatePostgres,
        clock: FrozenClock,
    ) -> None:
        app, client = on_private_pg
        player, ripe = await ripe_collector(app, client, clock)
        app.state.pg.retries = 0  # the bound, reached at once
        before = await state(private_pg.dsn, player.id)
        response, _ = await self._deadlock_a_collect(client, private_pg.dsn, player)
        assert_problem(response, 503, "unavailable")
        assert "retry-after" in response.headers
        assert await state(private_pg.dsn, player.id) == before
        app.state.pg.retries = 3
        retried = await client.post("/v1/forest/collect", json={}, headers=player.headers)
        assert retried.json()["collected_g"] == ripe


async def _until_waiting(dsn: str, application: str, timeout: float = 10) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while not await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = $1 AND wait_event_type = 'Lock'",
            application,
        ):
            assert time.monotonic() < deadline, f"no {application} backend waiting on a lock"
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def _deadlocks(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            )
        )
    finally:
        await conn.close()


async def _until(read: Any, expected: int, timeout: float = 5) -> None:
    """Statistics reach pg_stat_database within a second or so."""
    deadline = time.monotonic() + timeout
    while (value := await read()) < expected:
        assert time.monotonic() < deadline, f"{value} < {expected}"
        await asyncio.sleep(0.1)
