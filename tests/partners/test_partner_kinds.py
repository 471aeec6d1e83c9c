"""A partner reports only the kinds it was granted: a metro operator's key cannot mint toll or
hospital energy, and a change of kinds reaches every process within a second."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.config import Settings
from app.core.clock import FrozenClock
from app.main import create_app
from tests.helpers import Player, assert_problem, register
from tests.partners.test_keys import within_a_second


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def report(
    client: httpx.AsyncClient, clock: FrozenClock, user: Player, key: str, eid: str, kind: str
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": eid,
        "kind": kind,
        "occurred_at": (clock.now() - timedelta(minutes=1)).isoformat(),
        "user_id": user.id,
    }
    if kind == "metro":
        event["quantity"] = 5
    response = await client.post("/partner/v1/activities", json=event, headers=bearer(key))
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def metro_partner(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Any:
    response = await client.post(
        "/admin/v1/partners",
        json={"name": "Metro Co", "scopes": ["activities"], "kinds": ["metro"]},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
async def other_process(
    settings: Settings, clock: FrozenClock, app: FastAPI
) -> AsyncIterator[httpx.AsyncClient]:
    """A second API process on the same database, hearing changes by notification only."""
    quiet = settings.model_copy(update={"revocation_poll_seconds": 0})
    second = create_app(quiet, clock=clock, run_worker=False)
    async with LifespanManager(second):
        second.state.rules_registry = app.state.rules_registry
        transport = httpx.ASGITransport(app=second, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


class TestPartnerKinds:
    async def test_a_metro_only_partner_cannot_report_etc_toll(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        partner = await metro_partner(client, admin_headers)
        assert partner["kinds"] == ["metro"]
        toll = await report(client, clock, alice, partner["api_key"], "t1", "etc_toll")
        assert (toll["status"], toll["reason"], toll["energy_g"]) == (
            "rejected",
            "untrusted_source",
            0,
        )
        hospital = await report(client, clock, alice, partner["api_key"], "h1", "hospital_booking")
        assert hospital["status"] == "rejected"
        assert hospital["reason"] == "untrusted_source"
        metro = await report(client, clock, alice, partner["api_key"], "m1", "metro")
        assert metro["status"] == "minted"
        me = await client.get("/v1/me", headers=alice.headers)
        assert me.json()["balance_g"] == 0  # nothing collected; and nothing of the toll minted
        forest = (await client.get("/v1/forest", headers=alice.headers)).json()
        assert [b["kind"] for b in forest["balls"]] == ["metro"]

    async def test_without_kinds_a_partner_reports_every_partner_kind(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        created = await client.post(
            "/admin/v1/partners",
            json={"name": "Super App", "scopes": ["activities"]},
            headers=admin_headers,
        )
        assert created.json()["kinds"] is None
        toll = await report(client, clock, alice, created.json()["api_key"], "t1", "etc_toll")
        assert toll["status"] == "minted"

    async def test_kinds_must_be_kinds_partners_may_report(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        response = await client.post(
            "/admin/v1/partners",
            json={"name": "X", "scopes": ["activities"], "kinds": ["metro", "teleport"]},
            headers=admin_headers,
        )
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["body", "kinds", 1]

    async def test_a_patch_of_kinds_takes_effect_in_every_process_within_a_second(
        self,
        client: httpx.AsyncClient,
        other_process: httpx.AsyncClient,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice")
        partner = await metro_partner(client, admin_headers)
        key = partner["api_key"]
        for n, process in enumerate((client, other_process)):
            refused = await report(process, clock, alice, key, f"a{n}", "etc_toll")
            assert refused["reason"] == "untrusted_source"
        patched = await client.patch(
            f"/admin/v1/partners/{partner['id']}",
            json={"kinds": ["metro", "etc_toll"], "name": "Metro & Tolls"},
            headers=admin_headers,
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["kinds"] == ["etc_toll", "metro"]
        assert patched.json()["name"] == "Metro & Tolls"
        # the process that made the change knows at once
        assert (await report(client, clock, alice, key, "b", "etc_toll"))["status"] == "minted"
        n = iter(range(100))

        async def accepted() -> bool:
            body = await report(other_process, clock, alice, key, f"c{next(n)}", "etc_toll")
            return bool(body["status"] != "rejected")

        assert await within_a_second(accepted)
        # and taking a kind away works the same way
        await client.patch(
            f"/admin/v1/partners/{partner['id']}", json={"kinds": ["metro"]}, headers=admin_headers
        )
        assert (await report(client, clock, alice, key, "d", "etc_toll"))["status"] == "rejected"
        audit = (await client.get("/admin/v1/audit", headers=admin_headers)).json()["entries"]
        updates = [e for e in audit if e["action"] == "partner.updated"]
        assert [e["summary"] for e in updates] == [
            "kinds: metro",
            "name 'Metro & Tolls'; kinds: etc_toll, metro",
        ]

    async def test_patch_of_an_unknown_partner_is_404(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        response = await client.patch(
            "/admin/v1/partners/00000000-0000-0000-0000-000000000000",
            json={"kinds": ["metro"]},
            headers=admin_headers,
        )
        assert_problem(response, 404, "not_found")
