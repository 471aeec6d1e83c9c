"""GET /v1/forest and POST /v1/forest/collect: states from time, exact takes, no over-take."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from app.core.clock import FrozenClock
from tests.energy.conftest import event, ledger_ok
from tests.helpers import Player, assert_problem, register


async def mint(
    client: httpx.AsyncClient, clock: FrozenClock, player: Player, *kinds: str
) -> list[str]:
    batch = {"activities": [event(clock, uuid.uuid4().hex, kind=k) for k in kinds]}
    results = (
        await client.post("/v1/activities/batch", json=batch, headers=player.headers)
    ).json()["results"]
    return [r["ball_id"] for r in results]


class TestForest:
    async def test_ball_ripens_and_expires_on_time(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        [ball_id] = await mint(client, clock, alice, "metro")
        occurred = clock.now() - timedelta(minutes=30)

        async def state() -> str | None:
            balls = (await client.get("/v1/forest?all=true", headers=alice.headers)).json()["balls"]
            return next((b["state"] for b in balls if b["id"] == ball_id), None)

        ball = (await client.get("/v1/forest", headers=alice.headers)).json()["balls"][0]
        assert ball["ripens_at"] == (occurred + timedelta(hours=24)).isoformat().replace(
            "+00:00", "Z"
        )
        assert state and await state() == "growing"
        clock.set(occurred + timedelta(hours=24) - timedelta(seconds=1))
        assert await state() == "growing"
        clock.set(occurred + timedelta(hours=24))
        assert await state() == "ripe"
        clock.set(occurred + timedelta(hours=24 + 72) - timedelta(seconds=1))
        assert await state() == "ripe"
        clock.set(occurred + timedelta(hours=24 + 72))
        assert await state() == "expired"
        live = (await client.get("/v1/forest", headers=alice.headers)).json()["balls"]
        assert live == []

    async def test_forest_carries_server_time_and_balance(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        forest = (await client.get("/v1/forest", headers=alice.headers)).json()
        assert forest["now"] == clock.now().isoformat().replace("+00:00", "Z")
        assert forest["balance_g"] == 0 and forest["user"]["handle"] == "alice"
        assert forest["trees"] == {"count": 0} and forest["balls"] == []

    async def test_a_late_event_is_never_born_expired(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        # happened 6 days ago: ripened 5 days ago, would have expired 2 days ago
        await client.post(
            "/v1/activities",
            json=event(clock, "late", ago=timedelta(days=6)),
            headers=alice.headers,
        )
        [ball] = (await client.get("/v1/forest", headers=alice.headers)).json()["balls"]
        assert ball["state"] == "ripe"
        assert ball["expires_at"] == (clock.now() + timedelta(hours=72)).isoformat().replace(
            "+00:00", "Z"
        )

    async def test_users_never_see_each_others_balls(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await mint(client, clock, alice, "metro")
        assert (await client.get("/v1/forest", headers=bob.headers)).json()["balls"] == []


class TestCollectOwn:
    async def test_collect_all_ripe_moves_energy_to_the_balance(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        await mint(client, clock, alice, "metro", "bus")
        clock.advance(hours=24)
        response = await client.post("/v1/forest/collect", json={}, headers=alice.headers)
        assert response.status_code == 200
        body = response.json()
        assert body["collected_g"] == 132 and body["balance_g"] == 132
        assert sorted(r["collected_g"] for r in body["results"]) == [52, 80]
        assert {r["status"] for r in body["results"]} == {"collected"}
        me = (await client.get("/v1/me", headers=alice.headers)).json()
        assert me["balance_g"] == 132 and me["collected_total_g"] == 132
        all_balls = (await client.get("/v1/forest?all=true", headers=alice.headers)).json()["balls"]
        assert {b["state"] for b in all_balls} == {"collected"}
        assert all(b["collections"][0]["by"]["handle"] == "alice" for b in all_balls)
        await ledger_ok(client, admin_headers)

    async def test_growing_balls_are_not_collected(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        [ball_id] = await mint(client, clock, alice, "metro")
        everything = (await client.post("/v1/forest/collect", headers=alice.headers)).json()
        assert everything == {"collected_g": 0, "balance_g": 0, "results": []}
        named = (
            await client.post(
                "/v1/forest/collect", json={"ball_ids": [ball_id]}, headers=alice.headers
            )
        ).json()
        assert named["results"] == [{"ball_id": ball_id, "collected_g": 0, "status": "not_ripe"}]

    async def test_per_ball_statuses(self, client: httpx.AsyncClient, clock: FrozenClock) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        ripe, collected = await mint(client, clock, alice, "metro", "bus")
        [bobs] = await mint(client, clock, bob, "metro")
        clock.advance(hours=24)
        await client.post(
            "/v1/forest/collect", json={"ball_ids": [collected]}, headers=alice.headers
        )
        [growing] = await mint(client, clock, alice, "bus")
        ghost = "00000000-0000-0000-0000-000000000000"
        body = (
            await client.post(
                "/v1/forest/collect",
                json={"ball_ids": [ripe, collected, growing, bobs, ghost]},
                headers=alice.headers,
            )
        ).json()
        statuses = {r["ball_id"]: (r["status"], r["collected_g"]) for r in body["results"]}
        assert statuses == {
            ripe: ("collected", 52),
            collected: ("empty", 0),
            growing: ("not_ripe", 0),
            bobs: ("not_found", 0),
            ghost: ("not_found", 0),
        }
        clock.advance(hours=24 * 5)
        expired = (
            await client.post(
                "/v1/forest/collect", json={"ball_ids": [growing]}, headers=alice.headers
            )
        ).json()
        assert expired["results"] == [{"ball_id": growing, "collected_g": 0, "status": "expired"}]

    async def test_bad_ball_ids_are_422(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        for body in (
            {"ball_ids": ["not-a-uuid"]},
            {"ball_ids": []},
            {"ball_ids": "x"},
            {"extra": 1},
        ):
            assert_problem(
                await client.post("/v1/forest/collect", json=body, headers=alice.headers),
                422,
                "validation_error",
            )

    async def test_racing_collects_never_over_take(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice")
        ball_ids = await mint(client, clock, alice, "metro", "bus", "metro")
        clock.advance(hours=24)
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/forest/collect",
                    json={"ball_ids": ball_ids} if i % 2 else {},
                    headers=alice.headers,
                )
                for i in range(30)
            )
        )
        assert all(r.status_code == 200 for r in responses)
        assert sum(r.json()["collected_g"] for r in responses) == 52 + 80 + 52
        async with app.state.engine.connect() as conn:
            balance = (await conn.execute(text("SELECT balance_g FROM users"))).scalar_one()
            entries = (
                await conn.execute(
                    text("SELECT count(*) FROM ledger_entries WHERE reason = 'collect'")
                )
            ).scalar_one()
        assert balance == 184 and entries == 6
        await ledger_ok(client, admin_headers)

    async def test_a_retried_collect_with_its_key_replays_the_answer(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        await mint(client, clock, alice, "metro")
        clock.advance(hours=24)
        headers = alice.headers | {"Idempotency-Key": "collect-0700"}
        first = await client.post("/v1/forest/collect", json={}, headers=headers)
        retry = await client.post("/v1/forest/collect", json={}, headers=headers)
        assert first.json()["collected_g"] == 52
        assert retry.json() == first.json() and retry.headers["idempotent-replayed"] == "true"
        fresh = await client.post("/v1/forest/collect", json={}, headers=alice.headers)
        assert fresh.json()["collected_g"] == 0 and fresh.json()["balance_g"] == 52

    async def test_collect_is_rate_limited(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        from tests.conftest import set_limits

        alice = await register(client, "alice")
        set_limits(app, collect="2/minute")
        for _ in range(2):
            assert (
                await client.post("/v1/forest/collect", headers=alice.headers)
            ).status_code == 200
        response = await client.post("/v1/forest/collect", headers=alice.headers)
        assert_problem(response, 429, "rate_limited")
        assert int(response.headers["retry-after"]) >= 1
