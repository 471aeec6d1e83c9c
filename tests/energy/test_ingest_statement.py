"""The one-statement ingestion against its Python definition, and under real concurrency.

- The caps walked in SQL give exactly what :func:`app.energy.ingest.apply_caps` gives, request
  after request, for random batches across users in different zones, late events, duplicates,
  month ends and a rules version that changes caps in the middle of a local day.
- Batches naming the same users in different orders neither deadlock nor mint twice.
- A request that waited for another one on the same user sees what that one recorded.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.core.users import UserRef
from app.energy.ingest import Incoming, Outcome, apply_caps, evaluate
from app.energy.repository import CapKey, Counter
from app.rules.loader import LoadedRules, load_rules, parse_rules_text, rules_sha256
from app.rules.registry import load_registry, publish
from tests.energy.conftest import ledger_ok
from tests.helpers import Player, register


def _section(toml: str, table: str, old: str, new: str) -> str:
    """Replace ``old`` with ``new`` inside one ``[table]`` of a rules file."""
    pattern = re.compile(rf"(\[{re.escape(table)}\]\n(?:(?!\n\[).)*)", re.S)
    match = pattern.search(toml)
    assert match and old in match.group(1), (table, old)
    return toml[: match.start()] + match.group(1).replace(old, new) + toml[match.end() :]


async def publish_tighter_caps(app: FastAPI, effective_from: datetime) -> None:
    """Version 2 from ``effective_from``: metro 3 a day, walking 200 g a day, bus uncapped (and
    so reported by partners only), cycling 20 km a day, hospital bookings 2 a month."""
    toml = load_rules(None).text
    toml = _section(toml, "activities.metro", "daily_cap_count = 5", "daily_cap_count = 3")
    toml = _section(toml, "activities.walking", "daily_cap_g = 296", "daily_cap_g = 200")
    toml = _section(
        toml,
        "activities.bus",
        'daily_cap_count = 5\nsources = ["partner", "client"]',
        'sources = ["partner"]',
    )
    toml = _section(toml, "activities.cycling", "max_units_per_day = 200", "max_units_per_day = 20")
    toml = _section(
        toml, "activities.hospital_booking", "monthly_cap_count = 5", "monthly_cap_count = 2"
    )
    loaded = LoadedRules(rules=parse_rules_text(toml), text=toml, sha256=rules_sha256(toml))
    async with app.state.sessionmaker() as session, session.begin():
        await publish(session, loaded, effective_from=effective_from, now=effective_from)
        app.state.rules_registry.replace((await load_registry(session)).versions)


class Model:
    """The Python definition: evaluate, duplicates, then apply_caps in order of occurrence."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.counters: dict[CapKey, Counter] = {}
        self.recorded: dict[tuple[str, str, str], tuple[str, int, int]] = {}

    def ingest(
        self,
        source: str,
        origin: str,
        events: list[tuple[UserRef, Incoming]],
        now: datetime,
    ) -> list[tuple[str, int, int | None]]:
        registry = self.app.state.rules_registry
        answers: list[tuple[str, int, int | None] | None] = [None] * len(events)
        pending = []
        for index, (user, event) in enumerate(events):
            evaluated = evaluate(index, user, event, origin, registry, now)
            if isinstance(evaluated, Outcome):
                answers[index] = ("rejected", 0, evaluated.rules_version)
                continue
            found = self.recorded.get((str(user.id), source, event.external_id))
            if found is not None:
                answers[index] = ("duplicate", found[1], found[2])
                continue
            pending.append(evaluated)
        for p in sorted(pending, key=lambda p: (p.event.occurred_at, p.index)):
            for _, key in p.cap_keys:
                self.counters.setdefault(key, Counter(0, 0))
            grams = apply_caps(p, self.counters)
            status = "minted" if grams == p.computed_g else "capped"
            answers[p.index] = (status, grams, p.rules.version)
            self.recorded[(str(p.user.id), source, p.event.external_id)] = (
                status,
                grams,
                p.rules.version,
            )
        return [a for a in answers if a is not None]


KINDS: dict[str, list[str]] = {
    "client": ["metro", "bus", "walking", "cycling"],
    "partner": ["metro", "bus", "walking", "offline_payment", "hospital_booking", "utility_bill"],
}


