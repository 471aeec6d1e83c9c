"""Playing together's hot routes within budget: reviving, starting and settling an energy rain
are ONE PostgreSQL round trip each and touch no Redis (counted on the wire after a warm-up)."""

from __future__ import annotations

import httpx

from app.core.clock import FrozenClock
from tests.energy.conftest import ledger_ok
from tests.helpers import register
from tests.perf.test_game_budget import exactly, ok
from tests.roundtrips import Meter
from tests.social.helpers_social import befriend, mint


class TestRevive:
    async def test_a_revive_and_its_refusal_are_one_statement_each(
        self,
        mclient: httpx.AsyncClient,
        meter: Meter,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        owner, friend = await register(mclient, "owner"), await register(mclient, "friend")
        await befriend(mclient, owner, friend)
        balls = await mint(mclient, clock, owner, 3)
        clock.advance(hours=96)
        path = f"/v1/friends/{owner.id}/revive"
        await ok(await mclient.post(path, json={"ball_id": balls[0]}, headers=friend.headers))
        async with meter.request() as budget:
            revived = await ok(
                await mclient.post(path, json={"ball_id": balls[1]}, headers=friend.headers)
            )
        exactly(budget, pg=1, redis=0)
        assert revived["revived_g"] + revived["reviver_g"] == 80
        async with meter.request() as budget:
            again = await mclient.post(path, json={"ball_id": balls[1]}, headers=friend.headers)
        exactly(budget, pg=1, redis=0)
        assert again.json()["code"] == "already_revived"
        await ok(await mclient.get("/v1/friends", headers=owner.headers))  # warm-up
        async with meter.request() as budget:
            listed = await mclient.get("/v1/friends", headers=friend.headers)
        exactly(budget, pg=1, redis=0)
        assert listed.json()["friends"][0]["can_revive"] is True  # the third ball
        await ledger_ok(mclient, admin_headers)


class TestEnergyRain:
    async def test_starting_and_settling_are_one_statement_each(
        self, mclient: httpx.AsyncClient, meter: Meter, clock: FrozenClock
    ) -> None:
        alice, bob = await register(mclient, "alice"), await register(mclient, "bob")
        warm = await ok(await mclient.post("/v1/games/energy-rain", headers=bob.headers), 201)
        async with meter.request() as budget:
            play = await ok(await mclient.post("/v1/games/energy-rain", headers=alice.headers), 201)
        exactly(budget, pg=1, redis=0)
        clock.advance(seconds=15)
        ids = [b["id"] for b in warm["balls"]]
        await ok(
            await mclient.post(
                f"/v1/games/energy-rain/{warm['session_id']}/settle",
                json={"collected": ids},
                headers=bob.headers,
            )
        )
        async with meter.request() as budget:
            paid = await ok(
                await mclient.post(
                    f"/v1/games/energy-rain/{play['session_id']}/settle",
                    json={"collected": [b["id"] for b in play["balls"]]},
                    headers=alice.headers,
                )
            )
        exactly(budget, pg=1, redis=0)
        assert paid["energy_g"] == 120
