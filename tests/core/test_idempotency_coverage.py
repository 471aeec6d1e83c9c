"""Every mutating POST takes an Idempotency-Key (listed from the app itself), and the routes that
took one last replay instead of acting twice."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.helpers import assert_problem, register
from tests.planting.conftest import SAXAUL, create_ngo
from tests.social.test_props import grant, inventory

# POSTs that need no key, and why (anything else must declare the Idempotency-Key header)
EXEMPT = {
    "/v1/auth/token": "signing in again is harmless and must give fresh tokens",
    "/v1/auth/refresh": "a refresh token works once by design; a replay must fail",
    "/v1/auth/logout": "ending a login twice is the same as once",
    "/v1/me/password": "a repeat with the old password fails; the outcome is the same",
    "/v1/blocks/{user_id}": "blocking is a state: a repeat changes nothing",
    "/admin/v1/rules": "content-addressed: the same text publishes the same version",
    "/admin/v1/rules/validate": "reads only",
    "/admin/v1/orders/batch": "cuts what is reserved now; a repeat finds nothing left",
    "/admin/v1/webhook-deliveries/{delivery_id}/retry": "only a failed delivery is retried",
}


def _keyless_posts(app: FastAPI) -> set[str]:
    missing = set()
    for path, operations in app.openapi()["paths"].items():
        post = operations.get("post")
        if post is None:
            continue
        headers = {p["name"].lower() for p in post.get("parameters", []) if p["in"] == "header"}
        if "idempotency-key" not in headers:
            missing.add(path)
    return missing


class TestCoverage:
    def test_every_mutating_post_takes_a_key(self, app: FastAPI) -> None:
        missing = _keyless_posts(app) - EXEMPT.keys()
        assert not missing, f"POST routes without Idempotency-Key: {sorted(missing)}"

    def test_the_exemptions_are_still_real_routes(self, app: FastAPI) -> None:
        assert EXEMPT.keys() <= set(app.openapi()["paths"])


class TestReplays:
    async def test_a_partner_is_created_once_and_a_key_rotated_once(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        headers = {**admin_headers, "Idempotency-Key": "ngo-1"}
        body = {"name": "Desert NGO", "scopes": ["orders"]}
        first = await client.post("/admin/v1/partners", json=body, headers=headers)
        again = await client.post("/admin/v1/partners", json=body, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        listed = (await client.get("/admin/v1/partners", headers=admin_headers)).json()
        assert len(listed["partners"]) == 1
        rotate = {**admin_headers, "Idempotency-Key": "rotate-1"}
        path = f"/admin/v1/partners/{first.json()['id']}/rotate-key"
        one = await client.post(path, headers=rotate)
        two = await client.post(path, headers=rotate)
        assert one.json()["api_key"] == two.json()["api_key"]
        me = await client.get(
            "/partner/v1/me", headers={"Authorization": f"Bearer {one.json()['api_key']}"}
        )
        assert me.status_code == 200  # the key answered twice is the one in force

    async def test_granting_with_one_key_grants_once(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        headers = {**admin_headers, "Idempotency-Key": "grant-1"}
        body = {"user_id": alice.id, "type": "shield", "count": 2}
        for _ in range(2):
            response = await client.post("/admin/v1/props/grant", json=body, headers=headers)
            assert response.status_code == 200
        assert (await inventory(client, alice))["shield"]["count"] == 2

    async def test_using_a_card_twice_with_one_key_spends_one(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        await grant(client, admin_headers, alice, "shield", 2)
        headers = {**alice.headers, "Idempotency-Key": "use-1"}
        first = await client.post("/v1/props/shield/use", headers=headers)
        again = await client.post("/v1/props/shield/use", headers=headers)
        assert first.status_code == again.status_code == 200
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert (await inventory(client, alice))["shield"]["count"] == 1

    @pytest.mark.parametrize("verb", ["accept", "decline"])
    async def test_friend_requests_replay(self, client: httpx.AsyncClient, verb: str) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        ask = {**alice.headers, "Idempotency-Key": "ask-1"}
        sent = await client.post("/v1/friend-requests", json={"handle": "bob"}, headers=ask)
        resent = await client.post("/v1/friend-requests", json={"handle": "bob"}, headers=ask)
        assert sent.status_code == resent.status_code == 201
        assert resent.json() == sent.json() and resent.json()["from"]["handle"] == "alice"
        answer = {**bob.headers, "Idempotency-Key": "answer-1"}
        path = f"/v1/friend-requests/{sent.json()['id']}/{verb}"
        first = await client.post(path, headers=answer)
        again = await client.post(path, headers=answer)
        assert first.status_code == again.status_code == 200
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"

    async def test_a_catalog_item_is_created_once(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        ngo = await create_ngo(client, admin_headers)
        headers = {**admin_headers, "Idempotency-Key": "item-1"}
        body = {**SAXAUL, "partner_id": ngo.id}
        first = await client.post("/admin/v1/catalog", json=body, headers=headers)
        again = await client.post("/admin/v1/catalog", json=body, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.json()["id"] == first.json()["id"]
        viewer = await register(client, "viewer")
        items = (await client.get("/v1/catalog", headers=viewer.headers)).json()["items"]
        assert len(items) == 1
        other = await client.post(
            "/admin/v1/catalog", json={**body, "name": "Red willow"}, headers=headers
        )
        assert_problem(other, 422, "idempotency_key_reused")
