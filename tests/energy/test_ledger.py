"""The double-entry ledger: the user's view, expiry booking, and the invariant check."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.core.worker import Worker
from app.jobs import default_jobs
from tests.energy.conftest import event, ledger_ok
from tests.helpers import Player, assert_problem, register


async def mint_and_collect(
    client: httpx.AsyncClient, clock: FrozenClock, player: Player, kinds: list[str]
) -> None:
    batch = {"activities": [event(clock, uuid.uuid4().hex, kind=k) for k in kinds]}
    await client.post("/v1/activities/batch", json=batch, headers=player.headers)
    clock.advance(hours=24)
    await client.post("/v1/forest/collect", headers=player.headers)


async def run_worker(app: FastAPI, clock: FrozenClock) -> None:
    await Worker(app.state.sessionmaker, clock, default_jobs(app.state.rules_registry)).run_due()


class TestLedgerEndpoint:
    async def test_entries_newest_first_with_running_balance(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        await mint_and_collect(client, clock, alice, ["metro", "bus"])
        await mint_and_collect(client, clock, alice, ["metro"])
        entries = (await client.get("/v1/energy/ledger", headers=alice.headers)).json()["entries"]
        assert [e["reason"] for e in entries] == ["collect"] * 3
        assert entries[0]["balance_after_g"] == 184
        amounts = [e["amount_g"] for e in reversed(entries)]
        running = [sum(amounts[: i + 1]) for i in range(len(amounts))]
        assert [e["balance_after_g"] for e in reversed(entries)] == running
        assert all(
            e["ref"].startswith("activity:client:") and e["rules_version"] >= 1 for e in entries
        )

    async def test_cursor_paging_walks_every_entry_once(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        await mint_and_collect(client, clock, alice, ["bus"] * 5)
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (
                await client.get("/v1/energy/ledger", params=params, headers=alice.headers)
            ).json()
            seen += [e["id"] for e in page["entries"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == 5 == len(set(seen))
        assert [int(i) for i in seen] == sorted((int(i) for i in seen), reverse=True)

    @pytest.mark.parametrize("params", [{"cursor": "garbage"}, {"limit": 0}, {"limit": 201}])
    async def test_bad_paging_is_422(
        self, client: httpx.AsyncClient, params: dict[str, object]
    ) -> None:
        alice = await register(client, "alice")
        assert_problem(
            await client.get("/v1/energy/ledger", params=params, headers=alice.headers),
            422,
            "validation_error",
        )

    async def test_users_see_only_their_entries(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await mint_and_collect(client, clock, alice, ["metro"])
        assert (await client.get("/v1/energy/ledger", headers=bob.headers)).json() == {
            "entries": [],
            "next_cursor": None,
        }


class TestExpiry:
    async def test_expired_remainder_is_booked_to_expired_energy(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice")
        await client.post("/v1/activities", json=event(clock, "r1"), headers=alice.headers)
        clock.advance(hours=24 + 72)
        await run_worker(app, clock)
        report = await ledger_ok(client, admin_headers)
        assert report["totals"]["minted_g"] == 52 and report["totals"]["expired_g"] == 52
        assert report["totals"]["in_balls_g"] == 0
        [ball] = (await client.get("/v1/forest?all=true", headers=alice.headers)).json()["balls"]
        assert ball["state"] == "expired" and ball["remaining_g"] == 0
        # booking twice books nothing more
        await run_worker(app, clock)
        assert (await ledger_ok(client, admin_headers))["totals"]["expired_g"] == 52

    async def test_unexpired_balls_are_left_alone(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice")
        await client.post("/v1/activities", json=event(clock, "r1"), headers=alice.headers)
        clock.advance(hours=24 + 71)
        await run_worker(app, clock)
        assert (await ledger_ok(client, admin_headers))["totals"]["expired_g"] == 0


class TestLedgerCheck:
    async def test_needs_the_admin_token(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        assert_problem(
            await client.get("/admin/v1/ledger/check", headers=alice.headers), 401, "unauthorized"
        )

    @pytest.mark.parametrize(
        ("tamper", "broken"),
        [
            ("UPDATE users SET balance_g = balance_g + 1", "user_balances_match_entries"),
            (
                "UPDATE energy_balls SET remaining_g = remaining_g - 1 WHERE remaining_g > 0",
                "balls_match_entries",
            ),
            (
                "DELETE FROM ledger_entries WHERE id = (SELECT max(id) FROM ledger_entries)",
                "ledger_sums_to_zero",
            ),
            (
                "UPDATE ledger_entries SET amount_g = amount_g - 5 WHERE account = 'system:minted'",
                "transfers_balanced",
            ),
        ],
    )
    async def test_tampering_is_detected(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
        tamper: str,
        broken: str,
    ) -> None:
        alice = await register(client, "alice")
        await mint_and_collect(client, clock, alice, ["metro", "bus"])
        await client.post("/v1/activities", json=event(clock, "pending"), headers=alice.headers)
        await ledger_ok(client, admin_headers)
        async with app.state.engine.begin() as conn:
            await conn.execute(text(tamper))
        report = (await client.get("/admin/v1/ledger/check", headers=admin_headers)).json()
        assert report["ok"] is False
        assert report["checks"][broken]["ok"] is False, report


class TestRandomSequences:
    """Long random mixes of every operation keep every invariant (seeded, so failures replay)."""

    @pytest.mark.parametrize("seed", [1, 2, 3])
    async def test_invariants_hold_after_a_random_sequence(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
        seed: int,
    ) -> None:
        rng = random.Random(seed)
        players = [
            await register(client, f"p{seed}_{i}", timezone=tz)
            for i, tz in enumerate(["Asia/Shanghai", "America/New_York", "Europe/Berlin"])
        ]
        sent: list[tuple[Player, dict[str, object]]] = []
        expected_minted = 0
        for _ in range(60):
            player = rng.choice(players)
            op = rng.random()
            if op < 0.45:
                kind = rng.choice(["metro", "bus", "cycling", "metro", "teleport"])
                body = event(
                    clock, uuid.uuid4().hex, kind=kind, ago=timedelta(minutes=rng.randint(0, 600))
                )
                if kind == "cycling":
                    body["quantity"] = round(rng.uniform(0.1, 30), 2)
                sent.append((player, body))
                result = (
                    await client.post("/v1/activities", json=body, headers=player.headers)
                ).json()
                expected_minted += result["energy_g"]
            elif op < 0.55 and sent:
                replay_player, body = rng.choice(sent)
                result = (
                    await client.post("/v1/activities", json=body, headers=replay_player.headers)
                ).json()
                assert result["status"] in ("duplicate", "rejected")
            elif op < 0.75:
                await client.post("/v1/forest/collect", headers=player.headers)
            elif op < 0.85:
                day = (clock.now() - timedelta(days=rng.randint(0, 2))).date().isoformat()
                await client.put(
                    f"/v1/steps/{day}",
                    json={"steps": rng.randint(0, 25000)},
                    headers=player.headers,
                )
            elif op < 0.95:
                clock.advance(hours=rng.randint(1, 30))
            else:
                await run_worker(app, clock)
        report = await ledger_ok(client, admin_headers)
        totals = report["totals"]
        assert totals["minted_g"] >= expected_minted  # plus walking minted from steps
        assert (
            totals["minted_g"]
            == totals["in_balls_g"] + totals["in_balances_g"] + totals["expired_g"]
        )
        async with app.state.engine.connect() as conn:
            co2e = (
                await conn.execute(text("SELECT coalesce(sum(co2e_avoided_g), 0) FROM users"))
            ).scalar_one()
        assert co2e == totals["minted_g"]
