"""GET /v1/me: no query for auth, one statement for the row, no Redis at all."""

from __future__ import annotations

import httpx

from tests.helpers import register
from tests.roundtrips import Meter


class TestMeBudget:
    async def test_me_is_one_statement(self, mclient: httpx.AsyncClient, meter: Meter) -> None:
        alice = await register(mclient, "alice_me")
        assert (await mclient.get("/v1/me", headers=alice.headers)).status_code == 200
        async with meter.request() as budget:
            response = await mclient.get("/v1/me", headers=alice.headers)
        assert response.status_code == 200
        assert response.json()["handle"] == "alice_me"
        budget.check(pg=1, redis=0)
