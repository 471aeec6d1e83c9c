"""Energy's hot writes: ≤ 1 PostgreSQL and ≤ 1 Redis round trip per request, counted on the wire.

Each route is called once to warm up (the first call on a connection prepares its statement, and a
partner key is looked up the first time a process sees it), then measured. The batches mix kinds,
capped events and events sent before, so every part of the statement has work to do.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from app.core.clock import FrozenClock
from tests.helpers import Player, register
from tests.roundtrips import Meter


def _event(clock: FrozenClock, kind: str, minutes_ago: int, **extra: Any) -> dict[str, Any]:
    when: datetime = clock.now() - timedelta(minutes=minutes_ago)
    return {"id": uuid.uuid4().hex, "kind": kind, "occurred_at": when.isoformat(), **extra}


def mixed_batch(clock: FrozenClock, seen: list[dict[str, Any]], size: int = 100) -> list[dict]:
    """``size`` events: metro and bus past their daily cap, walking past its gram cap, uncapped
    cycling, an unknown kind, and the events of ``seen`` again (duplicates)."""
    events = list(seen)
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("metro", {}),
        ("bus", {}),
        ("walking", {"quantity": "6000"}),
        ("cycling", {"quantity": "3.5"}),
        ("teleport", {}),
    ]
    i = 0
    while len(events) < size:
        kind, extra = kinds[i % len(kinds)]
        events.append(_event(clock, kind, 10 + i, **extra))
        i += 1
    return events


async def partner_headers(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> dict:
    response = await client.post(
        "/admin/v1/partners",
        json={"name": "Transit Co", "scopes": ["activities"]},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['api_key']}"}


class TestActivityBudget:
    async def test_one_activity(
        self, mclient: httpx.AsyncClient, meter: Meter, clock: FrozenClock
    ) -> None:
        alice = await register(mclient, "alice")
        warm = await mclient.post(
            "/v1/activities", json=_event(clock, "metro", 90), headers=alice.headers
        )
        assert warm.status_code == 201, warm.text
        async with meter.request() as budget:
            response = await mclient.post(
                "/v1/activities", json=_event(clock, "bus", 5), headers=alice.headers
            )
        assert (response.status_code, response.json()["status"]) == (201, "minted")
        budget.check(pg=1, redis=1)

    async def test_a_duplicate(
        self, mclient: httpx.AsyncClient, meter: Meter, clock: FrozenClock
    ) -> None:
        alice = await register(mclient, "alice")
        event = _event(clock, "metro", 30)
        first = await mclient.post("/v1/activities", json=event, headers=alice.headers)
        async with meter.request() as budget:
            again = await mclient.post("/v1/activities", json=event, headers=alice.headers)
        assert again.json() == first.json() | {"status": "duplicate"}
        budget.check(pg=1, redis=1)

    async def test_a_batch_of_100_mixed_capped_and_duplicate_events(
        self, mclient: httpx.AsyncClient, meter: Meter, clock: FrozenClock
    ) -> None:
        alice = await register(mclient, "alice", region="shenzhen")
        sent = [_event(clock, "metro", 200 + i, quantity="4") for i in range(3)]
        warm = await mclient.post(
            "/v1/activities/batch", json={"activities": sent}, headers=alice.headers
        )
        assert warm.status_code == 200, warm.text
        batch = mixed_batch(clock, sent)
        async with meter.request() as budget:
            response = await mclient.post(
                "/v1/activities/batch", json={"activities": batch}, headers=alice.headers
            )
        assert response.status_code == 200, response.text
        statuses = {r["status"] for r in response.json()["results"]}
        assert statuses == {"minted", "capped", "duplicate", "rejected"}
        budget.check(pg=1, redis=1)


class TestPartnerBudget:
    async def test_one_partner_activity(
        self,
        mclient: httpx.AsyncClient,
        meter: Meter,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(mclient, "alice")
        key = await partner_headers(mclient, admin_headers)
        warm = await mclient.post(
            "/partner/v1/activities",
            json=_event(clock, "utility_bill", 90) | {"user_id": alice.id},
            headers=key,
        )
        assert warm.status_code == 201, warm.text
        async with meter.request() as budget:
            response = await mclient.post(
                "/partner/v1/activities",
                json=_event(clock, "etc_toll", 5) | {"user_id": alice.id},
                headers=key,
            )
        assert (response.status_code, response.json()["status"]) == (201, "minted")
        budget.check(pg=1, redis=1)

    async def test_a_partner_batch_of_100_for_many_users(
        self,
        mclient: httpx.AsyncClient,
        meter: Meter,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        players: list[Player] = [await register(mclient, f"rider_{i}") for i in range(5)]
        key = await partner_headers(mclient, admin_headers)
        sent = [_event(clock, "metro", 300 + i) | {"user_id": p.id} for i, p in enumerate(players)]
        warm = await mclient.post(
            "/partner/v1/activities/batch", json={"activities": sent}, headers=key
        )
        assert warm.status_code == 200, warm.text
        batch = sent + [
            e | {"user_id": players[i % len(players)].id}
            for i, e in enumerate(mixed_batch(clock, [], size=95))
        ]
        batch[-1] = batch[-1] | {"user_id": str(uuid.uuid4())}  # nobody
        batch[-2] = _event(clock, "hospital_booking", 1) | {"user_id": players[0].id}
        async with meter.request() as budget:
            response = await mclient.post(
                "/partner/v1/activities/batch", json={"activities": batch}, headers=key
            )
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert {r["status"] for r in results} == {"minted", "capped", "duplicate", "rejected"}
        assert results[-1]["reason"] == "unknown_user"
        budget.check(pg=1, redis=1)


class TestStepsBudget:
    async def test_a_total_for_an_open_day(
        self, mclient: httpx.AsyncClient, meter: Meter, metered: tuple[FastAPI, Meter]
    ) -> None:
        alice = await register(mclient, "alice", timezone="Asia/Shanghai")
        warm = await mclient.put("/v1/steps/2026-11-29", json={"steps": 10}, headers=alice.headers)
        assert warm.status_code == 200, warm.text
        async with meter.request() as budget:
            response = await mclient.put(
                "/v1/steps/2026-11-29", json={"steps": 8_000}, headers=alice.headers
            )
        assert response.json() == {
            "date": "2026-11-29",
            "steps": 8_000,
            "status": "recording",
            "energy_g": 0,
        }
        budget.check(pg=1, redis=0)

    async def test_a_total_for_an_ended_day_mints_every_ended_day(
        self, mclient: httpx.AsyncClient, meter: Meter, clock: FrozenClock
    ) -> None:
        alice = await register(mclient, "alice", timezone="Asia/Shanghai")
        warm = await mclient.put("/v1/steps/2026-11-29", json={"steps": 10}, headers=alice.headers)
        assert warm.status_code == 200, warm.text
        await mclient.put("/v1/steps/2026-11-27", json={"steps": 4_000}, headers=alice.headers)
        clock.advance(timedelta(days=1))  # Nov 29 is over too
        async with meter.request() as budget:
            response = await mclient.put(
                "/v1/steps/2026-11-28", json={"steps": 10_000}, headers=alice.headers
            )
        assert response.json() == {
            "date": "2026-11-28",
            "steps": 10_000,
            "status": "minted",
            "energy_g": 165,
        }
        budget.check(pg=1, redis=0)


class TestLedgerBudget:
    async def test_a_page_of_the_ledger(
        self, mclient: httpx.AsyncClient, meter: Meter, clock: FrozenClock
    ) -> None:
        alice = await register(mclient, "alice")
        await mclient.get("/v1/energy/ledger", headers=alice.headers)
        async with meter.request() as budget:
            response = await mclient.get("/v1/energy/ledger?limit=5", headers=alice.headers)
        assert response.json() == {"entries": [], "next_cursor": None}
        budget.check(pg=1, redis=0)


class TestCarbonAccountBudget:
    async def test_the_carbon_account_is_one_query_on_the_rollup(
        self, mclient: httpx.AsyncClient, meter: Meter, clock: FrozenClock
    ) -> None:
        alice = await register(mclient, "alice")
        batch = mixed_batch(clock, [], size=40)
        await mclient.post(
            "/v1/activities/batch", json={"activities": batch}, headers=alice.headers
        )
        warm = await mclient.get("/v1/me/carbon", headers=alice.headers)
        assert warm.status_code == 200, warm.text
        async with meter.request() as budget:
            response = await mclient.get("/v1/me/carbon", headers=alice.headers)
        assert response.json()["total_co2e_g"] > 0
        budget.check(pg=1, redis=0)
