"""The energy rain, decided by the server: the schedule it issues, settlements that pay only the
issued balls (capped, once, between the end of the rain and its deadline, only the player's
own), plays per local day, friends' extra plays, and the ledger."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from app.core.clock import FrozenClock
from app.game.rain.service import schedule
from tests.energy.conftest import ledger_ok
from tests.helpers import Player, assert_problem, register
from tests.social.helpers_social import balance, befriend, swap_rules

RAIN = "/v1/games/energy-rain"


async def start(client: httpx.AsyncClient, player: Player) -> httpx.Response:
    return await client.post(RAIN, headers=player.headers)


async def settle(
    client: httpx.AsyncClient,
    player: Player,
    session_id: str,
    collected: list[str],
    key: str | None = None,
) -> httpx.Response:
    headers = player.headers | ({"Idempotency-Key": key} if key else {})
    return await client.post(
        f"{RAIN}/{session_id}/settle", json={"collected": collected}, headers=headers
    )


async def played(client: httpx.AsyncClient, clock: FrozenClock, player: Player) -> dict[str, Any]:
    """Start a play and let the rain end."""
    response = await start(client, player)
    assert response.status_code == 201, response.text
    clock.advance(seconds=15)
    body: dict[str, Any] = response.json()
    return body


class TestSchedule:
    def test_a_seed_makes_one_schedule_whose_balls_add_up_to_the_cap(self) -> None:
        seed = bytes(range(32))
        balls = schedule(seed, 30, 120, timedelta(seconds=15))
        assert schedule(seed, 30, 120, timedelta(seconds=15)) == balls
        assert len(balls) == 30 and len({b.id for b in balls}) == 30
        assert sum(b.amount_g for b in balls) == 120 and min(b.amount_g for b in balls) >= 1
        times = [b.appears_at_ms for b in balls]
        assert times == sorted(times) and times[0] >= 0 and times[-1] < 14_000
        assert schedule(bytes(32), 30, 120, timedelta(seconds=15)) != balls


class TestPlay:
    async def test_catching_every_ball_pays_the_play_through_the_ledger(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        play = await played(client, clock, alice)
        assert play["duration_s"] == 15 and play["max_g"] == 120 and len(play["balls"]) == 30
        assert sum(b["amount_g"] for b in play["balls"]) == 120
        response = await settle(client, alice, play["session_id"], [b["id"] for b in play["balls"]])
        assert response.status_code == 200, response.text
        assert response.json() == {"energy_g": 120, "caught": 30, "balance_g": 120}
        [entry] = (await client.get("/v1/energy/ledger", headers=alice.headers)).json()["entries"]
        assert entry["reason"] == "energy_rain" and entry["amount_g"] == 120
        assert entry["ref"] == f"energy_rain:{play['session_id']}"
        report = await ledger_ok(client, admin_headers)
        assert report["totals"]["minted_g"] == 120
        me = (await client.get("/v1/me", headers=alice.headers)).json()
        assert me["co2e_avoided_g"] == 0  # a game reward, not avoided CO2e

    async def test_a_forged_settlement_earns_only_the_issued_balls_it_names(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        play = await played(client, clock, alice)
        some = play["balls"][:5]
        forged = [b["id"] for b in some] * 50 + ["f" * 20, "0" * 20, "' OR 1=1 --"]
        response = await settle(client, alice, play["session_id"], forged)
        assert response.json()["energy_g"] == sum(b["amount_g"] for b in some)
        assert response.json()["caught"] == 5
        await ledger_ok(client, admin_headers)

    async def test_unknown_ids_alone_earn_nothing(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        play = await played(client, clock, alice)
        response = await settle(client, alice, play["session_id"], ["x" * 20 for _ in range(500)])
        assert response.json() == {"energy_g": 0, "caught": 0, "balance_g": 0}
        assert_problem(await settle(client, alice, play["session_id"], []), 409, "already_settled")

    async def test_the_cap_holds_even_if_the_issued_balls_held_more(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        alice = await register(client, "alice")
        play = await played(client, clock, alice)
        # the session's own cap is what pays: a schedule tampered with in the database to hold
        # more than the cap still pays at most max_g
        async with app.state.engine.begin() as conn:
            from sqlalchemy import text

            await conn.execute(
                text(
                    "UPDATE rain_sessions SET balls = jsonb_build_array(jsonb_build_object("
                    "'id', 'big', 'amount_g', 5000, 'appears_at_ms', 0))"
                )
            )
        response = await settle(client, alice, play["session_id"], ["big"])
        assert response.json()["energy_g"] == 120

    async def test_early_twice_late_and_someone_elses_session_pay_nothing(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        swap_rules(app, "energy_rain", plays_per_day=3)
        alice, mallory = await register(client, "alice"), await register(client, "mallory")
        all_of = lambda play: [b["id"] for b in play["balls"]]  # noqa: E731
        early = (await start(client, alice)).json()
        clock.advance(seconds=14)
        assert_problem(
            await settle(client, alice, early["session_id"], all_of(early)), 409, "too_early"
        )
        clock.advance(seconds=1)
        stolen = await settle(client, mallory, early["session_id"], all_of(early))
        assert_problem(stolen, 404, "not_found")
        assert (await settle(client, alice, early["session_id"], all_of(early))).status_code == 200
        twice = await settle(client, alice, early["session_id"], all_of(early))
        assert_problem(twice, 409, "already_settled")
        late = (await start(client, alice)).json()
        clock.advance(seconds=15, minutes=2)
        assert_problem(
            await settle(client, alice, late["session_id"], all_of(late)), 409, "session_expired"
        )
        assert_problem(await settle(client, alice, "nope", []), 404, "not_found")
        assert await balance(client, alice) == 120 and await balance(client, mallory) == 0

    async def test_racing_settlements_pay_once(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        play = await played(client, clock, alice)
        ids = [b["id"] for b in play["balls"]]
        answers = await asyncio.gather(
            *(settle(client, alice, play["session_id"], ids) for _ in range(10))
        )
        assert sorted(a.status_code for a in answers) == [200] + [409] * 9
        assert await balance(client, alice) == 120
        await ledger_ok(client, admin_headers)

    async def test_a_retry_with_the_key_replays_the_payment(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        play = await played(client, clock, alice)
        ids = [b["id"] for b in play["balls"]]
        first = await settle(client, alice, play["session_id"], ids, key="s-1")
        again = await settle(client, alice, play["session_id"], ids, key="s-1")
        assert first.status_code == again.status_code == 200 and again.json() == first.json()
        assert await balance(client, alice) == 120


class TestPlaysPerDay:
    async def test_one_play_a_local_day_and_a_new_one_after_midnight(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")  # noon in Shanghai
        await played(client, clock, alice)
        assert_problem(await start(client, alice), 409, "daily_limit_reached")
        today = (await client.get(RAIN, headers=alice.headers)).json()
        assert today["played"] == 1 and today["plays_left"] == 0
        clock.advance(hours=12)  # just past local midnight
        assert (await start(client, alice)).status_code == 201

    async def test_racing_starts_play_only_the_days_plays(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        swap_rules(app, "energy_rain", plays_per_day=2)
        alice = await register(client, "alice")
        answers = await asyncio.gather(*(start(client, alice) for _ in range(8)))
        assert sorted(a.status_code for a in answers) == [201, 201] + [409] * 6

    async def test_a_friend_grants_one_extra_play_once_a_day(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        carol, mallory = await register(client, "carol"), await register(client, "mallory")
        await befriend(client, alice, bob)
        await befriend(client, alice, carol)
        await befriend(client, bob, carol)
        await played(client, clock, alice)
        grant = lambda who, friend: client.post(  # noqa: E731
            f"{RAIN}/grant", json={"friend_id": friend.id}, headers=who.headers
        )
        assert_problem(await grant(mallory, alice), 404, "not_found")  # not a friend
        granted = await grant(bob, alice)
        assert granted.status_code == 204 and granted.content == b""
        assert_problem(await grant(bob, carol), 409, "daily_limit_reached")  # bob's one grant
        # alice has the one extra play a day allows: carol's grant is refused and not used up
        assert_problem(await grant(carol, alice), 409, "friend_limit_reached")
        assert (await grant(carol, bob)).status_code == 204
        assert (await played(client, clock, alice))["max_g"] == 120
        assert_problem(await start(client, alice), 409, "daily_limit_reached")

    async def test_switched_off_no_play_starts(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        swap_rules(app, "energy_rain", enabled=False)
        alice = await register(client, "alice")
        assert_problem(await start(client, alice), 403, "energy_rain_disabled")


class TestBadInput:
    async def test_malformed_settlements_are_422_and_change_nothing(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        play = await played(client, clock, alice)
        path = f"{RAIN}/{play['session_id']}/settle"
        for body in (
            {},
            {"collected": "all"},
            {"collected": [1, 2]},
            {"collected": [None]},
            {"collected": ["x" * 65]},
            {"collected": ["a"] * 1001},
            {"collected": [], "energy_g": 120},
        ):
            response = await client.post(path, json=body, headers=alice.headers)
            assert_problem(response, 422, "validation_error")
        grant = await client.post(f"{RAIN}/grant", json={"friend_id": 5}, headers=alice.headers)
        assert_problem(grant, 422, "validation_error")
        unknown = await client.post(
            f"{RAIN}/grant", json={"friend_id": "nobody"}, headers=alice.headers
        )
        assert_problem(unknown, 404, "not_found")
        # the play is still open: the real settlement pays
        ids = [b["id"] for b in play["balls"]]
        assert (await settle(client, alice, play["session_id"], ids)).json()["energy_g"] == 120


class TestStartReplay:
    async def test_a_start_retried_with_its_key_is_the_same_play(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        headers = alice.headers | {"Idempotency-Key": "rain-1"}
        first = await client.post(RAIN, headers=headers)
        again = await client.post(RAIN, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
        today = (await client.get(RAIN, headers=alice.headers)).json()
        assert today["played"] == 1
        clock.advance(seconds=15)
        ids = [b["id"] for b in first.json()["balls"]]
        assert (await settle(client, alice, first.json()["session_id"], ids)).status_code == 200
