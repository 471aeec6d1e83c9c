"""Friends see only the game: what a friend can read after taking from your ball — their ledger,
their feed, your forest, the friends list, the boards, their export — never carries the partner
that reported your activity, its event id or its attributes."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI

from app.core.clock import FrozenClock
from tests.helpers import register
from tests.social.helpers_social import befriend

SECRET_ID = "TXN-8841-SECRET"
SECRET_PLACE = "Clinic of Private Matters"


class TestFriendsSeeOnlyTheGame:
    async def test_nothing_a_friend_reads_names_the_partner_or_the_event(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        owner, friend = await register(client, "owner"), await register(client, "friend")
        await befriend(client, owner, friend)
        created = await client.post(
            "/admin/v1/partners",
            json={"name": "Hospital Booking Co", "scopes": ["activities"]},
            headers=admin_headers,
        )
        partner = created.json()
        event = {
            "id": SECRET_ID,
            "user_id": owner.id,
            "kind": "hospital_booking",
            "occurred_at": (clock.now() - timedelta(minutes=5)).isoformat(),
            "attributes": {"place": SECRET_PLACE},
        }
        reported = await client.post(
            "/partner/v1/activities",
            json=event,
            headers={"Authorization": f"Bearer {partner['api_key']}"},
        )
        assert reported.json()["status"] == "minted", reported.text
        clock.set(clock.now() + timedelta(hours=25))  # ripe
        view = await client.get(f"/v1/friends/{owner.id}/forest", headers=friend.headers)
        [ball] = view.json()["balls"]
        taken = await client.post(
            f"/v1/friends/{owner.id}/collect",
            json={"ball_ids": [ball["id"]]},
            headers=friend.headers,
        )
        assert taken.json()["collected_g"] > 0, taken.text
        seen = [
            view,
            taken,
            await client.get(f"/v1/friends/{owner.id}/forest?all=true", headers=friend.headers),
            await client.get("/v1/energy/ledger", headers=friend.headers),
            await client.get("/v1/feed", headers=friend.headers),
            await client.get("/v1/feed", headers=owner.headers),
            await client.get("/v1/friends", headers=friend.headers),
            await client.get("/v1/leaderboards/friends?period=day", headers=friend.headers),
            await client.get("/v1/me/export", headers=friend.headers),
        ]
        [entry] = seen[3].json()["entries"]
        assert entry["reason"] == "steal"
        assert entry["ref"] == f"ball:{ball['id']}"
        for response in seen:
            assert response.status_code == 200, (response.url, response.text)
            for secret in (partner["id"], SECRET_ID, SECRET_PLACE, "partner:"):
                assert secret not in response.text, (response.url, secret)
        # the owner's own ledger and export still say what the energy came from
        export = await client.get("/v1/me/export", headers=owner.headers)
        assert SECRET_ID in export.text
