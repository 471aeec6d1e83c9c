"""Regional rates cannot be bought: a change of region applies from the user's next local day,
at most once every 30 days, and an event is valued with the region in force when its local day
began — so switching mid-day never raises the day's rate or bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app.core.clock import FrozenClock
from tests.helpers import Player, assert_problem, register


async def ride(
    client: httpx.AsyncClient, clock: FrozenClock, user: Player, eid: str, km: int
) -> dict[str, Any]:
    event = {
        "id": eid,
        "kind": "cycling",
        "occurred_at": (clock.now() - timedelta(minutes=1)).isoformat(),
        "quantity": km,
    }
    response = await client.post("/v1/activities", json=event, headers=user.headers)
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def move_to(client: httpx.AsyncClient, user: Player, region: str) -> httpx.Response:
    return await client.patch("/v1/me", json={"region": region}, headers=user.headers)


class TestRegionSwitch:
    async def test_a_mid_day_switch_to_the_best_rate_gains_nothing(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        clock.set(datetime(2026, 12, 3, 2, 0, tzinfo=UTC))  # 10:00 in Shanghai
        honest = await register(client, "honest")
        mallory = await register(client, "mallory")
        assert (await ride(client, clock, mallory, "a", 100))["energy_g"] == 5_000  # 50 g/km
        moved = await move_to(client, mallory, "wuhan")  # 93.3 g/km there
        assert moved.status_code == 200, moved.text
        assert moved.json()["region"] == "wuhan"
        profile = (await client.get("/v1/me/export", headers=mallory.headers)).json()["profile"]
        assert (profile["region_previous"], profile["region_from"]) == (None, "2026-12-04")
        clock.set(clock.now() + timedelta(hours=2))
        after = await ride(client, clock, mallory, "b", 100)
        assert after["energy_g"] == 5_000  # still today's rate; the day's bound is unchanged
        assert (await ride(client, clock, mallory, "c", 100))["energy_g"] == 0
        # exactly what staying put mints
        day = [await ride(client, clock, honest, e, 100) for e in ("a", "b", "c")]
        assert sum(r["energy_g"] for r in day) == 5_000 + 5_000 + 0
        # an event of the morning reported late keeps that morning's region too
        late = {
            "id": "late",
            "kind": "metro",
            "occurred_at": (clock.now() - timedelta(hours=3)).isoformat(),
        }
        metro = await client.post("/v1/activities", json=late, headers=mallory.headers)
        assert metro.json()["energy_g"] == 52
        # the next local day, the new region applies
        clock.set(datetime(2026, 12, 3, 16, 30, tzinfo=UTC))  # 00:30 on Dec 4 in Shanghai
        assert (await ride(client, clock, mallory, "d", 10))["energy_g"] == 933

    async def test_switching_mid_day_from_a_per_km_region_does_not_reset_the_day(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        clock.set(datetime(2026, 12, 3, 2, 0, tzinfo=UTC))
        rider = await register(client, "rider", region="shenzhen")

        async def metro(eid: str, km: int) -> int:
            event = {
                "id": eid,
                "kind": "metro",
                "occurred_at": (clock.now() - timedelta(minutes=1)).isoformat(),
                "quantity": km,
            }
            response = await client.post("/v1/activities", json=event, headers=rider.headers)
            return int(response.json()["energy_g"])

        assert await metro("a", 100) == 4_680  # Shenzhen: 46.8 g/km, 100 km a day
        assert (await move_to(client, rider, "beijing")).status_code == 200
        # per event elsewhere (52 g, 5 a day): not today
        assert [await metro(f"b{i}", 1) for i in range(3)] == [0, 0, 0]

    async def test_the_region_changes_at_most_once_in_30_days(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        clock.set(datetime(2026, 12, 3, 2, 0, tzinfo=UTC))
        user = await register(client, "nomad")
        assert (await move_to(client, user, "wuhan")).status_code == 200
        assert (await move_to(client, user, "wuhan")).status_code == 200  # no change: fine
        clock.set(clock.now() + timedelta(days=29))
        body = assert_problem(
            await move_to(client, user, "shenzhen"), 409, "region_change_too_soon"
        )
        assert "2027-01-02" in body["detail"]
        clock.set(clock.now() + timedelta(days=1))
        assert (await move_to(client, user, "shenzhen")).status_code == 200
