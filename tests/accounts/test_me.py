from __future__ import annotations

import httpx

from tests.helpers import assert_problem, register


class TestMe:
    async def test_me_shows_the_contract_fields(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice", display_name="Alice", region="wuhan")
        me = (await client.get("/v1/me", headers=alice.headers)).json()
        assert set(me) >= {
            "id",
            "handle",
            "display_name",
            "timezone",
            "region",
            "balance_g",
            "collected_total_g",
            "co2e_avoided_g",
            "created_at",
        }
        assert me["id"] == alice.id and me["region"] == "wuhan"
        assert "password_hash" not in me

    async def test_patch_changes_only_what_is_sent(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice", display_name="Alice", region="wuhan")
        response = await client.patch(
            "/v1/me", json={"timezone": "Europe/Berlin"}, headers=alice.headers
        )
        assert response.status_code == 200
        me = response.json()
        assert me["timezone"] == "Europe/Berlin"
        assert me["display_name"] == "Alice" and me["region"] == "wuhan"
        assert (await client.get("/v1/me", headers=alice.headers)).json() == me

    async def test_null_clears_display_name_and_region(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice", display_name="Alice", region="wuhan")
        me = (
            await client.patch(
                "/v1/me", json={"display_name": None, "region": None}, headers=alice.headers
            )
        ).json()
        assert me["display_name"] is None and me["region"] is None

    async def test_invalid_patch_changes_nothing(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice", display_name="Alice")
        for body in (
            {"timezone": "Nowhere/Land", "display_name": "Eve"},
            {"timezone": None},
            {"handle": "eve"},
            {"display_name": ""},
        ):
            response = await client.patch("/v1/me", json=body, headers=alice.headers)
            assert_problem(response, 422, "validation_error")
        me = (await client.get("/v1/me", headers=alice.headers)).json()
        assert me["display_name"] == "Alice" and me["timezone"] == "Asia/Shanghai"

    async def test_users_see_only_themselves(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        bob = await register(client, "bob")
        assert (await client.get("/v1/me", headers=bob.headers)).json()["id"] == bob.id != alice.id
