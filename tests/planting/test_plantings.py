"""POST /v1/plantings and reading plantings: energy burned through the ledger, budgets never
oversold, the same energy never spent twice, certificates issued at once."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.core.worker import Worker
from app.planting.jobs import planting_jobs
from app.planting.service import count_trees
from tests.energy.conftest import ledger_ok
from tests.helpers import PASSWORD, assert_problem, register
from tests.planting.conftest import (
    add_item,
    create_ngo,
    cut_orders,
    fund,
    plant,
    quick_players,
    scalar,
)

SVG = "{http://www.w3.org/2000/svg}"


@asynccontextmanager
async def user_row_held(
    app: FastAPI, user_id: str
) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
    """Hold the user's row lock in another transaction; the yielded ``until_waiting(n)`` returns
    once ``n`` statements wait for it. Requests started meanwhile all begin before any of them
    can commit: the race of two retries sent at once, made certain."""
    async with app.state.engine.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(text("SELECT 1 FROM users WHERE id = :u FOR UPDATE"), {"u": user_id})

        async def until_waiting(n: int) -> None:
            for _ in range(500):
                waiting = await scalar(
                    app,
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'",
                )
                if waiting >= n:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(f"fewer than {n} statements wait for the lock")

        try:
            yield until_waiting
        finally:
            await transaction.commit()


async def keys_held(app: FastAPI) -> list[Any]:
    async with app.state.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT idempotency_key FROM plantings WHERE idempotency_key IS NOT NULL")
        )
        return [r[0] for r in rows]


class TestRedeem:
    async def test_planting_burns_energy_and_issues_a_certificate(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id)
        [alice] = await quick_players(app, 1)
        await fund(app, alice.id, 40_000)
        response = await client.post(
            "/v1/plantings", json={"item_id": item["id"]}, headers=alice.headers
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "reserved" and body["quantity"] == 1
        assert body["cost_g"] == 17_900 and body["balance_g"] == 40_000 - 17_900
        assert body["certificate_number"].startswith("CNP-2026-")
        assert body["item"]["name"] == "Saxaul" and body["item"]["partner"]["id"] == ngo.id
        assert body["history"] == [{"status": "reserved", "at": "2026-11-29T04:00:00Z"}]
        assert body["location"] is None
        entries = (await client.get("/v1/energy/ledger", headers=alice.headers)).json()
        burn = entries["entries"][0]
        assert (burn["reason"], burn["amount_g"], burn["balance_after_g"]) == (
            "burn",
            -17_900,
            22_100,
        )
        assert burn["ref"] == f"planting:{body['id']}"
        catalog = (await client.get("/v1/catalog", headers=alice.headers)).json()["items"]
        assert catalog[0]["remaining"] == 99
        report = await ledger_ok(client, admin_headers)
        assert report["totals"]["burned_g"] == 17_900

    async def test_virtual_items_are_completed_at_once(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        badge = await add_item(
            client, admin_headers, ngo.id, kind="virtual", name="Badge", cost_g=500
        )
        [alice] = await quick_players(app, 1)
        await fund(app, alice.id, 1_000)
        body = await plant(client, alice, badge["id"], quantity=2)
        assert body["status"] == "completed" and body["cost_g"] == 1_000 and body["balance_g"] == 0
        assert await cut_orders(client, admin_headers) == []  # nothing to order from anyone

    async def test_not_enough_energy_changes_nothing(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id)
        [alice] = await quick_players(app, 1)
        await fund(app, alice.id, 17_899)
        response = await client.post(
            "/v1/plantings", json={"item_id": item["id"]}, headers=alice.headers
        )
        assert_problem(response, 409, "insufficient_energy")
        assert await scalar(app, "SELECT taken FROM catalog_items") == 0
        assert await scalar(app, "SELECT count(*) FROM plantings") == 0
        assert await scalar(app, "SELECT balance_g FROM users") == 17_899
        await ledger_ok(client, admin_headers)

    async def test_items_not_on_sale_are_not_available(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        [alice] = await quick_players(app, 1)
        await fund(app, alice.id, 100_000)
        for status in ("coming", "closed"):
            item = await add_item(client, admin_headers, ngo.id, status=status)
            response = await client.post(
                "/v1/plantings", json={"item_id": item["id"]}, headers=alice.headers
            )
            assert_problem(response, 409, "not_available")

    async def test_more_than_remains_is_sold_out(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, budget=2, cost_g=10)
        [alice] = await quick_players(app, 1)
        await fund(app, alice.id, 100)
        problem = assert_problem(
            await client.post(
                "/v1/plantings", json={"item_id": item["id"], "quantity": 3}, headers=alice.headers
            ),
            409,
            "sold_out",
        )
        assert problem["remaining"] == 2
        await plant(client, alice, item["id"], quantity=2)
        again = await client.post(
            "/v1/plantings", json={"item_id": item["id"]}, headers=alice.headers
        )
        assert_problem(again, 409, "sold_out")
        assert await scalar(app, "SELECT balance_g FROM users") == 80

    async def test_unknown_items_are_404_and_malformed_requests_422(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        [alice] = await quick_players(app, 1)
        for item_id in ("00000000-0000-0000-0000-000000000000", "saxaul"):
            assert_problem(
                await client.post(
                    "/v1/plantings", json={"item_id": item_id}, headers=alice.headers
                ),
                404,
                "not_found",
            )
        for body in (
            {},
            {"item_id": "x", "quantity": 0},
            {"item_id": "x", "quantity": 10_001},
            {"item_id": "x", "extra": True},
        ):
            assert_problem(
                await client.post("/v1/plantings", json=body, headers=alice.headers),
                422,
                "validation_error",
            )
        assert_problem(
            await client.post("/v1/plantings", json={"item_id": "x"}), 401, "unauthorized"
        )

    async def test_a_retry_with_its_key_plants_once(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=10)
        [alice] = await quick_players(app, 1)
        await fund(app, alice.id, 100)
        key = {"Idempotency-Key": "plant-1"}
        first, retry = await asyncio.gather(
            *(
                client.post(
                    "/v1/plantings", json={"item_id": item["id"]}, headers=alice.headers | key
                )
                for _ in range(2)
            )
        )
        assert first.status_code == retry.status_code == 201
        assert first.json() == retry.json()
        assert await scalar(app, "SELECT count(*) FROM plantings") == 1
        assert await scalar(app, "SELECT balance_g FROM users") == 90
        other = await client.post(
            "/v1/plantings",
            json={"item_id": item["id"], "quantity": 2},
            headers=alice.headers | key,
        )
        assert_problem(other, 422, "idempotency_key_reused")

    async def test_certificate_numbers_are_unique_and_increasing(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=1)
        players = await quick_players(app, 5)
        for p in players:
            await fund(app, p.id, 10)
        bodies = await asyncio.gather(*(plant(client, p, item["id"]) for p in players))
        numbers = sorted(b["certificate_number"] for b in bodies)
        assert len(set(numbers)) == 5


class TestIdempotency:
    async def test_a_retry_replays_the_first_reply_after_the_planting_moved_on(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=10)
        [alice] = await quick_players(app, 1)
        await fund(app, alice.id, 100)
        request = {
            "json": {"item_id": item["id"]},
            "headers": alice.headers | {"Idempotency-Key": "k"},
        }
        first = await client.post("/v1/plantings", **request)
        assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
        await plant(client, alice, item["id"])  # more energy spent since
        await cut_orders(client, admin_headers)  # and the first planting is ordered now
        again = await client.post("/v1/plantings", **request)
        assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
        assert again.headers["content-type"] == "application/json"
        assert again.json() == first.json()
        assert first.json()["balance_g"] == 90 and first.json()["status"] == "reserved"
        now = await client.get(f"/v1/plantings/{first.json()['id']}", headers=alice.headers)
        assert now.json()["status"] == "ordered"
        assert await scalar(app, "SELECT count(*) FROM plantings") == 2
        assert await scalar(app, "SELECT balance_g FROM users") == 80
        await ledger_ok(client, admin_headers)

    @pytest.mark.parametrize("funds", [10, 1_000], ids=["one-affordable", "all-affordable"])
    async def test_retries_sent_at_once_plant_once(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        funds: int,
    ) -> None:
        # every retry starts before the first commits: with energy for one planting the others
        # are refused for want of it, with plenty they collide on the key — either way they
        # learn of the first planting and answer it
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=10)
        [alice] = await quick_players(app, 1)
        await fund(app, alice.id, funds)
        headers = alice.headers | {"Idempotency-Key": "once"}
        async with user_row_held(app, alice.id) as until_waiting:
            requests = [
                asyncio.create_task(
                    client.post("/v1/plantings", json={"item_id": item["id"]}, headers=headers)
                )
                for _ in range(3)
            ]
            await until_waiting(3)
        responses = await asyncio.gather(*requests)
        assert [r.status_code for r in responses] == [201] * 3, [r.text for r in responses]
        assert len({r.text for r in responses}) == 1
        assert sorted(r.headers.get("Idempotent-Replayed", "") for r in responses) == [
            "",
            "true",
            "true",
        ]
        assert await scalar(app, "SELECT count(*) FROM plantings") == 1
        assert await scalar(app, "SELECT balance_g FROM users") == funds - 10
        assert await scalar(app, "SELECT taken FROM catalog_items") == 1
        await ledger_ok(client, admin_headers)

    async def test_one_new_key_with_two_bodies_at_once_plants_once(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=10)
        [alice] = await quick_players(app, 1)
        await fund(app, alice.id, 1_000)
        headers = alice.headers | {"Idempotency-Key": "twice"}
        async with user_row_held(app, alice.id) as until_waiting:
            requests = [
                asyncio.create_task(
                    client.post(
                        "/v1/plantings",
                        json={"item_id": item["id"], "quantity": quantity},
                        headers=headers,
                    )
                )
                for quantity in (1, 2)
            ]
            await until_waiting(2)
        responses = await asyncio.gather(*requests)
        assert sorted(r.status_code for r in responses) == [201, 422]
        assert_problem(
            next(r for r in responses if r.status_code == 422), 422, "idempotency_key_reused"
        )
        assert await scalar(app, "SELECT count(*) FROM plantings") == 1
        await ledger_ok(client, admin_headers)

    async def test_a_refused_request_leaves_its_key_free(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=10)
        [alice] = await quick_players(app, 1)
        request = {
            "json": {"item_id": item["id"]},
            "headers": alice.headers | {"Idempotency-Key": "k"},
        }
        assert_problem(await client.post("/v1/plantings", **request), 409, "insufficient_energy")
        await fund(app, alice.id, 10)
        retry = await client.post("/v1/plantings", **request)
        assert retry.status_code == 201 and "Idempotent-Replayed" not in retry.headers
        assert retry.json()["balance_g"] == 0

    async def test_another_body_is_refused_whatever_it_names(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=10)
        other = await add_item(client, admin_headers, ngo.id, name="Red willow", cost_g=10)
        [alice] = await quick_players(app, 1)
        await fund(app, alice.id, 100)
        key = alice.headers | {"Idempotency-Key": "k"}
        await plant(client, alice, item["id"], **{"Idempotency-Key": "k"})
        for body in (
            {"item_id": other["id"]},
            {"item_id": item["id"], "quantity": 2},
            {"item_id": "saxaul"},
        ):
            reused = await client.post("/v1/plantings", json=body, headers=key)
            assert_problem(reused, 422, "idempotency_key_reused")
        unknown = await client.post(
            "/v1/plantings",
            json={"item_id": "saxaul"},
            headers=alice.headers | {"Idempotency-Key": "k2"},
        )
        assert_problem(unknown, 404, "not_found")
        # the same request, spelled differently, is the same request
        same = await client.post(
            "/v1/plantings", json={"quantity": 1, "item_id": item["id"].upper()}, headers=key
        )
        assert same.status_code == 201 and same.headers["Idempotent-Replayed"] == "true"
        assert await scalar(app, "SELECT count(*) FROM plantings") == 1

    async def test_keys_belong_to_their_user(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=10)
        alice, bob = await quick_players(app, 2)
        for p in (alice, bob):
            await fund(app, p.id, 10)
        mine = await plant(client, alice, item["id"], **{"Idempotency-Key": "k"})
        theirs = await plant(client, bob, item["id"], **{"Idempotency-Key": "k"})
        assert mine["id"] != theirs["id"]
        assert await scalar(app, "SELECT count(*) FROM plantings") == 2

    async def test_a_key_is_remembered_for_its_ttl_only(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=10)
        [alice] = await quick_players(app, 1)
        await fund(app, alice.id, 100)
        request = {
            "json": {"item_id": item["id"]},
            "headers": alice.headers | {"Idempotency-Key": "k"},
        }
        first = (await client.post("/v1/plantings", **request)).json()
        clock.advance(app.state.settings.idempotency_ttl - timedelta(seconds=1))
        replayed = await client.post("/v1/plantings", **request)
        assert replayed.headers.get("Idempotent-Replayed") == "true"
        clock.advance(timedelta(seconds=1))
        later = await client.post("/v1/plantings", **request)
        assert later.status_code == 201 and "Idempotent-Replayed" not in later.headers
        assert later.json()["id"] != first["id"] and later.json()["balance_g"] == 80
        assert await keys_held(app) == ["k"]  # now the second planting's
        # and the worker forgets it once its time is up too
        worker = Worker(app.state.sessionmaker, clock, planting_jobs(app.state.rules_registry))
        await worker.run_due()
        assert await keys_held(app) == ["k"]
        clock.advance(app.state.settings.idempotency_ttl)
        await Worker(
            app.state.sessionmaker, clock, planting_jobs(app.state.rules_registry)
        ).run_due()
        assert await keys_held(app) == []

    async def test_keys_are_exported_and_erased_with_their_user(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=10)
        alice = await register(client, "alice")
        await fund(app, alice.id, 100)
        made = await plant(client, alice, item["id"], **{"Idempotency-Key": "alice-first-tree"})
        await plant(client, alice, item["id"])
        export = (await client.get("/v1/me/export", headers=alice.headers)).json()
        assert next((p["id"], p["idempotency_key"]) for p in export["plantings"]) == (
            made["id"],
            "alice-first-tree",
        )
        assert export["plantings"][1]["idempotency_key"] is None
        erased = await client.request(
            "DELETE", "/v1/me", json={"password": PASSWORD}, headers=alice.headers
        )
        assert erased.status_code == 204
        assert await keys_held(app) == []
        assert await scalar(app, "SELECT count(*) FROM plantings") == 2  # the trees stay


class TestConcurrency:
    async def test_a_budget_of_10_is_never_oversold_by_100_racing_redemptions(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, budget=10, cost_g=1_000)
        players = await quick_players(app, 20)
        for p in players:
            await fund(app, p.id, 10_000)
        responses = await asyncio.gather(
            *(
                client.post("/v1/plantings", json={"item_id": item["id"]}, headers=p.headers)
                for p in players
                for _ in range(5)
            )
        )
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {201: 10, 409: 90}, statuses
        assert {r.json()["code"] for r in responses if r.status_code == 409} == {"sold_out"}
        assert await scalar(app, "SELECT taken FROM catalog_items") == 10
        assert await scalar(app, "SELECT count(*) FROM plantings") == 10
        # exactly the ten redemptions' energy is gone, no more
        assert await scalar(app, "SELECT sum(balance_g) FROM users") == 20 * 10_000 - 10 * 1_000
        report = await ledger_ok(client, admin_headers)
        assert report["totals"]["burned_g"] == 10_000

    async def test_the_same_energy_cannot_be_spent_twice_at_once(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        saxaul = await add_item(client, admin_headers, ngo.id)
        willow = await add_item(client, admin_headers, ngo.id, name="Red willow")
        [alice] = await quick_players(app, 1)
        await fund(app, alice.id, 17_900)
        responses = await asyncio.gather(
            *(
                client.post("/v1/plantings", json={"item_id": item["id"]}, headers=alice.headers)
                for item in (saxaul, willow) * 5
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * 9
        assert {r.json()["code"] for r in responses if r.status_code == 409} == {
            "insufficient_energy"
        }
        assert await scalar(app, "SELECT balance_g FROM users") == 0
        assert await scalar(app, "SELECT sum(taken) FROM catalog_items") == 1
        await ledger_ok(client, admin_headers)

    async def test_plantings_racing_the_players_own_collect_stay_exact(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
    ) -> None:
        """A planting whose statement started before a collect committed must neither 500 on the
        balance constraint nor miss the energy it now has: it decides on the locked row."""
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=50, budget=1000)
        for round_ in range(4):
            alice = await register(client, f"racer_{round_}")
            rides = await client.post(
                "/v1/activities/batch",
                json={
                    "activities": [
                        {
                            "id": f"r{round_}-{i}",
                            "kind": "bus",
                            "occurred_at": (clock.now() - timedelta(minutes=30)).isoformat(),
                        }
                        for i in range(5)
                    ]
                },
                headers=alice.headers,
            )
            assert rides.status_code == 200
            clock.advance(hours=24)  # 5 x 80 g ripe, nothing on the balance yet
            calls = [
                client.post("/v1/plantings", json={"item_id": item["id"]}, headers=alice.headers)
                for _ in range(8)
            ]
            calls.insert(round_, client.post("/v1/forest/collect", json={}, headers=alice.headers))
            responses = await asyncio.gather(*calls)
            assert responses[round_].json()["collected_g"] == 400
            planted = [r for i, r in enumerate(responses) if i != round_]
            assert {r.status_code for r in planted} <= {201, 409}, [r.text for r in planted]
            made = sum(r.status_code == 201 for r in planted)
            me = (await client.get("/v1/me", headers=alice.headers)).json()
            assert me["balance_g"] == 400 - 50 * made
        await ledger_ok(client, admin_headers)


class TestReadPlantings:
    async def test_list_is_newest_first_and_paged(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=1)
        badge = await add_item(client, admin_headers, ngo.id, kind="virtual", name="B", cost_g=1)
        [alice, bob] = await quick_players(app, 2)
        await fund(app, alice.id, 10)
        await fund(app, bob.id, 10)
        made = [(await plant(client, alice, i["id"]))["id"] for i in (item, badge, item)]
        await plant(client, bob, item["id"])
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await client.get("/v1/plantings", params=params, headers=alice.headers)).json()
            seen += [p["id"] for p in page["plantings"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(made))
        done = await client.get(
            "/v1/plantings", params={"status": "completed"}, headers=alice.headers
        )
        assert [p["id"] for p in done.json()["plantings"]] == [made[1]]

    async def test_one_planting_and_another_users_is_404(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=1)
        [alice, bob] = await quick_players(app, 2)
        await fund(app, alice.id, 10)
        made = await plant(client, alice, item["id"])
        mine = await client.get(f"/v1/plantings/{made['id']}", headers=alice.headers)
        assert mine.status_code == 200
        assert mine.json() == {k: v for k, v in made.items() if k != "balance_g"}
        for path in (f"/v1/plantings/{made['id']}", f"/v1/plantings/{made['id']}/certificate"):
            assert_problem(await client.get(path, headers=bob.headers), 404, "not_found")
        assert_problem(
            await client.get("/v1/plantings/nope", headers=alice.headers), 404, "not_found"
        )
        assert_problem(
            await client.get("/v1/plantings", params={"cursor": "x"}, headers=alice.headers),
            422,
            "validation_error",
        )

    async def test_plantings_are_in_the_users_data_export(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=1)
        [alice, bob] = await quick_players(app, 2)
        await fund(app, alice.id, 10)
        made = await plant(client, alice, item["id"], quantity=2)
        export = (await client.get("/v1/me/export", headers=alice.headers)).json()
        [exported] = export["plantings"]
        assert exported["id"] == made["id"] and exported["quantity"] == 2
        assert exported["certificate_number"] == made["certificate_number"]
        assert (await client.get("/v1/me/export", headers=bob.headers)).json()["plantings"] == []

    async def test_trees_are_counted_for_the_forest(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        tree = await add_item(client, admin_headers, ngo.id, cost_g=1)
        badge = await add_item(client, admin_headers, ngo.id, kind="virtual", name="B", cost_g=1)
        [alice] = await quick_players(app, 1)
        await fund(app, alice.id, 10)
        await plant(client, alice, tree["id"], quantity=3)
        await plant(client, alice, badge["id"], quantity=2)
        async with app.state.sessionmaker() as session:
            import uuid

            assert await count_trees(session, uuid.UUID(alice.id)) == 3


class TestCertificate:
    async def test_certificate_is_a_valid_svg_with_the_whole_story(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id)
        alice = await register(client, "alice", display_name="Alice Liu")
        await fund(app, alice.id, 20_000)
        made = await plant(client, alice, item["id"])
        response = await client.get(
            f"/v1/plantings/{made['id']}/certificate", headers=alice.headers
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("image/svg+xml")
        root = ET.fromstring(response.content)
        assert root.tag == f"{SVG}svg" and root.get("viewBox") == "0 0 1000 700"
        text = " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))
        for expected in (
            "Alice Liu",
            "Saxaul",
            "Haloxylon ammodendron",
            "Alxa League, Inner Mongolia",
            "Desert Greening NGO",
            "29 November 2026",
            made["certificate_number"],
            "17,900 g",
        ):
            assert expected in text, expected

    async def test_user_text_cannot_inject_markup(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers, name="Trees & <Co>")
        item = await add_item(client, admin_headers, ngo.id, name='Pine"/><script>x</script>')
        evil = '<script>alert("x")</script> & \x01friends'
        alice = await register(client, "alice", display_name=evil)
        await fund(app, alice.id, 20_000)
        made = await plant(client, alice, item["id"])
        svg = (
            await client.get(f"/v1/plantings/{made['id']}/certificate", headers=alice.headers)
        ).content
        root = ET.fromstring(svg)  # still well-formed XML
        assert not [e for e in root.iter() if e.tag.endswith("script")]
        text = " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))
        assert '<script>alert("x")</script> & friends' in text
        assert "Trees & <Co>" in text and b"<script>" not in svg

    async def test_handle_stands_in_for_a_missing_display_name(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=1)
        [alice] = await quick_players(app, 1, prefix="hiker")
        await fund(app, alice.id, 1)
        made = await plant(client, alice, item["id"])
        svg = (
            await client.get(f"/v1/plantings/{made['id']}/certificate", headers=alice.headers)
        ).text
        assert "hiker000" in svg
