"""Campaigns: donating energy to a shared goal, progress, the leaderboard, and
``campaign.completed`` sent once however many donors race past the goal."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from app.core.clock import FrozenClock
from app.rules.schema import CampaignsRules
from tests.energy.conftest import ledger_ok
from tests.helpers import Player, assert_problem, register
from tests.planting.conftest import fund, quick_players, scalar
from tests.rewards.conftest import create_partner, set_rules


async def create_campaign(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: FrozenClock, **overrides: Any
) -> dict[str, Any]:
    body = {
        "name": "Zero-carbon Games",
        "goal_g": 1_000,
        "starts_at": (clock.now() - timedelta(hours=1)).isoformat(),
        "ends_at": (clock.now() + timedelta(days=7)).isoformat(),
        **overrides,
    }
    response = await client.post("/admin/v1/campaigns", json=body, headers=admin_headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def donate(
    client: httpx.AsyncClient, player: Player, campaign_id: str, amount_g: int, **headers: str
) -> httpx.Response:
    return await client.post(
        f"/v1/campaigns/{campaign_id}/donate",
        json={"amount_g": amount_g},
        headers=player.headers | headers,
    )


class TestDonating:
    async def test_a_donation_burns_energy_and_moves_the_campaign(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        admin_headers: dict[str, str],
        clock: FrozenClock,
    ) -> None:
        campaign = await create_campaign(client, admin_headers, clock)
        assert (campaign["status"], campaign["raised_g"], campaign["donors"]) == ("active", 0, 0)
        alice, bob = (
            await register(client, "alice", display_name="Alice"),
            await register(client, "bob"),
        )
        await fund(app, alice.id, 500)
        await fund(app, bob.id, 500)
        first = await donate(client, alice, campaign["id"], 200, **{"Idempotency-Key": "d1"})
        assert first.status_code == 201, first.text
        body = first.json()
        assert (body["amount_g"], body["balance_g"]) == (200, 300)
        assert (body["campaign"]["raised_g"], body["campaign"]["donors"]) == (200, 1)
        replay = await donate(client, alice, campaign["id"], 200, **{"Idempotency-Key": "d1"})
        assert replay.json() == body
        assert (await donate(client, alice, campaign["id"], 50)).status_code == 201
        assert (await donate(client, bob, campaign["id"], 240)).status_code == 201
        listed = (await client.get("/v1/campaigns", headers=bob.headers)).json()["campaigns"]
        assert [(c["raised_g"], c["donors"], c["status"]) for c in listed] == [(490, 2, "active")]
        board = (
            await client.get(f"/v1/campaigns/{campaign['id']}/leaderboard", headers=bob.headers)
        ).json()
        assert [(e["rank"], e["display_name"], e["donated_g"]) for e in board["entries"]] == [
            (1, "Alice", 250),
            (2, "bob", 240),
        ]
        assert board["me"] == {
            "rank": 2,
            "user_id": bob.id,
            "display_name": "bob",
            "donated_g": 240,
        }
        ref = f"donation:{body['donation_id']}"
        burned = await scalar(
            app,
            "SELECT sum(amount_g) FROM ledger_entries WHERE ref = :ref AND account = 'user'",
            ref=ref,
        )
        assert burned == -200
        stats = (await client.get("/v1/stats")).json()["campaigns"]
        assert stats == {"campaigns": 1, "completed": 0, "donated_g": 490, "donors": 2}
        await ledger_ok(client, admin_headers)

    async def test_refusals_change_nothing(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        admin_headers: dict[str, str],
        clock: FrozenClock,
    ) -> None:
        active = await create_campaign(client, admin_headers, clock)
        upcoming = await create_campaign(
            client,
            admin_headers,
            clock,
            name="Marathon",
            starts_at=(clock.now() + timedelta(days=1)).isoformat(),
        )
        alice = await register(client, "alice")
        await fund(app, alice.id, 100)
        assert_problem(await donate(client, alice, active["id"], 101), 409, "insufficient_energy")
        assert_problem(await donate(client, alice, upcoming["id"], 10), 409, "not_active")
        assert_problem(await donate(client, alice, str(uuid.uuid4()), 10), 404, "not_found")
        for bad in (0, -5, "ten"):
            response = await client.post(
                f"/v1/campaigns/{active['id']}/donate",
                json={"amount_g": bad},
                headers=alice.headers,
            )
            assert_problem(response, 422, "validation_error")
        set_rules(app, campaigns=CampaignsRules(min_donation_g=20, daily_limit_g=50))
        assert_problem(await donate(client, alice, active["id"], 10), 422, "validation_error")
        assert (await donate(client, alice, active["id"], 30)).status_code == 201
        assert_problem(await donate(client, alice, active["id"], 30), 409, "limit_reached")
        set_rules(app, campaigns=CampaignsRules(enabled=False))
        assert_problem(await donate(client, alice, active["id"], 20), 409, "not_active")
        clock.advance(days=8)
        set_rules(app, campaigns=CampaignsRules())
        assert_problem(await donate(client, alice, active["id"], 20), 409, "not_active")
        ended = (await client.get(f"/v1/campaigns/{active['id']}", headers=alice.headers)).json()
        assert (ended["status"], ended["raised_g"]) == ("ended", 30)
        assert await scalar(app, "SELECT balance_g FROM users WHERE id = :u", u=alice.id) == 70

    async def test_operator_input_is_checked(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], clock: FrozenClock
    ) -> None:
        now = clock.now()
        for bad in (
            {"goal_g": 0},
            {"ends_at": (now - timedelta(days=1)).isoformat()},
            {"starts_at": "2026-12-01T00:00:00"},  # no offset
            {"partner_id": str(uuid.uuid4())},
        ):
            body = {
                "name": "X",
                "goal_g": 10,
                "starts_at": now.isoformat(),
                "ends_at": (now + timedelta(days=1)).isoformat(),
                **bad,
            }
            response = await client.post("/admin/v1/campaigns", json=body, headers=admin_headers)
            assert_problem(response, 422, "validation_error")
        assert (await client.post("/admin/v1/campaigns", json={})).status_code == 401


class TestCompletion:
    async def test_50_donors_racing_past_the_goal_send_completed_once(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        admin_headers: dict[str, str],
        clock: FrozenClock,
    ) -> None:
        sponsor = await create_partner(
            client, admin_headers, name="Games Committee", webhook_url="https://games.example.com/h"
        )
        campaign = await create_campaign(
            client, admin_headers, clock, goal_g=1_000, partner_id=sponsor.id
        )
        donors = await quick_players(app, 50)
        for p in donors:
            await fund(app, p.id, 100)
        responses = await asyncio.gather(*(donate(client, p, campaign["id"], 100) for p in donors))
        assert [r.status_code for r in responses] == [201] * 50
        after = (
            await client.get(f"/v1/campaigns/{campaign['id']}", headers=donors[0].headers)
        ).json()
        assert (after["raised_g"], after["donors"], after["status"]) == (5_000, 50, "completed")
        sent = await scalar(
            app, "SELECT count(*) FROM webhook_deliveries WHERE type = 'campaign.completed'"
        )
        assert sent == 1
        event = json.loads(await scalar(app, "SELECT body FROM webhook_deliveries"))
        assert event["data"]["campaign"]["id"] == campaign["id"]
        assert event["data"]["campaign"]["raised_g"] >= 1_000
        # the donation that crossed the goal is the one whose total reached it
        crossing = [r.json() for r in responses if r.json()["campaign"]["raised_g"] == 1_000]
        assert len(crossing) == 1
        assert crossing[0]["campaign"]["completed_at"] is not None
        board = (
            await client.get(
                f"/v1/campaigns/{campaign['id']}/leaderboard?limit=100", headers=donors[0].headers
            )
        ).json()
        assert len(board["entries"]) == 50 and board["me"]["donated_g"] == 100
        await ledger_ok(client, admin_headers)
