"""Groves (joint planting): friends pool energy held in the ledger's grove side, the contribution
that reaches the target plants once (never overshooting) with every member on the certificate,
leaving refunds, the grove holds its budget unit, cancellation refunds every member's share."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI

from tests.energy.conftest import ledger_ok
from tests.helpers import PASSWORD, Player, assert_problem, register
from tests.planting.conftest import add_item, create_ngo, cut_orders, fund, scalar
from tests.social.helpers_social import balance, befriend, feed, swap_rules

SAXAUL_G = 17_900


async def new_grove(
    client: httpx.AsyncClient, owner: Player, item_id: str, name: str = "Desert friends"
) -> httpx.Response:
    return await client.post(
        "/v1/groves", json={"item_id": item_id, "name": name}, headers=owner.headers
    )


async def grove_with(
    client: httpx.AsyncClient, item_id: str, owner: Player, *members: Player
) -> dict[str, Any]:
    """An open grove of ``owner`` that ``members`` (friends of the owner) joined."""
    created = await new_grove(client, owner, item_id)
    assert created.status_code == 201, created.text
    grove: dict[str, Any] = created.json()
    for member in members:
        await befriend(client, owner, member)
        invited = await client.post(
            f"/v1/groves/{grove['id']}/invite",
            json={"handle": member.handle},
            headers=owner.headers,
        )
        assert invited.status_code == 200, invited.text
        joined = await client.post(f"/v1/groves/{grove['id']}/join", headers=member.headers)
        assert joined.status_code == 200, joined.text
        grove = joined.json()
    return grove


async def contribute(
    client: httpx.AsyncClient, player: Player, grove_id: str, grams: int, key: str | None = None
) -> httpx.Response:
    headers = player.headers | ({"Idempotency-Key": key} if key else {})
    return await client.post(
        f"/v1/groves/{grove_id}/contribute", json={"amount_g": grams}, headers=headers
    )


async def remaining(client: httpx.AsyncClient, player: Player, item_id: str) -> int:
    items = (await client.get("/v1/catalog", headers=player.headers)).json()["items"]
    return int(next(i for i in items if i["id"] == item_id)["remaining"])


async def saxaul(client: httpx.AsyncClient, admin_headers: dict[str, str], **extra: Any) -> str:
    ngo = await create_ngo(client, admin_headers)
    return str((await add_item(client, admin_headers, ngo.id, **extra))["id"])


class TestGrove:
    async def test_two_friends_plant_one_tree_together(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        item = await saxaul(client, admin_headers)
        alice = await register(client, "alice", display_name="Alice")
        bob = await register(client, "bob", display_name="Bob")
        await fund(app, alice.id, 10_000)
        await fund(app, bob.id, 9_000)
        grove = await grove_with(client, item, alice, bob)
        assert grove["status"] == "open" and grove["target_g"] == SAXAUL_G
        assert sorted(m["display_name"] for m in grove["members"]) == ["Alice", "Bob"]
        assert await remaining(client, alice, item) == 99  # the grove holds its tree

        first = await contribute(client, alice, grove["id"], 10_000)
        assert first.status_code == 200, first.text
        assert first.json()["grove"]["raised_g"] == 10_000 and first.json()["balance_g"] == 0
        assert (await ledger_ok(client, admin_headers))["totals"]["in_groves_g"] == 10_000

        # bob offers 9,000 g; the grove needs 7,900 g: that much is taken, and it plants
        last = await contribute(client, bob, grove["id"], 9_000)
        assert last.status_code == 200, last.text
        body = last.json()
        assert body["contributed_g"] == 7_900 and body["balance_g"] == 1_100
        planted = body["grove"]
        assert planted["status"] == "planted" and planted["raised_g"] == SAXAUL_G
        assert {m["handle"]: m["contributed_g"] for m in planted["members"]} == {
            "alice": 10_000,
            "bob": 7_900,
        }
        assert planted["planting"]["status"] == "reserved"
        assert planted["planting"]["certificate_number"].startswith("CNP-")
        assert await remaining(client, alice, item) == 99  # no second unit taken

        report = await ledger_ok(client, admin_headers)
        assert report["totals"]["burned_g"] == SAXAUL_G and report["totals"]["in_groves_g"] == 0
        svg = await client.get(f"/v1/groves/{grove['id']}/certificate", headers=bob.headers)
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
        assert "Alice (10,000 g)" in svg.text and "Bob (7,900 g)" in svg.text
        # the planting is booked under the grove's owner, whose certificate names everyone
        mine = (await client.get("/v1/plantings", headers=alice.headers)).json()["plantings"]
        assert [p["id"] for p in mine] == [planted["planting"]["id"]]
        owner_svg = await client.get(
            f"/v1/plantings/{planted['planting']['id']}/certificate", headers=alice.headers
        )
        assert "Bob (7,900 g)" in owner_svg.text
        for player in (alice, bob):
            types = [i["type"] for i in (await feed(client, player))["items"]]
            assert "grove_planted" in types
        ledger = (await client.get("/v1/energy/ledger", headers=bob.headers)).json()["entries"]
        assert (ledger[0]["reason"], ledger[0]["amount_g"]) == ("grove_contribute", -7_900)
        export = (await client.get("/v1/me/export", headers=bob.headers)).json()
        assert [g["id"] for g in export["groves"]] == [grove["id"]]

    async def test_ten_members_racing_the_last_contribution_plant_exactly_one_tree(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        item = await saxaul(client, admin_headers)
        owner = await register(client, "owner")
        members = [await register(client, f"member{i}") for i in range(9)]
        everyone = [owner, *members]
        for player in everyone:
            await fund(app, player.id, 2_000)
        grove = await grove_with(client, item, owner, *members)
        assert len(grove["members"]) == 10
        # 17,800 g in: 10 x 1,780 g; the last 100 g are raced for by all ten at once
        for player in everyone:
            assert (await contribute(client, player, grove["id"], 1_780)).status_code == 200
        answers = await asyncio.gather(*(contribute(client, p, grove["id"], 150) for p in everyone))
        won = [a for a in answers if a.status_code == 200]
        assert len(won) == 1, [a.text for a in answers]
        assert won[0].json()["contributed_g"] == 100
        for refused in answers:
            if refused.status_code != 200:
                assert_problem(refused, 409, "grove_closed")
        balances = [await balance(client, p) for p in everyone]
        assert sum(balances) == 10 * 2_000 - SAXAUL_G
        assert sorted(balances) == [120] + [220] * 9  # nobody paid for a refused contribution
        assert await scalar(app, "SELECT count(*) FROM plantings") == 1
        assert await remaining(client, owner, item) == 99
        report = await ledger_ok(client, admin_headers)
        assert report["totals"]["burned_g"] == SAXAUL_G and report["totals"]["in_groves_g"] == 0

    async def test_leaving_before_planting_refunds_and_the_last_one_out_disbands(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        item = await saxaul(client, admin_headers)
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await fund(app, alice.id, 5_000)
        await fund(app, bob.id, 3_000)
        grove = await grove_with(client, item, alice, bob)
        await contribute(client, alice, grove["id"], 4_000)
        await contribute(client, bob, grove["id"], 3_000)
        left = await client.post(f"/v1/groves/{grove['id']}/leave", headers=alice.headers)
        assert left.status_code == 200, left.text
        assert left.json() == {"refunded_g": 4_000, "balance_g": 5_000}
        shown = (await client.get(f"/v1/groves/{grove['id']}", headers=bob.headers)).json()
        assert shown["raised_g"] == 3_000 and shown["owner_id"] == bob.id
        assert_problem(
            await client.get(f"/v1/groves/{grove['id']}", headers=alice.headers), 404, "not_found"
        )
        out = await client.post(f"/v1/groves/{grove['id']}/leave", headers=bob.headers)
        assert out.json() == {"refunded_g": 3_000, "balance_g": 3_000}
        assert await remaining(client, alice, item) == 100  # the unit went back
        assert await scalar(app, "SELECT status FROM groves") == "disbanded"
        entries = (await client.get("/v1/energy/ledger", headers=bob.headers)).json()["entries"]
        assert (entries[0]["reason"], entries[0]["amount_g"]) == ("grove_refund", 3_000)
        report = await ledger_ok(client, admin_headers)
        assert report["totals"]["in_groves_g"] == 0 and report["totals"]["burned_g"] == 0

    async def test_an_erased_member_leaves_with_their_share_and_the_grove_goes_on(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        item = await saxaul(client, admin_headers)
        alice, bob, carol = [await register(client, h) for h in ("alice", "bob", "carol")]
        for player, grams in ((alice, 5_000), (bob, 3_000), (carol, 20_000)):
            await fund(app, player.id, grams)
        grove = await grove_with(client, item, alice, bob, carol)
        await contribute(client, alice, grove["id"], 4_000)
        await contribute(client, bob, grove["id"], 3_000)
        # alice (the owner) erases her account: her 4,000 g leave the grove with her
        erased = await client.request(
            "DELETE", "/v1/me", json={"password": PASSWORD}, headers=alice.headers
        )
        assert erased.status_code == 204, erased.text
        shown = (await client.get(f"/v1/groves/{grove['id']}", headers=bob.headers)).json()
        assert shown["raised_g"] == 3_000 and shown["owner_id"] in {bob.id, carol.id}
        assert alice.id not in {m["user_id"] for m in shown["members"]}
        assert await scalar(app, f"SELECT balance_g FROM users WHERE id = '{alice.id}'") == 5_000
        report = await ledger_ok(client, admin_headers)
        assert report["totals"]["in_groves_g"] == 3_000
        # the others still plant it together, without her
        last = await contribute(client, carol, grove["id"], 20_000)
        assert last.json()["contributed_g"] == SAXAUL_G - 3_000
        assert last.json()["grove"]["status"] == "planted"
        assert (await ledger_ok(client, admin_headers))["totals"]["in_groves_g"] == 0

    async def test_a_cancelled_order_gives_each_member_their_share_back(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        admin_headers: dict[str, str],
    ) -> None:
        item = await saxaul(client, admin_headers)
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await fund(app, alice.id, 12_000)
        await fund(app, bob.id, 6_000)
        grove = await grove_with(client, item, alice, bob)
        await contribute(client, alice, grove["id"], 12_000)
        await contribute(client, bob, grove["id"], 6_000)
        [order] = await cut_orders(client, admin_headers)
        cancelled = await client.post(
            f"/admin/v1/orders/{order['id']}/cancel",
            json={"reason": "drought"},
            headers=admin_headers,
        )
        assert cancelled.status_code == 200, cancelled.text
        assert await balance(client, alice) == 12_000
        assert await balance(client, bob) == 6_000  # 100 g left over + 5,900 g back
        report = await ledger_ok(client, admin_headers)
        assert report["totals"]["burned_g"] == 0

    async def test_one_key_contributes_once(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        item = await saxaul(client, admin_headers)
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await fund(app, alice.id, 5_000)
        grove = await grove_with(client, item, alice, bob)
        first = await contribute(client, alice, grove["id"], 1_000, key="c-1")
        again = await contribute(client, alice, grove["id"], 1_000, key="c-1")
        assert first.status_code == again.status_code == 200 and again.json() == first.json()
        assert await balance(client, alice) == 4_000


class TestRefusals:
    async def test_only_members_and_invited_friends_see_a_grove(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        item = await saxaul(client, admin_headers)
        alice, bob = await register(client, "alice"), await register(client, "bob")
        mallory = await register(client, "mallory")
        await fund(app, mallory.id, 1_000)
        grove = (await new_grove(client, alice, item)).json()
        path = f"/v1/groves/{grove['id']}"
        assert_problem(await client.get(path, headers=mallory.headers), 404, "not_found")
        assert_problem(await client.post(f"{path}/join", headers=mallory.headers), 404, "not_found")
        assert_problem(await contribute(client, mallory, grove["id"], 100), 404, "not_found")
        # inviting someone who is not your friend looks like inviting nobody
        stranger = await client.post(
            f"{path}/invite", json={"handle": "bob"}, headers=alice.headers
        )
        assert_problem(stranger, 404, "not_found")
        await befriend(client, alice, bob)
        await client.post(f"{path}/invite", json={"handle": "bob"}, headers=alice.headers)
        listed = (await client.get("/v1/groves", headers=bob.headers)).json()["groves"]
        assert [(g["id"], g["invited"]) for g in listed] == [(grove["id"], True)]
        assert (await client.get("/v1/groves", headers=mallory.headers)).json() == {"groves": []}
        assert_problem(await client.get("/v1/groves/nope", headers=bob.headers), 404, "not_found")

    async def test_one_member_cannot_plant_alone_and_a_full_grove_takes_nobody(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        swap_rules(app, "groves", max_members=2)
        item = await saxaul(client, admin_headers)
        alice, bob, carol = [await register(client, h) for h in ("alice", "bob", "carol")]
        await fund(app, alice.id, 20_000)
        grove = (await new_grove(client, alice, item)).json()
        alone = await contribute(client, alice, grove["id"], 20_000)
        assert_problem(alone, 409, "grove_needs_members")
        assert await balance(client, alice) == 20_000
        for friend in (bob, carol):
            await befriend(client, alice, friend)
            await client.post(
                f"/v1/groves/{grove['id']}/invite",
                json={"handle": friend.handle},
                headers=alice.headers,
            )
        assert (await client.post(f"/v1/groves/{grove['id']}/join", headers=bob.headers)).is_success
        full = await client.post(f"/v1/groves/{grove['id']}/join", headers=carol.headers)
        assert_problem(full, 409, "grove_full")
        broke = await contribute(client, bob, grove["id"], 10)
        assert_problem(broke, 409, "insufficient_energy")
        assert (await contribute(client, alice, grove["id"], 20_000)).json()["grove"][
            "status"
        ] == "planted"
        assert_problem(await contribute(client, alice, grove["id"], 10), 409, "grove_closed")
        left = await client.post(f"/v1/groves/{grove['id']}/leave", headers=bob.headers)
        assert_problem(left, 409, "grove_closed")

    async def test_the_grove_holds_its_unit_of_a_scarce_item(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        item = await saxaul(client, admin_headers, budget=1)
        alice, bob = await register(client, "alice"), await register(client, "bob")
        await fund(app, bob.id, SAXAUL_G)
        assert (await new_grove(client, alice, item)).status_code == 201
        # the last unit is the grove's: neither a planting nor another grove can take it
        solo = await client.post("/v1/plantings", json={"item_id": item}, headers=bob.headers)
        assert_problem(solo, 409, "sold_out")
        assert_problem(await new_grove(client, bob, item), 409, "sold_out")
        assert_problem(await new_grove(client, bob, "nope"), 404, "not_found")

    async def test_open_groves_per_user_are_limited(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        swap_rules(app, "groves", max_open_per_user=2)
        item = await saxaul(client, admin_headers)
        alice = await register(client, "alice")
        for _ in range(2):
            assert (await new_grove(client, alice, item)).status_code == 201
        assert_problem(await new_grove(client, alice, item), 409, "too_many_groves")
        bad = await client.post("/v1/groves", json={"item_id": item}, headers=alice.headers)
        assert_problem(bad, 422, "validation_error")
        zero = await contribute(client, alice, "x", 0)
        assert_problem(zero, 422, "validation_error")
