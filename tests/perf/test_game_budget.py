"""The social game's hot routes within budget: ONE PostgreSQL round trip each, and at most ONE
Redis round trip (the collect rate limit), counted on the wire after a warm-up call.

A collect's leaderboard write is not in its budget: the route hands the scores to the process's
:class:`~app.game.leaderboards.flusher.ScoreFlusher`, whose write runs in its own task after a
delay. These tests hold that write back (a long delay) while measuring, so it cannot fall into
the window by chance, then flush by hand and count the flush itself: one Redis pipeline for every
pending score, no PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.game.leaderboards.flusher import ScoreFlusher
from app.game.leaderboards.service import board_key
from tests.energy.conftest import ledger_ok
from tests.helpers import Player, register
from tests.roundtrips import Budget, Meter
from tests.social.helpers_social import befriend, mint, swap_rules

FRIENDS = 256


@pytest.fixture
def app(metered: tuple[FastAPI, Meter]) -> FastAPI:
    return metered[0]


@pytest.fixture
def held(app: FastAPI) -> Iterator[ScoreFlusher]:
    """The app's score flusher with its timed write held back (tests flush by hand)."""
    flusher: ScoreFlusher = app.state.leaderboard_flusher
    flusher.delay = 3600.0
    yield flusher


def exactly(budget: Budget, *, pg: int, redis: int) -> None:
    """Within budget, and the meter saw the request's own round trips (not a vacuous 0)."""
    budget.check(pg=pg, redis=redis)
    assert (budget.pg.count, budget.redis.count) == (pg, redis)


async def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def card(
    client: httpx.AsyncClient, admin_headers: dict[str, str], player: Player, kind: str
) -> None:
    granted = await client.post(
        "/admin/v1/props/grant",
        json={"user_id": player.id, "type": kind, "count": 2},
        headers=admin_headers,
    )
    assert granted.status_code == 200, granted.text
    await ok(await client.post(f"/v1/props/{kind}/use", headers=player.headers))


async def pair(client: httpx.AsyncClient, clock: FrozenClock) -> tuple[Player, Player]:
    """Friends ``owner`` (with 3 ripe balls) and ``thief`` (with 1 ripe ball of her own)."""
    owner, thief = await register(client, "owner"), await register(client, "thief")
    await befriend(client, owner, thief)
    await mint(client, clock, owner, 3)
    await mint(client, clock, thief, 1)
    clock.advance(hours=24)
    return owner, thief


