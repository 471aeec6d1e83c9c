"""Public endpoints are cheap: /v1/stats is computed at most every 10 s per process and limited
per address; every integer in a path, query or cursor is bounded (4xx, never a 500)."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.clock import FrozenClock
from tests.conftest import set_limits
from tests.helpers import assert_problem, register


class TestStatsAreCheap:
    async def test_stats_are_computed_at_most_every_ten_seconds(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        assert (await client.get("/v1/stats")).json()["users"] == 0
        await register(client, "alice")
        assert (await client.get("/v1/stats")).json()["users"] == 0  # the kept answer
        clock.set(clock.now() + timedelta(seconds=11))
        assert (await client.get("/v1/stats")).json()["users"] == 1

    async def test_one_address_is_limited(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        set_limits(app, stats="60/minute")  # the shipped default
        answers = [(await client.get("/v1/stats")).status_code for _ in range(60)]
        assert answers == [200] * 60
        limited = assert_problem(await client.get("/v1/stats"), 429, "rate_limited")
        assert limited["status"] == 429


def _integer_params(app: FastAPI) -> list[tuple[str, str, str, str]]:
    """(method, path, where, name) of every integer path or query parameter in the schema."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            for param in operation.get("parameters", []):
                schema: dict[str, Any] = param.get("schema", {})
                kinds = [schema.get("type")] + [s.get("type") for s in schema.get("anyOf", [])]
                if "integer" in kinds:
                    found.append((method, path, param["in"], param["name"]))
    return found


class TestIntegersAreBounded:
    async def test_out_of_range_integers_answer_4xx(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        user = await register(client, "alice")
        params = _integer_params(app)
        assert ("get", "/admin/v1/rules/{version}", "path", "version") in params
        for method, path, where, name in params:
            for value in (2**31, 2**63, -(2**63) - 1, 10**30):
                url = re.sub(r"\{[^}]+\}", "1", path)
                query: dict[str, Any] = {}
                if where == "path":
                    url = path.replace("{" + name + "}", str(value))
                    url = re.sub(r"\{[^}]+\}", "1", url)
                else:
                    query[name] = value
                auth = admin_headers if path.startswith("/admin") else user.headers
                response = await client.request(method, url, params=query, headers=auth)
                assert 400 <= response.status_code < 500, (method, url, value, response.text)

    @pytest.mark.parametrize("position", ["99999999999999999999", "-99999999999999999999"])
    async def test_a_cursor_beyond_a_bigint_is_422(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], position: str
    ) -> None:
        user = await register(client, "alice")
        cursor = base64.urlsafe_b64encode(f"v1:{position}".encode()).decode().rstrip("=")
        for url, headers in (
            ("/v1/energy/ledger", user.headers),
            ("/v1/feed", user.headers),
            ("/v1/plantings", user.headers),
            ("/admin/v1/audit", admin_headers),
        ):
            response = await client.get(url, params={"cursor": cursor}, headers=headers)
            assert_problem(response, 422, "validation_error")
