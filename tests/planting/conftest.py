"""Helpers for planting tests: NGO partners, catalog items, users with energy, a webhook
receiver on loopback."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from app.rules.schema import PlantingRules
from tests.helpers import Player

SAXAUL = {
    "kind": "tree",
    "name": "Saxaul",
    "species": "Haloxylon ammodendron",
    "cost_g": 17_900,
    "region": "Alxa League, Inner Mongolia",
    "budget": 100,
    "status": "available",
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class NGO:
    id: str
    api_key: str
    webhook_secret: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.api_key)


async def create_ngo(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    name: str = "Desert Greening NGO",
    webhook_url: str | None = None,
    scopes: list[str] | None = None,
) -> NGO:
    body: dict[str, Any] = {"name": name, "scopes": scopes or ["orders"]}
    if webhook_url:
        body["webhook_url"] = webhook_url
    response = await client.post("/admin/v1/partners", json=body, headers=admin_headers)
    assert response.status_code == 201, response.text
    created = response.json()
    return NGO(created["id"], created["api_key"], created["webhook_secret"])


async def add_item(
    client: httpx.AsyncClient, admin_headers: dict[str, str], partner_id: str, **overrides: Any
) -> dict[str, Any]:
    body = {**SAXAUL, "partner_id": partner_id, **overrides}
    response = await client.post("/admin/v1/catalog", json=body, headers=admin_headers)
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


async def fund(app: FastAPI, user_id: str, grams: int) -> None:
    """Give a user energy the way minting and collecting would end: a balanced transfer from
    ``system:minted`` into the balance (keeps the ledger check green without waiting a day)."""
    version = app.state.rules_registry.at(app.state.clock.now()).version
    async with app.state.engine.begin() as conn:
        balance = (
            await conn.execute(
                text(
                    "UPDATE users SET balance_g = balance_g + :g WHERE id = :u RETURNING balance_g"
                ),
                {"g": grams, "u": uuid.UUID(user_id)},
            )
        ).scalar_one()
        transfer = uuid.uuid4()
        for account, user, amount, after in (
            ("system:minted", None, -grams, None),
            ("user", uuid.UUID(user_id), grams, balance),
        ):
            await conn.execute(
                text(
                    "INSERT INTO ledger_entries (transfer_id, account, user_id, amount_g, "
                    "balance_after_g, reason, ref, rules_version, at) VALUES (:t, :a, :u, :g, "
                    ":after, 'mint', 'test:fund', :v, :at)"
                ),
                {
                    "t": transfer,
                    "a": account,
                    "u": user,
                    "g": amount,
                    "after": after,
                    "v": version,
                    "at": app.state.clock.now(),
                },
            )


async def quick_players(app: FastAPI, count: int, prefix: str = "p") -> list[Player]:
    """Users with a live login, inserted directly (registering hashes passwords: slow)."""
    now = app.state.clock.now()
    players = []
    async with app.state.engine.begin() as conn:
        for n in range(count):
            user_id, session_id = uuid.uuid4(), uuid.uuid4()
            handle = f"{prefix}{n:03d}"
            await conn.execute(
                text(
                    "INSERT INTO users (id, handle, timezone, balance_g, collected_total_g, "
                    "co2e_avoided_g, created_at, updated_at) "
                    "VALUES (:id, :handle, 'Asia/Shanghai', 0, 0, 0, :now, :now)"
                ),
                {"id": user_id, "handle": handle, "now": now},
            )
            await conn.execute(
                text(
                    "INSERT INTO auth_sessions (id, user_id, created_at, refreshed_at) "
                    "VALUES (:id, :user, :now, :now)"
                ),
                {"id": session_id, "user": user_id, "now": now},
            )
            token = app.state.keys.encode_access_token(
                user_id=str(user_id), session_id=str(session_id), now=now, ttl=timedelta(days=365)
            )
            players.append(Player(str(user_id), handle, token, "", {}))
    return players


async def plant(
    client: httpx.AsyncClient, player: Player, item_id: str, quantity: int = 1, **headers: str
) -> dict[str, Any]:
    response = await client.post(
        "/v1/plantings",
        json={"item_id": item_id, "quantity": quantity},
        headers=player.headers | headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def set_planting_rules(app: FastAPI, **values: Any) -> None:
    registry = app.state.rules_registry
    now = app.state.clock.now()
    rules = registry.at(now).rules
    planting: PlantingRules = rules.planting.model_copy(update=values)
    registry.replace_active_rules(rules.model_copy(update={"planting": planting}), now)


async def cut_orders(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> list[Any]:
    response = await client.post("/admin/v1/orders/batch", headers=admin_headers)
    assert response.status_code == 200, response.text
    orders: list[Any] = response.json()["orders"]
    return orders


async def scalar(app: FastAPI, sql: str, **params: Any) -> Any:
    async with app.state.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on loopback: records every request and answers with the next queued
    status (then ``status``), after ``delay`` seconds."""

    status: int = 200
    queued: list[int] = field(default_factory=list)
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hooks"

    async def start(self) -> Receiver:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            lines = head.split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip()
                for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(method, path, headers, body))
            status = self.queued.pop(0) if self.queued else self.status
            if self.delay:
                await asyncio.sleep(self.delay)
            reply = f"HTTP/1.1 {status} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            writer.write(reply.encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
