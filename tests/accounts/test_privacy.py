"""Export, erasure, retention and clean logs (issue: privacy)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.core.worker import Worker
from app.jobs import default_jobs
from tests.energy.conftest import ledger_ok
from tests.helpers import PASSWORD, Player, assert_problem, register


async def befriend(client: httpx.AsyncClient, a: Player, b: Player) -> None:
    await client.post("/v1/friend-requests", json={"handle": b.handle}, headers=a.headers)
    await client.post("/v1/friend-requests", json={"handle": a.handle}, headers=b.headers)


async def play(
    client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI, admin_headers: dict[str, str]
) -> tuple[Player, Player, Player]:
    """A few days of the game: activities with attributes, steps, friends, takes, watering,
    props, a blocked stranger, and a request left pending."""
    dora = await register(client, "dora_d", display_name="Dora Delgado", region="shenzhen")
    finn = await register(client, "finn_f", display_name="Finn Fischer")
    stan = await register(client, "stan_s", display_name="Stan Stranger")
    await register(client, "gail_g")
    await befriend(client, dora, finn)
    await client.post("/v1/friend-requests", json={"handle": "gail_g"}, headers=dora.headers)
    await client.post(f"/v1/blocks/{stan.id}", headers=dora.headers)
    for i in range(3):
        body = {
            "id": f"ride-{i}",
            "kind": "metro",
            "quantity": 4.2,
            "occurred_at": (clock.now() - timedelta(hours=2)).isoformat(),
            "attributes": {"line": "Dora's line 1", "station": "Futian"},
        }
        await client.post(
            "/v1/activities",
            json=body,
            headers=dora.headers,
        )
        finn_ride = {**body, "id": f"bus-{i}", "kind": "bus", "attributes": {"line": "7"}}
        await client.post("/v1/activities", json=finn_ride, headers=finn.headers)
    await client.put(
        "/v1/steps/2026-11-28",
        json={"steps": 12000, "source": "Dora's watch"},
        headers=dora.headers,
    )
    clock.advance(hours=24)
    await client.post(f"/v1/friends/{dora.id}/collect", json={}, headers=finn.headers)
    await client.post(
        "/v1/forest/collect", json={}, headers=dora.headers | {"Idempotency-Key": "dora-collect"}
    )
    await client.post(f"/v1/friends/{finn.id}/collect", json={}, headers=dora.headers)
    await client.post(f"/v1/friends/{dora.id}/water", json={"amount_g": 10}, headers=dora.headers)
    await client.post(f"/v1/friends/{finn.id}/water", json={"amount_g": 10}, headers=dora.headers)
    await client.post(
        "/admin/v1/props/grant",
        json={"user_id": dora.id, "type": "shield", "count": 2},
        headers=admin_headers,
    )
    await client.post("/v1/props/shield/use", headers=dora.headers)
    body = {"id": "fresh", "kind": "metro", "quantity": 3, "occurred_at": clock.now().isoformat()}
    await client.post("/v1/activities", json=body, headers=dora.headers)  # a growing ball
    return dora, finn, stan


class TestExport:
    async def test_export_holds_every_kind_of_data(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        dora, _finn, _ = await play(client, clock, app, admin_headers)
        response = await client.get("/v1/me/export", headers=dora.headers)
        assert (
            response.status_code == 200 and "attachment" in response.headers["content-disposition"]
        )
        doc = response.json()
        assert doc["format"] == "canopy-export/1"
        assert (
            doc["profile"]["handle"] == "dora_d"
            and doc["profile"]["display_name"] == "Dora Delgado"
        )
        assert {a["id"] for a in doc["activities"]} >= {"ride-0", "ride-1", "ride-2", "fresh"}
        ride = next(a for a in doc["activities"] if a["id"] == "ride-0")
        assert ride["attributes"]["station"] == "Futian"
        assert ride["factor_g"] and ride["rules_version"] == 1 and ride["energy_g"] == 196
        assert (
            doc["step_days"][0]["source"] == "Dora's watch"
            and doc["step_days"][0]["energy_g"] == 198
        )
        assert len(doc["balls"]) >= 5 and doc["ledger_entries"]
        assert {e["reason"] for e in doc["ledger_entries"]} >= {"collect", "steal", "water"}
        assert doc["friends"] == [{"handle": "finn_f", "since": doc["friends"][0]["since"]}]
        assert "Finn Fischer" not in response.text  # a friend's handle only
        assert [r["direction"] for r in doc["friend_requests"]].count("outgoing") >= 2
        assert doc["blocks"][0]["handle"] == "stan_s"
        assert doc["takes_from_friends"][0]["owner_handle"] == "finn_f"
        assert doc["props"][0]["type"] == "shield" and doc["props"][0]["count"] == 1
        assert doc["waterings_given"][0]["friend_handle"] == "finn_f"
        assert {i["type"] for i in doc["feed"]} >= {"collected_from_you", "friend_accepted"}
        assert doc["stored_replies"][0]["idempotency_key"] == "dora-collect"
        assert doc["stored_replies"][0]["reply"]["collected_g"] > 0

    async def test_a_registration_reply_is_exported_and_only_to_its_owner(
        self, client: httpx.AsyncClient
    ) -> None:
        reply = await client.post(
            "/v1/auth/register",
            json={"handle": "ivy_i", "password": PASSWORD},
            headers={"Idempotency-Key": "reg"},
        )
        ivy = {"Authorization": f"Bearer {reply.json()['access_token']}"}
        other = await register(client, "otto_o")
        mine = (await client.get("/v1/me/export", headers=ivy)).json()["stored_replies"]
        assert mine[0]["idempotency_key"] == "reg" and mine[0]["reply"]["user"]["handle"] == "ivy_i"
        assert (await client.get("/v1/me/export", headers=other.headers)).json()[
            "stored_replies"
        ] == []

    async def test_operators_can_export_by_handle(
        self, client: httpx.AsyncClient, settings: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import json

        from typer.testing import CliRunner

        from app.cli import app as cli
        from app.config import get_settings

        await register(client, "olga_o", display_name="Olga")
        monkeypatch.setenv("CANOPY_DATABASE_URL", settings.database_url)
        monkeypatch.setenv("CANOPY_REDIS_URL", settings.redis_url)
        monkeypatch.setenv("CANOPY_JWT_SECRET", settings.jwt_secret.get_secret_value())
        get_settings.cache_clear()
        try:
            # the CLI runs its own event loop: give it a thread, as a terminal would a process
            result = await asyncio.to_thread(CliRunner().invoke, cli, ["users", "export", "olga_o"])
            missing = await asyncio.to_thread(
                CliRunner().invoke, cli, ["users", "export", "nobody"]
            )
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["profile"]["display_name"] == "Olga"
        assert missing.exit_code == 1


class TestErasure:
    async def test_erasure_needs_the_password_or_a_fresh_sign_in(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        dora = await register(client, "dora_d")
        wrong = await client.request(
            "DELETE", "/v1/me", json={"password": "not-it-at-all"}, headers=dora.headers
        )
        assert_problem(wrong, 401, "invalid_credentials")
        clock.advance(minutes=6)
        stale = await client.delete("/v1/me", headers=dora.headers)
        assert_problem(stale, 403, "reauthentication_required")
        fresh = (
            await client.post("/v1/auth/token", json={"handle": "dora_d", "password": PASSWORD})
        ).json()
        ok = await client.delete(
            "/v1/me", headers={"Authorization": f"Bearer {fresh['access_token']}"}
        )
        assert ok.status_code == 204

    async def test_nothing_personal_is_left_anywhere(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        dora, _finn, _stan = await play(client, clock, app, admin_headers)
        before = await ledger_ok(client, admin_headers)
        response = await client.request(
            "DELETE", "/v1/me", json={"password": PASSWORD}, headers=dora.headers
        )
        assert response.status_code == 204
        # every text-like column of every table, searched for what named her
        async with app.state.engine.connect() as conn:
            columns = (
                await conn.execute(
                    text(
                        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
                        "AND data_type IN ('text', 'character varying', 'jsonb', 'json')"
                    )
                )
            ).all()
            hits = []
            for table, column in columns:
                found = (
                    await conn.execute(
                        text(
                            f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS text) ILIKE :a '
                            f'OR CAST("{column}" AS text) ILIKE :b OR CAST("{column}" AS text) ILIKE :c'
                        ),
                        {"a": "%dora_d%", "b": "%Dora Delgado%", "c": "%Dora's%"},
                    )
                ).scalar_one()
                if found:
                    hits.append(f"{table}.{column}")
        assert hits == []
        after = await ledger_ok(client, admin_headers)
        assert after["totals"]["minted_g"] == before["totals"]["minted_g"]
        assert (
            after["totals"]["expired_g"] > before["totals"]["expired_g"]
        )  # her balls expired at once
        assert (
            after["totals"]["in_balls_g"]
            + after["totals"]["in_balances_g"]
            + after["totals"]["expired_g"]
            == after["totals"]["minted_g"] - after["totals"]["burned_g"]
        )

    async def test_tokens_die_and_friends_see_nothing_of_her(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        dora, finn, _ = await play(client, clock, app, admin_headers)
        await client.request("DELETE", "/v1/me", json={"password": PASSWORD}, headers=dora.headers)
        assert_problem(await client.get("/v1/me", headers=dora.headers), 401, "unauthorized")
        assert_problem(
            await client.post("/v1/auth/refresh", json={"refresh_token": dora.refresh_token}),
            401,
            "unauthorized",
        )
        assert_problem(
            await client.post("/v1/auth/token", json={"handle": "dora_d", "password": PASSWORD}),
            401,
            "invalid_credentials",
        )
        assert (await client.get("/v1/friends", headers=finn.headers)).json()["friends"] == []
        assert_problem(
            await client.get(f"/v1/friends/{dora.id}/forest", headers=finn.headers),
            404,
            "not_found",
        )
        feed = (await client.get("/v1/feed", headers=finn.headers)).json()["items"]
        actors = [i["actor"] for i in feed if i["actor"] and i["actor"]["id"] == dora.id]
        assert actors and all(a["handle"] is None for a in actors)
        board = (
            await client.get("/v1/leaderboards/friends?period=total", headers=finn.headers)
        ).json()
        assert [e["handle"] for e in board["entries"]] == ["finn_f"]

    async def test_the_freed_handle_starts_from_nothing(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        dora, _finn, _ = await play(client, clock, app, admin_headers)
        await client.request("DELETE", "/v1/me", json={"password": PASSWORD}, headers=dora.headers)
        again = await register(client, "dora_d")
        assert again.id != dora.id
        assert (await client.get("/v1/forest?all=true", headers=again.headers)).json()[
            "balls"
        ] == []
        assert (await client.get("/v1/energy/ledger", headers=again.headers)).json()[
            "entries"
        ] == []
        doc = (await client.get("/v1/me/export", headers=again.headers)).json()
        assert doc["activities"] == [] and doc["friends"] == [] and doc["feed"] == []
        assert (await client.get("/v1/me", headers=again.headers)).json()["balance_g"] == 0


class TestRetention:
    async def test_raw_details_are_purged_after_the_window(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        dora = await register(client, "dora_d")
        old = {
            "id": "old",
            "kind": "metro",
            "occurred_at": clock.now().isoformat(),
            "attributes": {"station": "A"},
        }
        await client.post("/v1/activities", json=old, headers=dora.headers)
        await client.put(
            "/v1/steps/2026-11-29", json={"steps": 5000, "source": "watch"}, headers=dora.headers
        )
        clock.advance(days=60)
        recent = {
            "id": "recent",
            "kind": "metro",
            "occurred_at": clock.now().isoformat(),
            "attributes": {"station": "B"},
        }
        await client.post("/v1/activities", json=recent, headers=dora.headers)
        clock.advance(days=31)  # "old" is 91 days old, "recent" 31
        await Worker(
            app.state.sessionmaker,
            clock,
            default_jobs(app.state.rules_registry, timedelta(days=90)),
        ).run_due()
        async with app.state.engine.connect() as conn:
            rows = dict(
                (
                    await conn.execute(
                        text("SELECT external_id, attributes FROM activities WHERE kind = 'metro'")
                    )
                ).all()
            )
            kept = (
                await conn.execute(
                    text(
                        "SELECT kind, quantity, factor_g, rules_version, energy_g FROM activities WHERE external_id = 'old'"
                    )
                )
            ).one()
            source = (await conn.execute(text("SELECT source FROM step_days"))).scalar_one()
        assert rows == {"old": None, "recent": {"station": "B"}}
        assert kept.kind == "metro" and kept.energy_g == 52 and kept.rules_version == 1
        assert source is None


class TestLogs:
    async def test_logs_never_carry_secrets(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        dora, finn, _ = await play(client, clock, app, admin_headers)
        refreshed = (
            await client.post("/v1/auth/refresh", json={"refresh_token": dora.refresh_token})
        ).json()
        await client.post("/v1/auth/refresh", json={"refresh_token": dora.refresh_token})  # reuse
        partner = (
            await client.post(
                "/admin/v1/partners",
                json={"name": "NGO", "scopes": ["orders"]},
                headers=admin_headers,
            )
        ).json()
        await client.get(
            "/partner/v1/me", headers={"Authorization": f"Bearer {partner['api_key']}"}
        )
        await client.get("/partner/v1/me", headers={"Authorization": "Bearer cnp_wrong"})
        await client.post(
            "/v1/auth/token", json={"handle": "finn_f", "password": "wrong-password-123"}
        )
        await client.request("DELETE", "/v1/me", json={"password": PASSWORD}, headers=finn.headers)
        logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
        assert caplog.records  # the scenario did log things
        for secret in (
            PASSWORD,
            "wrong-password-123",
            dora.access_token,
            dora.refresh_token,
            refreshed["refresh_token"],
            refreshed["access_token"],
            partner["api_key"],
            partner["webhook_secret"],
            admin_headers["Authorization"].split()[1],
        ):
            assert secret not in logged, secret[:8]
