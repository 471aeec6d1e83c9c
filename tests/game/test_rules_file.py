"""The rules file and the published versions: which is the source of truth.

The file seeds the first version; after that it is published again only when its text changed
since the version it last held, through the simulation guardrail, and never over a version
published later through the API or the CLI (unless forced). ``canopy rules pull`` brings the
live rules into a file; publishing an earlier text again is a rollback.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from typer.testing import CliRunner

from app.config import Settings, get_settings
from app.core import migrate
from app.core.clock import FrozenClock
from app.main import create_app
from app.rules.cli import rules_app
from app.rules.loader import default_rules_path, load_rules
from app.rules.registry import load_registry
from app.rules.service import FileOutcome, sync_rules_file
from tests.conftest import TestServers, _plain_dsn, drop_database, fresh_database

DEFAULT = default_rules_path().read_text(encoding="utf-8")
METRO_60 = DEFAULT.replace("energy_per_event_g = 52", "energy_per_event_g = 60", 1)
METRO_53 = DEFAULT.replace("energy_per_event_g = 52", "energy_per_event_g = 53", 1)
METRO_54 = DEFAULT.replace("energy_per_event_g = 52", "energy_per_event_g = 54", 1)
HARSH = DEFAULT.replace("daily_cap_g = 296", "daily_cap_g = 30", 1)
TOML = {"Content-Type": "application/toml"}


async def versions(client: httpx.AsyncClient, admin: dict[str, str]) -> list[tuple[int, str]]:
    body = (await client.get("/admin/v1/rules", headers=admin)).json()
    return [(v["version"], v["source"]) for v in body["versions"]]


async def active(client: httpx.AsyncClient, admin: dict[str, str]) -> int:
    """The version in force, as this process sees it after reloading (its watcher is off)."""
    app: FastAPI = client._transport.app  # type: ignore[attr-defined]
    async with app.state.sessionmaker() as session:
        app.state.rules_registry.replace((await load_registry(session)).versions)
    return int((await client.get("/admin/v1/rules", headers=admin)).json()["active"]["version"])


async def restart_with(settings: Settings, clock: FrozenClock, path: Path, text: str) -> None:
    """Start (and stop) another process whose CANOPY_RULES file holds ``text``."""
    path.write_text(text, encoding="utf-8")
    other = create_app(settings.model_copy(update={"rules": path}), clock=clock, run_worker=False)
    # a changed file runs the guardrail's simulation at start: seconds, on a busy machine more
    async with LifespanManager(other, startup_timeout=60):
        pass


class TestRulesFileAtStart:
    async def test_a_changed_file_does_not_override_a_newer_api_publish(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        settings: Settings,
        clock: FrozenClock,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        published = await client.post(
            "/admin/v1/rules", content=METRO_60, headers=admin_headers | TOML
        )
        assert published.status_code == 201
        with caplog.at_level(logging.WARNING, logger="canopy.rules"):
            await restart_with(settings, clock, tmp_path / "rules.toml", METRO_53)
        assert await versions(client, admin_headers) == [(1, "file"), (2, "api")]
        assert await active(client, admin_headers) == 2
        assert any("canopy rules pull" in r.getMessage() for r in caplog.records)

    async def test_forcing_publishes_the_file_over_a_newer_api_publish(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        clock: FrozenClock,
    ) -> None:
        await client.post("/admin/v1/rules", content=METRO_60, headers=admin_headers | TOML)
        loaded = load_rules_text(METRO_53)
        async with app.state.sessionmaker() as session, session.begin():
            sync = await sync_rules_file(session, loaded, clock.now(), force=True)
        assert sync.outcome is FileOutcome.PUBLISHED
        assert await versions(client, admin_headers) == [(1, "file"), (2, "api"), (3, "file")]
        audit = (await client.get("/admin/v1/audit", headers=admin_headers)).json()["entries"]
        assert audit[0]["action"] == "rules.file_published" and "forced" in audit[0]["summary"]

    async def test_a_changed_file_is_published_once_when_nothing_newer_exists(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        settings: Settings,
        clock: FrozenClock,
        tmp_path: Path,
    ) -> None:
        path = tmp_path / "rules.toml"
        await restart_with(settings, clock, path, METRO_53)
        await restart_with(settings, clock, path, METRO_53)  # the same file again: nothing
        assert await versions(client, admin_headers) == [(1, "file"), (2, "file")]
        assert await active(client, admin_headers) == 2

    async def test_the_guardrail_refuses_a_harsh_file(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        settings: Settings,
        clock: FrozenClock,
        tmp_path: Path,
    ) -> None:
        await restart_with(settings, clock, tmp_path / "rules.toml", HARSH)
        assert await versions(client, admin_headers) == [(1, "file")]

    async def test_a_pulled_file_follows_the_live_rules(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        settings: Settings,
        clock: FrozenClock,
        tmp_path: Path,
    ) -> None:
        await client.post("/admin/v1/rules", content=METRO_60, headers=admin_headers | TOML)
        path = tmp_path / "rules.toml"
        # the file now holds what the API published: it adopts that version, publishes nothing
        await restart_with(settings, clock, path, METRO_60)
        assert await versions(client, admin_headers) == [(1, "file"), (2, "api")]
        # a designer edits the pulled file: that change is published at the next start
        edited = METRO_60.replace("energy_per_event_g = 60", "energy_per_event_g = 61", 1)
        await restart_with(settings, clock, path, edited)
        assert await versions(client, admin_headers) == [(1, "file"), (2, "api"), (3, "file")]


def load_rules_text(text: str):  # type: ignore[no-untyped-def]
    from app.rules.loader import LoadedRules, parse_rules_text, rules_sha256

    return LoadedRules(parse_rules_text(text), text, rules_sha256(text))


class TestRollback:
    async def test_publishing_an_earlier_text_again_rolls_back(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        await client.post("/admin/v1/rules", content=METRO_60, headers=admin_headers | TOML)
        rollback = await client.post(
            "/admin/v1/rules", content=DEFAULT, headers=admin_headers | TOML
        )
        assert rollback.status_code == 201 and rollback.json()["version"] == 3
        assert rollback.json()["sha256"] == load_rules(None).sha256
        assert await active(client, admin_headers) == 3
        retried = await client.post(
            "/admin/v1/rules", content=DEFAULT, headers=admin_headers | TOML
        )
        assert retried.status_code == 200 and retried.json()["version"] == 3


class TestPullCommand:
    async def test_pull_writes_the_exact_text_in_force(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        await client.post("/admin/v1/rules", content=METRO_60, headers=admin_headers | TOML)
        monkeypatch.setenv("CANOPY_DATABASE_URL", settings.database_url or "")
        monkeypatch.setenv("CANOPY_REDIS_URL", settings.redis_url or "")
        get_settings.cache_clear()
        live, first = tmp_path / "live.toml", tmp_path / "v1.toml"
        try:
            invoke = CliRunner().invoke
            pulled = await asyncio.to_thread(invoke, rules_app, ["pull", "-o", str(live)])
            old = await asyncio.to_thread(
                invoke, rules_app, ["pull", "--version", "1", "-o", str(first)]
            )
            missing = await asyncio.to_thread(invoke, rules_app, ["pull", "--version", "99"])
            # rolling back from the command line: publish the pulled earlier version
            rollback = await asyncio.to_thread(invoke, rules_app, ["publish", str(first)])
        finally:
            get_settings.cache_clear()
        assert pulled.exit_code == 0, pulled.output
        assert "version 2" in pulled.output
        assert live.read_bytes() == METRO_60.encode()
        assert old.exit_code == 0 and first.read_bytes() == DEFAULT.encode()
        assert hashlib.sha256(first.read_bytes()).hexdigest() == load_rules(None).sha256
        assert missing.exit_code == 1
        assert rollback.exit_code == 0 and "published version 3" in rollback.output
        listed = (await client.get("/admin/v1/rules", headers=admin_headers)).json()["versions"]
        assert [(v["version"], v["source"]) for v in listed][-1] == (3, "cli")
        assert listed[-1]["sha256"] == load_rules(None).sha256


class TestUpgradeFromBeforeSources:
    def test_sources_come_from_the_audit_log(self, test_servers: TestServers) -> None:
        url = fresh_database(test_servers, "canopy_rules_src")
        try:
            migrate.upgrade(url, "6b1d2e3f4a51")  # the revision before sources existed
            asyncio.run(_seed_old_versions(url))
            migrate.upgrade(url)
            rows = asyncio.run(
                _fetch(
                    url,
                    "SELECT version, source, file_synced_at IS NOT NULL AS baseline FROM rules_versions ORDER BY version",
                )
            )
            assert [tuple(r) for r in rows] == [
                (1, "file", False),
                (2, "api", False),
                (3, "cli", False),
                (4, "file", True),
            ]
        finally:
            drop_database(test_servers, url)

    def test_down_and_up_again_after_a_rollback(self, test_servers: TestServers) -> None:
        url = fresh_database(test_servers, "canopy_rules_down")
        try:
            migrate.upgrade(url)
            asyncio.run(_seed_old_versions(url, same_text=True))  # a text published twice
            migrate.downgrade(url, "6b1d2e3f4a51")  # keeps a plain index: cannot be unique
            migrate.upgrade(url)
            rows = asyncio.run(_fetch(url, "SELECT count(*) AS n FROM rules_versions"))
            assert rows[0]["n"] == 4
        finally:
            drop_database(test_servers, url)


async def _seed_old_versions(url: str, *, same_text: bool = False) -> None:
    conn = await asyncpg.connect(_plain_dsn(url))
    try:
        for v in (1, 2, 3, 4):
            await conn.execute(
                "INSERT INTO rules_versions (version, sha256, label, text, effective_from, created_at) "
                "VALUES ($1, $2, 'x', 'x', now(), now())",
                v,
                f"{1 if same_text else v:064d}",
            )
        for v, actor in ((2, "admin-token"), (3, "cli")):
            await conn.execute(
                "INSERT INTO audit_entries (at, actor, action, target, summary) "
                "VALUES (now(), $1, 'rules.published', $2, '')",
                actor,
                f"rules:{v}",
            )
    finally:
        await conn.close()


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(_plain_dsn(url))
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()
