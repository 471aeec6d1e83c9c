"""Collecting a friend's energy: share, floor, once per ball, shield, double collect, races."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from app.core.clock import FrozenClock
from tests.energy.conftest import ledger_ok
from tests.helpers import Player, assert_problem, register


def tune(app: FastAPI, **stealing: Any) -> None:
    """Swap the stealing rules of the version in force."""
    registry, now = app.state.rules_registry, app.state.clock.now()
    rules = registry.at(now).rules
    registry.replace_active_rules(
        rules.model_copy(update={"stealing": rules.stealing.model_copy(update=stealing)}), now
    )


async def befriend(client: httpx.AsyncClient, a: Player, b: Player) -> None:
    await client.post("/v1/friend-requests", json={"handle": b.handle}, headers=a.headers)
    response = await client.post(
        "/v1/friend-requests", json={"handle": a.handle}, headers=b.headers
    )
    assert response.json()["status"] == "accepted", response.text


async def ripe_ball(
    client: httpx.AsyncClient, clock: FrozenClock, owner: Player, kind: str = "bus", **extra: Any
) -> str:
    body = {
        "id": uuid.uuid4().hex,
        "kind": kind,
        "occurred_at": (clock.now() - timedelta(hours=24)).isoformat(),
        **extra,
    }
    result = (await client.post("/v1/activities", json=body, headers=owner.headers)).json()
    assert result["status"] == "minted", result
    return str(result["ball_id"])


async def take(
    client: httpx.AsyncClient, thief: Player, owner: Player, *ball_ids: str
) -> dict[str, Any]:
    body = {"ball_ids": list(ball_ids)} if ball_ids else {}
    response = await client.post(
        f"/v1/friends/{owner.id}/collect", json=body, headers=thief.headers
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def ball_row(app: FastAPI, ball_id: str) -> Any:
    async with app.state.engine.connect() as conn:
        return (
            await conn.execute(
                text("SELECT amount_g, remaining_g, stolen_g FROM energy_balls WHERE id = :b"),
                {"b": ball_id},
            )
        ).one()


class TestShare:
    async def test_fixed_mode_takes_floor_of_the_share(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        tune(app, mode="fixed", max_share=0.1)
        owner, thief = await register(client, "owner"), await register(client, "thief")
        await befriend(client, owner, thief)
        ball = await ripe_ball(client, clock, owner)  # 80 g
        result = await take(client, thief, owner, ball)
        assert result["results"] == [{"ball_id": ball, "collected_g": 8, "status": "collected"}]
        assert result["collected_g"] == 8 and result["balance_g"] == 8
        assert tuple(await ball_row(app, ball)) == (80, 72, 8)

    async def test_random_mode_stays_within_one_and_the_share(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        tune(app, mode="random", max_share=0.1, owner_floor=0.0)
        owner = await register(client, "owner")
        thieves = [await register(client, f"thief{i}") for i in range(8)]
        for t in thieves:
            await befriend(client, owner, t)
        ball = await ripe_ball(client, clock, owner)
        takes = [(await take(client, t, owner, ball))["collected_g"] for t in thieves]
        assert all(1 <= g <= 8 for g in takes), takes

    async def test_small_balls_still_give_one_gram(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        tune(app, mode="fixed", max_share=0.1, owner_floor=0.5)
        owner, thief = await register(client, "owner"), await register(client, "thief")
        await befriend(client, owner, thief)
        ball = await ripe_ball(
            client, clock, owner, kind="cycling", quantity=0.05
        )  # floor(50 g/km x 0.05) = 2 g
        assert (await take(client, thief, owner, ball))["collected_g"] == 1

    async def test_once_per_friend_per_ball(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        tune(app, mode="fixed")
        owner, thief = await register(client, "owner"), await register(client, "thief")
        await befriend(client, owner, thief)
        ball = await ripe_ball(client, clock, owner)
        await take(client, thief, owner, ball)
        again = await take(client, thief, owner, ball)
        assert again["results"] == [
            {"ball_id": ball, "collected_g": 0, "status": "collected_by_you"}
        ]
        forest = (await client.get(f"/v1/friends/{owner.id}/forest", headers=thief.headers)).json()
        assert (
            forest["balls"][0]["viewer_status"] == "collected_by_you"
            and forest["balls"][0]["collectible_g"] == 0
        )


class TestOwnerFloor:
    async def test_friends_together_never_pass_the_floor(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        tune(app, mode="fixed", max_share=0.3, owner_floor=0.5)
        owner = await register(client, "owner")
        thieves = [await register(client, f"thief{i}") for i in range(4)]
        for t in thieves:
            await befriend(client, owner, t)
        ball = await ripe_ball(client, clock, owner)  # 80 g: each 24 g, friends together ≤ 40 g
        takes = [(await take(client, t, owner, ball))["results"][0] for t in thieves]
        assert [(r["collected_g"], r["status"]) for r in takes] == [
            (24, "collected"),
            (16, "collected"),
            (0, "insufficient"),
            (0, "insufficient"),
        ]
        assert tuple(await ball_row(app, ball)) == (80, 40, 40)

    async def test_owner_collects_the_rest_exactly(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        tune(app, mode="fixed", max_share=0.1, owner_floor=0.5)
        owner, thief = await register(client, "owner"), await register(client, "thief")
        await befriend(client, owner, thief)
        ball = await ripe_ball(client, clock, owner)
        await take(client, thief, owner, ball)
        mine = (
            await client.post(
                "/v1/forest/collect", json={"ball_ids": [ball]}, headers=owner.headers
            )
        ).json()
        assert mine["collected_g"] == 72
        await ledger_ok(client, admin_headers)


class TestWhoAndWhen:
    async def test_growing_and_expired_balls_cannot_be_taken(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        owner, thief = await register(client, "owner"), await register(client, "thief")
        await befriend(client, owner, thief)
        body = {
            "id": "young",
            "kind": "bus",
            "occurred_at": (clock.now() - timedelta(hours=1)).isoformat(),
        }
        young = (await client.post("/v1/activities", json=body, headers=owner.headers)).json()[
            "ball_id"
        ]
        assert (await take(client, thief, owner, young))["results"][0]["status"] == "waiting"
        clock.advance(hours=24 + 72)
        assert (await take(client, thief, owner, young))["results"][0]["status"] == "expired"

    async def test_non_friends_get_404_and_learn_nothing(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        owner, stranger = await register(client, "owner"), await register(client, "stranger")
        ball = await ripe_ball(client, clock, owner)
        for call in (
            client.post(
                f"/v1/friends/{owner.id}/collect",
                json={"ball_ids": [ball]},
                headers=stranger.headers,
            ),
            client.get(f"/v1/friends/{owner.id}/forest", headers=stranger.headers),
            client.post(f"/v1/friends/{uuid.uuid4()}/collect", json={}, headers=stranger.headers),
        ):
            body = assert_problem(await call, 404, "not_found")
            assert ball not in str(body)
        assert (await client.get("/v1/forest", headers=owner.headers)).json()["balls"][0][
            "remaining_g"
        ] == 80

    async def test_stealing_switched_off_is_403(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        owner, thief = await register(client, "owner"), await register(client, "thief")
        await befriend(client, owner, thief)
        await ripe_ball(client, clock, owner)
        tune(app, enabled=False)
        response = await client.post(
            f"/v1/friends/{owner.id}/collect", json={}, headers=thief.headers
        )
        assert_problem(response, 403, "stealing_disabled")
        friends = (await client.get("/v1/friends", headers=thief.headers)).json()["friends"]
        assert friends[0]["collectible_g"] == 0

    async def test_shield_protects_until_it_ends(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        tune(app, mode="fixed")
        owner, thief = await register(client, "owner"), await register(client, "thief")
        await befriend(client, owner, thief)
        ball = await ripe_ball(client, clock, owner)
        await client.post(
            "/admin/v1/props/grant",
            json={"user_id": owner.id, "type": "shield", "count": 1},
            headers=admin_headers,
        )
        used = (await client.post("/v1/props/shield/use", headers=owner.headers)).json()
        assert (await take(client, thief, owner, ball))["results"][0]["status"] == "protected"
        forest = (await client.get(f"/v1/friends/{owner.id}/forest", headers=thief.headers)).json()
        assert (
            forest["shield_until"] == used["active_until"]
            and forest["balls"][0]["viewer_status"] == "protected"
        )
        clock.advance(hours=24)  # shield over (24 h); the ball is still ripe for 48 h more
        assert (await take(client, thief, owner, ball))["collected_g"] == 8

    async def test_double_collect_allows_a_second_take_while_active(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        tune(app, mode="fixed")
        owner, thief = await register(client, "owner"), await register(client, "thief")
        await befriend(client, owner, thief)
        first, second = await ripe_ball(client, clock, owner), await ripe_ball(client, clock, owner)
        await client.post(
            "/admin/v1/props/grant",
            json={"user_id": thief.id, "type": "double_collect", "count": 1},
            headers=admin_headers,
        )
        await client.post("/v1/props/double_collect/use", headers=thief.headers)
        assert [(await take(client, thief, owner, first))["collected_g"] for _ in range(3)] == [
            8,
            8,
            0,
        ]
        clock.advance(minutes=5)  # the card ran out
        assert [(await take(client, thief, owner, second))["collected_g"] for _ in range(2)] == [
            8,
            0,
        ]


class TestRaces:
    async def test_fifty_friends_at_once_never_over_take(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        tune(app, mode="random", max_share=0.1, owner_floor=0.5)
        owner = await register(client, "owner")
        thieves = [await register(client, f"thief{i:02d}") for i in range(50)]
        async with app.state.engine.begin() as conn:  # befriend in bulk: the race is the point here
            await conn.execute(
                text(
                    "INSERT INTO friendships (user_id, friend_id, created_at) SELECT a, b, now() "
                    "FROM unnest(CAST(:a AS uuid[]), CAST(:b AS uuid[])) AS t(a, b)"
                ),
                {
                    "a": [owner.id] * 50 + [t.id for t in thieves],
                    "b": [t.id for t in thieves] + [owner.id] * 50,
                },
            )
        ball = await ripe_ball(client, clock, owner)
        results = await asyncio.gather(*(take(client, t, owner, ball) for t in thieves))
        takes = [r["collected_g"] for r in results]
        # 50 takes of 1..8 g want far more than the 40 g friends may have: exactly 40 g go
        assert sum(takes) == 40 and all(g >= 0 for g in takes)
        # a friend who got nothing is told why (the floor), never "available" (found by the
        # model run: the status came from the snapshot before the racing takes)
        statuses = {r["results"][0]["status"] for r in results if not r["collected_g"]}
        assert statuses <= {"insufficient"}, statuses
        async with app.state.engine.connect() as conn:
            per_thief = (
                await conn.execute(
                    text(
                        "SELECT collector_id, count(*) FROM ball_steals "
                        "GROUP BY collector_id HAVING count(*) > 1"
                    )
                )
            ).all()
        assert per_thief == []
        amount, remaining, stolen = await ball_row(app, ball)
        assert stolen == sum(takes) and remaining == amount - stolen
        mine = (
            await client.post(
                "/v1/forest/collect", json={"ball_ids": [ball]}, headers=owner.headers
            )
        ).json()
        assert mine["collected_g"] == 80 - sum(takes)
        await ledger_ok(client, admin_headers)

    async def test_owner_and_friends_racing_on_one_ball(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        tune(app, mode="fixed", max_share=0.1, owner_floor=0.5)
        owner = await register(client, "owner")
        thieves = [await register(client, f"thief{i}") for i in range(10)]
        for t in thieves:
            await befriend(client, owner, t)
        ball = await ripe_ball(client, clock, owner)
        calls = [take(client, t, owner, ball) for t in thieves]
        calls.insert(
            5, client.post("/v1/forest/collect", json={"ball_ids": [ball]}, headers=owner.headers)
        )  # type: ignore[arg-type]
        results = await asyncio.gather(*calls)
        grams = [
            r.json()["collected_g"] if isinstance(r, httpx.Response) else r["collected_g"]
            for r in results
        ]
        assert sum(grams) == 80  # the ball paid out exactly once in total
        assert tuple(await ball_row(app, ball))[1] == 0
        await ledger_ok(client, admin_headers)


class TestBookkeeping:
    async def test_a_take_moves_energy_through_the_ledger_and_tells_the_owner(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        tune(app, mode="fixed")
        owner, thief = await register(client, "owner"), await register(client, "thief")
        await befriend(client, owner, thief)
        ball = await ripe_ball(client, clock, owner)
        await take(client, thief, owner, ball)
        [entry] = (await client.get("/v1/energy/ledger", headers=thief.headers)).json()["entries"]
        assert (entry["reason"], entry["amount_g"], entry["balance_after_g"]) == ("steal", 8, 8)
        feed = (await client.get("/v1/feed", headers=owner.headers)).json()["items"]
        assert feed[0]["type"] == "collected_from_you" and feed[0]["amount_g"] == 8
        assert feed[0]["actor"]["handle"] == "thief"
        forest = (await client.get("/v1/forest", headers=owner.headers)).json()
        assert forest["balls"][0]["collections"][0]["by"]["handle"] == "thief"
        me = (await client.get("/v1/me", headers=thief.headers)).json()
        assert me["balance_g"] == 8 and me["collected_total_g"] == 8
        await ledger_ok(client, admin_headers)

    async def test_friends_list_shows_what_can_be_taken_first(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        tune(app, mode="fixed")
        me = await register(client, "myself")
        rich, growing, poor = [await register(client, n) for n in ("rich", "growing", "poor")]
        for f in (rich, growing, poor):
            await befriend(client, me, f)
        await ripe_ball(client, clock, rich)
        await ripe_ball(client, clock, rich, kind="metro")
        body = {
            "id": "g",
            "kind": "bus",
            "occurred_at": (clock.now() - timedelta(hours=1)).isoformat(),
        }
        await client.post("/v1/activities", json=body, headers=growing.headers)
        friends = (await client.get("/v1/friends", headers=me.headers)).json()["friends"]
        assert [f["handle"] for f in friends] == ["rich", "growing", "poor"]
        assert friends[0]["collectible_g"] == 8 + 5 and friends[0]["next_collectible_at"] is None
        assert friends[1]["collectible_g"] == 0 and friends[1]["next_collectible_at"] is not None
        assert friends[2] | {"id": None} == {
            "id": None,
            "handle": "poor",
            "display_name": None,
            "collectible_g": 0,
            "next_collectible_at": None,
            "energy_week_g": 0,
            "can_revive": False,
        }


class TestSqlAndPythonAgree:
    """The simulator sizes takes with ``take_size``; the service with SQL. They must agree."""

    async def test_fixed_takes_match_the_python_formula(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        from app.game.stealing.service import take_size

        owner = await register(client, "owner")
        thieves = [await register(client, f"thief{i}") for i in range(3)]
        for t in thieves:
            await befriend(client, owner, t)
        for share, floor, quantity in [(0.1, 0.5, 7.3), (0.3, 0.5, 0.9), (0.07, 0.25, 13.37)]:
            tune(app, mode="fixed", max_share=share, owner_floor=floor)
            ball = await ripe_ball(client, clock, owner, kind="cycling", quantity=quantity)
            for thief in thieves:
                amount, remaining, stolen = await ball_row(app, ball)
                rules = app.state.rules_registry.at(clock.now()).rules
                expected = take_size(amount, remaining, stolen, rules)
                got = (await take(client, thief, owner, ball))["collected_g"]
                assert got == expected, (share, floor, amount, stolen)


class TestRetries:
    async def test_a_retried_take_with_its_key_replays_the_answer_and_takes_once(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        tune(app, mode="fixed")
        owner, thief = await register(client, "owner"), await register(client, "thief")
        await befriend(client, owner, thief)
        ball = await ripe_ball(client, clock, owner)
        headers = thief.headers | {"Idempotency-Key": "take-1"}
        path = f"/v1/friends/{owner.id}/collect"
        first = await client.post(path, json={"ball_ids": [ball]}, headers=headers)
        retry = await client.post(path, json={"ball_ids": [ball]}, headers=headers)
        assert first.status_code == retry.status_code == 200
        assert (
            retry.json()
            == first.json()
            == {
                "collected_g": 8,
                "balance_g": 8,
                "results": [{"ball_id": ball, "collected_g": 8, "status": "collected"}],
            }
        )
        assert retry.headers["idempotent-replayed"] == "true"
        assert tuple(await ball_row(app, ball)) == (80, 72, 8)
        other = await client.post(path, json={}, headers=thief.headers | {"Idempotency-Key": "2"})
        assert other.json()["results"] == [
            {"ball_id": ball, "collected_g": 0, "status": "collected_by_you"}
        ]
        await ledger_ok(client, admin_headers)
