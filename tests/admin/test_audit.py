"""The operators' audit log: each admin action recorded, newest first, never a secret."""

from __future__ import annotations

import httpx

from tests.helpers import assert_problem

TOML = {"Content-Type": "application/toml"}


async def _partner(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, str]:
    response = await client.post(
        "/admin/v1/partners",
        json={"name": "Metro Line 9", "scopes": ["activities"]},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


class TestAuditLog:
    async def test_actions_are_recorded_newest_first_without_secrets(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        created = await _partner(client, admin_headers)
        rotated = await client.post(
            f"/admin/v1/partners/{created['id']}/rotate-key", headers=admin_headers
        )
        assert rotated.status_code == 200
        rules = (await client.get("/admin/v1/rules/1", headers=admin_headers)).text
        published = await client.post(
            "/admin/v1/rules",
            content=rules.replace("ant-forest-classic", "ant-forest-audited"),
            headers={**admin_headers, **TOML},
        )
        assert published.status_code == 201, published.text

        page = (await client.get("/admin/v1/audit", headers=admin_headers)).json()
        actions = [(e["action"], e["target"]) for e in page["entries"]]
        assert actions == [
            ("rules.published", f"rules:{published.json()['version']}"),
            ("partner.key_rotated", f"partner:{created['id']}"),
            ("partner.created", f"partner:{created['id']}"),
        ]
        assert all(e["actor"] == "admin-token" for e in page["entries"])
        raw = str(page)
        for secret in (created["api_key"], created["webhook_secret"], rotated.json()["api_key"]):
            assert secret not in raw

    async def test_pages_with_a_cursor(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        for _ in range(3):
            await _partner(client, admin_headers)
        first = (await client.get("/admin/v1/audit?limit=2", headers=admin_headers)).json()
        assert len(first["entries"]) == 2 and first["next_cursor"]
        second = (
            await client.get(
                f"/admin/v1/audit?limit=2&cursor={first['next_cursor']}", headers=admin_headers
            )
        ).json()
        assert len(second["entries"]) == 1 and second["next_cursor"] is None
        ids = [e["id"] for e in first["entries"] + second["entries"]]
        assert ids == sorted(ids, reverse=True)

    async def test_a_failed_action_leaves_no_entry(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        missing = "00000000-0000-0000-0000-000000000000"
        response = await client.post(
            f"/admin/v1/partners/{missing}/rotate-key", headers=admin_headers
        )
        assert response.status_code == 404
        page = (await client.get("/admin/v1/audit", headers=admin_headers)).json()
        assert page["entries"] == []

    async def test_needs_the_admin_token(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/admin/v1/audit"), 401, "unauthorized")
