"""Shared helpers for the social-game tests: friendships, energy, rules swaps."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from app.core.clock import FrozenClock
from tests.helpers import Player

BUS_G = 80  # one bus ride's ball in the shipped rules


def z(moment: Any) -> str:
    """A datetime as the API writes it (RFC 3339, UTC, ``Z``)."""
    return str(moment.isoformat().replace("+00:00", "Z"))


async def befriend(client: httpx.AsyncClient, a: Player, b: Player) -> None:
    """Make ``a`` and ``b`` friends: a asks, b accepts."""
    asked = await client.post("/v1/friend-requests", json={"handle": b.handle}, headers=a.headers)
    assert asked.status_code == 201, asked.text
    accepted = await client.post(
        f"/v1/friend-requests/{asked.json()['id']}/accept", headers=b.headers
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"


async def mint(
    client: httpx.AsyncClient, clock: FrozenClock, player: Player, rides: int = 1
) -> list[str]:
    """Report ``rides`` bus rides (80 g each) half an hour ago; returns the new ball ids."""
    when = clock.now() - timedelta(minutes=30)
    batch = {
        "activities": [
            {"id": uuid.uuid4().hex, "kind": "bus", "occurred_at": when.isoformat()}
            for _ in range(rides)
        ]
    }
    response = await client.post("/v1/activities/batch", json=batch, headers=player.headers)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["minted"] * rides, results
    return [str(r["ball_id"]) for r in results]


async def collect_own(client: httpx.AsyncClient, player: Player) -> dict[str, Any]:
    response = await client.post("/v1/forest/collect", json={}, headers=player.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def fund(
    client: httpx.AsyncClient, clock: FrozenClock, *rides: tuple[Player, int]
) -> dict[str, int]:
    """Give each (player, n) n x 80 g on their balance: mint, let it ripen (the clock moves
    24 h), collect. Returns each handle's balance."""
    for player, count in rides:
        await mint(client, clock, player, count)
    clock.advance(hours=24)
    balances = {}
    for player, _ in rides:
        balances[player.handle] = (await collect_own(client, player))["balance_g"]
    return balances


async def balance(client: httpx.AsyncClient, player: Player) -> int:
    return int((await client.get("/v1/me", headers=player.headers)).json()["balance_g"])


def swap_rules(app: FastAPI, section: str, **changes: Any) -> None:
    """Replace keys of one rules section (``stealing``, ``watering``...) in the rules in force."""
    registry = app.state.rules_registry
    now = app.state.clock.now()
    rules = registry.at(now).rules
    table = getattr(rules, section)
    registry.replace_active_rules(
        rules.model_copy(update={section: table.model_copy(update=changes)}), now
    )


def swap_prop(app: FastAPI, prop_type: str, **changes: Any) -> None:
    """Replace keys of one prop type's rules (``cost_g``, ``duration``)."""
    registry = app.state.rules_registry
    now = app.state.clock.now()
    rules = registry.at(now).rules
    props = dict(rules.props)
    props[prop_type] = props[prop_type].model_copy(update=changes)
    registry.replace_active_rules(rules.model_copy(update={"props": props}), now)


async def feed(client: httpx.AsyncClient, player: Player, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/feed", params=params, headers=player.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
