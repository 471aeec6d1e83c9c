"""Rules versions in the database: content-hashed, immutable, chosen by the event's time."""

from __future__ import annotations

from datetime import timedelta

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text

from app.config import Settings
from app.core.clock import FrozenClock
from app.main import create_app
from app.rules.loader import LoadedRules, load_rules, parse_rules_text, rules_sha256
from app.rules.registry import load_registry, publish
from tests.helpers import register


async def versions(app: FastAPI) -> list[tuple[int, str]]:
    async with app.state.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT version, sha256 FROM rules_versions ORDER BY version")
        )
        return [(r[0], r[1]) for r in rows]


class TestRulesVersions:
    async def test_startup_stores_the_rules_once(
        self, app: FastAPI, settings: Settings, clock: FrozenClock
    ) -> None:
        shipped = load_rules(None)
        assert await versions(app) == [(1, shipped.sha256)]
        # a second process starting with the same file publishes nothing new
        async with LifespanManager(create_app(settings, clock=clock, run_worker=False)):
            pass
        assert await versions(app) == [(1, shipped.sha256)]

    async def test_balls_entries_and_activities_record_their_version(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        alice = await register(client, "alice")
        body = {
            "id": "r1",
            "kind": "metro",
            "occurred_at": (clock.now() - timedelta(hours=1)).isoformat(),
        }
        await client.post("/v1/activities", json=body, headers=alice.headers)
        async with app.state.engine.connect() as conn:
            used = {
                table: (await conn.execute(text(f"SELECT DISTINCT rules_version FROM {table}")))
                .scalars()
                .all()
                for table in ("activities", "energy_balls", "ledger_entries")
            }
        assert used == {"activities": [1], "energy_balls": [1], "ledger_entries": [1]}

    async def test_an_event_is_valued_by_the_rules_of_its_time(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        alice = await register(client, "alice")
        switch = clock.now() - timedelta(hours=2)
        text_v2 = load_rules(None).text.replace(
            "energy_per_event_g = 52", "energy_per_event_g = 60", 1
        )
        assert "energy_per_event_g = 60" in text_v2
        loaded = LoadedRules(
            rules=parse_rules_text(text_v2), text=text_v2, sha256=rules_sha256(text_v2)
        )
        async with app.state.sessionmaker() as session, session.begin():
            await publish(session, loaded, effective_from=switch, now=clock.now())
            app.state.rules_registry = await load_registry(session)
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

    async def test_publishing_known_content_is_a_no_op(
        self, app: FastAPI, clock: FrozenClock
    ) -> None:
        shipped = load_rules(None)
        async with app.state.sessionmaker() as session, session.begin():
            again = await publish(
                session, shipped, effective_from=clock.now() + timedelta(days=1), now=clock.now()
            )
        assert again.version == 1 and again.effective_from <= clock.now()
        assert len(await versions(app)) == 1
