"""Rewards: the catalog, redeeming (codes handed out once, budgets never oversold), limits,
partner fulfilment with refunds to the gram, timeouts, operators' code pools, stats, privacy."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from app.core.clock import FrozenClock
from app.rules.schema import RewardsRules
from tests.energy.conftest import ledger_ok
from tests.helpers import Player, assert_problem, register
from tests.planting.conftest import fund, quick_players, scalar
from tests.rewards.conftest import (
    add_codes,
    add_reward,
    create_partner,
    run_reward_jobs,
    set_rules,
)


async def redeem(
    client: httpx.AsyncClient, player: Player, reward_id: str, **headers: str
) -> httpx.Response:
    return await client.post(f"/v1/rewards/{reward_id}/redeem", headers=player.headers | headers)


async def redeemed(client: httpx.AsyncClient, player: Player, reward_id: str) -> dict[str, Any]:
    response = await redeem(client, player, reward_id)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def balance(app: FastAPI, player: Player) -> int:
    return int(await scalar(app, "SELECT balance_g FROM users WHERE id = :u", u=player.id))


class TestCatalog:
    async def test_users_see_live_rewards_with_what_is_left(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        clock: FrozenClock,
    ) -> None:
        metro = await create_partner(client, admin_headers)
        pass_ = await add_reward(client, admin_headers, metro.id)
        await add_reward(client, admin_headers, metro.id, name="Closed", status="closed")
        await add_reward(
            client,
            admin_headers,
            metro.id,
            name="Expired",
            valid_until=(clock.now() - timedelta(hours=1)).isoformat(),
        )
        added = await add_codes(client, admin_headers, pass_["id"], ["A1", "A2", "A2", " A3 "])
        assert added == {"added": 3, "codes_free": 3}
        again = await add_codes(client, admin_headers, pass_["id"], ["A3", "A4"])
        assert again == {"added": 1, "codes_free": 4}
        alice = await register(client, "alice")
        listed = (await client.get("/v1/rewards", headers=alice.headers)).json()["rewards"]
        assert [r["name"] for r in listed] == ["Metro day pass"]
        shown = listed[0]
        assert shown["remaining"] == 4  # the budget is 10, the pool holds 4 codes
        assert {k: shown[k] for k in ("kind", "cost_g", "partner_id", "per_user_limit")} == {
            "kind": "transit_ride",
            "cost_g": 500,
            "partner_id": metro.id,
            "per_user_limit": None,
        }
        assert "valid_until" in shown
        assert (await client.get("/v1/rewards")).status_code == 401

    async def test_operator_input_is_checked(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        metro = await create_partner(client, admin_headers)
        partner_reward = await add_reward(client, admin_headers, metro.id, fulfilment="partner")
        assert_problem(
            await client.post(
                f"/admin/v1/rewards/{partner_reward['id']}/codes",
                json={"codes": ["X"]},
                headers=admin_headers,
            ),
            409,
            "fulfilment_mismatch",
        )
        for bad in (
            {"cost_g": 0},
            {"kind": "jewels"},
            {"partner_id": str(uuid.uuid4())},
            {"valid_from": "2026-12-01T00:00:00Z", "valid_until": "2026-11-01T00:00:00Z"},
            {"per_user_limit": 0},
            {"name": "\u0000"},
        ):
            body = {
                "name": "Pass",
                "kind": "voucher",
                "cost_g": 10,
                "budget": 1,
                "partner_id": metro.id,
                "fulfilment": "codes",
                **bad,
            }
            response = await client.post("/admin/v1/rewards", json=body, headers=admin_headers)
            assert_problem(response, 422, "validation_error")
        assert_problem(
            await client.post(
                f"/admin/v1/rewards/{uuid.uuid4()}/codes",
                json={"codes": ["X"]},
                headers=admin_headers,
            ),
            404,
            "not_found",
        )
        audit = (await client.get("/admin/v1/audit", headers=admin_headers)).json()["entries"]
        assert "reward.create" in {e["action"] for e in audit}


class TestRedeemFromCodes:
    async def test_a_code_is_issued_and_the_energy_burned(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        metro = await create_partner(client, admin_headers)
        reward = await add_reward(client, admin_headers, metro.id)
        await add_codes(client, admin_headers, reward["id"], ["CODE-1", "CODE-2"])
        alice = await register(client, "alice")
        await fund(app, alice.id, 1_200)
        body = await redeemed(client, alice, reward["id"])
        assert (body["status"], body["code"], body["cost_g"]) == ("issued", "CODE-1", 500)
        assert body["balance_g"] == 700 == await balance(app, alice)
        burn = await scalar(
            app,
            "SELECT count(*) FROM ledger_entries WHERE ref = :ref AND reason = 'burn'",
            ref=f"redemption:{body['id']}",
        )
        assert burn == 2  # both sides
        mine = (await client.get("/v1/redemptions", headers=alice.headers)).json()
        assert [(r["id"], r["code"], r["status"]) for r in mine["redemptions"]] == [
            (body["id"], "CODE-1", "issued")
        ]
        assert mine["next_cursor"] is None
        # the code is kept encrypted
        stored = await scalar(app, "SELECT code_encrypted FROM reward_codes ORDER BY id LIMIT 1")
        assert b"CODE-1" not in bytes(stored)
        await ledger_ok(client, admin_headers)

    async def test_a_retry_with_the_same_key_redeems_once(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        metro = await create_partner(client, admin_headers)
        reward = await add_reward(client, admin_headers, metro.id)
        await add_codes(client, admin_headers, reward["id"], ["C1", "C2"])
        alice = await register(client, "alice")
        await fund(app, alice.id, 5_000)
        first, retry = await asyncio.gather(
            redeem(client, alice, reward["id"], **{"Idempotency-Key": "k1"}),
            redeem(client, alice, reward["id"], **{"Idempotency-Key": "k1"}),
        )
        assert first.status_code == retry.status_code == 201
        assert first.json() == retry.json()
        assert await balance(app, alice) == 4_500
        assert await scalar(app, "SELECT count(*) FROM redemptions") == 1

    async def test_100_concurrent_redemptions_on_a_budget_of_10_issue_exactly_10(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        metro = await create_partner(client, admin_headers)
        reward = await add_reward(client, admin_headers, metro.id, budget=10, cost_g=100)
        await add_codes(client, admin_headers, reward["id"], [f"CODE-{n:03d}" for n in range(30)])
        players = await quick_players(app, 100)
        for p in players:
            await fund(app, p.id, 100)
        responses = await asyncio.gather(*(redeem(client, p, reward["id"]) for p in players))
        won = [r.json() for r in responses if r.status_code == 201]
        lost = [r for r in responses if r.status_code != 201]
        assert len(won) == 10
        for r in lost:
            assert_problem(r, 409, "sold_out")
        codes = [w["code"] for w in won]
        assert len(set(codes)) == 10
        assert await scalar(app, "SELECT taken FROM rewards") == 10
        assert (
            await scalar(app, "SELECT count(*) FROM reward_codes WHERE redemption_id IS NOT NULL")
            == 10
        )
        spent = await scalar(app, "SELECT count(*) FROM users WHERE balance_g = 0")
        assert spent == 10  # only the winners paid
        await ledger_ok(client, admin_headers)

    async def test_a_pool_that_runs_dry_is_sold_out_before_the_budget(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        metro = await create_partner(client, admin_headers)
        reward = await add_reward(client, admin_headers, metro.id, budget=10)
        await add_codes(client, admin_headers, reward["id"], ["ONLY"])
        alice = await register(client, "alice")
        await fund(app, alice.id, 5_000)
        await redeemed(client, alice, reward["id"])
        assert_problem(await redeem(client, alice, reward["id"]), 409, "sold_out")
        assert await balance(app, alice) == 4_500


class TestRefusals:
    async def test_each_refusal_changes_nothing(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        admin_headers: dict[str, str],
        clock: FrozenClock,
    ) -> None:
        metro = await create_partner(client, admin_headers)
        reward = await add_reward(client, admin_headers, metro.id)
        await add_codes(client, admin_headers, reward["id"], ["C1"])
        alice = await register(client, "alice")
        await fund(app, alice.id, 499)
        assert_problem(await redeem(client, alice, reward["id"]), 409, "insufficient_energy")
        assert_problem(await redeem(client, alice, str(uuid.uuid4())), 404, "not_found")
        assert_problem(await redeem(client, alice, "not-an-id"), 404, "not_found")
        closed = await client.patch(
            f"/admin/v1/rewards/{reward['id']}", json={"status": "closed"}, headers=admin_headers
        )
        assert closed.status_code == 200, closed.text
        await fund(app, alice.id, 1)
        assert_problem(await redeem(client, alice, reward["id"]), 409, "not_available")
        later = await add_reward(
            client,
            admin_headers,
            metro.id,
            name="Later",
            valid_from=(clock.now() + timedelta(days=1)).isoformat(),
        )
        assert_problem(await redeem(client, alice, later["id"]), 409, "not_available")
        set_rules(app, rewards=RewardsRules(enabled=False))
        await client.patch(
            f"/admin/v1/rewards/{reward['id']}", json={"status": "available"}, headers=admin_headers
        )
        assert_problem(await redeem(client, alice, reward["id"]), 409, "not_available")
        assert await balance(app, alice) == 500
        assert await scalar(app, "SELECT count(*) FROM redemptions") == 0
        assert (
            await scalar(app, "SELECT count(*) FROM reward_codes WHERE redemption_id IS NULL") == 1
        )

    async def test_the_per_user_limit_counts_the_users_local_period(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        admin_headers: dict[str, str],
        clock: FrozenClock,
    ) -> None:
        metro = await create_partner(client, admin_headers)
        reward = await add_reward(
            client, admin_headers, metro.id, per_user_limit=2, limit_period="day", cost_g=10
        )
        await add_codes(client, admin_headers, reward["id"], [f"C{n}" for n in range(6)])
        alice, bob = await register(client, "alice"), await register(client, "bob")
        for p in (alice, bob):
            await fund(app, p.id, 1_000)
        clock.set(datetime(2026, 11, 29, 15, 0, tzinfo=UTC))  # 23:00 in Shanghai
        await redeemed(client, alice, reward["id"])
        await redeemed(client, alice, reward["id"])
        body = assert_problem(await redeem(client, alice, reward["id"]), 409, "limit_reached")
        assert body["limit"] == "per_user_limit"
        await redeemed(client, bob, reward["id"])  # per user
        clock.set(datetime(2026, 11, 29, 16, 30, tzinfo=UTC))  # 00:30, the next local day
        await redeemed(client, alice, reward["id"])

    async def test_the_rules_daily_ceiling_on_energy_spent_on_rewards(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        set_rules(app, rewards=RewardsRules(daily_limit_g=1_000))
        metro = await create_partner(client, admin_headers)
        big = await add_reward(client, admin_headers, metro.id, cost_g=600)
        small = await add_reward(client, admin_headers, metro.id, name="Coffee", cost_g=400)
        await add_codes(client, admin_headers, big["id"], ["B1", "B2"])
        await add_codes(client, admin_headers, small["id"], ["S1", "S2"])
        alice = await register(client, "alice")
        await fund(app, alice.id, 10_000)
        await redeemed(client, alice, big["id"])
        await redeemed(client, alice, small["id"])  # 1000 g: exactly the ceiling
        body = assert_problem(await redeem(client, alice, small["id"]), 409, "limit_reached")
        assert body["limit"] == "daily_limit_g"
        assert await balance(app, alice) == 9_000


class TestPartnerFulfilment:
    async def _setup(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str], **kw: Any
    ) -> tuple[Any, dict[str, Any], Player]:
        bank = await create_partner(
            client, admin_headers, name="Green Bank", webhook_url="https://bank.example.com/hooks"
        )
        reward = await add_reward(
            client,
            admin_headers,
            bank.id,
            fulfilment="partner",
            kind="bank_benefit",
            name="Lower loan rate",
            cost_g=777,
            **kw,
        )
        alice = await register(client, "alice")
        await fund(app, alice.id, 2_000)
        return bank, reward, alice

    async def test_the_partner_is_told_and_fulfils_with_a_code(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        bank, reward, alice = await self._setup(client, app, admin_headers)
        body = await redeemed(client, alice, reward["id"])
        assert (body["status"], body["code"]) == ("pending", None)
        assert body["deadline"] is not None
        event = json.loads(await scalar(app, "SELECT body FROM webhook_deliveries"))
        assert event["type"] == "reward.redeemed"
        assert event["data"]["redemption_id"] == body["id"]
        assert event["data"]["reward"]["id"] == reward["id"]
        assert event["data"]["cost_g"] == 777
        assert alice.id not in json.dumps(event)  # partners never learn who redeemed
        pending = (
            await client.get("/partner/v1/redemptions?status=pending", headers=bank.headers)
        ).json()
        assert [r["id"] for r in pending["redemptions"]] == [body["id"]]
        done = await client.post(
            f"/partner/v1/redemptions/{body['id']}/fulfil",
            json={"code": "LOAN-42"},
            headers=bank.headers,
        )
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "issued"
        mine = (await client.get("/v1/redemptions", headers=alice.headers)).json()
        assert (mine["redemptions"][0]["status"], mine["redemptions"][0]["code"]) == (
            "issued",
            "LOAN-42",
        )
        assert_problem(
            await client.post(
                f"/partner/v1/redemptions/{body['id']}/fail",
                json={"reason": "changed my mind"},
                headers=bank.headers,
            ),
            409,
            "not_pending",
        )
        assert await balance(app, alice) == 2_000 - 777

    async def test_a_failed_redemption_is_refunded_to_the_gram(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        bank, reward, alice = await self._setup(client, app, admin_headers, budget=1)
        body = await redeemed(client, alice, reward["id"])
        assert await balance(app, alice) == 1_223
        assert_problem(await redeem(client, alice, reward["id"]), 409, "sold_out")
        other = await create_partner(client, admin_headers, name="Other")
        assert_problem(
            await client.post(
                f"/partner/v1/redemptions/{body['id']}/fail",
                json={"reason": "x"},
                headers=other.headers,
            ),
            404,
            "not_found",
        )
        failed = await client.post(
            f"/partner/v1/redemptions/{body['id']}/fail",
            json={"reason": "account not eligible"},
            headers=bank.headers,
        )
        assert failed.status_code == 200, failed.text
        assert (failed.json()["status"], failed.json()["failure_reason"]) == (
            "failed",
            "account not eligible",
        )
        assert await balance(app, alice) == 2_000
        moves = await scalar(
            app,
            "SELECT sum(amount_g) FROM ledger_entries WHERE user_id = :u "
            "AND ref = :ref AND account = 'user'",
            u=alice.id,
            ref=f"redemption:{body['id']}",
        )
        assert moves == 0  # -777 burned, +777 refunded
        # the budget came back: it can be redeemed again
        again = await redeemed(client, alice, reward["id"])
        assert again["status"] == "pending"
        await ledger_ok(client, admin_headers)

    async def test_a_timeout_fails_and_refunds_and_tells_the_partner(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        admin_headers: dict[str, str],
        clock: FrozenClock,
    ) -> None:
        bank, reward, alice = await self._setup(client, app, admin_headers, fulfil_timeout_s=3600)
        body = await redeemed(client, alice, reward["id"])
        clock.advance(minutes=59)
        await run_reward_jobs(app)
        assert await scalar(app, "SELECT status FROM redemptions") == "pending"
        clock.advance(minutes=2)
        await run_reward_jobs(app)
        row = (await client.get("/v1/redemptions", headers=alice.headers)).json()["redemptions"][0]
        assert (row["status"], row["failure_reason"]) == ("failed", "timeout")
        assert await balance(app, alice) == 2_000
        types = await scalar(
            app, "SELECT string_agg(type, ',' ORDER BY seq) FROM webhook_deliveries"
        )
        assert types == "reward.redeemed,reward.expired"
        assert_problem(
            await client.post(
                f"/partner/v1/redemptions/{body['id']}/fulfil", json={}, headers=bank.headers
            ),
            409,
            "not_pending",
        )
        await ledger_ok(client, admin_headers)

    async def test_partner_routes_need_the_rewards_scope(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        from tests.planting.conftest import create_ngo

        ngo = await create_ngo(client, admin_headers)  # orders only
        response = await client.get("/partner/v1/redemptions", headers=ngo.headers)
        assert_problem(response, 403, "forbidden")
        assert (await client.get("/partner/v1/redemptions")).status_code == 401


class TestStatsAndPrivacy:
    async def test_rewards_in_stats_and_codes_erased_with_the_user(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        metro = await create_partner(client, admin_headers)
        reward = await add_reward(client, admin_headers, metro.id)
        await add_codes(client, admin_headers, reward["id"], ["C1"])
        alice = await register(client, "alice")
        await fund(app, alice.id, 500)
        await redeemed(client, alice, reward["id"])
        stats = (await client.get("/v1/stats")).json()
        assert stats["rewards"] == {
            "rewards": 1,
            "redemptions_issued": 1,
            "redemptions_pending": 0,
            "redemptions_failed": 0,
            "energy_spent_g": 500,
        }
        exported = (await client.get("/v1/me/export", headers=alice.headers)).json()
        assert [r["reward_name"] for r in exported["redemptions"]] == ["Metro day pass"]
        assert (await client.delete("/v1/me", headers=alice.headers)).status_code == 204
        assert await scalar(app, "SELECT code_encrypted FROM redemptions") is None
