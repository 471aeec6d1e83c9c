"""Sessions as an attacker would probe them: sign-out, password change, refresh abuse, caching."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from app.config import Settings
from app.core.clock import FrozenClock
from tests.helpers import PASSWORD, assert_problem, register


async def _sign_in(client: httpx.AsyncClient, handle: str) -> dict[str, str]:
    response = await client.post("/v1/auth/token", json={"handle": handle, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestLogout:
    async def test_logout_ends_this_login_only(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        phone = await _sign_in(client, "alice")
        response = await client.post("/v1/auth/logout", headers=alice.headers)
        assert response.status_code == 204
        assert_problem(await client.get("/v1/me", headers=alice.headers), 401, "unauthorized")
        refused = await client.post("/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
        assert refused.status_code == 401
        # the other device's login lives on
        assert (
            await client.get("/v1/me", headers=_bearer(phone["access_token"]))
        ).status_code == 200

    async def test_logout_needs_a_token(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.post("/v1/auth/logout"), 401, "unauthorized")


class TestPasswordChange:
    async def test_needs_the_current_password(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        response = await client.post(
            "/v1/me/password",
            json={"old_password": "not-my-password", "new_password": "a brand new one"},
            headers=alice.headers,
        )
        assert_problem(response, 401, "invalid_credentials")
        assert (await _sign_in(client, "alice"))["access_token"]

    async def test_changes_it_and_ends_every_other_login(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        thief = await _sign_in(client, "alice")
        response = await client.post(
            "/v1/me/password",
            json={"old_password": PASSWORD, "new_password": "a brand new one"},
            headers=alice.headers,
        )
        assert response.status_code == 204
        assert (await client.get("/v1/me", headers=alice.headers)).status_code == 200
        assert (
            await client.get("/v1/me", headers=_bearer(thief["access_token"]))
        ).status_code == 401
        stolen = await client.post(
            "/v1/auth/refresh", json={"refresh_token": thief["refresh_token"]}
        )
        assert stolen.status_code == 401
        old = await client.post("/v1/auth/token", json={"handle": "alice", "password": PASSWORD})
        assert_problem(old, 401, "invalid_credentials")
        new = await client.post(
            "/v1/auth/token", json={"handle": "alice", "password": "a brand new one"}
        )
        assert new.status_code == 200

    async def test_a_short_new_password_is_refused(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        response = await client.post(
            "/v1/me/password",
            json={"old_password": PASSWORD, "new_password": "short"},
            headers=alice.headers,
        )
        assert_problem(response, 422, "validation_error")


class TestErasureNeedsARealSignIn:
    async def test_a_refreshed_token_cannot_erase_without_the_password(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        clock.advance(minutes=10)
        # a stolen refresh token gives a brand-new access token ...
        fresh = await client.post("/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
        assert fresh.status_code == 200
        # ... which still does not count as having just signed in
        erase = await client.request(
            "DELETE", "/v1/me", headers=_bearer(fresh.json()["access_token"])
        )
        assert_problem(erase, 403, "reauthentication_required")
        assert (await client.get("/v1/me", headers=alice.headers)).status_code == 200

    async def test_a_fresh_sign_in_can_erase(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        await register(client, "alice")
        clock.advance(minutes=10)
        signed_in = await _sign_in(client, "alice")
        clock.advance(minutes=2)
        erase = await client.request("DELETE", "/v1/me", headers=_bearer(signed_in["access_token"]))
        assert erase.status_code == 204


class TestLoginLifetime:
    async def test_refreshing_does_not_keep_a_login_alive_forever(
        self, client: httpx.AsyncClient, clock: FrozenClock, settings: Settings
    ) -> None:
        alice = await register(client, "alice")
        refresh_token = alice.refresh_token
        step = timedelta(days=20)  # within the refresh token's 30 days each time
        for _ in range(int(settings.login_max_age / step)):
            clock.advance(step)
            response = await client.post("/v1/auth/refresh", json={"refresh_token": refresh_token})
            assert response.status_code == 200
            refresh_token = response.json()["refresh_token"]
        clock.advance(step)
        expired = await client.post("/v1/auth/refresh", json={"refresh_token": refresh_token})
        assert_problem(expired, 401, "unauthorized")
        assert "maximum age" in expired.json()["detail"]


class TestHeaders:
    async def test_token_responses_are_never_cached(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/auth/register", json={"handle": "alice", "password": PASSWORD}
        )
        assert response.headers["cache-control"] == "no-store"
        signed_in = await client.post(
            "/v1/auth/token", json={"handle": "alice", "password": PASSWORD}
        )
        assert signed_in.headers["cache-control"] == "no-store"

    async def test_every_response_forbids_sniffing_and_referrers(
        self, client: httpx.AsyncClient
    ) -> None:
        for path in ("/healthz", "/v1/catalog", "/v1/missing"):
            response = await client.get(path)
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"


class TestSecretsConfiguration:
    @pytest.mark.parametrize("name", ["jwt_secret", "admin_token", "encryption_key"])
    def test_short_secrets_are_refused_naming_the_variable(
        self, settings: Settings, name: str
    ) -> None:
        with pytest.raises(ValidationError) as err:
            Settings.model_validate({**settings.model_dump(), name: SecretStr("too-short")})
        assert f"CANOPY_{name.upper()}" in str(err.value)
