"""GET /v1/leaderboards/friends: ranks by energy collected per period, ties, the day boundary in
the rules' time zone, and PostgreSQL as the truth when Redis is flushed or unreachable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text

from app.core.clock import FrozenClock
from tests.helpers import Player, assert_problem, register
from tests.social.helpers_social import befriend, collect_own, mint, swap_rules

PERIODS = ("day", "week", "total")
# the clock starts on Sunday 29 November 2026, 12:00 in Shanghai (the rules' zone); 24 h later
# it is Monday, the first day of a new week there
MONDAY_NOON = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
TUESDAY_MIDNIGHT = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # 00:00 Tuesday in Shanghai
TUESDAY_NOON = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)


@dataclass
class Circle:
    """alice with friends bob, carol, frank and erin; dave is bob's friend, not alice's."""

    alice: Player
    bob: Player
    carol: Player
    dave: Player
    erin: Player
    frank: Player


async def board(client: httpx.AsyncClient, player: Player, period: str) -> dict[str, Any]:
    response = await client.get(
        "/v1/leaderboards/friends", params={"period": period}, headers=player.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ranking(body: dict[str, Any]) -> list[tuple[int, str, int]]:
    return [(e["rank"], e["handle"], e["energy_g"]) for e in body["entries"]]


async def monday_morning(client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI) -> Circle:
    """On Monday (Shanghai): bob collects 160 g, carol and frank 80 g each, alice 80 g of her own
    plus 8 g taken from erin (who collects nothing), dave 240 g."""
    swap_rules(app, "stealing", mode="fixed")
    names = ("alice", "bob", "carol", "dave", "erin", "frank")
    circle = Circle(*[await register(client, n) for n in names])
    for friend in (circle.bob, circle.carol, circle.erin, circle.frank):
        await befriend(client, circle.alice, friend)
    await befriend(client, circle.bob, circle.dave)
    for player, rides in (
        (circle.alice, 1),
        (circle.bob, 2),
        (circle.carol, 1),
        (circle.dave, 3),
        (circle.erin, 1),
        (circle.frank, 1),
    ):
        await mint(client, clock, player, rides)
    clock.set(MONDAY_NOON)
    took = await client.post(
        f"/v1/friends/{circle.erin.id}/collect", json={}, headers=circle.alice.headers
    )
    assert took.json()["collected_g"] == 8
    for player in (circle.alice, circle.bob, circle.carol, circle.dave, circle.frank):
        await collect_own(client, player)
    return circle


MONDAY_RANKING = [
    (1, "bob", 160),
    (2, "alice", 88),
    (3, "carol", 80),
    (3, "frank", 80),
    (5, "erin", 0),
]


class TestFriendsBoard:
    @pytest.mark.parametrize("period", PERIODS)
    async def test_ranks_me_and_my_friends_by_energy_collected(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI, period: str
    ) -> None:
        circle = await monday_morning(client, clock, app)
        body = await board(client, circle.alice, period)
        assert body["period"] == period
        assert ranking(body) == MONDAY_RANKING
        assert body["me"] == {"rank": 2, "energy_g": 88}
        ids = {e["handle"]: e["id"] for e in body["entries"]}
        assert ids["bob"] == circle.bob.id and ids["alice"] == circle.alice.id
        assert "dave" not in ids  # bob's friend, not alice's

    async def test_each_player_sees_their_own_circle(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        circle = await monday_morning(client, clock, app)
        assert ranking(await board(client, circle.bob, "week")) == [
            (1, "dave", 240),
            (2, "bob", 160),
            (3, "alice", 88),
        ]
        erins = await board(client, circle.erin, "week")
        assert ranking(erins) == [(1, "alice", 88), (2, "erin", 0)]
        assert erins["me"] == {"rank": 2, "energy_g": 0}

    async def test_a_player_without_friends_is_alone_on_the_board(
        self, client: httpx.AsyncClient
    ) -> None:
        loner = await register(client, "loner")
        await register(client, "someone")
        body = await board(client, loner, "total")
        assert ranking(body) == [(1, "loner", 0)] and body["me"] == {"rank": 1, "energy_g": 0}

    async def test_week_is_the_default_period(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        circle = await monday_morning(client, clock, app)
        response = await client.get("/v1/leaderboards/friends", headers=circle.alice.headers)
        assert response.json()["period"] == "week"
        assert ranking(response.json()) == MONDAY_RANKING

    async def test_unknown_period_is_422(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        response = await client.get(
            "/v1/leaderboards/friends", params={"period": "month"}, headers=alice.headers
        )
        assert_problem(response, 422, "validation_error")

    async def test_board_needs_a_login(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/leaderboards/friends"), 401, "unauthorized")


class TestPeriods:
    async def test_a_new_day_in_the_rules_zone_starts_an_empty_day_board(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        circle = await monday_morning(client, clock, app)
        await mint(client, clock, circle.carol, 1)  # ripens on Tuesday at 11:30 in Shanghai
        clock.set(datetime(2026, 11, 30, 15, 59, 59, tzinfo=UTC))  # 23:59:59 Monday there
        assert ranking(await board(client, circle.alice, "day")) == MONDAY_RANKING
        clock.set(TUESDAY_MIDNIGHT)
        tuesday = await board(client, circle.alice, "day")
        assert ranking(tuesday) == [
            (1, "alice", 0),
            (1, "bob", 0),
            (1, "carol", 0),
            (1, "erin", 0),
            (1, "frank", 0),
        ]
        assert tuesday["me"] == {"rank": 1, "energy_g": 0}
        assert ranking(await board(client, circle.alice, "week")) == MONDAY_RANKING

        clock.set(TUESDAY_NOON)
        assert (await collect_own(client, circle.carol))["collected_g"] == 80
        assert ranking(await board(client, circle.alice, "day")) == [
            (1, "carol", 80),
            (2, "alice", 0),
            (2, "bob", 0),
            (2, "erin", 0),
            (2, "frank", 0),
        ]
        week = [(1, "bob", 160), (1, "carol", 160), (3, "alice", 88), (4, "frank", 80)]
        assert ranking(await board(client, circle.alice, "week")) == [*week, (5, "erin", 0)]
        assert ranking(await board(client, circle.alice, "total")) == [*week, (5, "erin", 0)]

    async def test_a_new_week_starts_on_monday_in_the_rules_zone(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        await mint(client, clock, bob, 1)  # on Sunday, ripe on Monday
        clock.set(MONDAY_NOON)
        await collect_own(client, bob)
        # bob's collect is this week's; nothing of last week counts, total keeps everything
        assert ranking(await board(client, alice, "week")) == [(1, "bob", 80), (2, "alice", 0)]
        clock.set(datetime(2026, 12, 6, 15, 59, tzinfo=UTC))  # Sunday 23:59, same week
        assert ranking(await board(client, alice, "week")) == [(1, "bob", 80), (2, "alice", 0)]
        clock.set(datetime(2026, 12, 6, 16, 0, tzinfo=UTC))  # Monday 00:00: a new week
        assert ranking(await board(client, alice, "week")) == [(1, "alice", 0), (1, "bob", 0)]
        assert ranking(await board(client, alice, "total")) == [(1, "bob", 80), (2, "alice", 0)]

    async def test_friends_list_shows_the_week_score(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        circle = await monday_morning(client, clock, app)
        friends = (await client.get("/v1/friends", headers=circle.alice.headers)).json()
        week = {f["handle"]: f["energy_week_g"] for f in friends["friends"]}
        assert week == {"bob": 160, "carol": 80, "erin": 0, "frank": 80}


@asynccontextmanager
async def redis_unreachable(app: FastAPI) -> AsyncIterator[None]:
    real = app.state.redis
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    app.state.redis = dead
    try:
        yield
    finally:
        app.state.redis = real
        await dead.aclose()


class TestRedisIsNotTheTruth:
    async def test_after_a_flush_boards_are_rebuilt_with_the_same_answers(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        circle = await monday_morning(client, clock, app)
        viewers = (circle.alice, circle.bob, circle.erin)
        before = {(v.handle, p): await board(client, v, p) for v in viewers for p in PERIODS}
        await app.state.redis.flushdb()
        after = {(v.handle, p): await board(client, v, p) for v in viewers for p in PERIODS}
        assert after == before
        assert ranking(after[("alice", "day")]) == MONDAY_RANKING

    async def test_a_collect_between_a_flush_and_the_next_read_loses_nobody(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        circle = await monday_morning(client, clock, app)
        await mint(client, clock, circle.erin, 1)
        clock.set(TUESDAY_NOON)
        await app.state.redis.flushdb()
        # erin's collect writes her own score into the empty Redis before anyone reads
        assert (await collect_own(client, circle.erin))["collected_g"] == 72 + 80
        assert ranking(await board(client, circle.alice, "total")) == [
            (1, "bob", 160),
            (2, "erin", 152),
            (3, "alice", 88),
            (4, "carol", 80),
            (4, "frank", 80),
        ]
        assert ranking(await board(client, circle.alice, "day")) == [
            (1, "erin", 152),
            (2, "alice", 0),
            (2, "bob", 0),
            (2, "carol", 0),
            (2, "frank", 0),
        ]

    async def test_scores_keep_growing_after_a_rebuild(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        circle = await monday_morning(client, clock, app)
        await mint(client, clock, circle.frank, 1)
        await app.state.redis.flushdb()
        assert ranking(await board(client, circle.alice, "week")) == MONDAY_RANKING
        clock.set(TUESDAY_NOON)
        await collect_own(client, circle.frank)
        week = ranking(await board(client, circle.alice, "week"))
        assert week[:2] == [(1, "bob", 160), (1, "frank", 160)]

    @pytest.mark.parametrize("period", PERIODS)
    async def test_with_redis_unreachable_the_board_answers_from_postgresql(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI, period: str
    ) -> None:
        circle = await monday_morning(client, clock, app)
        expected = await board(client, circle.alice, period)
        await app.state.redis.flushdb()  # nothing Redis held could help even if it answered
        async with redis_unreachable(app):
            body = await board(client, circle.alice, period)
            friends = (await client.get("/v1/friends", headers=circle.alice.headers)).json()
        assert body == expected
        assert ranking(body) == MONDAY_RANKING
        assert {f["handle"]: f["energy_week_g"] for f in friends["friends"]}["bob"] == 160

    async def test_a_collect_while_redis_is_unreachable_still_counts(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        circle = await monday_morning(client, clock, app)
        await mint(client, clock, circle.erin, 1)
        clock.set(TUESDAY_NOON)
        async with redis_unreachable(app):
            assert (await collect_own(client, circle.erin))["collected_g"] == 152
            down = ranking(await board(client, circle.alice, "total"))
        assert down[1] == (2, "erin", 152)

    async def test_a_collect_missed_while_redis_was_unreachable_shows_once_it_is_back(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        circle = await monday_morning(client, clock, app)
        await mint(client, clock, circle.erin, 1)
        for period in PERIODS:  # boards built and marked ready in Redis
            await board(client, circle.alice, period)
        clock.set(TUESDAY_NOON)
        async with redis_unreachable(app):
            assert (await collect_own(client, circle.erin))["collected_g"] == 152
        # Redis is back (it never lost its data): the board must still be PostgreSQL's truth
        total = ranking(await board(client, circle.alice, "total"))
        assert total[1] == (2, "erin", 152)


class TestScoresKeptByTheCollects:
    """The collect statements keep each collector's day and week in ``collected_scores``; those
    must always equal what the ledger says, however the collects race."""

    async def test_racing_takes_and_collects_of_one_player_add_up_exactly(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        swap_rules(app, "stealing", mode="fixed")
        alice = await register(client, "alice")
        friends = [await register(client, f"friend{i}") for i in range(10)]
        for friend in friends:
            await befriend(client, alice, friend)
            await mint(client, clock, friend, 1)
        await mint(client, clock, alice, 2)
        clock.set(MONDAY_NOON)
        calls = [
            client.post(f"/v1/friends/{f.id}/collect", json={}, headers=alice.headers)
            for f in friends
        ]
        calls += [
            client.post("/v1/forest/collect", json={}, headers=alice.headers) for _ in range(3)
        ]
        responses = await asyncio.gather(*calls)
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        assert sum(r.json()["collected_g"] for r in responses) == 10 * 8 + 2 * 80
        async with app.state.engine.connect() as conn:
            kept = (
                await conn.execute(
                    text("SELECT day_g, week_g FROM collected_scores WHERE user_id = :u"),
                    {"u": alice.id},
                )
            ).one()
        assert tuple(kept) == (240, 240)
        for period in PERIODS:
            body = await board(client, alice, period)
            assert body["me"]["energy_g"] == 240
            await app.state.redis.flushdb()  # rebuilt from the ledger: the same answer
            assert (await board(client, alice, period))["me"]["energy_g"] == 240

    async def test_a_new_week_starts_the_friends_list_from_zero(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        await mint(client, clock, bob, 1)
        clock.set(MONDAY_NOON)
        await collect_own(client, bob)
        [friend] = (await client.get("/v1/friends", headers=alice.headers)).json()["friends"]
        assert friend["energy_week_g"] == 80
        clock.set(datetime(2026, 12, 6, 16, 0, tzinfo=UTC))  # Monday 00:00 in Shanghai
        [friend] = (await client.get("/v1/friends", headers=alice.headers)).json()["friends"]
        assert friend["energy_week_g"] == 0
        await mint(client, clock, bob, 1)
        clock.advance(hours=24)
        await collect_own(client, bob)
        [friend] = (await client.get("/v1/friends", headers=alice.headers)).json()["friends"]
        assert friend["energy_week_g"] == 80
        assert ranking(await board(client, alice, "total"))[0] == (1, "bob", 160)

    async def test_scores_from_before_the_table_are_summed_from_the_ledger(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        circle = await monday_morning(client, clock, app)
        async with app.state.engine.begin() as conn:  # as if collected before the table existed
            await conn.execute(text("DELETE FROM collected_scores"))
        friends = (await client.get("/v1/friends", headers=circle.alice.headers)).json()
        assert {f["handle"]: f["energy_week_g"] for f in friends["friends"]} == {
            "bob": 160,
            "carol": 80,
            "erin": 0,
            "frank": 80,
        }
        await mint(client, clock, circle.bob, 1)
        clock.set(TUESDAY_NOON)
        await collect_own(client, circle.bob)  # restarts bob's row from the ledger
        async with app.state.engine.connect() as conn:
            kept = (
                await conn.execute(
                    text("SELECT day_g, week_g FROM collected_scores WHERE user_id = :u"),
                    {"u": circle.bob.id},
                )
            ).one()
        assert tuple(kept) == (80, 240)
