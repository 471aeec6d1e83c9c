"""The rules watcher: off at 0, and back on its channel when Redis returns."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.core.clock import FrozenClock
from app.core.redis import create_redis
from app.rules.hot import CHANNEL, RulesWatcher, announce
from app.rules.loader import LoadedRules, default_rules_path, parse_rules_text, rules_sha256
from app.rules.registry import load_registry, publish
from tests.processes import RedisServer

METRO_60 = (
    default_rules_path()
    .read_text(encoding="utf-8")
    .replace("energy_per_event_g = 52", "energy_per_event_g = 60", 1)
)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


async def _subscribers(url: str) -> int:
    probe = Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        counts = await probe.pubsub_numsub(CHANNEL)
        return int(counts[0][1])
    finally:
        await probe.aclose()


async def _eventually(check: object, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            if await check():  # type: ignore[operator]
                return
        except Exception:  # not there yet
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} within {timeout} s")


class TestRulesWatcher:
    async def test_refresh_zero_turns_the_watcher_off(self, app: FastAPI) -> None:
        watcher = RulesWatcher(
            app.state.rules_registry, app.state.sessionmaker, app.state.redis, interval=0
        )
        watcher.start()
        # no poll task: with an interval of 0 it would query PostgreSQL in a tight loop
        assert watcher._tasks == [] and not watcher.enabled
        await watcher.stop()

    @pytest.mark.slow
    async def test_resubscribes_when_redis_returns(
        self, app: FastAPI, clock: FrozenClock, own_redis: RedisServer
    ) -> None:
        async with app.state.sessionmaker() as session:
            registry = await load_registry(session)
        redis = create_redis(own_redis.url)
        # a poll far away: only the Redis channel can bring the new version in time
        watcher = RulesWatcher(registry, app.state.sessionmaker, redis, interval=600)
        watcher.start()
        try:
            await _eventually(lambda: _has_subscriber(own_redis.url), 5, "subscribed")
            own_redis.stop()
            await asyncio.sleep(1.0)  # the listener notices and starts retrying
            own_redis.start()
            await _eventually(lambda: _has_subscriber(own_redis.url), 10, "subscribed again")

            loaded = LoadedRules(parse_rules_text(METRO_60), METRO_60, rules_sha256(METRO_60))
            async with app.state.sessionmaker() as session, session.begin():
                version = await publish(
                    session, loaded, effective_from=clock.now(), now=clock.now()
                )
            assert version.version is not None
            await announce(redis, version.version)
            await _eventually(lambda: _versions_are(registry, 2), 5, "the announced version loaded")
        finally:
            await watcher.stop()
            await redis.aclose()


async def _has_subscriber(url: str) -> bool:
    return await _subscribers(url) == 1


async def _versions_are(registry: object, count: int) -> bool:
    return len(registry.versions) == count  # type: ignore[attr-defined]
