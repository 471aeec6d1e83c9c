"""The meter itself: it must see real round trips, or every budget test would pass vacuously."""

from __future__ import annotations

import httpx

from tests.helpers import register
from tests.roundtrips import Meter


class TestMeter:
    async def test_counts_each_round_trip_of_a_cold_route(
        self, mclient: httpx.AsyncClient, meter: Meter
    ) -> None:
        # registration begins, inserts user, login and refresh token, then commits: several trips
        async with meter.request() as budget:
            await register(mclient, "metered")
        assert budget.pg.count >= 3
        assert budget.redis.count >= 1  # the register rate limit

    async def test_healthz_touches_neither_server(
        self, mclient: httpx.AsyncClient, meter: Meter
    ) -> None:
        async with meter.request() as budget:
            assert (await mclient.get("/healthz")).status_code == 200
        budget.check(pg=0, redis=0)
