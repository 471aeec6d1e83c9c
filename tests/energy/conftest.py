"""Shared helpers for energy tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from app.core.clock import FrozenClock


def event(
    clock: FrozenClock,
    eid: str,
    kind: str = "metro",
    ago: timedelta = timedelta(minutes=30),
    **extra: Any,
) -> dict[str, Any]:
    when: datetime = clock.now() - ago
    return {"id": eid, "kind": kind, "occurred_at": when.isoformat(), **extra}


async def ledger_ok(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> dict[str, Any]:
    report: dict[str, Any] = (
        await client.get("/admin/v1/ledger/check", headers=admin_headers)
    ).json()
    assert report["ok"], report
    return report


@pytest.fixture
def partner_key():  # type: ignore[no-untyped-def]
    async def create(
        client: httpx.AsyncClient, admin_headers: dict[str, str], scopes: list[str] | None = None
    ) -> str:
        response = await client.post(
            "/admin/v1/partners",
            json={"name": "Metro Co", "scopes": scopes or ["activities"]},
            headers=admin_headers,
        )
        assert response.status_code == 201, response.text
        return str(response.json()["api_key"])

    return create
