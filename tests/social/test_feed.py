"""GET /v1/feed: newest first, cursor paging, each item type's fields, only the caller's items."""

from __future__ import annotations

import base64
from typing import Any

import httpx
from fastapi import FastAPI

from app.core.clock import FrozenClock
from tests.helpers import Player, assert_problem, register
from tests.social.helpers_social import befriend, feed, fund, mint, swap_rules, z


async def water(client: httpx.AsyncClient, giver: Player, receiver: Player, amount_g: int) -> None:
    response = await client.post(
        f"/v1/friends/{receiver.id}/water", json={"amount_g": amount_g}, headers=giver.headers
    )
    assert response.status_code == 201, response.text


async def all_pages(
    client: httpx.AsyncClient, player: Player, limit: int
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        body = await feed(client, player, **params)
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20, "paging does not end"


async def busy_bob(client: httpx.AsyncClient, clock: FrozenClock) -> tuple[Player, list[str]]:
    """Bob's feed gets 8 items a minute apart: 2 friend requests, then 6 waterings.
    Returns bob and the expected labels (see :func:`label`), newest first."""
    alice, bob = await register(client, "alice"), await register(client, "bob")
    carol = await register(client, "carol")
    await fund(client, clock, (alice, 1), (carol, 1))
    labels = []
    for friend in (alice, carol):
        clock.advance(minutes=1)
        await befriend(client, friend, bob)
        labels.append(f"friend_request:{friend.handle}")
    for giver, amount in (
        (alice, 10),
        (carol, 18),
        (alice, 33),
        (carol, 10),
        (alice, 10),
        (carol, 33),
    ):
        clock.advance(minutes=1)
        await water(client, giver, bob, amount)
        labels.append(f"watered_you:{giver.handle}:{amount}")
    return bob, labels[::-1]


def label(item: dict[str, Any]) -> str:
    if item["type"] == "watered_you":
        return f"watered_you:{item['actor']['handle']}:{item['amount_g']}"
    return f"{item['type']}:{item['actor']['handle']}"


class TestFeedPaging:
    async def test_newest_first_every_item_once_across_pages(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        bob, expected = await busy_bob(client, clock)
        assert len(expected) == 8
        pages = await all_pages(client, bob, limit=3)
        assert [len(p) for p in pages] == [3, 3, 2]
        items = [i for p in pages for i in p]
        assert [label(i) for i in items] == expected
        assert len({i["id"] for i in items}) == len(items)
        times = [i["at"] for i in items]
        assert times == sorted(times, reverse=True) and len(set(times)) == len(times)

    async def test_a_last_page_that_is_exactly_full_has_no_next_cursor(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        bob, expected = await busy_bob(client, clock)
        pages = await all_pages(client, bob, limit=4)
        assert [len(p) for p in pages] == [4, 4]
        assert [label(i) for p in pages for i in p] == expected
        whole = await feed(client, bob, limit=8)
        assert whole["next_cursor"] is None and len(whole["items"]) == 8

    async def test_new_items_do_not_shift_pages_already_started(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        bob, expected = await busy_bob(client, clock)
        first = await feed(client, bob, limit=5)
        dave = await register(client, "dave")
        await client.post("/v1/friend-requests", json={"handle": "bob"}, headers=dave.headers)
        rest = await feed(client, bob, limit=5, cursor=first["next_cursor"])
        assert [label(i) for i in first["items"] + rest["items"]] == expected
        assert label((await feed(client, bob, limit=1))["items"][0]) == "friend_request:dave"

    async def test_default_page_holds_everything_small(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        bob, expected = await busy_bob(client, clock)
        body = await feed(client, bob)
        assert [label(i) for i in body["items"]] == expected and body["next_cursor"] is None

    async def test_an_empty_feed(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        assert await feed(client, alice) == {"items": [], "next_cursor": None}

    async def test_bad_cursor_or_limit_is_422(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        forged = base64.urlsafe_b64encode(b"v2:10").decode().rstrip("=")
        not_a_number = base64.urlsafe_b64encode(b"v1:ten").decode().rstrip("=")
        for params in (
            {"cursor": "!!not-a-cursor!!"},
            {"cursor": forged},
            {"cursor": not_a_number},
            {"limit": 0},
            {"limit": 10_000},
            {"limit": "many"},
        ):
            response = await client.get("/v1/feed", params=params, headers=alice.headers)
            assert_problem(response, 422, "validation_error")

    async def test_feed_needs_a_login(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/feed"), 401, "unauthorized")


class TestFeedItems:
    async def test_collected_from_you_names_the_friend_and_the_grams(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        swap_rules(app, "stealing", mode="fixed")
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, bob, alice)
        await mint(client, clock, bob, 2)
        clock.advance(hours=24)
        took = await client.post(f"/v1/friends/{bob.id}/collect", json={}, headers=alice.headers)
        assert took.json()["collected_g"] == 16
        item = (await feed(client, bob))["items"][0]
        assert item["type"] == "collected_from_you"
        assert item["actor"] == {"id": alice.id, "handle": "alice"}
        assert item["amount_g"] == 16  # one item per take, summing its balls
        assert item["at"] == z(clock.now())
        assert isinstance(item["id"], str)
        # a take that got nothing tells nobody
        again = await client.post(f"/v1/friends/{bob.id}/collect", json={}, headers=alice.headers)
        assert again.json()["collected_g"] == 0
        types = [i["type"] for i in (await feed(client, bob))["items"]]
        assert types == ["collected_from_you", "friend_accepted"]

    async def test_random_takes_report_exactly_what_was_taken(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, bob, alice)
        await mint(client, clock, bob, 3)
        clock.advance(hours=24)
        took = (
            await client.post(f"/v1/friends/{bob.id}/collect", json={}, headers=alice.headers)
        ).json()
        assert 3 <= took["collected_g"] <= 24
        item = (await feed(client, bob))["items"][0]
        assert item["type"] == "collected_from_you" and item["amount_g"] == took["collected_g"]

    async def test_watered_you_names_the_giver_and_the_grams(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, bob, alice)
        await fund(client, clock, (alice, 1))
        await water(client, alice, bob, 33)
        item = (await feed(client, bob))["items"][0]
        assert item["type"] == "watered_you"
        assert item["actor"] == {"id": alice.id, "handle": "alice"}
        assert item["amount_g"] == 33 and item["at"] == z(clock.now())
        assert item["ref"].startswith("water:")

    async def test_friend_request_and_friend_accepted_items(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        request = (
            await client.post("/v1/friend-requests", json={"handle": "bob"}, headers=alice.headers)
        ).json()
        clock.advance(minutes=5)
        await client.post(f"/v1/friend-requests/{request['id']}/accept", headers=bob.headers)
        [asked] = (await feed(client, bob))["items"]
        assert asked["type"] == "friend_request" and asked["amount_g"] is None
        assert asked["actor"] == {"id": alice.id, "handle": "alice"}
        assert asked["ref"] == f"friend_request:{request['id']}"
        [accepted] = (await feed(client, alice))["items"]
        assert accepted["type"] == "friend_accepted" and accepted["amount_g"] is None
        assert accepted["actor"] == {"id": bob.id, "handle": "bob"}
        assert accepted["at"] == z(clock.now())

    async def test_only_my_items_are_in_my_feed(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        swap_rules(app, "stealing", mode="fixed")
        alice, bob = await register(client, "alice"), await register(client, "bob")
        carol = await register(client, "carol")
        await befriend(client, alice, bob)
        await mint(client, clock, alice, 1)
        await mint(client, clock, bob, 1)
        clock.advance(hours=24)
        await client.post(f"/v1/friends/{bob.id}/collect", json={}, headers=alice.headers)
        await client.post("/v1/forest/collect", json={}, headers=alice.headers)
        await water(client, alice, bob, 10)
        bobs = [(i["type"], i["actor"]["id"]) for i in (await feed(client, bob))["items"]]
        assert bobs == [
            ("watered_you", alice.id),
            ("collected_from_you", alice.id),
            ("friend_request", alice.id),
        ]
        alices = [(i["type"], i["actor"]["id"]) for i in (await feed(client, alice))["items"]]
        assert alices == [("friend_accepted", bob.id)]
        assert (await feed(client, carol))["items"] == []
        # another user's cursor position does not open anyone else's items
        cursor = base64.urlsafe_b64encode(b"v1:1000").decode().rstrip("=")
        assert (await feed(client, carol, cursor=cursor))["items"] == []