def random_event(rng: random.Random, kind: str, now: datetime) -> Incoming:
    when = now - timedelta(minutes=rng.randrange(0, 7 * 24 * 60 - 5))
    quantity = None
    if kind == "walking":
        quantity = Decimal(rng.choice([40, 3_000, 9_000, 12_000, 17_940]))
    elif kind == "cycling":
        quantity = Decimal(rng.choice(["1.5", "7", "12.25"]))
    return Incoming(uuid.uuid4().hex[:12], kind, when.replace(microsecond=0), quantity)


def body(event: Incoming, user: Player | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": event.external_id,
        "kind": event.kind,
        "occurred_at": event.occurred_at.isoformat(),
    }
    if event.quantity is not None:
        out["quantity"] = str(event.quantity)
    if user is not None:
        out["user_id"] = user.id
    return out


async def db_counters(app: FastAPI) -> dict[CapKey, tuple[int, int, Decimal]]:
    async with app.state.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT user_id, kind, period, period_start, count, grams, units FROM cap_counters"
            )
        )
        return {(r[0], r[1], r[2], r[3]): (r[4], r[5], r[6]) for r in rows if r[4] or r[5]}


class TestCapsWalkIsApplyCaps:
    async def test_random_requests_mint_what_apply_caps_mints(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        rng = random.Random(20261203)
        clock.set(datetime(2026, 12, 3, 4, 0, tzinfo=UTC))  # the window spans a month end
        now = clock.now()
        await publish_tighter_caps(app, now - timedelta(hours=30))
        shanghai = await register(client, "shanghai_user", timezone="Asia/Shanghai")
        new_york = await register(client, "new_york_user", timezone="America/New_York")
        refs = {
            p.id: UserRef(uuid.UUID(p.id), tz, None)
            for p, tz in ((shanghai, "Asia/Shanghai"), (new_york, "America/New_York"))
        }
        created = await client.post(
            "/admin/v1/partners",
            json={"name": "Transit Co", "scopes": ["activities"]},
            headers=admin_headers,
        )
        partner = created.json()
        partner_headers = {"Authorization": f"Bearer {partner['api_key']}"}
        model = Model(app)
        sent: dict[str, list[tuple[Player | None, Incoming]]] = {"client": [], "partner": []}
        for _ in range(40):
            origin = rng.choice(["client", "partner"])
            events: list[tuple[Player, Incoming]] = []
            owner = rng.choice([shanghai, new_york])
            for _ in range(rng.randrange(1, 12)):
                player = owner if origin == "client" else rng.choice([shanghai, new_york])
                earlier = [e for p, e in sent[origin] if p is player or origin == "client"]
                if earlier and rng.random() < 0.15:
                    event = rng.choice(earlier)  # sent before: a duplicate
                else:
                    event = random_event(rng, rng.choice(KINDS[origin]), now)
                if any(e.external_id == event.external_id and p is player for p, e in events):
                    continue
                events.append((player, event))
            if origin == "client":
                source = "client"
                response = await client.post(
                    "/v1/activities/batch",
                    json={"activities": [body(e) for _, e in events]},
                    headers=owner.headers,
                )
            else:
                source = f"partner:{partner['id']}"
                response = await client.post(
                    "/partner/v1/activities/batch",
                    json={"activities": [body(e, p) for p, e in events]},
                    headers=partner_headers,
                )
            assert response.status_code == 200, response.text
            got = [
                (r["status"], r["energy_g"], r["rules_version"]) for r in response.json()["results"]
            ]
            expected = model.ingest(source, origin, [(refs[p.id], e) for p, e in events], now)
            assert got == expected, [e for _, e in events]
            sent[origin].extend((p if origin == "partner" else owner, e) for p, e in events)
        assert await db_counters(app) == {
            k: (c.count, c.grams, c.units) for k, c in model.counters.items() if c.count or c.grams
        }
        statuses = {s for s, _, _ in model.recorded.values()}
        assert statuses == {"minted", "capped"}  # the walk had caps to apply
        assert {v for _, _, v in model.recorded.values()} == {1, 2}  # under both versions
        await ledger_ok(client, admin_headers)


class TestConcurrentBatches:
    @pytest.mark.parametrize(
        "kinds",
        [
            pytest.param(("etc_toll",), id="uncapped"),  # no counter to queue on: only users
            pytest.param(("metro", "etc_toll"), id="capped-and-uncapped"),
        ],
    )
    async def test_batches_naming_the_same_users_in_different_orders_all_succeed(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
        kinds: tuple[str, ...],
    ) -> None:
        riders = [uuid.uuid4() for _ in range(200)]
        async with app.state.engine.begin() as conn:
            # the riders among a realistic users table, so that the planner reaches users by
            # index in each batch's own order (a seq scan would lock them in one order anyway)
            await conn.execute(
                text(
                    "INSERT INTO users (id, timezone, balance_g, collected_total_g, "
                    "co2e_avoided_g, created_at, updated_at) SELECT id, 'Asia/Shanghai', 0, 0, "
                    "0, now(), now() FROM unnest(CAST(:riders AS uuid[])) AS id UNION ALL "
                    "SELECT gen_random_uuid(), 'Asia/Shanghai', 0, 0, 0, now(), now() "
                    "FROM generate_series(1, 20000)"
                ),
                {"riders": riders},
            )
            await conn.execute(text("ANALYZE users"))
        created = await client.post(
            "/admin/v1/partners",
            json={"name": "Transit Co", "scopes": ["activities"]},
            headers=admin_headers,
        )
        headers = {"Authorization": f"Bearer {created.json()['api_key']}"}
        now = clock.now()

        def batch(seed: int) -> dict[str, Any]:
            order = list(riders)
            random.Random(seed).shuffle(order)
            if seed % 2:
                order.reverse()
            return {
                "activities": [
                    {
                        "id": f"b{seed}-{i}-{kind}",
                        "kind": kind,
                        "occurred_at": (now - timedelta(minutes=i)).isoformat(),
                        "user_id": str(p),
                    }
                    for i, p in enumerate(order)
                    for kind in kinds
                ]
            }

        responses = await asyncio.gather(
            *(
                client.post("/partner/v1/activities/batch", json=batch(s), headers=headers)
                for s in range(8)
            )
        )
        assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
        results = [r for resp in responses for r in resp.json()["results"]]
        metro = [r for r in results if r["kind"] == "metro"]
        # each rider's 8 metro rides: the daily cap's 5 minted, whatever the order
        assert sum(r["status"] == "minted" for r in metro) == (5 * len(riders) if metro else 0)
        assert all(r["status"] == "minted" for r in results if r["kind"] == "etc_toll")
        async with app.state.engine.connect() as conn:
            mismatched = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM users u WHERE u.co2e_avoided_g <> (SELECT "
                        "coalesce(sum(amount_g), 0) FROM energy_balls b WHERE b.user_id = u.id)"
                    )
                )
            ).scalar_one()
        assert mismatched == 0
        await ledger_ok(client, admin_headers)

    async def test_the_same_event_sent_at_once_is_recorded_once_and_answered_alike(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice")
        event = {
            "id": "ride",
            "kind": "metro",
            "occurred_at": (clock.now() - timedelta(minutes=5)).isoformat(),
        }
        responses = await asyncio.gather(
            *(client.post("/v1/activities", json=event, headers=alice.headers) for _ in range(20))
        )
        assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
        bodies = [r.json() for r in responses]
        assert sorted(b["status"] for b in bodies) == ["duplicate"] * 19 + ["minted"]
        # every duplicate names the original: recorded by a request it waited for
        assert {(b["energy_g"], b["ball_id"]) for b in bodies} == {(52, bodies[0]["ball_id"])}
        async with app.state.engine.connect() as conn:
            balls = (await conn.execute(text("SELECT count(*) FROM energy_balls"))).scalar_one()
        assert balls == 1
        await ledger_ok(client, admin_headers)


class TestGoneUsers:
    @pytest.mark.parametrize(
        ("method", "path", "payload"),
        [
            ("POST", "/v1/activities", "event"),
            ("POST", "/v1/activities/batch", "batch"),
            ("PUT", "/v1/steps/2026-11-28", "steps"),
        ],
    )
    async def test_a_user_row_that_is_gone_is_401(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        method: str,
        path: str,
        payload: str,
    ) -> None:
        alice = await register(client, "alice")
        event = {"id": "x", "kind": "metro", "occurred_at": clock.now().isoformat()}
        json: dict[str, Any] = {
            "event": event,
            "batch": {"activities": [event]},
            "steps": {"steps": 1000},
        }[payload]
        async with app.state.engine.begin() as conn:  # erased behind the login's back
            await conn.execute(text("UPDATE users SET erased_at = now()"))
        response = await client.request(method, path, json=json, headers=alice.headers)
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "unauthorized"
