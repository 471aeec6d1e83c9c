"""Operators in the console: dashboard, partners, webhook deliveries, orders, catalog, users,
props and the audit log — every action through the domain services the API uses."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.planting import webhooks
from tests.console.conftest import Console, text_of
from tests.helpers import Player
from tests.planting.conftest import (
    NGO,
    Receiver,
    add_item,
    bearer,
    create_ngo,
    cut_orders,
    fund,
    plant,
    quick_players,
    scalar,
)


async def audit_actions(app: FastAPI) -> list[tuple[str, str]]:
    async with app.state.engine.connect() as conn:
        rows = await conn.execute(text("SELECT action, actor FROM audit_entries ORDER BY id"))
        return [(r.action, r.actor) for r in rows]


async def an_order(
    api: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI, ngo: NGO, quantity: int = 2
) -> tuple[dict[str, Any], Player]:
    item = await add_item(api, admin_headers, ngo.id)
    [player] = await quick_players(app, 1)
    await fund(app, player.id, 17_900 * quantity)
    await plant(api, player, item["id"], quantity)
    [order] = await cut_orders(api, admin_headers)
    return order, player


async def report_all(api: httpx.AsyncClient, ngo: NGO, order: dict[str, Any]) -> None:
    response = await api.post(
        f"/partner/v1/orders/{order['id']}/reports",
        json={
            "planted_quantity": order["quantity"],
            "planted_on": "2026-03-12",
            "location": {"lat": 39.08, "lon": 105.66},
        },
        headers=ngo.headers,
    )
    assert response.status_code == 201, response.text


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver(status=500).start()
    yield server
    await server.stop()


async def failed_delivery(
    app: FastAPI,
    clock: FrozenClock,
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    url: str,
) -> tuple[NGO, str]:
    """A partner whose endpoint answers 500: an order's event fails twice and is given up."""
    ngo = await create_ngo(api, admin_headers, name="Flaky NGO", webhook_url=url)
    await an_order(api, admin_headers, app, ngo, quantity=1)
    for _ in range(2):
        await webhooks.deliver_due(
            app.state.engine, settings=app.state.settings, keys=app.state.keys, now=clock.now()
        )
        clock.advance(seconds=5)
    delivery_id = await scalar(app, "SELECT id FROM webhook_deliveries WHERE status = 'failed'")
    assert delivery_id is not None
    return ngo, str(delivery_id)


