"""Redis flushed, then stopped, in the middle of a collect storm — on a redis-server of the test's
own: no collect fails, the friends' board is PostgreSQL's truth throughout and is rebuilt in
Redis once it is back, rate limits are counted in memory while it is down (the documented
policy: per process, never unlimited), and /readyz reports Redis down, then back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.clock import FrozenClock
from tests.conftest import TestServers, _plain_dsn, set_limits
from tests.helpers import Player, assert_problem
from tests.planting.conftest import quick_players
from tests.reliability.conftest import Served
from tests.reliability.servers import RedisServer
from tests.social.helpers_social import BUS_G, befriend, mint

pytestmark = pytest.mark.slow

PLAYERS = 16
BALLS = 3  # each player's ripe balls; a storm wave collects one of them per player


@pytest.fixture
async def on_private_redis(
    serve: Served, private_redis: RedisServer, test_servers: TestServers
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with serve(
        dsn=_plain_dsn(test_servers.database_url),
        database_url=test_servers.database_url,
        redis_url=private_redis.url,
    ) as served:
        yield served


async def board(client: httpx.AsyncClient, player: Player) -> list[tuple[str, int]]:
    response = await client.get(
        "/v1/leaderboards/friends", params={"period": "day"}, headers=player.headers
    )
    assert response.status_code == 200, response.text
    return [(e["handle"], e["energy_g"]) for e in response.json()["entries"]]


async def readiness(client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    body = response.json()
    return response.status_code, body.get("checks", {})


class TestRedisLostDuringACollectStorm:
    async def test_collects_never_fail_and_everything_comes_back(
        self,
        on_private_redis: tuple[FastAPI, httpx.AsyncClient],
        private_redis: RedisServer,
        clock: FrozenClock,
    ) -> None:
        app, client = on_private_redis
        players = await quick_players(app, PLAYERS)
        me = players[0]
        for friend in players[1:4]:
            await befriend(client, me, friend)
        balls: dict[str, list[str]] = {}
        for p in players:
            balls[p.id] = await mint(client, clock, p, BALLS)
        clock.advance(timedelta(days=1))
        assert (await readiness(client))[0] == 200

        collected: dict[str, int] = {p.id: 0 for p in players}
        slowest = 0.0

        async def collect(p: Player, ball: str) -> None:
            nonlocal slowest
            started = time.monotonic()
            response = await client.post(
                "/v1/forest/collect", json={"ball_ids": [ball]}, headers=p.headers
            )
            slowest = max(slowest, time.monotonic() - started)
            assert response.status_code == 200, response.text
            collected[p.id] += response.json()["collected_g"]

        async def wave(n: int) -> None:
            await asyncio.gather(*(collect(p, balls[p.id][n]) for p in players))

        await wave(0)
        before = await board(client, me)  # built in Redis
        # flushed mid-storm: every board marker and score is gone, collects go on
        storm = asyncio.create_task(wave(1))
        await asyncio.sleep(0)
        await app.state.redis.flushall()
        await storm
        assert await board(client, me) != before  # rebuilt from PostgreSQL, with wave 1
        # stopped mid-storm
        storm = asyncio.create_task(wave(2))
        await asyncio.sleep(0)
        private_redis.stop()
        await storm

        assert collected == {p.id: BALLS * BUS_G for p in players}
        status, checks = await readiness(client)
        assert status == 503 and checks == {"postgresql": "ok", "redis": "down"}
        truth = sorted([(p.handle, BALLS * BUS_G) for p in [me, *players[1:4]]], key=lambda e: e[0])
        down = await board(client, me)
        assert sorted(down) == truth  # answered from PostgreSQL while Redis is down

        # rate limits while Redis is down: counted in this process's memory, still enforced
        set_limits(app, collect="2/minute")
        answers = [
            await client.post("/v1/forest/collect", json={}, headers=me.headers) for _ in range(3)
        ]
        assert [a.status_code for a in answers[:2]] == [200, 200]
        assert_problem(answers[2], 429, "rate_limited")
        assert int(answers[2].headers["retry-after"]) >= 1
        # a Redis that is gone costs a refused connection, not a timeout per request
        assert slowest < 2.0, f"a collect took {slowest:.2f} s with Redis down"

        private_redis.start()  # same port, empty
        status, checks = await readiness(client)
        assert status == 200 and checks == {"postgresql": "ok", "redis": "ok"}
        assert sorted(await board(client, me)) == truth  # rebuilt in Redis from PostgreSQL
        keys = [k async for k in app.state.redis.scan_iter(match="canopy:lb:*")]
        assert keys, "the board was not rebuilt in Redis"
