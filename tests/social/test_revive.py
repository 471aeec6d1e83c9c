"""POST /v1/friends/{id}/revive: expired energy back from system:expired into two new ripe balls,
once per ball under a race, a per-reviver limit on the reviver's local day, the window, strangers
404, the friends list's can_revive, feed items and the ledger check."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.ledger.entries import book_expired
from tests.energy.conftest import ledger_ok
from tests.helpers import Player, assert_problem, register
from tests.social.helpers_social import BUS_G, befriend, feed, mint, swap_rules

# a bus ride reported 30 minutes ago ripens 24 h later and expires 72 h after that
UNTIL_EXPIRED = timedelta(hours=96)


async def revive(
    client: httpx.AsyncClient, reviver: Player, owner: Player, ball_id: str, key: str | None = None
) -> httpx.Response:
    headers = reviver.headers | ({"Idempotency-Key": key} if key else {})
    return await client.post(
        f"/v1/friends/{owner.id}/revive", json={"ball_id": ball_id}, headers=headers
    )


async def live_balls(client: httpx.AsyncClient, player: Player) -> list[dict[str, Any]]:
    balls: list[dict[str, Any]] = (await client.get("/v1/forest", headers=player.headers)).json()[
        "balls"
    ]
    return balls


async def can_revive(client: httpx.AsyncClient, viewer: Player) -> dict[str, bool]:
    friends = (await client.get("/v1/friends", headers=viewer.headers)).json()["friends"]
    return {f["handle"]: f["can_revive"] for f in friends}


async def expired_ball(
    client: httpx.AsyncClient, clock: FrozenClock, owner: Player, rides: int = 1
) -> list[str]:
    balls = await mint(client, clock, owner, rides)
    clock.advance(hours=96)
    return balls


class TestRevive:
    async def test_a_friend_revives_expired_energy_half_each_through_the_ledger(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        [ball] = await mint(client, clock, bob)
        assert (await can_revive(client, alice))["bob"] is False  # growing: nothing lost yet
        clock.advance(hours=96)
        assert (await can_revive(client, alice))["bob"] is True
        listed = (
            await client.get(f"/v1/friends/{bob.id}/revivable", headers=alice.headers)
        ).json()["balls"]
        assert [(b["id"], b["lost_g"], b["reviver_g"]) for b in listed] == [(ball, 80, 40)]

        response = await revive(client, alice, bob, ball)
        assert response.status_code == 200, response.text
        assert response.json() == {"ball_id": ball, "revived_g": 40, "reviver_g": 40}
        [mine] = await live_balls(client, alice)
        [theirs] = await live_balls(client, bob)
        for b in (mine, theirs):
            assert b["kind"] == "revive" and b["amount_g"] == 40 and b["state"] == "ripe"
        # the revived energy is a gift: friends cannot take from it
        carol = await register(client, "carol")
        await befriend(client, carol, bob)
        forest = (await client.get(f"/v1/friends/{bob.id}/forest", headers=carol.headers)).json()
        assert [b["viewer_status"] for b in forest["balls"]] == ["protected"]
        assert (await can_revive(client, alice))["bob"] is False  # revived: nothing left
        report = await ledger_ok(client, admin_headers)
        assert report["totals"]["expired_g"] == 0  # all 80 g came back
        assert report["totals"]["in_balls_g"] == BUS_G
        collected = await client.post("/v1/forest/collect", json={}, headers=alice.headers)
        assert collected.json()["collected_g"] == 40
        [back] = [i for i in (await feed(client, bob))["items"] if i["type"] == "energy_revived"]
        assert back["actor"]["handle"] == "alice" and back["amount_g"] == 40
        [told] = [i for i in (await feed(client, alice))["items"] if i["type"] == "revived_friend"]
        assert told["actor"]["handle"] == "bob" and told["amount_g"] == 40
        await ledger_ok(client, admin_headers)

    async def test_a_ball_the_worker_already_booked_as_expired_is_revived_too(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        # carol takes 8 g first: what expires (and comes back) is what was left
        carol = await register(client, "carol")
        await befriend(client, carol, bob)
        [ball] = await mint(client, clock, bob)
        clock.advance(hours=24)
        swap_rules(app, "stealing", mode="fixed")
        took = await client.post(f"/v1/friends/{bob.id}/collect", json={}, headers=carol.headers)
        assert took.json()["collected_g"] == 8
        clock.advance(hours=72)
        async with app.state.sessionmaker() as session:
            assert await book_expired(session, clock.now()) == 1
            await session.commit()
        assert (await ledger_ok(client, admin_headers))["totals"]["expired_g"] == 72
        response = await revive(client, alice, bob, ball)
        assert response.json() == {"ball_id": ball, "revived_g": 36, "reviver_g": 36}
        assert (await ledger_ok(client, admin_headers))["totals"]["expired_g"] == 0

    async def test_twenty_friends_racing_revive_one_ball_once(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        owner = await register(client, "owner")
        friends = [await register(client, f"friend{i:02d}") for i in range(20)]
        for friend in friends:
            await befriend(client, friend, owner)
        [ball] = await expired_ball(client, clock, owner)
        answers = await asyncio.gather(*(revive(client, f, owner, ball) for f in friends))
        ok = [a for a in answers if a.status_code == 200]
        assert len(ok) == 1, [a.text for a in answers]
        for refused in answers:
            if refused.status_code != 200:
                assert_problem(refused, 409, "already_revived")
        async with app.state.engine.connect() as conn:
            made = (
                await conn.execute(
                    text("SELECT count(*), sum(amount_g) FROM energy_balls WHERE kind = 'revive'")
                )
            ).one()
            counted = (await conn.execute(text("SELECT sum(count) FROM revive_days"))).scalar()
        assert tuple(made) == (2, BUS_G) and counted == 1  # refused revives use no daily slot
        await ledger_ok(client, admin_headers)

    async def test_the_daily_limit_holds_until_the_revivers_local_midnight(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        swap_rules(app, "revive", per_day_limit=2)
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        balls = await expired_ball(client, clock, bob, rides=4)
        # the clock is 04:00 UTC + 96 h: noon in Shanghai, alice's zone
        assert (await revive(client, alice, bob, balls[0])).status_code == 200
        assert (await revive(client, alice, bob, balls[1])).status_code == 200
        assert_problem(await revive(client, alice, bob, balls[2]), 409, "daily_limit_reached")
        assert (await can_revive(client, alice))["bob"] is False  # none left for me today
        clock.advance(hours=11, minutes=59)  # 23:59 local
        assert_problem(await revive(client, alice, bob, balls[2]), 409, "daily_limit_reached")
        clock.advance(minutes=2)  # 00:01 local, the next day
        assert (await can_revive(client, alice))["bob"] is True
        assert (await revive(client, alice, bob, balls[2])).status_code == 200
        assert (await revive(client, alice, bob, balls[3])).status_code == 200
        await ledger_ok(client, admin_headers)

    async def test_one_key_revives_once_and_replays(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        [ball] = await expired_ball(client, clock, bob)
        first = await revive(client, alice, bob, ball, key="rv-1")
        again = await revive(client, alice, bob, ball, key="rv-1")
        assert first.status_code == again.status_code == 200
        assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
        assert len(await live_balls(client, alice)) == 1


class TestRefusals:
    async def test_strangers_and_blocked_people_get_404(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        mallory = await register(client, "mallory")
        await befriend(client, alice, bob)
        [ball] = await expired_ball(client, clock, bob)
        assert_problem(await revive(client, mallory, bob, ball), 404, "not_found")
        listed = await client.get(f"/v1/friends/{bob.id}/revivable", headers=mallory.headers)
        assert_problem(listed, 404, "not_found")
        await client.post(f"/v1/blocks/{alice.id}", headers=bob.headers)
        assert_problem(await revive(client, alice, bob, ball), 404, "not_found")

    async def test_unknown_balls_and_other_peoples_balls_are_404(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        carol = await register(client, "carol")
        await befriend(client, alice, bob)
        [carols] = await expired_ball(client, clock, carol)
        assert_problem(await revive(client, alice, bob, carols), 404, "not_found")
        assert_problem(await revive(client, alice, bob, "not-an-id"), 404, "not_found")
        bad = await client.post(f"/v1/friends/{bob.id}/revive", json={}, headers=alice.headers)
        assert_problem(bad, 422, "validation_error")

    async def test_only_expired_balls_within_the_window_and_never_twice(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        [live, late, kept] = await mint(client, clock, bob, 3)
        assert_problem(await revive(client, alice, bob, live), 409, "not_revivable")
        clock.advance(hours=96)
        assert (await revive(client, alice, bob, kept)).status_code == 200
        assert_problem(await revive(client, alice, bob, kept), 409, "already_revived")
        clock.advance(hours=48)  # the window is 2 days after expiry
        assert_problem(await revive(client, alice, bob, late), 409, "not_revivable")
        # revived energy that expires again stays lost
        [revived] = [b["id"] for b in await live_balls(client, bob)]
        clock.advance(hours=73)
        assert_problem(await revive(client, alice, bob, revived), 409, "not_revivable")

    async def test_a_collected_ball_has_nothing_to_revive(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        [ball] = await mint(client, clock, bob)
        clock.advance(hours=24)
        await client.post("/v1/forest/collect", json={}, headers=bob.headers)
        clock.advance(hours=72)
        assert_problem(await revive(client, alice, bob, ball), 409, "not_revivable")

    async def test_switched_off_it_is_403_for_friends(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        [ball] = await expired_ball(client, clock, bob)
        swap_rules(app, "revive", enabled=False)
        assert_problem(await revive(client, alice, bob, ball), 403, "revive_disabled")
        assert (await can_revive(client, alice))["bob"] is False