class TestDashboard:
    async def test_numbers_at_a_glance(
        self,
        operator: Console,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        ngo = await create_ngo(api, admin_headers)
        await an_order(api, admin_headers, app, ngo, quantity=3)
        # the check ran when the operator signed in; it is kept a while, or rerun on demand
        page = await operator.post("/console/ledger-check", follow=True)
        shown = text_of(page)
        assert "Users 1" in shown
        assert "Energy minted today 53,700 g" in shown
        assert "Every invariant holds." in shown
        assert "Minted 53,700 g" in shown and "Burned (plantings, props) 53,700 g" in shown
        assert "Failed webhook deliveries 0" in shown
        assert re.search(r"open\s+1", shown)

    async def test_ledger_check_is_kept_and_rerun_on_demand(
        self, operator: Console, clock: FrozenClock
    ) -> None:
        first = text_of(await operator.get("/console/dashboard"))
        clock.advance(minutes=1)
        assert text_of(await operator.get("/console/dashboard")).count("Checked") == 1
        again = await operator.post("/console/ledger-check", follow=True)
        assert "The ledger check ran just now." in text_of(again)
        assert re.search(r"Checked (\S+ \S+)", first) != re.search(
            r"Checked (\S+ \S+)", text_of(again)
        )


class TestPartners:
    async def test_create_shows_secrets_once_and_the_key_works(
        self,
        operator: Console,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        await operator.get("/console/partners")
        once = operator.once()
        created = await operator.post(
            "/console/partners",
            {
                "name": "Alxa Desert NGO",
                "scopes": "orders",
                "webhook_url": "https://ngo.example/hooks",
                "once": once,
            },
        )
        assert created.status_code == 201
        key = re.search(r'id="api-key"[^>]*>(cnp_[^<]+)<', created.text)
        secret = re.search(r'id="webhook-secret"[^>]*>(whsec_[^<]+)<', created.text)
        assert key and secret
        me = await api.get("/partner/v1/me", headers=bearer(key.group(1)))
        assert me.json()["name"] == "Alxa Desert NGO"
        listing = await operator.get("/console/partners")
        assert "Alxa Desert NGO" in listing.text
        assert key.group(1) not in listing.text and secret.group(1) not in listing.text
        # the browser re-posting the same form (a reload) makes no second partner
        again = await operator.http.post(
            "/console/partners",
            data={
                "name": "Alxa Desert NGO",
                "scopes": "orders",
                "once": once,
                "csrf_token": operator.token(),
            },
        )
        assert again.status_code == 409
        partners = (await api.get("/admin/v1/partners", headers=admin_headers)).json()["partners"]
        assert len(partners) == 1
        assert ("partner.created", "console:Ana") in await audit_actions(app)

    async def test_change_kinds_and_webhook_url_takes_effect_and_is_audited(
        self,
        operator: Console,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        created = await api.post(
            "/admin/v1/partners",
            json={"name": "Metro Line 9", "scopes": ["activities"]},
            headers=admin_headers,
        )
        partner = created.json()
        await operator.get("/console/partners")
        form = await operator.get(f"/console/partners/{partner['id']}/edit")
        assert form.status_code == 200 and "Metro Line 9" in form.text
        saved = await operator.post(
            f"/console/partners/{partner['id']}/edit",
            {
                "name": "Metro Line 9",
                "scopes": "activities",
                "kinds": "metro",
                "webhook_url": "https://metro.example/hooks",
            },
        )
        assert saved.status_code == 303, saved.text
        listed = (await api.get("/admin/v1/partners", headers=admin_headers)).json()["partners"]
        assert listed[0]["kinds"] == ["metro"]
        assert listed[0]["webhook_url"] == "https://metro.example/hooks"
        assert ("partner.updated", "console:Ana") in await audit_actions(app)
        # the partner's key now reports metro only
        rider = await api.post(
            "/v1/auth/register", json={"handle": "rider", "password": "correct horse battery"}
        )
        event = {
            "id": "t1",
            "user_id": rider.json()["user"]["id"],
            "kind": "etc_toll",
            "occurred_at": "2026-11-29T03:00:00Z",
        }
        rejected = await api.post(
            "/partner/v1/activities", json=event, headers=bearer(partner["api_key"])
        )
        assert rejected.json()["reason"] == "untrusted_source", rejected.text
        # and a bad value is shown next to its field, changing nothing
        await operator.get(f"/console/partners/{partner['id']}/edit")
        bad = await operator.post(
            f"/console/partners/{partner['id']}/edit",
            {"name": "Metro Line 9", "scopes": "activities", "webhook_url": "ftp://x.example"},
        )
        assert bad.status_code == 422 and 'id="webhook_url-error"' in bad.text

    async def test_api_errors_show_next_to_their_fields(self, operator: Console) -> None:
        await operator.get("/console/partners")
        page = await operator.post(
            "/console/partners", {"name": "  ", "webhook_url": "ftp://files.example"}
        )
        assert page.status_code == 422
        for field in ("name", "scopes", "webhook_url"):
            assert f'id="{field}-error"' in page.text, field
        assert "must be an http(s) URL with a host" in text_of(page)

    async def test_rotate_key_shows_the_new_key_and_the_old_stops(
        self,
        operator: Console,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        ngo = await create_ngo(api, admin_headers)
        asked = await operator.get(f"/console/partners/{ngo.id}/rotate-key")
        assert "stops working at once" in text_of(asked)
        assert (await api.get("/partner/v1/me", headers=ngo.headers)).status_code == 200
        page = await operator.post(
            f"/console/partners/{ngo.id}/rotate-key", {"once": operator.once()}
        )
        assert page.status_code == 200
        new = re.search(r'id="api-key"[^>]*>(cnp_[^<]+)<', page.text)
        assert new and "The previous key has stopped working." in text_of(page)
        assert (await api.get("/partner/v1/me", headers=ngo.headers)).status_code == 401
        assert (await api.get("/partner/v1/me", headers=bearer(new.group(1)))).status_code == 200
        assert ("partner.key_rotated", "console:Ana") in await audit_actions(app)


class TestDeliveries:
    async def test_failed_delivery_inspected_and_retried(
        self,
        operator: Console,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
        receiver: Receiver,
    ) -> None:
        _, delivery_id = await failed_delivery(app, clock, api, admin_headers, receiver.url)
        listing = await operator.get("/console/deliveries?status=failed")
        assert "order.created" in listing.text and "Flaky NGO" in listing.text
        detail = await operator.get(f"/console/deliveries/{delivery_id}")
        shown = text_of(detail)
        assert shown.count("HTTP 500") >= 2
        assert '"type": "order.created"' in detail.text.replace("&#34;", '"')
        retried = await operator.post(f"/console/deliveries/{delivery_id}/retry", follow=True)
        assert "A new round of attempts starts now" in text_of(retried)
        status = await scalar(
            app, "SELECT status FROM webhook_deliveries WHERE id = :i", i=delivery_id
        )
        assert status == "pending"
        assert ("webhook.retried", "console:Ana") in await audit_actions(app)
        # only a failed delivery can be retried: the API's 409, as a page
        again = await operator.post(f"/console/deliveries/{delivery_id}/retry")
        assert again.status_code == 409
        assert "This delivery is pending" in text_of(again)


class TestOrders:
    async def test_cut_orders_now(
        self,
        operator: Console,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        ngo = await create_ngo(api, admin_headers)
        item = await add_item(api, admin_headers, ngo.id)
        [player] = await quick_players(app, 1)
        await fund(app, player.id, 17_900)
        await plant(api, player, item["id"])
        await operator.get("/console/orders")
        page = await operator.post("/console/orders/cut", follow=True)
        assert "1 order cut from the reserved plantings." in text_of(page)
        assert "Saxaul" in page.text
        assert ("orders.cut", "console:Ana") in await audit_actions(app)

    async def test_verify_a_planted_order_with_its_auditor(
        self,
        operator: Console,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        ngo = await create_ngo(api, admin_headers)
        order, _ = await an_order(api, admin_headers, app, ngo)
        await report_all(api, ngo, order)
        page = await operator.get(f"/console/orders/{order['id']}")
        assert "Verify order" in page.text
        blank = await operator.post(f"/console/orders/{order['id']}/verify", {"auditor": ""})
        assert blank.status_code == 422 and 'id="auditor-error"' in blank.text
        done = await operator.post(
            f"/console/orders/{order['id']}/verify",
            {"auditor": "Inner Mongolia Forestry Bureau", "note": "field visit"},
            follow=True,
        )
        assert "The order is verified" in text_of(done)
        seen = await api.get(f"/admin/v1/orders/{order['id']}", headers=admin_headers)
        assert seen.json()["status"] == "verified"
        assert seen.json()["verified_by"] == "Inner Mongolia Forestry Bureau"

    async def test_an_order_not_planted_cannot_be_verified(
        self,
        operator: Console,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        ngo = await create_ngo(api, admin_headers)
        order, _ = await an_order(api, admin_headers, app, ngo)
        await operator.get(f"/console/orders/{order['id']}")
        page = await operator.post(f"/console/orders/{order['id']}/verify", {"auditor": "A"})
        assert page.status_code == 409
        assert "This order is open" in text_of(page)

    async def test_cancel_with_reason_refunds(
        self,
        operator: Console,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        ngo = await create_ngo(api, admin_headers)
        order, player = await an_order(api, admin_headers, app, ngo)
        assert (await api.get("/v1/me", headers=player.headers)).json()["balance_g"] == 0
        await operator.get(f"/console/orders/{order['id']}")
        blank = await operator.post(f"/console/orders/{order['id']}/cancel", {"reason": " "})
        assert blank.status_code == 422 and 'id="reason-error"' in blank.text
        done = await operator.post(
            f"/console/orders/{order['id']}/cancel",
            {"reason": "drought: the site cannot be planted this season"},
            follow=True,
        )
        assert "its plantings' energy went back" in text_of(done)
        assert (await api.get("/v1/me", headers=player.headers)).json()["balance_g"] == 35_800
        check = (await api.get("/admin/v1/ledger/check", headers=admin_headers)).json()
        assert check["ok"]


class TestCatalog:
    async def test_pause_resume_and_budget(
        self,
        operator: Console,
        api: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        ngo = await create_ngo(api, admin_headers)
        item = await add_item(api, admin_headers, ngo.id, budget=10)
        [player] = await quick_players(app, 1)
        await fund(app, player.id, 17_900 * 3)
        await plant(api, player, item["id"], 3)
        page = await operator.get("/console/catalog")
        assert "7 / 10" in text_of(page)

        async def status() -> str:
            items = (await api.get("/v1/catalog", headers=player.headers)).json()["items"]
            found: str = items[0]["status"]
            return found

        await operator.post(f"/console/catalog/{item['id']}/status", {"to": "closed"})
        assert await status() == "closed"
        await operator.get("/console/catalog")
        await operator.post(f"/console/catalog/{item['id']}/status", {"to": "available"})
        assert await status() == "available"

        await operator.get("/console/catalog")
        below = await operator.post(f"/console/catalog/{item['id']}/budget", {"budget": "2"})
        assert below.status_code == 409
        assert "3 tree are already redeemed" in text_of(below)
        await operator.get("/console/catalog")
        raised = await operator.post(
            f"/console/catalog/{item['id']}/budget", {"budget": "50"}, follow=True
        )
        assert "47 / 50" in text_of(raised)
        actions = [a for a, _ in await audit_actions(app)]
        assert {"catalog.paused", "catalog.resumed", "catalog.budget_changed"} <= set(actions)

    async def test_add_an_item(
        self, operator: Console, api: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        ngo = await create_ngo(api, admin_headers, name="Steppe Trust")
        await operator.get("/console/catalog")
        missing = await operator.post(
            "/console/catalog", {"kind": "tree", "name": "Red willow", "partner_id": ngo.id}
        )
        assert missing.status_code == 422
        assert 'id="cost_g-error"' in missing.text and 'id="region-error"' in missing.text
        await operator.get("/console/catalog")
        added = await operator.post(
            "/console/catalog",
            {
                "kind": "tree",
                "name": "Red willow",
                "species": "Salix matsudana",
                "cost_g": "22400",
                "region": "Horqin Sandy Land",
                "partner_id": ngo.id,
                "budget": "500",
                "status": "available",
                "once": operator.once(),
            },
            follow=True,
        )
        assert "Item added to the catalog." in text_of(added)
        assert "Red willow" in added.text and "Steppe Trust" in added.text


class TestUsers:
    async def test_find_export_grant_and_erase(
        self,
        operator: Console,
        api: httpx.AsyncClient,
        app: FastAPI,
    ) -> None:
        [player] = await quick_players(app, 1, prefix="mei")
        await fund(app, player.id, 1_234)
        unknown = await operator.get("/console/users?handle=mei")
        assert "No user has the handle mei" in text_of(unknown) and "@mei000" in unknown.text
        page = await operator.get("/console/users?handle=@Mei000", follow_redirects=True)
        assert str(page.url).endswith(f"/console/users/{player.id}")
        shown = text_of(page)
        assert "@mei000" in shown and "Balance 1,234 g" in shown and "test:fund" in shown

        exported = await operator.post(f"/console/users/{player.id}/export")
        assert exported.status_code == 200
        assert 'filename="canopy-export-mei000.json"' in exported.headers["content-disposition"]
        assert json.loads(exported.content)["profile"]["handle"] == "mei000"

        await operator.get(f"/console/users/{player.id}")
        bad = await operator.post(
            f"/console/users/{player.id}/props", {"type": "nonsense", "count": "2"}
        )
        assert bad.status_code == 422 and 'id="type-error"' in bad.text
        await operator.get(f"/console/users/{player.id}")
        granted = await operator.post(
            f"/console/users/{player.id}/props",
            {"type": "shield", "count": "2", "once": operator.once()},
            follow=True,
        )
        assert "Props granted." in text_of(granted) and "shield: 2" in text_of(granted)
        props = (await api.get("/v1/props", headers=player.headers)).json()["props"]
        assert {"type": "shield", "count": 2, "active_until": None} in props

        wrong = await operator.post(
            f"/console/users/{player.id}/erase", {"confirm_handle": "someone"}
        )
        assert wrong.status_code == 422 and 'id="confirm_handle-error"' in wrong.text
        assert (await api.get("/v1/me", headers=player.headers)).status_code == 200
        erased = await operator.post(
            f"/console/users/{player.id}/erase", {"confirm_handle": "mei000"}, follow=True
        )
        assert "The account is erased" in text_of(erased)
        assert (await api.get("/v1/me", headers=player.headers)).status_code == 401
        actions = [a for a, _ in await audit_actions(app)]
        assert {"user.exported", "props.granted", "user.erased"} <= set(actions)

    async def test_audit_log_page_shows_console_actions(
        self, operator: Console, api: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        ngo = await create_ngo(api, admin_headers)
        await operator.get(f"/console/partners/{ngo.id}/rotate-key")
        await operator.post(f"/console/partners/{ngo.id}/rotate-key", {"once": operator.once()})
        page = text_of(await operator.get("/console/audit"))
        assert "console:Ana partner.key_rotated" in page
        assert "admin-token partner.created" in page