class TestOwnForest:
    async def test_the_forest_page_is_one_statement_and_no_redis(
        self,
        mclient: httpx.AsyncClient,
        meter: Meter,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        swap_rules(app, "stealing", mode="fixed")
        owner, thief = await pair(mclient, clock)
        await card(mclient, admin_headers, owner, "shield")
        clock.advance(hours=24)  # the shield is over: let the thief take something to show
        await ok(await mclient.post(f"/v1/friends/{owner.id}/collect", headers=thief.headers))
        await ok(await mclient.get("/v1/forest", headers=owner.headers))  # warm-up
        async with meter.request() as budget:
            forest = await ok(await mclient.get("/v1/forest", headers=owner.headers))
        exactly(budget, pg=1, redis=0)
        assert len(forest["balls"]) == 3
        assert {c["by"]["handle"] for b in forest["balls"] for c in b["collections"]} == {"thief"}

        async with meter.request() as budget:
            everything = await ok(await mclient.get("/v1/forest?all=true", headers=owner.headers))
        budget.check(pg=2, redis=0)  # another statement: prepared on first use, then one
        async with meter.request() as budget:
            await ok(await mclient.get("/v1/forest?all=true", headers=owner.headers))
        exactly(budget, pg=1, redis=0)
        assert len(everything["balls"]) == 3

    async def test_collecting_is_one_statement_and_the_rate_limit(
        self,
        mclient: httpx.AsyncClient,
        meter: Meter,
        clock: FrozenClock,
        held: ScoreFlusher,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        owner, _ = await pair(mclient, clock)
        await ok(await mclient.post("/v1/forest/collect", json={}, headers=owner.headers))
        await mint(mclient, clock, owner, 2)
        clock.advance(hours=24)
        async with meter.request() as budget:
            collected = await ok(
                await mclient.post("/v1/forest/collect", json={}, headers=owner.headers)
            )
        exactly(budget, pg=1, redis=1)
        assert collected["collected_g"] == 160 and collected["balance_g"] == 400

        # the scores wait in the flusher (both collects': two days, one week, the total), and go
        # to Redis in one pipeline without PostgreSQL
        assert held.pending == 4
        async with meter.request() as budget:
            assert await held.flush()
        exactly(budget, pg=0, redis=1)
        assert budget.redis.count == 1
        assert await app.state.redis.zscore(board_key("total", "all"), owner.id) == 400
        await ledger_ok(mclient, admin_headers)


class TestFriends:
    async def test_the_friends_list_of_256_is_one_statement(
        self,
        mclient: httpx.AsyncClient,
        meter: Meter,
        clock: FrozenClock,
        app: FastAPI,
    ) -> None:
        swap_rules(app, "stealing", mode="fixed")
        me = await register(mclient, "myself")
        friends = [await register(mclient, f"friend{i:03d}") for i in range(FRIENDS)]
        async with app.state.engine.begin() as conn:  # befriend in bulk
            await conn.execute(
                text(
                    "INSERT INTO friendships (user_id, friend_id, created_at) SELECT a, b, now() "
                    "FROM unnest(CAST(:a AS uuid[]), CAST(:b AS uuid[])) AS t(a, b)"
                ),
                {
                    "a": [me.id] * FRIENDS + [f.id for f in friends],
                    "b": [f.id for f in friends] + [me.id] * FRIENDS,
                },
            )
        for friend in friends[:8]:
            await mint(mclient, clock, friend, 1)
        clock.advance(hours=24)
        await ok(await mclient.post("/v1/forest/collect", json={}, headers=friends[0].headers))
        await ok(await mclient.get("/v1/friends", headers=me.headers))  # warm-up
        async with meter.request() as budget:
            listed = (await ok(await mclient.get("/v1/friends", headers=me.headers)))["friends"]
        exactly(budget, pg=1, redis=0)
        assert len(listed) == FRIENDS
        assert [f["collectible_g"] for f in listed[:8]] == [8] * 7 + [0]
        by_handle = {f["handle"]: f for f in listed}
        assert by_handle["friend000"]["energy_week_g"] == 80  # from PostgreSQL, not Redis

    async def test_a_friends_forest_is_one_statement(
        self, mclient: httpx.AsyncClient, meter: Meter, clock: FrozenClock
    ) -> None:
        owner, thief = await pair(mclient, clock)
        await ok(await mclient.get(f"/v1/friends/{owner.id}/forest", headers=thief.headers))
        async with meter.request() as budget:
            forest = await ok(
                await mclient.get(f"/v1/friends/{owner.id}/forest", headers=thief.headers)
            )
        exactly(budget, pg=1, redis=0)
        assert [b["viewer_status"] for b in forest["balls"]] == ["available"] * 3

    async def test_a_stranger_gets_the_404_in_one_statement(
        self, mclient: httpx.AsyncClient, meter: Meter, clock: FrozenClock
    ) -> None:
        owner, _ = await pair(mclient, clock)
        stranger = await register(mclient, "stranger")
        for path in (f"/v1/friends/{owner.id}/forest", f"/v1/friends/{uuid.uuid4()}/forest"):
            assert (await mclient.get(path, headers=stranger.headers)).status_code == 404
        async with meter.request() as budget:
            response = await mclient.get(f"/v1/friends/{owner.id}/forest", headers=stranger.headers)
        exactly(budget, pg=1, redis=0)
        assert response.status_code == 404

    @pytest.mark.parametrize("which", ["one", "all"])
    async def test_a_take_with_a_double_collect_card_is_one_statement_and_the_rate_limit(
        self,
        mclient: httpx.AsyncClient,
        meter: Meter,
        clock: FrozenClock,
        app: FastAPI,
        held: ScoreFlusher,
        admin_headers: dict[str, str],
        which: str,
    ) -> None:
        swap_rules(app, "stealing", mode="fixed")
        owner, thief = await pair(mclient, clock)
        forest = await ok(await mclient.get("/v1/forest", headers=owner.headers))
        balls = [b["id"] for b in forest["balls"]]
        await card(mclient, admin_headers, thief, "double_collect")
        body = {"ball_ids": [balls[0]]} if which == "one" else {}
        path = f"/v1/friends/{owner.id}/collect"
        first = await ok(await mclient.post(path, json=body, headers=thief.headers))  # warm-up
        async with meter.request() as budget:
            second = await ok(await mclient.post(path, json=body, headers=thief.headers))
        exactly(budget, pg=1, redis=1)
        takes = 1 if which == "one" else 3
        assert first["collected_g"] == second["collected_g"] == 8 * takes  # twice: the card
        assert [r["status"] for r in second["results"]] == ["collected"] * takes
        third = await ok(await mclient.post(path, json=body, headers=thief.headers))
        assert [r["status"] for r in third["results"]] == ["collected_by_you"] * takes
        assert held.pending == 3
        await ledger_ok(mclient, admin_headers)

    async def test_watering_is_one_statement(
        self,
        mclient: httpx.AsyncClient,
        meter: Meter,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        owner, thief = await pair(mclient, clock)
        await ok(await mclient.post("/v1/forest/collect", json={}, headers=thief.headers))
        path = f"/v1/friends/{owner.id}/water"
        await ok(await mclient.post(path, json={"amount_g": 10}, headers=thief.headers), 201)
        async with meter.request() as budget:
            watered = await ok(
                await mclient.post(path, json={"amount_g": 18}, headers=thief.headers), 201
            )
        exactly(budget, pg=1, redis=0)
        assert watered == {"watered_g": 18, "balance_g": 80 - 28}
        # refusals are one statement too
        async with meter.request() as budget:
            refused = await mclient.post(path, json={"amount_g": 66}, headers=thief.headers)
        exactly(budget, pg=1, redis=0)
        assert refused.json()["code"] == "insufficient_energy"
        await ledger_ok(mclient, admin_headers)
