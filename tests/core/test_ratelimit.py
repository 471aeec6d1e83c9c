from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.core.ratelimit import RateLimiter
from tests.conftest import set_limits
from tests.helpers import PASSWORD, assert_problem, register


class TestAuthRateLimits:
    async def test_register_is_limited_per_address(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        set_limits(app, register="3/minute")
        for i in range(3):
            await register(client, f"user{i}")
        response = await client.post(
            "/v1/auth/register", json={"handle": "user3", "password": PASSWORD}
        )
        body = assert_problem(response, 429, "rate_limited")
        retry_after = int(response.headers["retry-after"])
        assert 1 <= retry_after <= 60
        assert str(retry_after) in body["detail"]

    async def test_refused_register_creates_nothing(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        set_limits(app, register="1/minute")
        await register(client, "first")
        await client.post("/v1/auth/register", json={"handle": "second", "password": PASSWORD})
        set_limits(app, register="100/minute")
        # "second" was never created, so it can register now
        await register(client, "second")

    async def test_login_is_limited_per_handle_and_address(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        await register(client, "alice")
        await register(client, "bob")
        set_limits(app, login="2/minute")
        for _ in range(2):
            await client.post(
                "/v1/auth/token", json={"handle": "alice", "password": "wrong-password"}
            )
        blocked = await client.post(
            "/v1/auth/token", json={"handle": "alice", "password": PASSWORD}
        )
        assert_problem(blocked, 429, "rate_limited")
        # another handle from the same address still gets through
        ok = await client.post("/v1/auth/token", json={"handle": "bob", "password": PASSWORD})
        assert ok.status_code == 200

    async def test_limits_come_from_the_rules(self, app: FastAPI) -> None:
        assert app.state.rules_registry.versions[0].rules.limits.register  # [limits] drives it
        set_limits(app, login="1/hour")
        limiter: RateLimiter = app.state.rate_limiter
        await limiter.hit("login", "carol", "1.2.3.4")
        with pytest.raises(Exception) as err:
            await limiter.hit("login", "carol", "1.2.3.4")
        assert getattr(err.value, "code", None) == "rate_limited"
        assert int(err.value.headers()["Retry-After"]) > 3000  # type: ignore[attr-defined]


class TestLimiterWithoutRedis:
    async def test_an_unreachable_redis_lets_requests_through(self) -> None:
        dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
        limiter = RateLimiter(dead, lambda name: "1/minute")
        try:
            for _ in range(3):
                await limiter.hit("login", "x")  # no exception: fail open
        finally:
            await dead.aclose()
