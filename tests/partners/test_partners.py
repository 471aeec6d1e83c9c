from __future__ import annotations

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import text

from app.partners.dependencies import partner_with_scope
from app.partners.models import Partner
from app.partners.schemas import Scope
from tests.helpers import assert_problem


async def create_partner(
    client: httpx.AsyncClient, admin_headers: dict[str, str], **payload: object
) -> dict[str, object]:
    body = {"name": "Metro Co", "scopes": ["activities"], **payload}
    response = await client.post("/admin/v1/partners", json=body, headers=admin_headers)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


def bearer(key: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class TestAdminAuth:
    async def test_admin_api_needs_the_admin_token(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/admin/v1/partners"), 401, "unauthorized")
        assert_problem(
            await client.get("/admin/v1/partners", headers=bearer("wrong")), 401, "unauthorized"
        )

    async def test_user_and_partner_tokens_are_not_admin(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        from tests.helpers import register

        alice = await register(client, "alice")
        partner = await create_partner(client, admin_headers)
        for headers in (alice.headers, bearer(partner["api_key"])):
            assert_problem(
                await client.get("/admin/v1/partners", headers=headers), 401, "unauthorized"
            )

    async def test_admin_api_is_absent_without_a_configured_token(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        app.state.settings.admin_token = None
        assert_problem(
            await client.get("/admin/v1/partners", headers=admin_headers), 404, "not_found"
        )


class TestPartners:
    async def test_create_shows_key_and_secret_once(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        created = await create_partner(
            client,
            admin_headers,
            scopes=["orders", "activities"],
            webhook_url="https://ngo.example.org/hooks",
        )
        assert str(created["api_key"]).startswith("cnp_")
        assert str(created["webhook_secret"]).startswith("whsec_")
        assert created["scopes"] == ["activities", "orders"]
        listed = (await client.get("/admin/v1/partners", headers=admin_headers)).json()
        assert [p["id"] for p in listed["partners"]] == [created["id"]]
        assert (
            "api_key" not in listed["partners"][0] and "webhook_secret" not in listed["partners"][0]
        )
        assert str(created["api_key"]) not in str(listed)
        # neither secret is stored in the clear
        async with app.state.engine.connect() as conn:
            row = (await conn.execute(text("SELECT * FROM partners"))).mappings().one()
        stored = " ".join(str(v) for v in row.values())
        assert (
            str(created["api_key"]) not in stored and str(created["webhook_secret"]) not in stored
        )

    async def test_webhook_secret_is_recoverable_for_signing(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        from sqlalchemy import select

        from app.partners.service import webhook_secret

        created = await create_partner(client, admin_headers)
        async with app.state.sessionmaker() as session:
            partner = (await session.execute(select(Partner))).scalars().one()
        assert webhook_secret(partner, app.state.keys) == created["webhook_secret"]

    async def test_partner_key_authenticates(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        created = await create_partner(client, admin_headers)
        me = await client.get("/partner/v1/me", headers=bearer(created["api_key"]))
        assert me.status_code == 200
        assert me.json() == {
            "id": created["id"],
            "name": "Metro Co",
            "scopes": ["activities"],
            "kinds": None,
        }

    async def test_bad_partner_keys_are_401(self, client: httpx.AsyncClient) -> None:
        from tests.helpers import register

        alice = await register(client, "alice")
        for headers in ({}, bearer("cnp_nope"), alice.headers):
            assert_problem(await client.get("/partner/v1/me", headers=headers), 401, "unauthorized")

    async def test_rotate_key_retires_the_old_one(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        created = await create_partner(client, admin_headers)
        rotated = await client.post(
            f"/admin/v1/partners/{created['id']}/rotate-key", headers=admin_headers
        )
        assert rotated.status_code == 200
        new_key = rotated.json()["api_key"]
        assert new_key != created["api_key"]
        assert_problem(
            await client.get("/partner/v1/me", headers=bearer(created["api_key"])),
            401,
            "unauthorized",
        )
        assert (await client.get("/partner/v1/me", headers=bearer(new_key))).status_code == 200

    @pytest.mark.parametrize("partner_id", ["00000000-0000-0000-0000-000000000000", "not-an-id"])
    async def test_rotate_unknown_partner_is_404(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], partner_id: str
    ) -> None:
        response = await client.post(
            f"/admin/v1/partners/{partner_id}/rotate-key", headers=admin_headers
        )
        assert_problem(response, 404, "not_found")

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            ({"name": "", "scopes": ["orders"]}, "name"),
            ({"name": "X", "scopes": []}, "scopes"),
            ({"name": "X", "scopes": ["everything"]}, "scopes"),
            (
                {"name": "X", "scopes": ["orders"], "webhook_url": "ftp://ngo.example.org/h"},
                "webhook_url",
            ),
            ({"name": "X", "scopes": ["orders"], "webhook_url": "not a url"}, "webhook_url"),
            (
                {"name": "X", "scopes": ["orders"], "webhook_url": "https://u:p@ngo.example.org/"},
                "webhook_url",
            ),
            (
                {"name": "X", "scopes": ["orders"], "webhook_url": "http://127.0.0.1:9000/h"},
                "webhook_url",
            ),
            (
                {"name": "X", "scopes": ["orders"], "webhook_url": "http://10.1.2.3/h"},
                "webhook_url",
            ),
            (
                {"name": "X", "scopes": ["orders"], "webhook_url": "http://localhost/h"},
                "webhook_url",
            ),
            ({"name": "X", "scopes": ["orders"], "webhook_url": "http://[::1]/h"}, "webhook_url"),
            # IPv6 literals that carry a private IPv4 address: NAT64, 6to4, IPv4-mapped
            *(
                (
                    {"name": "X", "scopes": ["orders"], "webhook_url": f"http://[{a}]/h"},
                    "webhook_url",
                )
                for a in ("64:ff9b::7f00:1", "2002:7f00:1::1", "::ffff:10.0.0.1", "64:ff9b::a00:1")
            ),
        ],
    )
    async def test_invalid_partner_is_422(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        payload: dict[str, object],
        field: str,
    ) -> None:
        response = await client.post("/admin/v1/partners", json=payload, headers=admin_headers)
        body = assert_problem(response, 422, "validation_error")
        assert any(e["loc"][:2] == ["body", field] for e in body["errors"]), body
        assert (await client.get("/admin/v1/partners", headers=admin_headers)).json()[
            "partners"
        ] == []

    async def test_private_webhook_allowed_when_configured(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        app.state.settings.webhook_allow_private = True
        created = await create_partner(
            client, admin_headers, webhook_url="http://127.0.0.1:9000/hooks"
        )
        assert created["webhook_url"] == "http://127.0.0.1:9000/hooks"


class TestScopes:
    @pytest.fixture
    def scoped_app(self, app: FastAPI) -> FastAPI:
        @app.get("/partner/v1/test-orders-only")
        async def orders_only(
            partner: Partner = Depends(partner_with_scope(Scope.orders)),
        ) -> dict[str, str]:
            return {"partner": str(partner.id)}

        return app

    async def test_partner_with_the_scope_passes(
        self, client: httpx.AsyncClient, scoped_app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        ngo = await create_partner(client, admin_headers, name="NGO", scopes=["orders"])
        response = await client.get("/partner/v1/test-orders-only", headers=bearer(ngo["api_key"]))
        assert response.status_code == 200 and response.json() == {"partner": ngo["id"]}

    async def test_partner_without_the_scope_is_403(
        self, client: httpx.AsyncClient, scoped_app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        metro = await create_partner(client, admin_headers, scopes=["activities"])
        response = await client.get(
            "/partner/v1/test-orders-only", headers=bearer(metro["api_key"])
        )
        assert_problem(response, 403, "forbidden")
