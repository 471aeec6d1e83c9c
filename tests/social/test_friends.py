"""Friend requests, friendships, blocks and what non-friends can (not) see: /v1/friend-requests,
/v1/friends, /v1/blocks."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.core.clock import FrozenClock
from tests.conftest import set_limits
from tests.energy.conftest import ledger_ok
from tests.helpers import Player, assert_problem, register
from tests.social.helpers_social import (
    balance,
    befriend,
    feed,
    mint,
    swap_rules,
    z,
)


async def ask(client: httpx.AsyncClient, a: Player, b: Player | str) -> httpx.Response:
    handle = b if isinstance(b, str) else b.handle
    return await client.post("/v1/friend-requests", json={"handle": handle}, headers=a.headers)


async def requests_of(client: httpx.AsyncClient, player: Player, direction: str) -> list[Any]:
    response = await client.get(
        "/v1/friend-requests", params={"direction": direction}, headers=player.headers
    )
    assert response.status_code == 200, response.text
    requests: list[Any] = response.json()["requests"]
    return requests


async def friend_ids(client: httpx.AsyncClient, player: Player) -> set[str]:
    response = await client.get("/v1/friends", headers=player.headers)
    assert response.status_code == 200, response.text
    return {f["id"] for f in response.json()["friends"]}


class TestSendRequest:
    async def test_a_new_request_is_pending_from_me_to_them(
        self, client: httpx.AsyncClient
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        response = await ask(client, alice, bob)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "pending"
        assert body["from"] == {"id": alice.id, "handle": "alice"}
        assert body["to"] == {"id": bob.id, "handle": "bob"}
        assert [r["id"] for r in await requests_of(client, bob, "incoming")] == [body["id"]]
        assert [r["id"] for r in await requests_of(client, alice, "outgoing")] == [body["id"]]
        assert await friend_ids(client, alice) == set() and await friend_ids(client, bob) == set()

    async def test_asking_someone_who_asked_you_makes_you_friends_both_ways(
        self, client: httpx.AsyncClient
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await ask(client, alice, bob)
        response = await ask(client, bob, alice)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "accepted"
        assert response.json()["from"]["id"] == bob.id
        assert await friend_ids(client, alice) == {bob.id}
        assert await friend_ids(client, bob) == {alice.id}
        # nothing is left pending either way
        for player in (alice, bob):
            assert await requests_of(client, player, "incoming") == []
            assert await requests_of(client, player, "outgoing") == []

    async def test_repeating_my_pending_request_returns_it_without_a_duplicate(
        self, client: httpx.AsyncClient
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        first = await ask(client, alice, bob)
        again = await ask(client, alice, bob)
        assert first.status_code == 201 and again.status_code == 200
        assert again.json() == first.json()
        assert len(await requests_of(client, bob, "incoming")) == 1
        assert len((await feed(client, bob))["items"]) == 1  # bob was told once

    async def test_unknown_handle_is_404(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        assert_problem(await ask(client, alice, "nobody_here"), 404, "not_found")

    async def test_malformed_handle_is_422(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        assert_problem(await ask(client, alice, "Not A Handle!"), 422, "validation_error")

    async def test_asking_a_friend_again_is_409_already_friends(
        self, client: httpx.AsyncClient
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        assert_problem(await ask(client, alice, bob), 409, "already_friends")
        assert_problem(await ask(client, bob, alice), 409, "already_friends")

    async def test_asking_yourself_is_422(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        assert_problem(await ask(client, alice, alice), 422, "self_request")
        assert await requests_of(client, alice, "outgoing") == []

    async def test_blocked_either_way_is_403_blocked(self, client: httpx.AsyncClient) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        assert (await client.post(f"/v1/blocks/{bob.id}", headers=alice.headers)).status_code == 204
        assert_problem(await ask(client, alice, bob), 403, "blocked")
        assert_problem(await ask(client, bob, alice), 403, "blocked")
        assert await requests_of(client, alice, "incoming") == []
        assert await requests_of(client, bob, "incoming") == []

    async def test_requests_need_a_login(self, client: httpx.AsyncClient) -> None:
        await register(client, "bob")
        response = await client.post("/v1/friend-requests", json={"handle": "bob"})
        assert_problem(response, 401, "unauthorized")


class TestAnswerRequest:
    async def test_the_recipient_accepts(self, client: httpx.AsyncClient) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        request_id = (await ask(client, alice, bob)).json()["id"]
        response = await client.post(
            f"/v1/friend-requests/{request_id}/accept", headers=bob.headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "accepted" and response.json()["id"] == request_id
        assert await friend_ids(client, alice) == {bob.id}
        assert await friend_ids(client, bob) == {alice.id}
        assert await requests_of(client, bob, "incoming") == []

    async def test_the_recipient_declines_and_nobody_becomes_friends(
        self, client: httpx.AsyncClient
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        request_id = (await ask(client, alice, bob)).json()["id"]
        response = await client.post(
            f"/v1/friend-requests/{request_id}/decline", headers=bob.headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "declined"
        assert await friend_ids(client, alice) == set() and await friend_ids(client, bob) == set()
        assert await requests_of(client, alice, "outgoing") == []
        # a declined request cannot be accepted later
        late = await client.post(f"/v1/friend-requests/{request_id}/accept", headers=bob.headers)
        assert late.status_code == 409, late.text
        assert await friend_ids(client, bob) == set()

    async def test_accepting_twice_is_harmless(self, client: httpx.AsyncClient) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        request_id = (await ask(client, alice, bob)).json()["id"]
        for _ in range(2):
            response = await client.post(
                f"/v1/friend-requests/{request_id}/accept", headers=bob.headers
            )
            assert response.status_code == 200 and response.json()["status"] == "accepted"
        assert await friend_ids(client, bob) == {alice.id}

    async def test_only_the_recipient_can_answer_others_get_404(
        self, client: httpx.AsyncClient
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        carol = await register(client, "carol")
        request_id = (await ask(client, alice, bob)).json()["id"]
        for player in (alice, carol):
            for verb in ("accept", "decline"):
                assert_problem(
                    await client.post(
                        f"/v1/friend-requests/{request_id}/{verb}", headers=player.headers
                    ),
                    404,
                    "not_found",
                )
        # still pending, still nobody's friend
        assert [r["id"] for r in await requests_of(client, bob, "incoming")] == [request_id]
        assert await friend_ids(client, alice) == set()

    async def test_unknown_or_malformed_request_id_is_404(self, client: httpx.AsyncClient) -> None:
        bob = await register(client, "bob")
        for request_id in (str(uuid.uuid4()), "not-an-id"):
            assert_problem(
                await client.post(f"/v1/friend-requests/{request_id}/accept", headers=bob.headers),
                404,
                "not_found",
            )


class TestListRequests:
    async def test_incoming_and_outgoing_are_separate_and_pending_only(
        self, client: httpx.AsyncClient
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        carol, dave = await register(client, "carol"), await register(client, "dave")
        to_bob = (await ask(client, alice, bob)).json()["id"]
        from_carol = (await ask(client, carol, alice)).json()["id"]
        to_dave = (await ask(client, alice, dave)).json()["id"]
        await client.post(f"/v1/friend-requests/{to_dave}/decline", headers=dave.headers)

        outgoing = await requests_of(client, alice, "outgoing")
        incoming = await requests_of(client, alice, "incoming")
        assert [r["id"] for r in outgoing] == [to_bob]
        assert [r["id"] for r in incoming] == [from_carol]
        assert incoming[0]["from"] == {"id": carol.id, "handle": "carol"}
        assert incoming[0]["status"] == "pending"
        # incoming is the default direction
        default = await client.get("/v1/friend-requests", headers=alice.headers)
        assert [r["id"] for r in default.json()["requests"]] == [from_carol]

    async def test_unknown_direction_is_422(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        response = await client.get(
            "/v1/friend-requests", params={"direction": "sideways"}, headers=alice.headers
        )
        assert_problem(response, 422, "validation_error")


class TestRemoveFriend:
    async def test_removing_ends_the_friendship_for_both(self, client: httpx.AsyncClient) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        response = await client.delete(f"/v1/friends/{bob.id}", headers=alice.headers)
        assert response.status_code == 204
        assert await friend_ids(client, alice) == set() and await friend_ids(client, bob) == set()
        assert_problem(
            await client.get(f"/v1/friends/{alice.id}/forest", headers=bob.headers),
            404,
            "not_found",
        )
        assert_problem(
            await client.delete(f"/v1/friends/{bob.id}", headers=alice.headers), 404, "not_found"
        )

    async def test_removed_friends_can_become_friends_again(
        self, client: httpx.AsyncClient
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        await client.delete(f"/v1/friends/{alice.id}", headers=bob.headers)
        await befriend(client, bob, alice)
        assert await friend_ids(client, alice) == {bob.id}


class TestBlocks:
    async def test_blocking_ends_the_friendship_both_ways(self, client: httpx.AsyncClient) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        assert (await client.post(f"/v1/blocks/{alice.id}", headers=bob.headers)).status_code == 204
        assert await friend_ids(client, alice) == set() and await friend_ids(client, bob) == set()

    async def test_blocking_cancels_pending_requests_both_ways(
        self, client: httpx.AsyncClient
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        request_id = (await ask(client, alice, bob)).json()["id"]
        await client.post(f"/v1/blocks/{alice.id}", headers=bob.headers)
        assert await requests_of(client, bob, "incoming") == []
        assert await requests_of(client, alice, "outgoing") == []
        # the cancelled request cannot be accepted any more
        response = await client.post(
            f"/v1/friend-requests/{request_id}/accept", headers=bob.headers
        )
        assert response.status_code == 409, response.text
        assert await friend_ids(client, bob) == set()

    async def test_blocking_an_unknown_user_is_404_and_yourself_422(
        self, client: httpx.AsyncClient
    ) -> None:
        alice = await register(client, "alice")
        assert_problem(
            await client.post(f"/v1/blocks/{uuid.uuid4()}", headers=alice.headers),
            404,
            "not_found",
        )
        assert_problem(
            await client.post(f"/v1/blocks/{alice.id}", headers=alice.headers), 422, "self_request"
        )

    async def test_unblock_then_befriend_again(self, client: httpx.AsyncClient) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        await client.post(f"/v1/blocks/{bob.id}", headers=alice.headers)
        # only the blocker can lift the block
        assert_problem(
            await client.delete(f"/v1/blocks/{alice.id}", headers=bob.headers), 404, "not_found"
        )
        assert_problem(await ask(client, bob, alice), 403, "blocked")
        response = await client.delete(f"/v1/blocks/{bob.id}", headers=alice.headers)
        assert response.status_code == 204
        await befriend(client, bob, alice)
        assert await friend_ids(client, alice) == {bob.id}
        assert await friend_ids(client, bob) == {alice.id}

    async def test_requests_stay_refused_until_both_blocks_are_lifted(
        self, client: httpx.AsyncClient
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await client.post(f"/v1/blocks/{bob.id}", headers=alice.headers)
        await client.post(f"/v1/blocks/{alice.id}", headers=bob.headers)
        await client.delete(f"/v1/blocks/{bob.id}", headers=alice.headers)
        assert_problem(await ask(client, alice, bob), 403, "blocked")
        assert_problem(await ask(client, bob, alice), 403, "blocked")
        await client.delete(f"/v1/blocks/{alice.id}", headers=bob.headers)
        assert (await ask(client, alice, bob)).status_code == 201

    async def test_unblocking_someone_not_blocked_is_404(self, client: httpx.AsyncClient) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        assert_problem(
            await client.delete(f"/v1/blocks/{bob.id}", headers=alice.headers), 404, "not_found"
        )


FRIEND_ENDPOINTS = [
    ("GET", "/v1/friends/{id}/forest", None),
    ("POST", "/v1/friends/{id}/collect", {}),
    ("POST", "/v1/friends/{id}/water", {"amount_g": 10}),
    ("DELETE", "/v1/friends/{id}", None),
]


class TestNonFriendsSeeNothing:
    @pytest.mark.parametrize(("method", "path", "body"), FRIEND_ENDPOINTS)
    async def test_blocked_stranger_and_nobody_get_the_same_404(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
        method: str,
        path: str,
        body: dict[str, Any] | None,
    ) -> None:
        swap_rules(app, "stealing", mode="fixed")
        alice, bob = await register(client, "alice"), await register(client, "bob")
        carol, dave = await register(client, "carol"), await register(client, "dave")
        for friend in (bob, carol):
            await befriend(client, alice, friend)
        # everyone has energy: alice to water with, the others ripe balls to take
        await mint(client, clock, alice, 1)
        for owner in (bob, carol, dave):
            await mint(client, clock, owner, 1)
        clock.advance(hours=24)
        await client.post("/v1/forest/collect", headers=alice.headers)
        await client.post(f"/v1/blocks/{alice.id}", headers=bob.headers)  # bob blocks alice
        await client.post(f"/v1/blocks/{carol.id}", headers=alice.headers)  # alice blocks carol

        answers = {}
        for name, target in (
            ("blocked_by_them", bob.id),
            ("blocked_by_me", carol.id),
            ("stranger", dave.id),
            ("nobody", str(uuid.uuid4())),
        ):
            response = await client.request(
                method, path.format(id=target), json=body, headers=alice.headers
            )
            problem = assert_problem(response, 404, "not_found")
            answers[name] = {k: problem[k] for k in ("type", "title", "detail", "status", "code")}
            assert set(problem) == {"type", "title", "detail", "status", "code"} | (
                {"instance"} if "instance" in problem else set()
            ), problem
        assert answers["blocked_by_them"] == answers["nobody"]
        assert answers["blocked_by_me"] == answers["nobody"]
        assert answers["stranger"] == answers["nobody"]

        # and nothing moved
        assert await balance(client, alice) == 80
        for owner in (bob, carol, dave):
            [ball] = (await client.get("/v1/forest", headers=owner.headers)).json()["balls"]
            assert ball["remaining_g"] == 80 and ball["collections"] == []
        await ledger_ok(client, admin_headers)

    async def test_blocked_friends_are_not_listed_either_side(
        self, client: httpx.AsyncClient
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        carol = await register(client, "carol")
        await befriend(client, alice, bob)
        await befriend(client, alice, carol)
        await client.post(f"/v1/blocks/{bob.id}", headers=alice.headers)
        assert await friend_ids(client, alice) == {carol.id}
        assert await friend_ids(client, bob) == set()
        board = (
            await client.get("/v1/leaderboards/friends?period=total", headers=bob.headers)
        ).json()
        assert [e["id"] for e in board["entries"]] == [bob.id]


class TestFriendList:
    async def test_friends_with_energy_to_take_come_first(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        swap_rules(app, "stealing", mode="fixed")
        alice = await register(client, "alice", display_name="Alice")
        bob = await register(client, "bob", display_name="Bob")
        carol = await register(client, "carol", display_name="Carol")
        dave = await register(client, "dave", display_name="Dave")
        erin = await register(client, "erin")  # not a friend
        frank = await register(client, "frank")
        for friend in (bob, frank, dave, carol):
            await befriend(client, alice, friend)
        await mint(client, clock, bob, 1)
        await mint(client, clock, frank, 1)
        await mint(client, clock, carol, 2)
        await mint(client, clock, erin, 1)
        clock.advance(hours=24)
        await client.post("/v1/forest/collect", headers=bob.headers)  # bob: nothing left to take
        [dave_ball] = await mint(client, clock, dave, 1)  # dave: growing
        dave_ripens = (await client.get("/v1/forest", headers=dave.headers)).json()["balls"][0]
        assert dave_ripens["id"] == dave_ball

        response = await client.get("/v1/friends", headers=alice.headers)
        assert response.status_code == 200
        friends = response.json()["friends"]
        assert [f["handle"] for f in friends] == ["carol", "frank", "dave", "bob"]
        by_handle = {f["handle"]: f for f in friends}
        assert by_handle["carol"] == {
            "id": carol.id,
            "handle": "carol",
            "display_name": "Carol",
            "collectible_g": 16,  # two 80 g balls, floor(80 * 0.1) each
            "next_collectible_at": None,
            "energy_week_g": 0,
            "can_revive": False,
        }
        assert by_handle["frank"]["collectible_g"] == 8
        assert by_handle["dave"]["collectible_g"] == 0
        assert by_handle["dave"]["next_collectible_at"] == dave_ripens["ripens_at"]
        assert by_handle["bob"]["collectible_g"] == 0
        assert by_handle["bob"]["next_collectible_at"] is None
        assert by_handle["bob"]["energy_week_g"] == 80

    async def test_collectible_drops_to_zero_once_taken_or_shielded(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        swap_rules(app, "stealing", mode="fixed")
        alice, bob = await register(client, "alice"), await register(client, "bob")
        carol = await register(client, "carol")
        await befriend(client, alice, bob)
        await befriend(client, alice, carol)
        await mint(client, clock, bob, 1)
        await mint(client, clock, carol, 1)
        clock.advance(hours=24)

        async def collectible() -> dict[str, int]:
            friends = (await client.get("/v1/friends", headers=alice.headers)).json()["friends"]
            return {f["handle"]: f["collectible_g"] for f in friends}

        assert await collectible() == {"bob": 8, "carol": 8}
        took = await client.post(f"/v1/friends/{bob.id}/collect", json={}, headers=alice.headers)
        assert took.json()["collected_g"] == 8
        await client.post(
            "/admin/v1/props/grant",
            json={"user_id": carol.id, "type": "shield", "count": 1},
            headers=admin_headers,
        )
        await client.post("/v1/props/shield/use", headers=carol.headers)
        assert await collectible() == {"bob": 0, "carol": 0}

    async def test_stealing_switched_off_shows_nothing_to_take(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        await mint(client, clock, bob, 1)
        clock.advance(hours=24)
        swap_rules(app, "stealing", enabled=False)
        [friend] = (await client.get("/v1/friends", headers=alice.headers)).json()["friends"]
        assert friend["collectible_g"] == 0 and friend["next_collectible_at"] is None

    async def test_no_friends_is_an_empty_list(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        await register(client, "bob")
        response = await client.get("/v1/friends", headers=alice.headers)
        assert response.json() == {"friends": []}


class TestFriendFeedItems:
    async def test_a_request_tells_the_recipient(self, client: httpx.AsyncClient) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        request = (await ask(client, alice, bob)).json()
        [item] = (await feed(client, bob))["items"]
        assert item["type"] == "friend_request"
        assert item["actor"] == {"id": alice.id, "handle": "alice"}
        assert item["ref"] == f"friend_request:{request['id']}"
        assert (await feed(client, alice))["items"] == []

    async def test_accepting_tells_the_one_who_asked(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await befriend(client, alice, bob)
        [item] = (await feed(client, alice))["items"]
        assert item["type"] == "friend_accepted"
        assert item["actor"] == {"id": bob.id, "handle": "bob"}
        assert item["at"] == z(clock.now())
        assert [i["type"] for i in (await feed(client, bob))["items"]] == ["friend_request"]

    async def test_crossing_requests_tell_the_first_asker(self, client: httpx.AsyncClient) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await ask(client, alice, bob)
        await ask(client, bob, alice)
        [item] = (await feed(client, alice))["items"]
        assert item["type"] == "friend_accepted" and item["actor"]["id"] == bob.id


class TestFriendRequestRateLimit:
    async def test_too_many_requests_are_429_with_retry_after(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        alice = await register(client, "alice")
        others = [await register(client, f"friend_{i}") for i in range(3)]
        set_limits(app, friend_requests="2/minute")
        for other in others[:2]:
            assert (await ask(client, alice, other)).status_code == 201
        response = await ask(client, alice, others[2])
        assert_problem(response, 429, "rate_limited")
        assert int(response.headers["retry-after"]) >= 1
        assert len(await requests_of(client, alice, "outgoing")) == 2
        # the limit is per user: someone else may still ask
        assert (await ask(client, others[2], alice)).status_code == 201


class TestConcurrentRequests:
    async def test_crossing_requests_end_as_one_friendship(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        pairs = [
            (await register(client, f"left_{i}"), await register(client, f"right_{i}"))
            for i in range(8)
        ]
        responses = await asyncio.gather(
            *(ask(client, a, b) for a, b in pairs), *(ask(client, b, a) for a, b in pairs)
        )
        assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
        for a, b in pairs:
            statuses = sorted(
                r.json()["status"]
                for r in responses
                if {r.json()["from"]["id"], r.json()["to"]["id"]} == {a.id, b.id}
            )
            assert statuses == ["accepted", "pending"]
            assert await friend_ids(client, a) == {b.id}
            assert await friend_ids(client, b) == {a.id}
        async with app.state.engine.connect() as conn:
            friendships = (
                await conn.execute(text("SELECT count(*) FROM friendships"))
            ).scalar_one()
            pending = (
                await conn.execute(
                    text("SELECT count(*) FROM friend_requests WHERE status = 'pending'")
                )
            ).scalar_one()
        assert friendships == 2 * len(pairs) and pending == 0

    async def test_a_block_racing_an_accept_never_leaves_blocked_friends(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        pairs = [
            (await register(client, f"asker_{i}"), await register(client, f"blocker_{i}"))
            for i in range(8)
        ]
        request_ids = [(await ask(client, a, b)).json()["id"] for a, b in pairs]
        # the recipient accepts while the asker blocks them (or the other way round)
        calls = []
        for i, ((a, b), request_id) in enumerate(zip(pairs, request_ids, strict=True)):
            blocker, blocked = (a, b) if i % 2 else (b, a)
            calls.append(client.post(f"/v1/friend-requests/{request_id}/accept", headers=b.headers))
            calls.append(client.post(f"/v1/blocks/{blocked.id}", headers=blocker.headers))
        responses = await asyncio.gather(*calls)
        assert all(r.status_code in (200, 204, 403, 409) for r in responses), [
            r.text for r in responses
        ]
        async with app.state.engine.connect() as conn:
            friendships = (
                await conn.execute(text("SELECT count(*) FROM friendships"))
            ).scalar_one()
            blocks = (await conn.execute(text("SELECT count(*) FROM blocks"))).scalar_one()
            pending = (
                await conn.execute(
                    text("SELECT count(*) FROM friend_requests WHERE status = 'pending'")
                )
            ).scalar_one()
        assert (friendships, blocks, pending) == (0, len(pairs), 0)

    async def test_repeated_concurrent_requests_make_one(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        alice, bob = await register(client, "alice"), await register(client, "bob")
        responses = await asyncio.gather(*(ask(client, alice, bob) for _ in range(6)))
        assert sorted(r.status_code for r in responses) == [200] * 5 + [201]
        assert len({r.json()["id"] for r in responses}) == 1
        assert len(await requests_of(client, bob, "incoming")) == 1
        assert len((await feed(client, bob))["items"]) == 1
