"""Designers' tools: the admin rules API, effective dates, late events, hot publishing, diff."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from typer.testing import CliRunner

from app.config import Settings
from app.core.clock import FrozenClock
from app.main import create_app
from app.rules.cli import rules_app
from app.rules.loader import default_rules_path
from tests.helpers import assert_problem, register

DEFAULT = default_rules_path().read_text(encoding="utf-8")
METRO_60 = DEFAULT.replace("energy_per_event_g = 52", "energy_per_event_g = 60", 1)
TOML = {"Content-Type": "application/toml"}


def metro(clock: FrozenClock, eid: str, ago: timedelta) -> dict[str, str]:
    return {"id": eid, "kind": "metro", "occurred_at": (clock.now() - ago).isoformat()}


class TestAdminRulesApi:
    async def test_lists_versions_and_the_active_one(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        body = (await client.get("/admin/v1/rules", headers=admin_headers)).json()
        assert body["active"]["version"] == 1 and len(body["versions"]) == 1
        assert (
            len(body["active"]["sha256"]) == 64 and body["active"]["label"] == "ant-forest-classic"
        )
        text = await client.get("/admin/v1/rules/1", headers=admin_headers)
        assert text.headers["content-type"].startswith("application/toml") and text.text == DEFAULT

    async def test_validate_reports_every_error_with_its_key(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        ok = (
            await client.post(
                "/admin/v1/rules/validate", content=DEFAULT, headers=admin_headers | TOML
            )
        ).json()
        assert ok == {"valid": True, "errors": []}
        broken = DEFAULT.replace("daily_cap_count = 5", "daily_cap_count = -1", 1).replace(
            "max_share = 0.1", "max_share = 3"
        )
        result = (
            await client.post(
                "/admin/v1/rules/validate", content=broken, headers=admin_headers | TOML
            )
        ).json()
        assert result["valid"] is False
        locs = {e["loc"] for e in result["errors"]}
        assert "stealing.max_share" in locs and any(loc.endswith("daily_cap_count") for loc in locs)

    async def test_publish_then_publish_again_is_a_no_op(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], clock: FrozenClock
    ) -> None:
        first = await client.post("/admin/v1/rules", content=METRO_60, headers=admin_headers | TOML)
        assert first.status_code == 201
        body = first.json()
        assert body["version"] == 2 and body["created"] is True
        assert body["effective_from"] == clock.now().isoformat().replace("+00:00", "Z")
        again = await client.post("/admin/v1/rules", content=METRO_60, headers=admin_headers | TOML)
        assert again.status_code == 200 and again.json() | {"created": True} == body
        listed = (await client.get("/admin/v1/rules", headers=admin_headers)).json()
        assert [v["version"] for v in listed["versions"]] == [1, 2] and listed["active"][
            "version"
        ] == 2

    async def test_invalid_rules_are_422_and_publish_nothing(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        response = await client.post(
            "/admin/v1/rules",
            content="version = 'x'\n[stealing]\nmode = 'greedy'\n",
            headers=admin_headers | TOML,
        )
        body = assert_problem(response, 422, "invalid_rules")
        assert body["errors"][0]["loc"] == "stealing.mode"
        syntax = await client.post(
            "/admin/v1/rules", content="version = = 1", headers=admin_headers | TOML
        )
        assert assert_problem(syntax, 422, "invalid_rules")["errors"][0]["loc"] == "(file)"
        assert (
            len((await client.get("/admin/v1/rules", headers=admin_headers)).json()["versions"])
            == 1
        )

    async def test_wrong_content_type_is_415(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        response = await client.post(
            "/admin/v1/rules", json={"version": "x"}, headers=admin_headers
        )
        assert_problem(response, 415, "unsupported_media_type")

    async def test_a_past_effective_time_is_refused(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], clock: FrozenClock
    ) -> None:
        past = (clock.now() - timedelta(hours=1)).isoformat()
        response = await client.post(
            "/admin/v1/rules",
            params={"effective_from": past},
            content=METRO_60,
            headers=admin_headers | TOML,
        )
        assert_problem(response, 422, "effective_from_in_past")
        naive = await client.post(
            "/admin/v1/rules",
            params={"effective_from": "2026-12-01T00:00:00"},
            content=METRO_60,
            headers=admin_headers | TOML,
        )
        assert_problem(naive, 422, "validation_error")

    async def test_needs_the_admin_token(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        assert_problem(
            await client.post("/admin/v1/rules", content=METRO_60, headers=alice.headers | TOML),
            401,
            "unauthorized",
        )


class TestEffectiveDates:
    async def test_events_either_side_of_the_switch_get_their_own_rules(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        switch = clock.now() + timedelta(minutes=1)
        await client.post(
            "/admin/v1/rules",
            params={"effective_from": switch.isoformat()},
            content=METRO_60,
            headers=admin_headers | TOML,
        )
        clock.set(switch + timedelta(minutes=2))
        before = {
            "id": "before",
            "kind": "metro",
            "occurred_at": (switch - timedelta(seconds=1)).isoformat(),
        }
        after = {"id": "after", "kind": "metro", "occurred_at": switch.isoformat()}
        old = (await client.post("/v1/activities", json=before, headers=alice.headers)).json()
        new = (await client.post("/v1/activities", json=after, headers=alice.headers)).json()
        assert (old["energy_g"], old["rules_version"]) == (52, 1)
        assert (new["energy_g"], new["rules_version"]) == (60, 2)

    async def test_a_late_event_uses_the_rules_of_its_time(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        happened = clock.now() - timedelta(minutes=30)  # before v2 existed...
        await client.post("/admin/v1/rules", content=METRO_60, headers=admin_headers | TOML)
        clock.advance(hours=5)  # ...and reported long after it took effect
        late = (
            await client.post(
                "/v1/activities",
                json={"id": "late", "kind": "metro", "occurred_at": happened.isoformat()},
                headers=alice.headers,
            )
        ).json()
        assert (late["energy_g"], late["rules_version"]) == (52, 1)


class TestHotPublishing:
    async def test_a_second_instance_switches_without_restart(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        settings: Settings,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        other_settings = settings.model_copy(update={"rules_refresh_seconds": 30.0})
        other = create_app(other_settings, clock=clock, run_worker=False)
        async with LifespanManager(other):
            other_client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=other), base_url="http://other"
            )
            alice = await register(other_client, "alice")
            await asyncio.sleep(0.2)  # let the other instance subscribe
            published = await client.post(
                "/admin/v1/rules", content=METRO_60, headers=admin_headers | TOML
            )
            assert published.status_code == 201
            for _ in range(50):  # the Redis message arrives well before the 30 s poll
                if len(other.state.rules_registry.versions) == 2:
                    break
                await asyncio.sleep(0.1)
            assert [v.version for v in other.state.rules_registry.versions] == [1, 2]
            ride = (
                await other_client.post(
                    "/v1/activities", json=metro(clock, "r", timedelta(0)), headers=alice.headers
                )
            ).json()
            assert (ride["energy_g"], ride["rules_version"]) == (60, 2)
            await other_client.aclose()

    async def test_the_poll_catches_a_missed_message(
        self, app: FastAPI, settings: Settings, clock: FrozenClock
    ) -> None:
        from app.rules.loader import LoadedRules, parse_rules_text, rules_sha256
        from app.rules.registry import publish

        other = create_app(
            settings.model_copy(update={"rules_refresh_seconds": 0.2}),
            clock=clock,
            run_worker=False,
        )
        async with LifespanManager(other):
            loaded = LoadedRules(parse_rules_text(METRO_60), METRO_60, rules_sha256(METRO_60))
            async with (
                app.state.sessionmaker() as session,
                session.begin(),
            ):  # published, never announced
                await publish(session, loaded, effective_from=clock.now(), now=clock.now())
            for _ in range(50):
                if len(other.state.rules_registry.versions) == 2:
                    break
                await asyncio.sleep(0.1)
            assert len(other.state.rules_registry.versions) == 2


class TestRulesDiff:
    def test_diff_speaks_designer(self, tmp_path: Path) -> None:
        old, new = tmp_path / "old.toml", tmp_path / "new.toml"
        old.write_text(DEFAULT)
        new.write_text(
            METRO_60.replace("max_share = 0.1", "max_share = 0.15").replace(
                "daily_cap_g = 296", "daily_cap_g = 300"
            )
        )
        result = CliRunner().invoke(rules_app, ["diff", str(old), str(new)])
        assert result.exit_code == 0, result.output
        lines = result.output.strip().splitlines()
        assert "metro: 52 g → 60 g per event" in lines
        assert "stealing.max_share: 10% → 15%" in lines
        assert "walking.daily_cap_g: 296 g → 300 g" in lines
        assert len(lines) == 3

    def test_same_rules_show_no_change(self, tmp_path: Path) -> None:
        old = tmp_path / "old.toml"
        old.write_text(DEFAULT)
        reformatted = tmp_path / "new.toml"
        reformatted.write_text("# a comment\n" + DEFAULT)
        result = CliRunner().invoke(rules_app, ["diff", str(old), str(reformatted)])
        assert result.exit_code == 0 and "no changes in behaviour" in result.output

    def test_diff_of_a_broken_file_fails(self, tmp_path: Path) -> None:
        old, new = tmp_path / "old.toml", tmp_path / "new.toml"
        old.write_text(DEFAULT)
        new.write_text("version = 'x'\n[stealing]\nmax_share = 2\n")
        result = CliRunner().invoke(rules_app, ["diff", str(old), str(new)])
        assert result.exit_code == 1 and "stealing.max_share" in result.output


class TestGuardrails:
    async def test_a_big_simulated_effect_is_refused_unless_forced(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        harsh = DEFAULT.replace("daily_cap_g = 296", "daily_cap_g = 30", 1)
        refused = await client.post(
            "/admin/v1/rules",
            params={"simulate": "true"},
            content=harsh,
            headers=admin_headers | TOML,
        )
        body = assert_problem(refused, 422, "guardrail_refused")
        assert body["reasons"] and any("walker" in reason for reason in body["reasons"])
        assert "force" in body["detail"]
        assert (
            len((await client.get("/admin/v1/rules", headers=admin_headers)).json()["versions"])
            == 1
        )
        forced = await client.post(
            "/admin/v1/rules",
            params={"simulate": "true", "force": "true"},
            content=harsh,
            headers=admin_headers | TOML,
        )
        assert forced.status_code == 201

    async def test_a_small_change_passes_the_simulation(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        gentle = DEFAULT.replace("energy_per_event_g = 52", "energy_per_event_g = 53", 1)
        published = await client.post(
            "/admin/v1/rules",
            params={"simulate": "true"},
            content=gentle,
            headers=admin_headers | TOML,
        )
        assert published.status_code == 201, published.text


class TestPublishCli:
    async def test_publish_from_the_command_line(
        self, app: FastAPI, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        from app.config import get_settings

        rules_file = tmp_path / "metro60.toml"
        rules_file.write_text(METRO_60)
        monkeypatch.setenv("CANOPY_DATABASE_URL", settings.database_url or "")
        monkeypatch.setenv("CANOPY_REDIS_URL", settings.redis_url or "")
        get_settings.cache_clear()
        try:
            first = await asyncio.to_thread(
                CliRunner().invoke, rules_app, ["publish", str(rules_file)]
            )
            again = await asyncio.to_thread(
                CliRunner().invoke, rules_app, ["publish", str(rules_file)]
            )
            naive = await asyncio.to_thread(
                CliRunner().invoke,
                rules_app,
                ["publish", str(rules_file), "--effective-from", "2030-01-01T00:00:00"],
            )
        finally:
            get_settings.cache_clear()
        assert first.exit_code == 0 and "published version 2" in first.output, first.output
        assert again.exit_code == 0 and "already published as version 2" in again.output
        assert naive.exit_code == 2
