"""A revoked login stops working in every process within a second, without a query per request."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.config import Settings
from app.core.clock import FrozenClock
from app.main import create_app
from tests.helpers import register


@contextlib.asynccontextmanager
async def _second_app(
    settings: Settings, clock: FrozenClock, poll: float
) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same database, standing for another API process."""
    second = create_app(settings.model_copy(update={"revocation_poll_seconds": poll}), clock=clock)
    async with LifespanManager(second):
        transport = httpx.ASGITransport(app=second, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as c:
            yield c


@pytest.fixture
async def other_process(
    app: FastAPI, settings: Settings, clock: FrozenClock
) -> AsyncIterator[httpx.AsyncClient]:
    """Learns of revocations by notification only (no poll)."""
    async with _second_app(settings, clock, 0) as c:
        yield c


@pytest.fixture
async def polling_process(
    app: FastAPI, settings: Settings, clock: FrozenClock
) -> AsyncIterator[httpx.AsyncClient]:
    async with _second_app(settings, clock, 0.2) as c:
        yield c


async def _refused_within(
    client: httpx.AsyncClient, headers: dict[str, str], limit: float
) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if (await client.get("/v1/me", headers=headers)).status_code == 401:
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"still accepted after {limit} s")


async def _reuse_refresh_token(client: httpx.AsyncClient, refresh_token: str) -> None:
    first = await client.post("/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert first.status_code == 200
    again = await client.post("/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert again.status_code == 401


class TestRevocationAcrossProcesses:
    async def test_reuse_detected_here_is_refused_there_within_a_second(
        self, client: httpx.AsyncClient, other_process: httpx.AsyncClient
    ) -> None:
        alice = await register(client, "alice")
        assert (await other_process.get("/v1/me", headers=alice.headers)).status_code == 200
        await _reuse_refresh_token(client, alice.refresh_token)
        # this process knows at once; the other learns by NOTIFY on commit
        assert (await client.get("/v1/me", headers=alice.headers)).status_code == 401
        assert await _refused_within(other_process, alice.headers, 1.0) < 1.0

    async def test_the_poll_catches_a_revocation_whose_notification_was_lost(
        self, client: httpx.AsyncClient, polling_process: httpx.AsyncClient
    ) -> None:
        other_process = polling_process
        alice = await register(client, "alice")
        assert (await other_process.get("/v1/me", headers=alice.headers)).status_code == 200
        other_app: FastAPI = other_process._transport.app  # type: ignore[attr-defined]
        listener = other_app.state.revocations._listener
        await listener.close()  # as if the connection had dropped: no NOTIFY reaches it
        await _reuse_refresh_token(client, alice.refresh_token)
        assert await _refused_within(other_process, alice.headers, 1.0) < 1.0

    async def test_erasure_ends_every_login_everywhere(
        self, client: httpx.AsyncClient, other_process: httpx.AsyncClient
    ) -> None:
        alice = await register(client, "alice")
        erased = await client.request(
            "DELETE", "/v1/me", headers=alice.headers, json={"password": "correct horse battery"}
        )
        assert erased.status_code == 204
        assert await _refused_within(other_process, alice.headers, 1.0) < 1.0

    async def test_a_live_login_is_not_refused(
        self, client: httpx.AsyncClient, other_process: httpx.AsyncClient
    ) -> None:
        alice = await register(client, "alice")
        bob = await register(client, "bob")
        await _reuse_refresh_token(client, alice.refresh_token)
        await asyncio.sleep(0.5)
        assert (await other_process.get("/v1/me", headers=bob.headers)).status_code == 200
