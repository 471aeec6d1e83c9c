from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.accounts.models import User
from tests.helpers import PASSWORD, assert_problem, register


async def count_users(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(User))).scalar_one())


class TestRegister:
    async def test_register_returns_user_and_tokens(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        response = await client.post(
            "/v1/auth/register",
            json={"handle": "alice", "password": PASSWORD, "display_name": "Alice"},
        )
        assert response.status_code == 201
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == int(app.state.settings.access_token_ttl.total_seconds())
        assert body["access_token"] and body["refresh_token"]
        user = body["user"]
        assert user["handle"] == "alice"
        assert user["display_name"] == "Alice"
        assert user["balance_g"] == 0 and user["collected_total_g"] == 0
        assert user["co2e_avoided_g"] == 0
        assert user["created_at"].endswith("Z") or user["created_at"].endswith("+00:00")

    async def test_default_timezone_comes_from_rules(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        alice = await register(client, "alice")
        assert (
            alice.body["user"]["timezone"]
            == app.state.rules_registry.versions[0].rules.timezone
            == "Asia/Shanghai"
        )

    async def test_given_timezone_and_region_are_kept(self, client: httpx.AsyncClient) -> None:
        bob = await register(client, "bob", timezone="America/New_York", region="shenzhen")
        assert bob.body["user"]["timezone"] == "America/New_York"
        assert bob.body["user"]["region"] == "shenzhen"

    async def test_handle_is_case_insensitive(self, client: httpx.AsyncClient) -> None:
        await register(client, "Carol")
        response = await client.post(
            "/v1/auth/register", json={"handle": "carol", "password": PASSWORD}
        )
        assert_problem(response, 409, "handle_taken")

    async def test_taken_handle_is_409_and_creates_nothing(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        await register(client, "alice")
        response = await client.post(
            "/v1/auth/register", json={"handle": "alice", "password": "another-pass"}
        )
        assert_problem(response, 409, "handle_taken")
        assert await count_users(app) == 1

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            ({"handle": "ab", "password": PASSWORD}, "handle"),
            ({"handle": "a" * 33, "password": PASSWORD}, "handle"),
            ({"handle": "bad-handle", "password": PASSWORD}, "handle"),
            ({"handle": "émile", "password": PASSWORD}, "handle"),
            ({"handle": "alice", "password": "short"}, "password"),
            ({"handle": "alice", "password": PASSWORD, "timezone": "Mars/Olympus"}, "timezone"),
            ({"handle": "alice", "password": PASSWORD, "timezone": "posixrules"}, "timezone"),
            ({"handle": "alice", "password": PASSWORD, "region": "Shen Zhen!"}, "region"),
            ({"handle": "alice", "password": PASSWORD, "display_name": "x" * 65}, "display_name"),
            ({"handle": "alice", "password": PASSWORD, "admin": True}, "admin"),
            ({"password": PASSWORD}, "handle"),
            ({"handle": 12345, "password": PASSWORD}, "handle"),
        ],
    )
    async def test_invalid_input_is_422_and_creates_nothing(
        self, client: httpx.AsyncClient, app: FastAPI, payload: dict[str, object], field: str
    ) -> None:
        response = await client.post("/v1/auth/register", json=payload)
        body = assert_problem(response, 422, "validation_error")
        assert any(error["loc"][:2] == ["body", field] for error in body["errors"]), body
        assert all({"loc", "msg"} <= error.keys() for error in body["errors"])
        assert await count_users(app) == 0

    async def test_concurrent_registrations_of_one_handle_create_one_user(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/auth/register", json={"handle": "race", "password": f"{PASSWORD}{i}"}
                )
                for i in range(12)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * 11
        assert await count_users(app) == 1


class TestRegisterIdempotency:
    async def test_replay_returns_the_original_response(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        payload = {"handle": "alice", "password": PASSWORD}
        headers = {"Idempotency-Key": "reg-1"}
        first = await client.post("/v1/auth/register", json=payload, headers=headers)
        second = await client.post("/v1/auth/register", json=payload, headers=headers)
        assert first.status_code == second.status_code == 201
        assert second.json() == first.json()
        assert second.headers.get("idempotent-replayed") == "true"
        assert await count_users(app) == 1

    async def test_same_key_with_another_body_is_refused(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        headers = {"Idempotency-Key": "reg-2"}
        await client.post(
            "/v1/auth/register", json={"handle": "alice", "password": PASSWORD}, headers=headers
        )
        response = await client.post(
            "/v1/auth/register",
            json={"handle": "alice", "password": PASSWORD + "!"},
            headers=headers,
        )
        assert_problem(response, 422, "idempotency_key_reused")
        assert await count_users(app) == 1

    async def test_someone_elses_key_neither_blocks_nor_replays_your_registration(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        headers = {"Idempotency-Key": "everyone-uses-this"}
        alice = await client.post(
            "/v1/auth/register", json={"handle": "alice", "password": PASSWORD}, headers=headers
        )
        bob = await client.post(
            "/v1/auth/register", json={"handle": "bob", "password": PASSWORD}, headers=headers
        )
        assert alice.status_code == bob.status_code == 201
        assert "idempotent-replayed" not in bob.headers
        assert bob.json()["user"]["handle"] == "bob"
        assert bob.json()["access_token"] != alice.json()["access_token"]
        assert await count_users(app) == 2

    async def test_key_order_in_the_body_does_not_matter(self, client: httpx.AsyncClient) -> None:
        headers = {"Idempotency-Key": "reg-3", "Content-Type": "application/json"}
        first = await client.post(
            "/v1/auth/register",
            content=b'{"handle":"alice","password":"%s"}' % PASSWORD.encode(),
            headers=headers,
        )
        second = await client.post(
            "/v1/auth/register",
            content=b'{"password":"%s", "handle":"alice"}' % PASSWORD.encode(),
            headers=headers,
        )
        assert second.status_code == 201
        assert second.json() == first.json()

    async def test_concurrent_duplicates_do_the_work_once(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        payload = {"handle": "alice", "password": PASSWORD}
        responses = await asyncio.gather(
            *(
                client.post("/v1/auth/register", json=payload, headers={"Idempotency-Key": "same"})
                for _ in range(10)
            )
        )
        assert {r.status_code for r in responses} == {201}
        assert len({r.json()["user"]["id"] for r in responses}) == 1
        assert len({r.json()["refresh_token"] for r in responses}) == 1
        assert await count_users(app) == 1

    async def test_a_failed_request_does_not_burn_the_key(self, client: httpx.AsyncClient) -> None:
        await register(client, "taken")
        headers = {"Idempotency-Key": "reg-4"}
        failed = await client.post(
            "/v1/auth/register", json={"handle": "taken", "password": PASSWORD}, headers=headers
        )
        assert_problem(failed, 409, "handle_taken")
        # nothing was stored for the key, so the corrected request under the same key goes through
        fixed = await client.post(
            "/v1/auth/register", json={"handle": "free", "password": PASSWORD}, headers=headers
        )
        assert fixed.status_code == 201
        assert fixed.headers.get("idempotent-replayed") is None

    async def test_stored_response_is_encrypted(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        alice = await client.post(
            "/v1/auth/register",
            json={"handle": "alice", "password": PASSWORD},
            headers={"Idempotency-Key": "k"},
        )
        async with app.state.engine.connect() as conn:
            from sqlalchemy import text

            stored = (
                await conn.execute(text("SELECT response FROM idempotency_keys"))
            ).scalar_one()
        assert alice.json()["refresh_token"].encode() not in stored

    @pytest.mark.parametrize("key", ["", "x" * 256])
    async def test_invalid_key_is_422(self, client: httpx.AsyncClient, key: str) -> None:
        response = await client.post(
            "/v1/auth/register",
            json={"handle": "alice", "password": PASSWORD},
            headers={"Idempotency-Key": key},
        )
        body = assert_problem(response, 422, "validation_error")
        assert [str(p).lower() for p in body["errors"][0]["loc"]] == ["header", "idempotency-key"]
