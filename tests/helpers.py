"""Small helpers shared by API tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

PASSWORD = "correct horse battery"


@dataclass
class Player:
    id: str
    handle: str
    access_token: str
    refresh_token: str
    body: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def register(client: httpx.AsyncClient, handle: str, **extra: Any) -> Player:
    response = await client.post(
        "/v1/auth/register", json={"handle": handle, "password": PASSWORD, **extra}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Player(body["user"]["id"], handle, body["access_token"], body["refresh_token"], body)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is RFC 9457 problem+json with this status and machine code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body
