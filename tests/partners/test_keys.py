"""Partner keys on the hot routes: verified once per process, dropped everywhere within a second
of a rotation or a change (NOTIFY on commit, a 1 s poll as backstop, at once in the process that
made the change)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text

from app.config import Settings
from app.core.clock import FrozenClock
from app.core.security import digest
from app.main import create_app
from app.partners.service import rotate_key
from tests.helpers import Player, assert_problem, register


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def new_partner(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> dict[str, Any]:
    response = await client.post(
        "/admin/v1/partners",
        json={"name": "Metro Co", "scopes": ["activities"]},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def report(
    client: httpx.AsyncClient, clock: FrozenClock, user: Player, key: str, eid: str
) -> Awaitable[httpx.Response]:
    event = {
        "id": eid,
        "kind": "etc_toll",
        "occurred_at": (clock.now() - timedelta(minutes=1)).isoformat(),
        "user_id": user.id,
    }
    return client.post("/partner/v1/activities", json=event, headers=bearer(key))


async def within_a_second(check: Callable[[], Awaitable[bool]]) -> bool:
    for _ in range(20):
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.fixture
async def other_process(
    settings: Settings, clock: FrozenClock, app: FastAPI
) -> AsyncIterator[httpx.AsyncClient]:
    """A second API process on the same database, hearing changes by notification only."""
    quiet = settings.model_copy(update={"revocation_poll_seconds": 0})
    second = create_app(quiet, clock=clock, run_worker=False)
    async with LifespanManager(second):
        second.state.rules_registry = app.state.rules_registry
        transport = httpx.ASGITransport(app=second, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


class TestVerifiedKeys:
    async def test_a_rotated_key_is_refused_at_once_by_this_process(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        partner = await new_partner(client, admin_headers)
        assert (await report(client, clock, alice, partner["api_key"], "a")).status_code == 201
        rotated = await client.post(
            f"/admin/v1/partners/{partner['id']}/rotate-key", headers=admin_headers
        )
        assert rotated.status_code == 200
        assert_problem(
            await report(client, clock, alice, partner["api_key"], "b"), 401, "unauthorized"
        )
        fresh = await report(client, clock, alice, rotated.json()["api_key"], "c")
        assert fresh.status_code == 201

    async def test_another_process_drops_a_rotated_key_within_a_second(
        self,
        client: httpx.AsyncClient,
        other_process: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice")
        partner = await new_partner(client, admin_headers)
        old = partner["api_key"]
        assert (await report(other_process, clock, alice, old, "a")).status_code == 201
        # rotated by yet another process: only its commit's notification can tell this one
        async with app.state.sessionmaker() as session, session.begin():
            await rotate_key(session, uuid.UUID(partner["id"]), clock.now())
        n = iter(range(100))

        async def refused() -> bool:
            return (
                await report(other_process, clock, alice, old, f"b{next(n)}")
            ).status_code == 401

        assert await within_a_second(refused)

    async def test_a_disabled_partner_is_refused_everywhere_within_a_second(
        self,
        client: httpx.AsyncClient,
        other_process: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice")
        key = (await new_partner(client, admin_headers))["api_key"]
        for process in (client, other_process):
            assert (await report(process, clock, alice, key, f"a{id(process)}")).status_code == 201
        async with app.state.engine.begin() as conn:
            await conn.execute(text("UPDATE partners SET disabled_at = now()"))
        n = iter(range(100))

        async def refused() -> bool:
            answers = [
                (await report(p, clock, alice, key, f"b{next(n)}")).status_code
                for p in (client, other_process)
            ]
            return answers == [401, 401]

        assert await within_a_second(refused)

    async def test_the_poll_drops_keys_changed_while_nobody_listened(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        key = (await new_partner(client, admin_headers))["api_key"]
        keys = app.state.partner_keys
        assert await keys.verify(digest(key)) is not None
        async with app.state.engine.begin() as conn:
            # a change the trigger does not announce (as if the notification were lost)
            await conn.execute(text("ALTER TABLE partners DISABLE TRIGGER partners_key_changed"))
            await conn.execute(text("UPDATE partners SET api_key_hash = 'gone'"))
            await conn.execute(text("ALTER TABLE partners ENABLE TRIGGER partners_key_changed"))
        assert await keys.verify(digest(key)) is not None  # still held
        await keys.reload()
        assert await keys.verify(digest(key)) is None

    async def test_an_unknown_key_is_401_and_a_key_without_the_scope_403(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        assert_problem(await report(client, clock, alice, "cnp_nope", "a"), 401, "unauthorized")
        orders = await client.post(
            "/admin/v1/partners",
            json={"name": "NGO", "scopes": ["orders"]},
            headers=admin_headers,
        )
        key = orders.json()["api_key"]
        for _ in range(2):  # looked up, then known
            assert_problem(await report(client, clock, alice, key, "b"), 403, "forbidden")
