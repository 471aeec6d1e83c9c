"""Props (cards): /v1/props inventory, use, buy; /admin/v1/props/grant; active props on forests."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.clock import FrozenClock
from tests.energy.conftest import ledger_ok
from tests.helpers import Player, assert_problem, register
from tests.social.helpers_social import balance, befriend, fund, swap_prop, z


async def grant(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    player: Player,
    prop_type: str,
    count: int = 1,
) -> httpx.Response:
    return await client.post(
        "/admin/v1/props/grant",
        json={"user_id": player.id, "type": prop_type, "count": count},
        headers=admin_headers,
    )


async def inventory(client: httpx.AsyncClient, player: Player) -> dict[str, dict[str, Any]]:
    response = await client.get("/v1/props", headers=player.headers)
    assert response.status_code == 200, response.text
    return {p["type"]: p for p in response.json()["props"]}


async def use(client: httpx.AsyncClient, player: Player, prop_type: str) -> httpx.Response:
    return await client.post(f"/v1/props/{prop_type}/use", headers=player.headers)


async def buy(
    client: httpx.AsyncClient, player: Player, prop_type: str, key: str | None = None
) -> httpx.Response:
    headers = player.headers | ({"Idempotency-Key": key} if key else {})
    return await client.post(f"/v1/props/{prop_type}/buy", headers=headers)


class TestInventory:
    async def test_a_new_user_holds_none_of_each_type(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        response = await client.get("/v1/props", headers=alice.headers)
        assert response.status_code == 200
        props = response.json()["props"]
        assert sorted(props, key=lambda p: p["type"]) == [
            {"type": "double_collect", "count": 0, "active_until": None},
            {"type": "shield", "count": 0, "active_until": None},
        ]

    async def test_inventory_needs_a_login(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/props"), 401, "unauthorized")


class TestGrant:
    async def test_granted_cards_add_up(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        first = await grant(client, admin_headers, alice, "shield", 2)
        assert first.status_code == 200, first.text
        assert first.json() == {"user_id": alice.id, "type": "shield", "count": 2}
        assert (await grant(client, admin_headers, alice, "shield", 3)).json()["count"] == 5
        held = await inventory(client, alice)
        assert held["shield"]["count"] == 5 and held["double_collect"]["count"] == 0
        assert (await inventory(client, bob))["shield"]["count"] == 0
        audit = (await client.get("/admin/v1/audit", headers=admin_headers)).json()["entries"]
        assert [(e["action"], e["target"], e["summary"]) for e in audit] == [
            ("props.granted", f"user:{alice.id}", "3 x shield (now holds 5)"),
            ("props.granted", f"user:{alice.id}", "2 x shield (now holds 2)"),
        ]

    async def test_unknown_type_is_422(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        assert_problem(
            await grant(client, admin_headers, alice, "invisibility"), 422, "validation_error"
        )
        assert_problem(
            await grant(client, admin_headers, alice, "shield", 0), 422, "validation_error"
        )
        assert (await inventory(client, alice))["shield"]["count"] == 0

    async def test_unknown_user_is_404(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        response = await client.post(
            "/admin/v1/props/grant",
            json={"user_id": "00000000-0000-0000-0000-000000000001", "type": "shield", "count": 1},
            headers=admin_headers,
        )
        assert_problem(response, 404, "not_found")

    async def test_granting_needs_the_admin_token(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        body = {"user_id": alice.id, "type": "shield", "count": 1}
        assert_problem(await client.post("/admin/v1/props/grant", json=body), 401, "unauthorized")
        assert_problem(
            await client.post("/admin/v1/props/grant", json=body, headers=alice.headers),
            401,
            "unauthorized",
        )
        assert (await inventory(client, alice))["shield"]["count"] == 0


class TestUse:
    @pytest.mark.parametrize(
        ("prop_type", "duration"),
        [("shield", timedelta(hours=24)), ("double_collect", timedelta(minutes=5))],
    )
    async def test_using_a_card_activates_it_for_the_rules_duration(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        admin_headers: dict[str, str],
        prop_type: str,
        duration: timedelta,
    ) -> None:
        alice = await register(client, "alice")
        await grant(client, admin_headers, alice, prop_type, 2)
        response = await use(client, alice, prop_type)
        assert response.status_code == 200, response.text
        until = z(clock.now() + duration)
        assert response.json() == {"type": prop_type, "active_until": until}
        assert (await inventory(client, alice))[prop_type] == {
            "type": prop_type,
            "count": 1,
            "active_until": until,
        }

    async def test_using_another_while_active_extends_it(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        await grant(client, admin_headers, alice, "shield", 2)
        started = clock.now()
        await use(client, alice, "shield")
        clock.advance(hours=3)
        response = await use(client, alice, "shield")
        assert response.json()["active_until"] == z(started + timedelta(hours=48))

    async def test_a_card_used_after_the_last_one_ended_counts_from_now(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        await grant(client, admin_headers, alice, "double_collect", 2)
        await use(client, alice, "double_collect")
        clock.advance(minutes=5)
        assert (await inventory(client, alice))["double_collect"]["active_until"] is None
        clock.advance(hours=1)
        response = await use(client, alice, "double_collect")
        assert response.json()["active_until"] == z(clock.now() + timedelta(minutes=5))

    async def test_the_active_window_closes_on_time(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        await grant(client, admin_headers, alice, "shield")
        until = clock.now() + timedelta(hours=24)
        await use(client, alice, "shield")
        clock.set(until - timedelta(seconds=1))
        assert (await inventory(client, alice))["shield"]["active_until"] == z(until)
        clock.set(until)
        assert (await inventory(client, alice))["shield"]["active_until"] is None

    async def test_with_none_left_it_is_409_no_prop_left(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        assert_problem(await use(client, alice, "shield"), 409, "no_prop_left")
        await grant(client, admin_headers, alice, "shield")
        assert (await use(client, alice, "shield")).status_code == 200
        assert_problem(await use(client, alice, "shield"), 409, "no_prop_left")
        held = (await inventory(client, alice))["shield"]
        assert held["count"] == 0 and held["active_until"] == z(clock.now() + timedelta(hours=24))

    async def test_concurrent_uses_spend_each_card_once(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        await grant(client, admin_headers, alice, "shield", 2)
        responses = await asyncio.gather(*(use(client, alice, "shield") for _ in range(6)))
        assert sorted(r.status_code for r in responses) == [200, 200, 409, 409, 409, 409]
        held = (await inventory(client, alice))["shield"]
        assert held["count"] == 0 and held["active_until"] == z(clock.now() + timedelta(hours=48))

    async def test_unknown_type_is_404(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        assert_problem(await use(client, alice, "invisibility"), 404, "not_found")


class TestBuy:
    async def test_a_card_without_a_price_is_not_for_sale(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        await fund(client, clock, (alice, 1))
        for prop_type in ("shield", "double_collect"):
            assert_problem(await buy(client, alice, prop_type), 409, "not_for_sale")
        assert await balance(client, alice) == 80
        assert {p["count"] for p in (await inventory(client, alice)).values()} == {0}

    async def test_buying_burns_the_price_through_the_ledger(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice")
        await fund(client, clock, (alice, 1))
        swap_prop(app, "shield", cost_g=30)
        before = (await ledger_ok(client, admin_headers))["totals"]
        response = await buy(client, alice, "shield")
        assert response.status_code == 201, response.text
        assert response.json() == {"type": "shield", "count": 1, "balance_g": 50}
        assert (await inventory(client, alice))["shield"]["count"] == 1
        assert await balance(client, alice) == 50
        entry = (await client.get("/v1/energy/ledger", headers=alice.headers)).json()["entries"][0]
        assert entry["amount_g"] == -30 and entry["balance_after_g"] == 50
        assert entry["reason"] == "prop"
        after = (await ledger_ok(client, admin_headers))["totals"]
        assert after["burned_g"] == before["burned_g"] + 30
        assert after["in_balances_g"] == before["in_balances_g"] - 30

    async def test_too_little_energy_is_409_and_buys_nothing(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice")
        await fund(client, clock, (alice, 1))
        swap_prop(app, "double_collect", cost_g=81)
        assert_problem(await buy(client, alice, "double_collect"), 409, "insufficient_energy")
        assert await balance(client, alice) == 80
        assert (await inventory(client, alice))["double_collect"]["count"] == 0
        swap_prop(app, "double_collect", cost_g=80)
        assert (await buy(client, alice, "double_collect")).json()["balance_g"] == 0
        await ledger_ok(client, admin_headers)

    async def test_concurrent_buys_never_overdraw(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice")
        await fund(client, clock, (alice, 1))
        swap_prop(app, "shield", cost_g=30)
        responses = await asyncio.gather(*(buy(client, alice, "shield") for _ in range(6)))
        assert sorted(r.status_code for r in responses) == [201, 201, 409, 409, 409, 409]
        assert await balance(client, alice) == 20
        assert (await inventory(client, alice))["shield"]["count"] == 2
        await ledger_ok(client, admin_headers)

    async def test_a_replayed_buy_charges_once(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        alice = await register(client, "alice")
        await fund(client, clock, (alice, 1))
        swap_prop(app, "shield", cost_g=30)
        first = await buy(client, alice, "shield", key="buy-1")
        retry = await buy(client, alice, "shield", key="buy-1")
        assert first.status_code == retry.status_code == 201
        assert retry.json() == first.json()
        assert await balance(client, alice) == 50
        assert (await inventory(client, alice))["shield"]["count"] == 1

    async def test_unknown_type_is_404(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        assert_problem(await buy(client, alice, "invisibility"), 404, "not_found")


class TestPropsOnForests:
    async def test_a_friend_sees_my_active_cards_but_not_how_many_i_hold(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        await grant(client, admin_headers, alice, "shield", 3)
        await grant(client, admin_headers, alice, "double_collect", 1)

        async def seen() -> dict[str, Any]:
            response = await client.get(f"/v1/friends/{alice.id}/forest", headers=bob.headers)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        idle = await seen()
        assert idle["shield_until"] is None and idle["props"] == []
        until = z(clock.now() + timedelta(hours=24))
        await use(client, alice, "shield")
        shielded = await seen()
        assert shielded["shield_until"] == until
        assert shielded["props"] == [{"type": "shield", "count": 0, "active_until": until}]
        await use(client, alice, "double_collect")
        assert {p["type"] for p in (await seen())["props"]} == {"shield", "double_collect"}
        clock.advance(hours=24)
        over = await seen()
        assert over["shield_until"] is None and over["props"] == []

    async def test_my_own_forest_shows_my_active_shield(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        await grant(client, admin_headers, alice, "shield")
        await use(client, alice, "shield")
        forest = (await client.get("/v1/forest", headers=alice.headers)).json()
        until = z(clock.now() + timedelta(hours=24))
        assert forest["shield_until"] == until
        assert [(p["type"], p["active_until"]) for p in forest["props"]] == [("shield", until)]
