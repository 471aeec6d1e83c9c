"""Canopy on a real 3-master Redis Cluster (started by the suite, see ``tests/rediscluster.py``):
the client, /readyz, leaderboards (hash-tagged boards, the rebuild transaction), rate limits,
hot rules publishing between two apps, and erasure's sweep of every node."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import ValidationError
from redis.asyncio import RedisCluster as AsyncRedisCluster
from redis.crc import key_slot

from app.config import Settings
from app.core.clock import FrozenClock
from app.core.ratelimit import LIMITER_ERRORS
from app.core.redis import ClusterURL, create_redis
from app.core.services import redact
from app.game.leaderboards.service import board_key, ready_key
from app.main import create_app
from app.rules.hot import CHANNEL
from app.rules.schema import LimitsRules
from tests.conftest import GENEROUS_LIMIT, TestServers, _clean, set_limits
from tests.game.test_rules_publishing import METRO_60, TOML, metro
from tests.helpers import PASSWORD, assert_problem, register
from tests.rediscluster import RedisCluster, redis_server_binary
from tests.social.test_leaderboards import MONDAY_RANKING, board, monday_morning, ranking

# the boards of the leaderboard tests' Monday (29 Nov 2026 is a Sunday; Monday is in week 49)
MONDAY_BOARDS = (
    board_key("day", "2026-11-30"),
    board_key("week", "2026-W49"),
    board_key("total", "all"),
)


@pytest.fixture
def cluster_settings(settings: Settings, redis_cluster: RedisCluster) -> Settings:
    return settings.model_copy(update={"redis_url": redis_cluster.url})


async def _started(app: FastAPI) -> None:
    set_limits(app, **{name: GENEROUS_LIMIT for name in LimitsRules.model_fields})


@pytest.fixture
async def cluster_app(
    cluster_settings: Settings,
    clock: FrozenClock,
    test_servers: TestServers,
    redis_cluster: RedisCluster,
) -> AsyncIterator[FastAPI]:
    await _clean(test_servers)
    redis_cluster.flush()
    application = create_app(cluster_settings, clock=clock, run_worker=False)
    async with LifespanManager(application):
        await _started(application)
        yield application


@pytest.fixture
async def cluster_client(cluster_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=cluster_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def cluster(redis_cluster: RedisCluster) -> AsyncIterator[AsyncRedisCluster]:
    """A client of our own, to look at what the app wrote."""
    client = create_redis(redis_cluster.url)
    assert isinstance(client, AsyncRedisCluster)
    yield client
    await client.aclose()


async def _eventually(check: object, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} within {timeout} s")


class TestClusterURL:
    def test_settings_accept_a_cluster_url(self) -> None:
        url = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"
        assert Settings(redis_url=url).redis_url == url

    @pytest.mark.parametrize(
        "url",
        ["redis+cluster://127.0.0.1", "redis+cluster://a:1,b", "redis+cluster://a:1/3", "http://a"],
    )
    def test_settings_refuse_a_broken_redis_url(self, url: str) -> None:
        with pytest.raises(ValidationError):
            Settings(redis_url=url)

    def test_credentials_and_tls_come_from_the_url(self) -> None:
        parsed = ClusterURL.parse("rediss+cluster://ops:s%40cret@10.0.0.1:7000,10.0.0.2:7000")
        assert parsed.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7000))
        assert parsed.client_options() == {"ssl": True, "username": "ops", "password": "s@cret"}

    def test_logs_never_show_the_password(self) -> None:
        assert redact("redis+cluster://ops:secret@a:1,b:2") == "redis+cluster://ops@a:1,b:2"


class TestClusterClient:
    async def test_a_cluster_url_gives_a_cluster_client_that_finds_every_master(
        self, cluster_app: FastAPI
    ) -> None:
        redis = cluster_app.state.redis
        assert isinstance(redis, AsyncRedisCluster)
        await redis.ping()
        assert len(redis.get_primaries()) == 3

    async def test_readyz_checks_the_cluster(self, cluster_client: httpx.AsyncClient) -> None:
        response = await cluster_client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["checks"]["redis"] == "ok"

    @pytest.mark.slow
    async def test_readyz_is_503_while_a_primary_is_down(
        self, cluster_settings: Settings, clock: FrozenClock
    ) -> None:
        if redis_server_binary() is None:
            pytest.skip("redis-server is not installed")
        own = RedisCluster().start()  # one of our own: the shared one must stay whole
        try:
            app = create_app(
                cluster_settings.model_copy(update={"redis_url": own.url}),
                clock=clock,
                run_worker=False,
            )
            async with LifespanManager(app):
                transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                    assert (await c.get("/readyz")).status_code == 200
                    own.kill_node(1)
                    down = await c.get("/readyz")
                    assert down.status_code == 503
                    assert down.json()["checks"] == {"postgresql": "ok", "redis": "down"}
        finally:
            own.stop()


class TestLeaderboardsOnCluster:
    async def test_boards_rank_friends_and_spread_over_the_nodes(
        self,
        cluster_client: httpx.AsyncClient,
        clock: FrozenClock,
        cluster_app: FastAPI,
        cluster: AsyncRedisCluster,
    ) -> None:
        circle = await monday_morning(cluster_client, clock, cluster_app)
        for period in ("day", "week", "total"):
            body = await board(cluster_client, circle.alice, period)
            assert ranking(body) == MONDAY_RANKING, period
        owners = set()
        for key in MONDAY_BOARDS:
            # a board and its ready marker are written in one transaction: one slot
            assert key_slot(key.encode()) == key_slot(ready_key(key).encode())
            assert await cluster.exists(ready_key(key)) == 1
            assert await cluster.zscore(key, circle.bob.id) == 160
            owners.add(cluster.get_node_from_key(key).name)
        assert len(owners) > 1  # the boards are not all on one node

    async def test_boards_are_rebuilt_after_the_cluster_lost_them(
        self,
        cluster_client: httpx.AsyncClient,
        clock: FrozenClock,
        cluster_app: FastAPI,
        redis_cluster: RedisCluster,
        cluster: AsyncRedisCluster,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        circle = await monday_morning(cluster_client, clock, cluster_app)
        await cluster_app.state.leaderboard_flusher.flush()
        redis_cluster.flush()  # every node restarted without persistence
        with caplog.at_level(logging.WARNING, logger="canopy.leaderboards"):
            for period in ("day", "week", "total"):
                body = await board(cluster_client, circle.alice, period)
                assert ranking(body) == MONDAY_RANKING
        # rebuilt in the cluster (board and marker in one transaction), not answered around it
        # (only the boards' own warnings: the asyncio logger may report a client another test
        # left for the garbage collector)
        warned = [r.getMessage() for r in caplog.records if r.name == "canopy.leaderboards"]
        assert not warned, warned
        for key in MONDAY_BOARDS:
            assert await cluster.zscore(key, circle.bob.id) == 160


class TestRateLimitsOnCluster:
    async def test_register_is_limited_per_address_on_the_cluster(
        self,
        cluster_client: httpx.AsyncClient,
        cluster_app: FastAPI,
        cluster: AsyncRedisCluster,
    ) -> None:
        errors = LIMITER_ERRORS._value.get()
        set_limits(cluster_app, register="3/minute")
        for i in range(3):
            await register(cluster_client, f"user{i}")
        response = await cluster_client.post(
            "/v1/auth/register", json={"handle": "user3", "password": PASSWORD}
        )
        assert_problem(response, 429, "rate_limited")
        # counted in the cluster, not in the in-memory fallback
        assert LIMITER_ERRORS._value.get() == errors
        assert [k async for k in cluster.scan_iter(match="canopy:rl*")]

    async def test_a_second_app_shares_the_count(
        self,
        cluster_client: httpx.AsyncClient,
        cluster_app: FastAPI,
        cluster_settings: Settings,
        clock: FrozenClock,
    ) -> None:
        set_limits(cluster_app, register="2/minute")
        await register(cluster_client, "first")
        other = create_app(cluster_settings, clock=clock, run_worker=False)
        async with LifespanManager(other):
            set_limits(other, register="2/minute")
            transport = httpx.ASGITransport(app=other, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://other") as c:
                await register(c, "second")
                third = await c.post(
                    "/v1/auth/register", json={"handle": "third", "password": PASSWORD}
                )
                assert_problem(third, 429, "rate_limited")


class TestRulesPublishingOnCluster:
    async def test_a_publish_reaches_a_second_app_through_the_cluster(
        self,
        cluster_app: FastAPI,
        cluster_client: httpx.AsyncClient,
        cluster_settings: Settings,
        clock: FrozenClock,
        redis_cluster: RedisCluster,
        admin_headers: dict[str, str],
    ) -> None:
        # a poll far away: only the cluster's pub/sub can bring the new version in time
        other_settings = cluster_settings.model_copy(update={"rules_refresh_seconds": 600.0})
        other = create_app(other_settings, clock=clock, run_worker=False)
        async with LifespanManager(other):
            await _started(other)
            await _eventually(
                lambda: asyncio.to_thread(lambda: redis_cluster.subscribers(CHANNEL) > 0),
                5,
                "the second app subscribed",
            )
            published = await cluster_client.post(
                "/admin/v1/rules", content=METRO_60, headers=admin_headers | TOML
            )
            assert published.status_code == 201, published.text

            async def switched() -> bool:
                return len(other.state.rules_registry.versions) == 2

            await _eventually(switched, 5, "the second app loaded version 2")
            transport = httpx.ASGITransport(app=other, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://other") as c:
                alice = await register(c, "alice")
                ride = await c.post(
                    "/v1/activities",
                    json=metro(clock, "r", timedelta(0)),
                    headers=alice.headers,
                )
                assert (ride.json()["energy_g"], ride.json()["rules_version"]) == (60, 2)


class TestErasureOnCluster:
    async def test_an_erased_player_leaves_every_board_on_every_node(
        self,
        cluster_client: httpx.AsyncClient,
        clock: FrozenClock,
        cluster_app: FastAPI,
        cluster: AsyncRedisCluster,
    ) -> None:
        circle = await monday_morning(cluster_client, clock, cluster_app)
        await cluster_app.state.leaderboard_flusher.flush()
        for key in MONDAY_BOARDS:
            assert await cluster.zscore(key, circle.bob.id) == 160
        erased = await cluster_client.request(
            "DELETE", "/v1/me", json={"password": PASSWORD}, headers=circle.bob.headers
        )
        assert erased.status_code in (200, 204), erased.text

        async def gone() -> bool:
            scores = [await cluster.zscore(key, circle.bob.id) for key in MONDAY_BOARDS]
            return scores == [None, None, None]

        await _eventually(gone, 5, "bob removed from the day, week and total boards")
        # the other players are untouched
        assert await cluster.zscore(board_key("total", "all"), circle.dave.id) == 240
