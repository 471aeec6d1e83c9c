"""The hot routes' round-trip budget: ≤ 1 PostgreSQL and ≤ 1 Redis round trip per request."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.roundtrips import Meter


@pytest.fixture
def meter(metered: tuple[FastAPI, Meter]) -> Meter:
    return metered[1]


@pytest.fixture
async def mclient(metered: tuple[FastAPI, Meter]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=metered[0], raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
