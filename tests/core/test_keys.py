"""Keys: several JWT signing keys named by ``kid``, an encryption key independent of them with
rotation (old keys still decrypt, ``canopy keys rotate`` re-encrypts), secrets from files."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from sqlalchemy import LargeBinary, select
from typer.testing import CliRunner

from app.config import Settings, get_settings
from app.core.clock import FrozenClock
from app.core.security import JWT_AUDIENCE, Keys, key_id
from app.keys import ENCRYPTED_COLUMNS, keys_app, scan
from app.main import create_app
from app.models import metadata
from app.partners.models import Partner
from app.partners.service import webhook_secret
from tests.conftest import _clean
from tests.helpers import register

S1 = "first-signing-secret-0123456789-0123456789"
S2 = "second-signing-secret-0123456789-0123456789"
K1 = "first-encryption-key-0123456789-0123456789"
K2 = "second-encryption-key-0123456789-0123456789"
NOW = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)


def token(keys: Keys) -> str:
    return keys.encode_access_token(
        user_id="u1", session_id="s1", now=NOW, ttl=timedelta(minutes=15)
    )


class TestSigningKeys:
    def test_a_token_names_its_key(self) -> None:
        keys = Keys.build(S1)
        header = jwt.get_unverified_header(token(keys))
        assert header["kid"] == key_id(S1) == keys.jwt_kid and S1 not in header["kid"]

    def test_tokens_signed_with_the_old_key_verify_after_rotation(self) -> None:
        old = token(Keys.build(S1))
        rotated = Keys.build(S2, previous_jwt_secrets=[S1])
        assert rotated.decode_access_token(old, now=NOW) is not None
        fresh = token(rotated)
        assert jwt.get_unverified_header(fresh)["kid"] == key_id(S2)
        assert rotated.decode_access_token(fresh, now=NOW) is not None

    def test_a_retired_key_no_longer_verifies(self) -> None:
        old = token(Keys.build(S1))
        assert Keys.build(S2).decode_access_token(old, now=NOW) is None

    def test_a_token_whose_kid_lies_is_refused(self) -> None:
        claims = {"sub": "u1", "sid": "s1", "aud": JWT_AUDIENCE, "exp": 2_000_000_000}
        # signed with S1 but claiming S2's id: tried against S2 only, and fails
        forged = jwt.encode(claims, S1, algorithm="HS256", headers={"kid": key_id(S2)})
        keys = Keys.build(S2, previous_jwt_secrets=[S1])
        assert keys.decode_access_token(forged, now=NOW) is None
        unknown = jwt.encode(claims, S1, algorithm="HS256", headers={"kid": "nope"})
        assert keys.decode_access_token(unknown, now=NOW) is None

    def test_tokens_from_before_key_ids_still_verify(self) -> None:
        claims = {"sub": "u1", "sid": "s1", "aud": JWT_AUDIENCE, "exp": 2_000_000_000}
        legacy = jwt.encode(claims, S1, algorithm="HS256")
        assert Keys.build(S2, previous_jwt_secrets=[S1]).decode_access_token(legacy, now=NOW)

    def test_the_verification_cache_serves_every_key(self) -> None:
        keys = Keys.build(S2, previous_jwt_secrets=[S1])
        old, new = token(Keys.build(S1)), token(keys)
        for _ in range(2):
            assert keys.decode_access_token(old, now=NOW) is not None
            assert keys.decode_access_token(new, now=NOW) is not None
        assert set(keys._verified) == {old, new}


class TestEncryptionKeys:
    def test_old_keys_decrypt_and_only_the_current_one_encrypts(self) -> None:
        stored = Keys.build(S1, encryption_key=K1).encrypt(b"whsec_x")
        rotated = Keys.build(S1, encryption_key=K2, previous_encryption_keys=[K1])
        assert rotated.decrypt(stored) == b"whsec_x"
        again = rotated.reencrypt(stored)
        assert again is not None and Keys.build(S1, encryption_key=K2).decrypt(again) == b"whsec_x"
        assert rotated.reencrypt(again) is None  # already on the current key

    def test_the_encryption_key_is_independent_of_the_jwt_secret(self) -> None:
        stored = Keys.build(S1, encryption_key=K1).encrypt(b"whsec_x")
        # the JWT secret rotated and the old one retired: stored secrets still read
        assert Keys.build(S2, encryption_key=K1).decrypt(stored) == b"whsec_x"

    def test_secrets_from_before_an_encryption_key_still_read(self) -> None:
        legacy = Keys.build(S1).encrypt(b"whsec_x")  # derived from the JWT secret
        assert Keys.build(S1, encryption_key=K1).decrypt(legacy) == b"whsec_x"

    def test_a_missing_key_says_which_variable(self) -> None:
        stored = Keys.build(S1, encryption_key=K1).encrypt(b"whsec_x")
        with pytest.raises(RuntimeError, match="CANOPY_ENCRYPTION_PREVIOUS_KEYS"):
            Keys.build(S1, encryption_key=K2).decrypt(stored)

    def test_every_binary_column_is_known_to_keys_rotate(self) -> None:
        binary = {
            f"{table.name}.{column.name}"
            for table in metadata.sorted_tables
            for column in table.columns
            if isinstance(column.type, LargeBinary)
        }
        assert binary - set(NOT_SECRET) == {c.name for c in ENCRYPTED_COLUMNS}


# binary columns that hold nothing secret, so nothing to encrypt or rotate (with the reason)
NOT_SECRET = {
    "rain_sessions.seed": "the energy rain's random draw; every ball id it makes is handed "
    "to the player when the play starts, and settling pays only those",
}


@contextlib.asynccontextmanager
async def running(settings: Settings, clock: FrozenClock) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings, clock=clock, run_worker=False)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://canopy") as client:
            client.app = application  # type: ignore[attr-defined]
            yield client


async def partner_secret(app: FastAPI) -> str:
    async with app.state.sessionmaker() as session:
        partner = (await session.execute(select(Partner))).scalars().one()
    return webhook_secret(partner, app.state.keys)


class TestRotationOnTheService:
    async def test_rotating_both_keys_keeps_tokens_and_webhook_secrets(
        self,
        settings: Settings,
        clock: FrozenClock,
        test_servers: object,
        admin_headers: dict[str, str],
    ) -> None:
        await _clean(test_servers)  # type: ignore[arg-type]
        before = settings.model_copy(
            update={"jwt_secret": SecretStr(S1), "encryption_key": SecretStr(K1)}
        )
        async with running(before, clock) as client:
            alice = await register(client, "alice")
            created = await client.post(
                "/admin/v1/partners",
                json={"name": "Green NGO", "scopes": ["orders"]},
                headers=admin_headers,
            )
            assert created.status_code == 201, created.text
            secret = created.json()["webhook_secret"]

        after = settings.model_copy(
            update={
                "jwt_secret": SecretStr(S2),
                "jwt_previous_secrets": [SecretStr(S1)],
                "encryption_key": SecretStr(K2),
                "encryption_previous_keys": [SecretStr(K1)],
            }
        )
        async with running(after, clock) as client:
            app: FastAPI = client.app  # type: ignore[attr-defined]
            assert (await client.get("/v1/me", headers=alice.headers)).status_code == 200
            assert await partner_secret(app) == secret
            reports = await scan(app.state.engine, app.state.keys, rotate=True)
            assert reports["partners.webhook_secret_encrypted"].rotated == 1
            assert all(r.unreadable == 0 for r in reports.values())

        retired = settings.model_copy(
            update={"jwt_secret": SecretStr(S2), "encryption_key": SecretStr(K2)}
        )
        async with running(retired, clock) as client:
            app = client.app  # type: ignore[attr-defined]
            # the old signing key is gone: its tokens end; the re-encrypted secret reads
            assert (await client.get("/v1/me", headers=alice.headers)).status_code == 401
            assert await partner_secret(app) == secret
            again = await scan(app.state.engine, app.state.keys, rotate=False)
            assert all(r.older == 0 and r.unreadable == 0 for r in again.values())


class TestKeysCommand:
    async def test_check_then_rotate_from_the_command_line(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # created while no encryption key was configured: encrypted with the JWT secret's key
        await client.post(
            "/admin/v1/partners", json={"name": "NGO", "scopes": ["orders"]}, headers=admin_headers
        )
        assert settings.jwt_secret is not None
        monkeypatch.setenv("CANOPY_DATABASE_URL", settings.database_url or "")
        monkeypatch.setenv("CANOPY_REDIS_URL", settings.redis_url or "")
        monkeypatch.setenv("CANOPY_JWT_SECRET", settings.jwt_secret.get_secret_value())
        monkeypatch.setenv("CANOPY_ENCRYPTION_KEY", K1)
        get_settings.cache_clear()
        try:
            invoke = CliRunner().invoke
            check = await asyncio.to_thread(invoke, keys_app, ["check"])
            rotate = await asyncio.to_thread(invoke, keys_app, ["rotate"])
            after = await asyncio.to_thread(invoke, keys_app, ["check"])
            monkeypatch.setenv("CANOPY_ENCRYPTION_KEY", K2)  # K1 forgotten
            get_settings.cache_clear()
            lost = await asyncio.to_thread(invoke, keys_app, ["check"])
        finally:
            get_settings.cache_clear()
        assert check.exit_code == 0, check.output
        assert "partners.webhook_secret_encrypted: 0 current, 1 on an older key" in check.output
        assert "run canopy keys rotate" in check.output
        assert rotate.exit_code == 0 and "1 re-encrypted" in rotate.output, rotate.output
        assert after.exit_code == 0 and "older keys can be removed" in after.output
        assert lost.exit_code == 1 and "1 UNREADABLE" in lost.output
        audit = (await client.get("/admin/v1/audit", headers=admin_headers)).json()
        assert any(e["action"] == "keys.rotated" for e in audit["entries"])


class TestSecretsFromFiles:
    def test_a_variable_can_name_a_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "jwt").write_text(S1 + "\n")
        (tmp_path / "previous").write_text(f"{K1}\n{K2}\n")
        monkeypatch.setenv("CANOPY_JWT_SECRET_FILE", str(tmp_path / "jwt"))
        monkeypatch.setenv("CANOPY_ENCRYPTION_PREVIOUS_KEYS_FILE", str(tmp_path / "previous"))
        settings = Settings()
        assert settings.jwt_secret is not None and settings.jwt_secret.get_secret_value() == S1
        assert [k.get_secret_value() for k in settings.encryption_previous_keys] == [K1, K2]

    def test_both_forms_at_once_are_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "jwt").write_text(S1)
        monkeypatch.setenv("CANOPY_JWT_SECRET_FILE", str(tmp_path / "jwt"))
        monkeypatch.setenv("CANOPY_JWT_SECRET", S2)
        with pytest.raises(ValueError, match="CANOPY_JWT_SECRET or CANOPY_JWT_SECRET_FILE"):
            Settings()

    def test_a_missing_file_is_named(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CANOPY_ADMIN_TOKEN_FILE", str(tmp_path / "absent"))
        with pytest.raises(ValueError, match="CANOPY_ADMIN_TOKEN_FILE"):
            Settings()

    def test_short_previous_keys_are_refused(self) -> None:
        with pytest.raises(ValidationError, match="CANOPY_JWT_PREVIOUS_SECRETS"):
            Settings(jwt_previous_secrets="short,also-short")  # type: ignore[arg-type]
