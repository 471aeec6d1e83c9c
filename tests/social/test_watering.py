"""POST /v1/friends/{id}/water: amounts, per-friend daily limits on the giver's local day, the
unstealable ball it creates, idempotency, feed and ledger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from app.core.clock import FrozenClock
from tests.energy.conftest import ledger_ok
from tests.helpers import Player, assert_problem, register
from tests.social.helpers_social import (
    balance,
    befriend,
    collect_own,
    feed,
    fund,
    mint,
    swap_rules,
    z,
)


async def water(
    client: httpx.AsyncClient,
    giver: Player,
    receiver: Player,
    amount_g: int,
    key: str | None = None,
) -> httpx.Response:
    headers = giver.headers | ({"Idempotency-Key": key} if key else {})
    return await client.post(
        f"/v1/friends/{receiver.id}/water", json={"amount_g": amount_g}, headers=headers
    )


async def live_balls(client: httpx.AsyncClient, player: Player) -> list[dict[str, Any]]:
    balls: list[dict[str, Any]] = (await client.get("/v1/forest", headers=player.headers)).json()[
        "balls"
    ]
    return balls


class TestWater:
    async def test_watering_moves_my_energy_into_a_ripe_ball_for_my_friend(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        await fund(client, clock, (alice, 1))
        response = await water(client, alice, bob, 33)
        assert response.status_code == 201, response.text
        assert response.json() == {"watered_g": 33, "balance_g": 47}
        assert await balance(client, alice) == 47
        [ball] = await live_balls(client, bob)
        assert ball["amount_g"] == 33 and ball["remaining_g"] == 33
        assert ball["state"] == "ripe" and ball["ripens_at"] == z(clock.now())
        [entry] = (await client.get("/v1/energy/ledger", headers=alice.headers)).json()["entries"][
            :1
        ]
        assert entry["amount_g"] == -33 and entry["balance_after_g"] == 47
        assert entry["reason"] == "water"
        await ledger_ok(client, admin_headers)

    async def test_every_amount_of_the_rules_is_accepted(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        carol = await register(client, "carol")
        await befriend(client, alice, bob)
        await befriend(client, alice, carol)
        await fund(client, clock, (alice, 2))
        given = []
        for receiver, amount in ((bob, 10), (bob, 18), (bob, 33), (carol, 66)):
            response = await water(client, alice, receiver, amount)
            assert response.status_code == 201, response.text
            given.append(amount)
        assert await balance(client, alice) == 160 - sum(given)

    async def test_amounts_not_in_the_rules_are_422_and_move_nothing(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        await fund(client, clock, (alice, 1))
        for amount in (11, 0, -10, 67, "ten"):
            assert_problem(
                await client.post(
                    f"/v1/friends/{bob.id}/water", json={"amount_g": amount}, headers=alice.headers
                ),
                422,
                "validation_error",
            )
        swap_rules(app, "watering", amounts_g=[5])
        assert_problem(await water(client, alice, bob, 10), 422, "validation_error")
        assert (await water(client, alice, bob, 5)).status_code == 201
        assert await balance(client, alice) == 75
        assert [b["amount_g"] for b in await live_balls(client, bob)] == [5]

    async def test_too_little_energy_is_409_and_changes_nothing(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        assert_problem(await water(client, alice, bob, 10), 409, "insufficient_energy")
        await fund(client, clock, (alice, 2))  # 160 g
        assert (await water(client, alice, bob, 66)).status_code == 201
        assert (await water(client, alice, bob, 66)).status_code == 201
        assert_problem(await water(client, alice, bob, 33), 409, "insufficient_energy")
        assert await balance(client, alice) == 28
        assert sorted(b["amount_g"] for b in await live_balls(client, bob)) == [66, 66]
        # the refused watering did not use up one of today's three
        assert (await water(client, alice, bob, 18)).status_code == 201
        assert_problem(await water(client, alice, bob, 10), 409, "daily_limit_reached")
        assert await balance(client, alice) == 10
        await ledger_ok(client, admin_headers)

    async def test_watering_needs_a_login(self, client: httpx.AsyncClient) -> None:
        bob = await register(client, "bob")
        response = await client.post(f"/v1/friends/{bob.id}/water", json={"amount_g": 10})
        assert_problem(response, 401, "unauthorized")


class TestDailyLimit:
    async def test_the_fourth_watering_of_a_friend_in_a_day_is_409(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        await fund(client, clock, (alice, 1))
        for _ in range(3):
            assert (await water(client, alice, bob, 10)).status_code == 201
        assert_problem(await water(client, alice, bob, 10), 409, "daily_limit_reached")
        assert await balance(client, alice) == 50
        assert len(await live_balls(client, bob)) == 3

    async def test_other_friends_have_their_own_count(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        carol = await register(client, "carol")
        await befriend(client, alice, bob)
        await befriend(client, alice, carol)
        await befriend(client, carol, bob)
        await fund(client, clock, (alice, 1), (carol, 1))
        for _ in range(3):
            assert (await water(client, alice, bob, 10)).status_code == 201
        assert_problem(await water(client, alice, bob, 10), 409, "daily_limit_reached")
        assert (await water(client, alice, carol, 10)).status_code == 201
        # another giver's waterings of bob do not count against alice's, nor alice's against hers
        for _ in range(3):
            assert (await water(client, carol, bob, 10)).status_code == 201

    async def test_the_count_starts_again_at_the_givers_local_midnight(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice", timezone="America/New_York")
        bob = await register(client, "bob")  # Asia/Shanghai, as the rules
        await befriend(client, alice, bob)
        await fund(client, clock, (alice, 2))
        # 10:30 in New York on Monday 30 November
        clock.set(datetime(2026, 11, 30, 15, 30, tzinfo=UTC))
        for _ in range(3):
            assert (await water(client, alice, bob, 10)).status_code == 201
        # midnight in Shanghai (the receiver's and the rules' zone), then in UTC: still Monday
        # for alice
        for moment in (
            datetime(2026, 11, 30, 16, 0, tzinfo=UTC),
            datetime(2026, 12, 1, 0, 0, tzinfo=UTC),
            datetime(2026, 12, 1, 4, 59, 59, tzinfo=UTC),
        ):
            clock.set(moment)
            assert_problem(await water(client, alice, bob, 10), 409, "daily_limit_reached")
        clock.set(datetime(2026, 12, 1, 5, 0, tzinfo=UTC))  # 00:00 Tuesday in New York
        for _ in range(3):
            assert (await water(client, alice, bob, 10)).status_code == 201
        assert_problem(await water(client, alice, bob, 10), 409, "daily_limit_reached")
        assert await balance(client, alice) == 160 - 60

    async def test_the_limit_comes_from_the_rules(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        await fund(client, clock, (alice, 1))
        swap_rules(app, "watering", per_friend_daily_limit=1)
        assert (await water(client, alice, bob, 10)).status_code == 201
        assert_problem(await water(client, alice, bob, 10), 409, "daily_limit_reached")
        swap_rules(app, "watering", per_friend_daily_limit=0)
        carol = await register(client, "carol")
        await befriend(client, alice, carol)
        assert_problem(await water(client, alice, carol, 10), 409, "daily_limit_reached")
        assert await balance(client, alice) == 70

    async def test_concurrent_waterings_respect_the_limit(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        await fund(client, clock, (alice, 2))
        responses = await asyncio.gather(*(water(client, alice, bob, 10) for _ in range(10)))
        codes = sorted(r.status_code for r in responses)
        assert codes == [201] * 3 + [409] * 7, [r.text for r in responses]
        assert await balance(client, alice) == 130
        assert len(await live_balls(client, bob)) == 3
        await ledger_ok(client, admin_headers)

    async def test_concurrent_waterings_never_overdraw(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        friends = [await register(client, f"friend_{i}") for i in range(5)]
        for friend in friends:
            await befriend(client, alice, friend)
        await fund(client, clock, (alice, 1))  # 80 g: two 33 g waterings fit, not three
        responses = await asyncio.gather(*(water(client, alice, f, 33) for f in friends))
        codes = sorted(r.status_code for r in responses)
        assert codes == [201] * 2 + [409] * 3
        assert await balance(client, alice) == 14
        await ledger_ok(client, admin_headers)

    async def test_waterings_racing_the_givers_own_collect_stay_exact(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        friends = [await register(client, f"friend_{i}") for i in range(5)]
        for friend in friends:
            await befriend(client, alice, friend)
        await fund(client, clock, (alice, 1))  # 80 g on the balance
        await mint(client, clock, alice, 1)
        clock.advance(hours=24)  # and 80 g ripe: the collect may land before or after waterings
        calls = [water(client, alice, f, 33) for f in friends]
        calls.insert(2, client.post("/v1/forest/collect", json={}, headers=alice.headers))
        responses = await asyncio.gather(*calls)
        assert responses[2].status_code == 200 and responses[2].json()["collected_g"] == 80
        given = [r for i, r in enumerate(responses) if i != 2]
        watered = sum(r.status_code == 201 for r in given)
        assert 2 <= watered <= 4
        assert all(
            r.json()["code"] == "insufficient_energy" for r in given if r.status_code != 201
        ), [r.text[:300] for r in given]
        assert await balance(client, alice) == 160 - 33 * watered
        await ledger_ok(client, admin_headers)


class TestWateredBall:
    async def test_only_the_receiver_can_collect_it_and_gets_all_of_it(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        swap_rules(app, "stealing", mode="fixed")
        alice, bob = await register(client, "alice"), await register(client, "bob")
        carol = await register(client, "carol")
        await befriend(client, alice, bob)
        await befriend(client, carol, bob)
        await fund(client, clock, (alice, 1))
        assert (await water(client, alice, bob, 66)).status_code == 201
        [ball] = await live_balls(client, bob)

        for friend in (carol, alice):  # a third friend, and the giver herself
            forest = (
                await client.get(f"/v1/friends/{bob.id}/forest", headers=friend.headers)
            ).json()
            [seen] = forest["balls"]
            assert seen["id"] == ball["id"] and seen["state"] == "ripe"
            assert seen["viewer_status"] == "protected" and seen["collectible_g"] == 0
            took = await client.post(
                f"/v1/friends/{bob.id}/collect", json={}, headers=friend.headers
            )
            assert took.status_code == 200, took.text
            assert took.json()["collected_g"] == 0
            assert took.json()["results"] == [
                {"ball_id": ball["id"], "collected_g": 0, "status": "protected"}
            ]
            named = await client.post(
                f"/v1/friends/{bob.id}/collect",
                json={"ball_ids": [ball["id"]]},
                headers=friend.headers,
            )
            assert named.json()["collected_g"] == 0
        friends = (await client.get("/v1/friends", headers=carol.headers)).json()["friends"]
        assert friends[0]["collectible_g"] == 0

        collected = await collect_own(client, bob)
        assert collected["collected_g"] == 66 and collected["balance_g"] == 66
        assert await balance(client, carol) == 0
        await ledger_ok(client, admin_headers)

    async def test_the_receiver_can_collect_it_at_once(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        await fund(client, clock, (alice, 1))
        await mint(client, clock, bob, 1)  # bob's own ball, still growing
        await water(client, alice, bob, 18)
        collected = await collect_own(client, bob)
        assert collected["collected_g"] == 18
        assert [b["state"] for b in await live_balls(client, bob)] == ["growing"]


class TestIdempotentWatering:
    async def test_a_replay_answers_the_same_and_moves_energy_once(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        await fund(client, clock, (alice, 1))
        first = await water(client, alice, bob, 33, key="water-bob-1")
        retry = await water(client, alice, bob, 33, key="water-bob-1")
        assert first.status_code == retry.status_code == 201
        assert retry.json() == first.json() == {"watered_g": 33, "balance_g": 47}
        assert retry.headers["idempotent-replayed"] == "true"
        assert await balance(client, alice) == 47
        assert len(await live_balls(client, bob)) == 1
        assert len((await feed(client, bob))["items"]) == 2  # the friend request, one watering
        # the replay did not count as a watering either: two more fit today
        assert (await water(client, alice, bob, 10)).status_code == 201
        assert (await water(client, alice, bob, 10)).status_code == 201
        assert_problem(await water(client, alice, bob, 10), 409, "daily_limit_reached")
        await ledger_ok(client, admin_headers)

    async def test_the_same_key_with_another_amount_is_422(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        await fund(client, clock, (alice, 1))
        await water(client, alice, bob, 10, key="k1")
        assert_problem(await water(client, alice, bob, 18, key="k1"), 422, "idempotency_key_reused")
        assert await balance(client, alice) == 70


class TestWateringFeed:
    async def test_the_receiver_is_told_who_watered_how_much(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, bob, alice)  # bob asked: alice's accept lands in bob's feed
        await fund(client, clock, (alice, 1))
        await water(client, alice, bob, 18)
        item = (await feed(client, bob))["items"][0]
        assert item["type"] == "watered_you"
        assert item["actor"] == {"id": alice.id, "handle": "alice"}
        assert item["amount_g"] == 18 and item["at"] == z(clock.now())
        assert [i["type"] for i in (await feed(client, alice))["items"]] == ["friend_request"]
