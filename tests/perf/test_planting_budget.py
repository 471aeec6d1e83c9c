"""POST /v1/plantings: one PostgreSQL round trip (the redeeming statement), no Redis — for a
new planting, a replay of its Idempotency-Key, and a refusal."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from tests.helpers import Player, assert_problem
from tests.planting.conftest import add_item, create_ngo, fund, quick_players
from tests.roundtrips import Meter


async def planting(
    client: httpx.AsyncClient, player: Player, item: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = player.headers | ({"Idempotency-Key": key} if key else {})
    return await client.post("/v1/plantings", json={"item_id": item["id"]}, headers=headers)


async def ready(
    app: FastAPI, mclient: httpx.AsyncClient, admin_headers: dict[str, str]
) -> tuple[Player, dict[str, Any]]:
    """A funded player and an item; one planting made already, so the statement is prepared on
    the hot connection."""
    ngo = await create_ngo(mclient, admin_headers)
    item = await add_item(mclient, admin_headers, ngo.id, cost_g=10, budget=1_000)
    [alice] = await quick_players(app, 1)
    await fund(app, alice.id, 1_000)
    assert (await planting(mclient, alice, item, "warm-up")).status_code == 201
    return alice, item


class TestPlantingBudget:
    async def test_a_new_planting_is_one_round_trip(
        self,
        metered: tuple[FastAPI, Meter],
        mclient: httpx.AsyncClient,
        meter: Meter,
        admin_headers: dict[str, str],
    ) -> None:
        alice, item = await ready(metered[0], mclient, admin_headers)
        async with meter.request() as budget:
            response = await planting(mclient, alice, item, "new")
        assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers
        budget.check(pg=1, redis=0)
        assert budget.pg.count == 1  # the meter saw the statement itself
        async with meter.request() as budget:
            response = await planting(mclient, alice, item)  # no key at all
        assert response.status_code == 201
        budget.check(pg=1, redis=0)

    async def test_a_replay_is_one_round_trip(
        self,
        metered: tuple[FastAPI, Meter],
        mclient: httpx.AsyncClient,
        meter: Meter,
        admin_headers: dict[str, str],
    ) -> None:
        alice, item = await ready(metered[0], mclient, admin_headers)
        first = await planting(mclient, alice, item, "again")
        async with meter.request() as budget:
            replay = await planting(mclient, alice, item, "again")
        assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == first.json()
        budget.check(pg=1, redis=0)

    async def test_a_refusal_is_one_round_trip(
        self,
        metered: tuple[FastAPI, Meter],
        mclient: httpx.AsyncClient,
        meter: Meter,
        admin_headers: dict[str, str],
    ) -> None:
        alice, item = await ready(metered[0], mclient, admin_headers)
        [broke] = await quick_players(metered[0], 1, prefix="broke")
        async with meter.request() as budget:
            response = await planting(mclient, broke, item, "no-energy")
        assert_problem(response, 409, "insufficient_energy")
        budget.check(pg=1, redis=0)
        async with meter.request() as budget:
            reused = await mclient.post(
                "/v1/plantings",
                json={"item_id": item["id"], "quantity": 2},
                headers=alice.headers | {"Idempotency-Key": "warm-up"},
            )
        assert_problem(reused, 422, "idempotency_key_reused")
        budget.check(pg=1, redis=0)
