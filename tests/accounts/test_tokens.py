from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from fastapi import FastAPI

from app.core.clock import FrozenClock
from tests.helpers import PASSWORD, assert_problem, register


class TestSignIn:
    async def test_correct_password_gives_tokens(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        response = await client.post(
            "/v1/auth/token", json={"handle": "ALICE", "password": PASSWORD}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["user"]["id"] == alice.id
        me = await client.get("/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert me.status_code == 200 and me.json()["handle"] == "alice"

    async def test_wrong_password_and_unknown_handle_look_the_same(
        self, client: httpx.AsyncClient
    ) -> None:
        await register(client, "alice")
        wrong = await client.post(
            "/v1/auth/token", json={"handle": "alice", "password": "wrong-password"}
        )
        unknown = await client.post(
            "/v1/auth/token", json={"handle": "nobody", "password": PASSWORD}
        )
        assert assert_problem(wrong, 401, "invalid_credentials") == assert_problem(
            unknown, 401, "invalid_credentials"
        )


class TestAccessToken:
    async def test_missing_token_is_401_with_challenge(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/me")
        assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_garbage_and_foreign_tokens_are_401(self, client: httpx.AsyncClient) -> None:
        import jwt

        forged = jwt.encode(
            {"sub": "x", "sid": "y", "exp": 9999999999},
            "not-our-secret-but-long-enough-for-hs256!",
            algorithm="HS256",
        )
        for token in ["garbage", forged, ""]:
            response = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
            assert_problem(response, 401, "unauthorized")
        basic = await client.get("/v1/me", headers={"Authorization": "Basic YWxpY2U6cHc="})
        assert_problem(basic, 401, "unauthorized")

    async def test_access_token_expires(
        self, client: httpx.AsyncClient, clock: FrozenClock, app: FastAPI
    ) -> None:
        app.state.settings.access_token_ttl = timedelta(minutes=15)
        alice = await register(client, "alice")
        clock.advance(timedelta(minutes=14, seconds=59))
        assert (await client.get("/v1/me", headers=alice.headers)).status_code == 200
        clock.advance(timedelta(seconds=1))
        assert_problem(await client.get("/v1/me", headers=alice.headers), 401, "unauthorized")


class TestRefresh:
    async def test_refresh_rotates_the_pair(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        response = await client.post(
            "/v1/auth/refresh", json={"refresh_token": alice.refresh_token}
        )
        assert response.status_code == 200
        new = response.json()
        assert new["refresh_token"] != alice.refresh_token
        me = await client.get("/v1/me", headers={"Authorization": f"Bearer {new['access_token']}"})
        assert me.status_code == 200

    async def test_old_refresh_token_stops_working(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        await client.post("/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
        again = await client.post("/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
        assert_problem(again, 401, "unauthorized")

    async def test_reuse_revokes_every_token_of_that_login(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        other_login = (
            await client.post("/v1/auth/token", json={"handle": "alice", "password": PASSWORD})
        ).json()
        rotated = (
            await client.post("/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
        ).json()
        # an attacker replays the stolen, already-used token
        replay = await client.post("/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
        assert_problem(replay, 401, "unauthorized")
        # the legitimate holder's newer tokens of that login are dead too
        assert_problem(
            await client.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}),
            401,
            "unauthorized",
        )
        for token in (alice.access_token, rotated["access_token"]):
            assert_problem(
                await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}),
                401,
                "unauthorized",
            )
        # a separate login of the same user is untouched
        me = await client.get(
            "/v1/me", headers={"Authorization": f"Bearer {other_login['access_token']}"}
        )
        assert me.status_code == 200

    async def test_unknown_refresh_token_is_401(self, client: httpx.AsyncClient) -> None:
        assert_problem(
            await client.post("/v1/auth/refresh", json={"refresh_token": "rt_nope"}),
            401,
            "unauthorized",
        )

    async def test_refresh_token_expires(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        clock.advance(timedelta(days=30, seconds=1))
        assert_problem(
            await client.post("/v1/auth/refresh", json={"refresh_token": alice.refresh_token}),
            401,
            "unauthorized",
        )

    async def test_concurrent_refreshes_with_one_token_yield_at_most_one_pair(
        self, client: httpx.AsyncClient
    ) -> None:
        alice = await register(client, "alice")
        responses = await asyncio.gather(
            *(
                client.post("/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
                for _ in range(8)
            )
        )
        assert sum(r.status_code == 200 for r in responses) <= 1
        assert all(r.status_code in (200, 401) for r in responses)
