"""Orders: cutting by size and age, the partner's view, acknowledgement and reports, an
auditor's verification, cancellation with refunds through the ledger."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.core.worker import Worker
from app.jobs import default_jobs
from tests.energy.conftest import ledger_ok
from tests.helpers import Player, assert_problem
from tests.planting.conftest import (
    NGO,
    add_item,
    bearer,
    create_ngo,
    cut_orders,
    fund,
    plant,
    quick_players,
    scalar,
    set_planting_rules,
)


async def run_jobs(app: FastAPI, clock: FrozenClock) -> None:
    await Worker(app.state.sessionmaker, clock, default_jobs(app.state.rules_registry)).run_due()


async def statuses(app: FastAPI) -> list[str]:
    async with app.state.engine.connect() as conn:
        rows = await conn.execute(text("SELECT status FROM plantings ORDER BY seq"))
        return [r[0] for r in rows]


async def feed(app: FastAPI, user: Player) -> list[dict[str, Any]]:
    async with app.state.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT type, amount_g, ref, data FROM feed_items WHERE user_id = :u ORDER BY id"),
            {"u": user.id},
        )
        return [dict(r._mapping) for r in rows]


async def one_order(
    client: httpx.AsyncClient,
    app: FastAPI,
    admin_headers: dict[str, str],
    ngo: NGO,
    quantities: list[int],
    cost_g: int = 100,
) -> tuple[dict[str, Any], list[Player], list[dict[str, Any]]]:
    """An order of one item from plantings of the given quantities, one user each."""
    item = await add_item(client, admin_headers, ngo.id, cost_g=cost_g)
    players = await quick_players(app, len(quantities), prefix=f"u{ngo.id[:4]}")
    plantings = []
    for player, quantity in zip(players, quantities, strict=True):
        await fund(app, player.id, cost_g * quantity)
        plantings.append(await plant(client, player, item["id"], quantity))
    [order] = await cut_orders(client, admin_headers)
    return order, players, plantings


def report_body(
    quantity: int, lat: float = 38.8, lon: float = 105.6, **extra: Any
) -> dict[str, Any]:
    return {
        "planted_quantity": quantity,
        "planted_on": "2026-11-28",
        "location": {"lat": lat, "lon": lon},
        **extra,
    }


class TestBatching:
    async def test_an_order_is_cut_when_batch_size_units_wait(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
    ) -> None:
        set_planting_rules(app, batch_size=3)
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=1)
        players = await quick_players(app, 4)
        for p in players:
            await fund(app, p.id, 1)
        for p in players[:2]:
            await plant(client, p, item["id"])
        await run_jobs(app, clock)
        assert await statuses(app) == ["reserved", "reserved"]
        for p in players[2:]:
            await plant(client, p, item["id"])
        await run_jobs(app, clock)
        # three units make an order; the fourth waits for more (or for time)
        assert await statuses(app) == ["ordered", "ordered", "ordered", "reserved"]
        [order] = (await client.get("/partner/v1/orders", headers=ngo.headers)).json()["orders"]
        assert order["quantity"] == 3 and order["status"] == "open"
        assert len(order["certificates"]) == 3 and order["item"]["name"] == "Saxaul"

    async def test_an_order_is_cut_when_the_oldest_has_waited(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=1)
        [alice] = await quick_players(app, 1)
        await fund(app, alice.id, 1)
        made = await plant(client, alice, item["id"])
        clock.advance(hours=24, seconds=-1)
        await run_jobs(app, clock)
        assert await statuses(app) == ["reserved"]
        clock.advance(seconds=1)  # rules: batch_max_wait = 24h
        await run_jobs(app, clock)
        assert await statuses(app) == ["ordered"]
        mine = (await client.get(f"/v1/plantings/{made['id']}", headers=alice.headers)).json()
        assert [h["status"] for h in mine["history"]] == ["reserved", "ordered"]

    async def test_admin_batch_cuts_one_order_per_partner_and_item_now(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo, other = (
            await create_ngo(client, admin_headers),
            await create_ngo(client, admin_headers, "B"),
        )
        saxaul = await add_item(client, admin_headers, ngo.id, cost_g=1)
        willow = await add_item(client, admin_headers, ngo.id, cost_g=1, name="Red willow")
        pine = await add_item(client, admin_headers, other.id, cost_g=1, name="Pine")
        [alice] = await quick_players(app, 1)
        await fund(app, alice.id, 10)
        for item, quantity in ((saxaul, 2), (willow, 1), (pine, 1), (saxaul, 1)):
            await plant(client, alice, item["id"], quantity)
        orders = await cut_orders(client, admin_headers)
        cut = sorted((o["partner"]["name"], o["item"]["name"], o["quantity"]) for o in orders)
        assert cut == [
            ("B", "Pine", 1),
            ("Desert Greening NGO", "Red willow", 1),
            ("Desert Greening NGO", "Saxaul", 3),
        ]
        assert await cut_orders(client, admin_headers) == []

    async def test_each_order_is_written_with_its_order_created_event(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        hooked = await create_ngo(
            client, admin_headers, webhook_url="https://ngo.example.org/hooks"
        )
        silent = await create_ngo(client, admin_headers, "Reads the API")
        order, _, plantings = await one_order(client, app, admin_headers, hooked, [1, 2])
        await one_order(client, app, admin_headers, silent, [1])
        async with app.state.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT partner_id::text, type, status, event_id, body "
                        "FROM webhook_deliveries ORDER BY seq"
                    )
                )
            ).all()
        assert [(r[0], r[1], r[2]) for r in rows] == [
            (hooked.id, "order.created", "pending"),
            (silent.id, "order.created", "skipped"),  # no webhook URL: it reads the API
        ]
        event = json.loads(rows[0][4])
        assert rows[0][3].startswith("msg_")
        assert event["type"] == "order.created" and event["timestamp"] == "2026-11-29T04:00:00Z"
        assert event["data"]["id"] == order["id"] and event["data"]["quantity"] == 3
        assert [c["number"] for c in event["data"]["certificates"]] == [
            p["certificate_number"] for p in plantings
        ]
        assert "user" not in json.dumps(event)  # partners learn nothing about users


class TestPartnerOrders:
    async def test_partners_see_only_their_own_orders(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo, other = (
            await create_ngo(client, admin_headers),
            await create_ngo(client, admin_headers, "B"),
        )
        mine, _, _ = await one_order(client, app, admin_headers, ngo, [1])
        theirs, _, _ = await one_order(client, app, admin_headers, other, [1])
        listed = (await client.get("/partner/v1/orders", headers=ngo.headers)).json()
        assert [o["id"] for o in listed["orders"]] == [mine["id"]] and listed["next_cursor"] is None
        assert (await client.get(f"/partner/v1/orders/{mine['id']}", headers=ngo.headers)).json()[
            "id"
        ] == mine["id"]
        for method, path, body in (
            ("GET", f"/partner/v1/orders/{theirs['id']}", None),
            ("POST", f"/partner/v1/orders/{theirs['id']}/acknowledge", {}),
            ("POST", f"/partner/v1/orders/{theirs['id']}/reports", report_body(1)),
            ("GET", "/partner/v1/orders/not-an-id", None),
        ):
            response = await client.request(method, path, json=body, headers=ngo.headers)
            assert_problem(response, 404, "not_found")
        transit = await create_ngo(client, admin_headers, "Metro", scopes=["activities"])
        assert_problem(
            await client.get("/partner/v1/orders", headers=transit.headers), 403, "forbidden"
        )
        for headers in ({}, bearer("cnp_nope")):
            assert_problem(
                await client.get("/partner/v1/orders", headers=headers), 401, "unauthorized"
            )

    async def test_acknowledging_moves_the_order_and_its_plantings(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        order, [alice], [made] = await one_order(client, app, admin_headers, ngo, [1])
        clock.advance(hours=1)
        url = f"/partner/v1/orders/{order['id']}/acknowledge"
        response = await client.post(
            url, json={"external_ref": "ALX-2027-001"}, headers=ngo.headers
        )
        assert response.status_code == 200, response.text
        acked = response.json()
        assert acked["status"] == "acknowledged" and acked["external_ref"] == "ALX-2027-001"
        assert acked["acknowledged_at"] == "2026-11-29T05:00:00Z"
        again = await client.post(url, headers=ngo.headers)
        assert again.status_code == 200 and again.json() == acked
        planting = (await client.get(f"/v1/plantings/{made['id']}", headers=alice.headers)).json()
        assert [h["status"] for h in planting["history"]] == ["reserved", "ordered", "acknowledged"]
        listed = await client.get(
            "/partner/v1/orders", params={"status": "acknowledged"}, headers=ngo.headers
        )
        assert [o["id"] for o in listed.json()["orders"]] == [order["id"]]
        assert (
            await client.get("/partner/v1/orders", params={"status": "open"}, headers=ngo.headers)
        ).json()["orders"] == []


class TestReports:
    async def test_reports_add_up_until_the_order_is_planted(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        order, [alice, bob], [hers, his] = await one_order(client, app, admin_headers, ngo, [2, 1])
        url = f"/partner/v1/orders/{order['id']}/reports"
        first = await client.post(
            url,
            json=report_body(2, 38.1, 105.1, evidence_urls=["https://ngo.example.org/p/1.jpg"]),
            headers=ngo.headers,
        )
        assert first.status_code == 201, first.text
        assert first.json()["order"] == {
            "id": order["id"],
            "status": "acknowledged",  # a report implies the order was received
            "quantity": 3,
            "planted_quantity": 2,
        }
        assert await statuses(app) == ["acknowledged", "acknowledged"]
        assert await feed(app, alice) == []
        second = await client.post(
            url, json=report_body(1, -12.5, -77.0, planted_on="2026-11-29"), headers=ngo.headers
        )
        assert second.json()["order"]["status"] == "planted"
        assert await statuses(app) == ["planted", "planted"]
        # each planting sits where the report that planted its last unit says
        for player, made, place, day in (
            (alice, hers, {"lat": 38.1, "lon": 105.1}, "2026-11-28"),
            (bob, his, {"lat": -12.5, "lon": -77.0}, "2026-11-29"),
        ):
            got = (await client.get(f"/v1/plantings/{made['id']}", headers=player.headers)).json()
            assert got["status"] == "planted" and got["location"] == place
            assert got["planted_on"] == day
            [item] = await feed(app, player)
            assert item["type"] == "planting_update" and item["ref"] == f"planting:{made['id']}"
            assert item["data"]["status"] == "planted" and item["data"]["location"] == place
        partner_view = (
            await client.get(f"/partner/v1/orders/{order['id']}", headers=ngo.headers)
        ).json()
        assert partner_view["status"] == "planted" and partner_view["planted_quantity"] == 3
        assert [r["planted_quantity"] for r in partner_view["reports"]] == [2, 1]
        assert partner_view["reports"][0]["evidence_urls"] == ["https://ngo.example.org/p/1.jpg"]

    async def test_over_reporting_is_refused(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        order, _, _ = await one_order(client, app, admin_headers, ngo, [2])
        url = f"/partner/v1/orders/{order['id']}/reports"
        problem = assert_problem(
            await client.post(url, json=report_body(3), headers=ngo.headers), 422, "over_reported"
        )
        assert problem["remaining"] == 2
        assert (await client.post(url, json=report_body(2), headers=ngo.headers)).status_code == 201
        assert_problem(
            await client.post(url, json=report_body(1), headers=ngo.headers), 422, "over_reported"
        )
        assert await scalar(app, "SELECT count(*) FROM order_reports") == 1

    async def test_racing_reports_never_over_report(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        order, _, _ = await one_order(client, app, admin_headers, ngo, [3])
        url = f"/partner/v1/orders/{order['id']}/reports"
        responses = await asyncio.gather(
            *(client.post(url, json=report_body(1), headers=ngo.headers) for _ in range(8))
        )
        assert sorted(r.status_code for r in responses) == [201] * 3 + [422] * 5
        assert await scalar(app, "SELECT planted_quantity FROM planting_orders") == 3
        assert await scalar(app, "SELECT count(*) FROM feed_items") == 1

    async def test_a_retried_report_is_recorded_once(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        order, _, _ = await one_order(client, app, admin_headers, ngo, [2])
        url = f"/partner/v1/orders/{order['id']}/reports"
        headers = ngo.headers | {"Idempotency-Key": "report-7"}
        first = await client.post(url, json=report_body(1), headers=headers)
        retry = await client.post(url, json=report_body(1), headers=headers)
        assert first.status_code == retry.status_code == 201 and first.json() == retry.json()
        assert retry.headers["idempotent-replayed"] == "true"
        assert await scalar(app, "SELECT planted_quantity FROM planting_orders") == 1
        assert_problem(
            await client.post(url, json=report_body(2), headers=headers),
            422,
            "idempotency_key_reused",
        )

    async def test_bad_reports_are_422(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        order, _, _ = await one_order(client, app, admin_headers, ngo, [1])
        url = f"/partner/v1/orders/{order['id']}/reports"
        for body in (
            report_body(1, lat=90.5),
            report_body(1, lon=-180.01),
            report_body(0),
            report_body(1, evidence_urls=["ftp://ngo.example.org/x.jpg"]),
            report_body(1, evidence_urls=["javascript:alert(1)"]),
            report_body(1, planted_on="2026-12-01"),  # the future
            report_body(1, planted_on="yesterday"),
            report_body(1, note="x" * 2001),
            report_body(1, note="nul\u0000"),
            report_body(1, evidence_urls=["https://ngo.example.org/\u0000.jpg"]),
            {"planted_quantity": 1, "planted_on": "2026-11-28"},
            {**report_body(1), "location": {"lat": "NaN", "lon": 1}},
        ):
            assert_problem(
                await client.post(url, json=body, headers=ngo.headers), 422, "validation_error"
            )
        assert await scalar(app, "SELECT count(*) FROM order_reports") == 0


async def planted_order(
    client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str], ngo: NGO
) -> tuple[dict[str, Any], list[Player], list[dict[str, Any]]]:
    order, players, plantings = await one_order(client, app, admin_headers, ngo, [1, 2])
    response = await client.post(
        f"/partner/v1/orders/{order['id']}/reports", json=report_body(3), headers=ngo.headers
    )
    assert response.json()["order"]["status"] == "planted"
    return order, players, plantings


class TestVerify:
    async def test_an_auditor_verifies_order_and_plantings(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers, webhook_url="https://ngo.example.org/h")
        order, [alice, _], [hers, _] = await planted_order(client, app, admin_headers, ngo)
        url = f"/admin/v1/orders/{order['id']}/verify"
        body = {"auditor": "Green Audit Ltd", "note": "sampled 10%"}
        response = await client.post(url, json=body, headers=admin_headers)
        assert response.status_code == 200, response.text
        verified = response.json()
        assert verified["status"] == "verified" and verified["verified_by"] == "Green Audit Ltd"
        assert verified["verification_note"] == "sampled 10%"
        assert await statuses(app) == ["verified", "verified"]
        mine = (await client.get(f"/v1/plantings/{hers['id']}", headers=alice.headers)).json()
        assert mine["status"] == "verified" and mine["location"] is not None
        assert [i["data"]["status"] for i in await feed(app, alice)] == ["planted", "verified"]
        again = await client.post(url, json=body, headers=admin_headers)
        assert again.status_code == 200 and len(await feed(app, alice)) == 2
        audit = (await client.get("/admin/v1/audit", headers=admin_headers)).json()["entries"]
        verified_entries = [e for e in audit if e["action"] == "order.verified"]
        assert [e["target"] for e in verified_entries] == [f"order:{order['id']}"]  # once
        assert "Green Audit Ltd" in verified_entries[0]["summary"]
        types = await scalar(
            app, "SELECT string_agg(type, ',' ORDER BY seq) FROM webhook_deliveries"
        )
        assert types == "order.created,order.verified"

    async def test_only_planted_orders_can_be_verified(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        order, _, _ = await one_order(client, app, admin_headers, ngo, [1])
        body = {"auditor": "A"}
        assert_problem(
            await client.post(
                f"/admin/v1/orders/{order['id']}/verify", json=body, headers=admin_headers
            ),
            409,
            "not_planted",
        )
        for order_id in ("00000000-0000-0000-0000-000000000000", "nope"):
            assert_problem(
                await client.post(
                    f"/admin/v1/orders/{order_id}/verify", json=body, headers=admin_headers
                ),
                404,
                "not_found",
            )
        assert_problem(
            await client.post(
                f"/admin/v1/orders/{order['id']}/verify", json={}, headers=admin_headers
            ),
            422,
            "validation_error",
        )


class TestCancel:
    async def test_cancelling_refunds_energy_through_the_ledger(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
    ) -> None:
        ngo = await create_ngo(client, admin_headers, webhook_url="https://ngo.example.org/h")
        item = await add_item(client, admin_headers, ngo.id, cost_g=100)
        [alice, bob] = await quick_players(app, 2)
        await fund(app, alice.id, 1_000)
        await fund(app, bob.id, 300)
        mine = [await plant(client, alice, item["id"], q) for q in (2, 3)]
        his = await plant(client, bob, item["id"], 1)
        [order] = await cut_orders(client, admin_headers)
        await client.post(f"/partner/v1/orders/{order['id']}/acknowledge", headers=ngo.headers)
        clock.advance(hours=2)
        url = f"/admin/v1/orders/{order['id']}/cancel"
        response = await client.post(url, json={"reason": "flooded site"}, headers=admin_headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        assert response.json()["cancel_reason"] == "flooded site"
        audit = (await client.get("/admin/v1/audit", headers=admin_headers)).json()["entries"]
        assert (audit[0]["action"], audit[0]["target"]) == (
            "order.cancelled",
            f"order:{order['id']}",
        )
        assert "flooded site" in audit[0]["summary"]
        assert await statuses(app) == ["cancelled"] * 3
        for player, balance in ((alice, 1_000), (bob, 300)):
            me = (await client.get("/v1/me", headers=player.headers)).json()
            assert me["balance_g"] == balance
        entries = (await client.get("/v1/energy/ledger", headers=alice.headers)).json()["entries"]
        assert [(e["reason"], e["amount_g"], e["balance_after_g"]) for e in entries[:2]] == [
            ("refund", 300, 1_000),
            ("refund", 200, 700),
        ]
        assert entries[1]["ref"] == f"planting:{mine[0]['id']}"
        report = await ledger_ok(client, admin_headers)
        assert report["totals"]["burned_g"] == 0
        told = await feed(app, bob)
        assert [(i["amount_g"], i["data"]["status"], i["data"]["reason"]) for i in told] == [
            (100, "cancelled", "flooded site")
        ]
        assert told[0]["ref"] == f"planting:{his['id']}"
        event = json.loads(
            await scalar(app, "SELECT body FROM webhook_deliveries WHERE type = 'order.cancelled'")
        )
        assert event["data"]["status"] == "cancelled"
        assert event["data"]["cancel_reason"] == "flooded site"
        # nothing more can happen to it, and cancelling again refunds nothing
        again = await client.post(url, json={"reason": "again"}, headers=admin_headers)
        assert again.status_code == 200 and again.json()["cancel_reason"] == "flooded site"
        await ledger_ok(client, admin_headers)
        assert (await client.get("/v1/me", headers=bob.headers)).json()["balance_g"] == 300
        for path, body in (("acknowledge", {}), ("reports", report_body(1))):
            assert_problem(
                await client.post(
                    f"/partner/v1/orders/{order['id']}/{path}", json=body, headers=ngo.headers
                ),
                409,
                "order_cancelled",
            )
        svg = (await client.get(f"/v1/plantings/{his['id']}/certificate", headers=bob.headers)).text
        assert "CANCELLED" in svg and "energy was returned" in svg

    async def test_planted_orders_cannot_be_cancelled(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        order, _, _ = await planted_order(client, app, admin_headers, ngo)
        url = f"/admin/v1/orders/{order['id']}/cancel"
        assert_problem(
            await client.post(url, json={"reason": "x"}, headers=admin_headers),
            409,
            "not_cancellable",
        )
        assert_problem(
            await client.post(url, json={}, headers=admin_headers), 422, "validation_error"
        )
        await ledger_ok(client, admin_headers)

    async def test_a_retried_cancel_with_its_key_replays(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        order, _, _ = await one_order(client, app, admin_headers, ngo, [1])
        url = f"/admin/v1/orders/{order['id']}/cancel"
        headers = admin_headers | {"Idempotency-Key": "cancel-1"}
        first, retry = await asyncio.gather(
            *(client.post(url, json={"reason": "r"}, headers=headers) for _ in range(2))
        )
        assert first.status_code == retry.status_code == 200 and first.json() == retry.json()
        assert await scalar(app, "SELECT count(*) FROM ledger_entries WHERE reason = 'refund'") == 2
        await ledger_ok(client, admin_headers)


class TestAdminOrders:
    async def test_operators_list_and_read_every_order(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        order, _, _ = await one_order(client, app, admin_headers, ngo, [1])
        listed = (await client.get("/admin/v1/orders", headers=admin_headers)).json()
        assert [o["id"] for o in listed["orders"]] == [order["id"]]
        one = (await client.get(f"/admin/v1/orders/{order['id']}", headers=admin_headers)).json()
        assert one["partner"]["id"] == ngo.id and one == listed["orders"][0]
        assert_problem(
            await client.get("/admin/v1/orders", headers=ngo.headers), 401, "unauthorized"
        )
