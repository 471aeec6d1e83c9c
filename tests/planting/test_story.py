"""The whole story, as a new user, a partner and an auditor live it, and the public numbers
that tell it; plus ``canopy demo``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks import Webhook

from app.config import Settings
from app.core.clock import FrozenClock
from app.planting import demo, webhooks
from tests.conftest import TestServers, _clean
from tests.energy.conftest import event, ledger_ok
from tests.helpers import assert_problem, register
from tests.planting.conftest import NGO, Receiver, bearer, fund


@pytest.fixture
def clock() -> FrozenClock:
    # a day ago: energy collected "this morning" ripened overnight, and the webhook timestamps
    # end up close to the real time, which standardwebhooks checks (±5 minutes)
    return FrozenClock(datetime.now(UTC).replace(microsecond=0) - timedelta(hours=24))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allow_private": True})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()


async def seed_demo(app: FastAPI, webhook_url: str | None = None) -> demo.DemoSeed:
    async with app.state.sessionmaker() as session, session.begin():
        return await demo.seed(
            session, app.state.keys, app.state.settings, app.state.clock.now(), webhook_url
        )


class TestStory:
    async def test_a_saxaul_from_collected_energy_to_verified_in_the_ground(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
        receiver: Receiver,
    ) -> None:
        seeded = await seed_demo(app, receiver.url)
        assert seeded.api_key is not None and seeded.webhook_secret is not None
        ngo = NGO(str(seeded.partner_id), seeded.api_key, seeded.webhook_secret)

        # a new user rides the metro, and the energy ripens overnight
        alice = await register(client, "alice", display_name="Alice")
        await fund(app, alice.id, 17_900 - 52)  # earlier mornings' collected energy
        await client.post("/v1/activities", json=event(clock, "ride-1"), headers=alice.headers)
        clock.advance(hours=24)
        collected = await client.post("/v1/forest/collect", headers=alice.headers)
        assert collected.json()["balance_g"] == 17_900

        catalog = (await client.get("/v1/catalog", headers=alice.headers)).json()["items"]
        saxaul = next(i for i in catalog if i["name"] == "Saxaul")
        assert saxaul["cost_g"] == 17_900 and saxaul["status"] == "available"
        planted = await client.post(
            "/v1/plantings",
            json={"item_id": saxaul["id"]},
            headers=alice.headers | {"Idempotency-Key": "first-tree"},
        )
        assert planted.status_code == 201 and planted.json()["balance_g"] == 0
        planting = planted.json()

        # the order reaches the partner's webhook, correctly signed
        [order] = (await client.post("/admin/v1/orders/batch", headers=admin_headers)).json()[
            "orders"
        ]
        await webhooks.deliver_due(
            app.state.engine, settings=app.state.settings, keys=app.state.keys, now=clock.now()
        )
        [created] = receiver.requests
        sent = Webhook(ngo.webhook_secret).verify(created.body, created.headers)
        assert sent["type"] == "order.created" and sent["data"]["id"] == order["id"]
        assert sent["data"]["certificates"][0]["number"] == planting["certificate_number"]

        # the partner acknowledges, plants, reports where
        open_orders = (
            await client.get("/partner/v1/orders", params={"status": "open"}, headers=ngo.headers)
        ).json()["orders"]
        assert [o["id"] for o in open_orders] == [order["id"]]
        clock.advance(minutes=1)
        await client.post(f"/partner/v1/orders/{order['id']}/acknowledge", headers=ngo.headers)
        clock.advance(minutes=1)
        where = {"lat": 38.8412, "lon": 105.6712}
        reported = await client.post(
            f"/partner/v1/orders/{order['id']}/reports",
            json={
                "planted_quantity": 1,
                "planted_on": clock.now().date().isoformat(),
                "location": where,
                "evidence_urls": ["https://ngo.example.org/photos/1.jpg"],
            },
            headers=ngo.headers | {"Idempotency-Key": "report-1"},
        )
        assert reported.status_code == 201 and reported.json()["order"]["status"] == "planted"

        # an auditor verifies
        clock.advance(minutes=1)
        verified = await client.post(
            f"/admin/v1/orders/{order['id']}/verify",
            json={"auditor": "Green Audit Ltd"},
            headers=admin_headers,
        )
        assert verified.json()["status"] == "verified"
        await webhooks.deliver_due(
            app.state.engine, settings=app.state.settings, keys=app.state.keys, now=clock.now()
        )
        assert [
            Webhook(ngo.webhook_secret).verify(r.body, r.headers)["type"] for r in receiver.requests
        ] == [
            "order.created",
            "order.verified",
        ]

        # the planting, certificate, feed and public stats tell the same story
        mine = (await client.get(f"/v1/plantings/{planting['id']}", headers=alice.headers)).json()
        assert mine["status"] == "verified" and mine["location"] == where
        assert [h["status"] for h in mine["history"]] == [
            "reserved",
            "ordered",
            "acknowledged",
            "planted",
            "verified",
        ]
        svg = (
            await client.get(f"/v1/plantings/{planting['id']}/certificate", headers=alice.headers)
        ).text
        assert "Alice" in svg and "38.8412° N, 105.6712° E" in svg and "verified" in svg
        items = (await client.get("/v1/feed", headers=alice.headers)).json()["items"]
        updates = [i for i in items if i["type"] == "planting_update"]
        assert [i["ref"] for i in updates] == [f"planting:{planting['id']}"] * 2
        assert [i["data"]["status"] for i in updates] == ["verified", "planted"]
        stats = await client.get("/v1/stats")  # public: no credentials
        assert stats.status_code == 200
        assert stats.headers["cache-control"] == "public, max-age=60"
        body = stats.json()
        assert body["users"] == 1 and body["energy_minted_g"] == 17_900
        assert body["co2e_avoided_g"] == 52  # what was minted from real activity
        assert body["plantings"]["verified"] == 1 and body["plantings"]["reserved"] == 0
        assert body["trees_verified"] == 1 and body["energy_burned_g"] == 17_900
        [partner] = body["by_partner"]
        assert partner["name"] == demo.PARTNER_NAME
        assert (partner["trees_planted"], partner["trees_verified"], partner["orders"]) == (1, 1, 1)
        await ledger_ok(client, admin_headers)
        forest = (await client.get("/v1/forest", headers=alice.headers)).json()
        assert forest["trees"] == {"count": 1}


class TestStats:
    async def test_stats_are_public_and_start_at_zero(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/stats")
        assert response.status_code == 200
        assert response.json() == {
            "users": 0,
            "energy_minted_g": 0,
            "co2e_avoided_g": 0,
            "energy_burned_g": 0,
            "plantings": {
                "reserved": 0,
                "ordered": 0,
                "acknowledged": 0,
                "planted": 0,
                "verified": 0,
                "completed": 0,
                "cancelled": 0,
            },
            "trees_verified": 0,
            "by_partner": [],
            "rewards": {
                "rewards": 0,
                "redemptions_issued": 0,
                "redemptions_pending": 0,
                "redemptions_failed": 0,
                "energy_spent_g": 0,
            },
            "campaigns": {"campaigns": 0, "completed": 0, "donated_g": 0, "donors": 0},
        }


class TestDemo:
    async def test_demo_seeds_once_and_shows_the_key_once(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
    ) -> None:
        first = await seed_demo(app)
        assert first.api_key and first.api_key.startswith("cnp_")
        assert first.created == [i["name"] for i in demo.CATALOG] and first.existing == []
        again = await seed_demo(app)
        assert again.partner_id == first.partner_id and again.api_key is None
        assert again.created == [] and len(again.existing) == len(demo.CATALOG)
        alice = await register(client, "alice")
        items = (await client.get("/v1/catalog", headers=alice.headers)).json()["items"]
        costs = {i["name"]: (i["kind"], i["cost_g"]) for i in items}
        assert costs["Saxaul"] == ("tree", 17_900)
        assert costs["Red willow"] == ("tree", 22_400)
        assert costs["Mongolian pine"] == ("tree", 146_210)
        assert {k for k, _ in costs.values()} == {"tree", "conservation", "virtual"}
        me = await client.get("/partner/v1/orders", headers=bearer(first.api_key))
        assert me.status_code == 200
        assert_problem(
            await client.get("/partner/v1/orders", headers=bearer("cnp_" + uuid.uuid4().hex)),
            401,
            "unauthorized",
        )

    def test_canopy_demo_command(
        self, test_servers: TestServers, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from typer.testing import CliRunner

        from app.cli import app as cli
        from app.config import get_settings

        for name, value in (
            ("CANOPY_DATABASE_URL", test_servers.database_url),
            ("CANOPY_REDIS_URL", test_servers.redis_url),
            ("CANOPY_JWT_SECRET", "demo-test-secret-that-is-long-enough-0123456789"),
        ):
            monkeypatch.setenv(name, value)
        asyncio.run(_clean(test_servers))  # no demo partner from an earlier test
        get_settings.cache_clear()
        try:
            done = CliRunner().invoke(cli, ["demo"])
        finally:
            get_settings.cache_clear()
        assert done.exit_code == 0, done.output
        assert "API key (shown once):" in done.output and "cnp_" in done.output
        assert "Saxaul" in done.output
