"""The catalog: operators add and change items; users see them with what is left."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.helpers import assert_problem, register
from tests.planting.conftest import SAXAUL, add_item, create_ngo, fund, plant


class TestAdminCatalog:
    async def test_create_fills_defaults_and_shows_the_budget(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, season="2026 spring")
        assert item["unit"] == "tree" and item["status"] == "available"
        assert item["budget"] == 100 and item["taken"] == 0 and item["remaining"] == 100
        assert item["partner"] == {"id": ngo.id, "name": "Desert Greening NGO"}
        area = await add_item(
            client, admin_headers, ngo.id, kind="conservation", name="Wetland", cost_g=2390
        )
        assert area["unit"] == "m2" and area["species"] == "Haloxylon ammodendron"

    async def test_bad_items_are_422(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        for change in (
            {"kind": "shrub"},
            {"cost_g": 0},
            {"budget": -1},
            {"status": "maybe"},
            {"name": ""},
            {"unit": "Square Metres"},
            {"partner_id": "nope"},
            {"surprise": 1},
            {"name": "Sax\u0000aul"},
            {"region": "a\x1bb"},
        ):
            body = {**SAXAUL, "partner_id": ngo.id, **change}
            response = await client.post("/admin/v1/catalog", json=body, headers=admin_headers)
            assert_problem(response, 422, "validation_error")

    async def test_the_partner_must_exist_and_take_orders(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        transit = await create_ngo(client, admin_headers, "Metro Co", scopes=["activities"])
        ghost = "00000000-0000-0000-0000-000000000000"
        for partner_id in (ghost, transit.id):
            body = {**SAXAUL, "partner_id": partner_id}
            problem = assert_problem(
                await client.post("/admin/v1/catalog", json=body, headers=admin_headers),
                422,
                "validation_error",
            )
            assert problem["errors"][0]["loc"] == ["body", "partner_id"]
        # a virtual item is never ordered from anyone: any partner may stand behind it
        await add_item(client, admin_headers, transit.id, kind="virtual", name="Badge")

    async def test_catalog_admin_needs_the_admin_token(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        for headers in ({}, alice.headers):
            assert_problem(
                await client.post("/admin/v1/catalog", json=SAXAUL, headers=headers),
                401,
                "unauthorized",
            )

    async def test_patch_changes_only_what_is_given(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id)
        response = await client.patch(
            f"/admin/v1/catalog/{item['id']}",
            json={"cost_g": 18_000, "status": "closed", "budget": 50},
            headers=admin_headers,
        )
        assert response.status_code == 200, response.text
        patched = response.json()
        assert (patched["cost_g"], patched["status"], patched["budget"]) == (18_000, "closed", 50)
        assert patched["name"] == "Saxaul" and patched["remaining"] == 50

    async def test_budget_cannot_go_below_what_was_redeemed(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id, cost_g=10)
        alice = await register(client, "alice")
        await fund(app, alice.id, 100)
        await plant(client, alice, item["id"], quantity=3)
        url = f"/admin/v1/catalog/{item['id']}"
        problem = assert_problem(
            await client.patch(url, json={"budget": 2}, headers=admin_headers),
            409,
            "budget_below_taken",
        )
        assert problem["taken"] == 3
        exact = await client.patch(url, json={"budget": 3}, headers=admin_headers)
        assert exact.status_code == 200 and exact.json()["status"] == "sold_out"

    async def test_patch_of_unknown_or_malformed_ids_is_404(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        for item_id in ("00000000-0000-0000-0000-000000000000", "nope"):
            assert_problem(
                await client.patch(
                    f"/admin/v1/catalog/{item_id}", json={"budget": 1}, headers=admin_headers
                ),
                404,
                "not_found",
            )

    async def test_patch_cannot_null_a_required_field(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        item = await add_item(client, admin_headers, ngo.id)
        for body in ({"name": None}, {"kind": "virtual"}, {"budget": "lots"}):
            assert_problem(
                await client.patch(
                    f"/admin/v1/catalog/{item['id']}", json=body, headers=admin_headers
                ),
                422,
                "validation_error",
            )


class TestCatalog:
    async def test_users_see_items_with_partner_and_remaining(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        await add_item(client, admin_headers, ngo.id, kind="virtual", name="Badge", cost_g=500)
        await add_item(client, admin_headers, ngo.id, status="coming", name="Red willow")
        await add_item(client, admin_headers, ngo.id, budget=0, name="Mongolian pine")
        alice = await register(client, "alice")
        response = await client.get("/v1/catalog", headers=alice.headers)
        assert response.status_code == 200
        items = {i["name"]: i for i in response.json()["items"]}
        assert set(items) == {"Badge", "Red willow", "Mongolian pine"}
        assert items["Mongolian pine"]["status"] == "sold_out"
        assert items["Mongolian pine"]["remaining"] == 0
        assert items["Red willow"]["status"] == "coming"
        assert items["Badge"]["partner"]["name"] == "Desert Greening NGO"
        assert {"budget", "taken"}.isdisjoint(items["Badge"])  # operators' business

    async def test_catalog_needs_a_user(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/catalog"), 401, "unauthorized")
