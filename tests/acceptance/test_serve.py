"""`canopy serve` as a deployer runs it: a real process, a real port, stop and start again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TestServers, drop_database, fresh_database
from tests.helpers import PASSWORD

CANOPY = str(Path(sys.executable).parent / "canopy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [CANOPY, "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"canopy serve exited early:\n{self.proc.stdout.read()}")  # type: ignore[union-attr]
            try:
                if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError("canopy serve did not become ready in 60 s")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        assert self.proc.returncode == 0, out
        return out


def base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANOPY_")}
    env.update(
        CANOPY_DATA_DIR=str(data_dir), CANOPY_ADMIN_TOKEN="acceptance-admin-token-0123456789-abcdef"
    )
    return env


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="cnp-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def register_and_sign_in(base: str) -> str:
    created = httpx.post(f"{base}/v1/auth/register", json={"handle": "dora", "password": PASSWORD})
    assert created.status_code == 201, created.text
    return str(created.json()["user"]["id"])


class TestServeEmbedded:
    def test_fresh_data_dir_serves_and_keeps_users_across_restarts(self, short_tmp: Path) -> None:
        env = base_env(short_tmp / "data")
        service = Service(env, free_port())
        try:
            assert httpx.get(service.base + "/healthz").json() == {"status": "ok"}
            user_id = register_and_sign_in(service.base)
            assert httpx.get(service.base + "/docs").status_code == 200
        finally:
            log = service.stop()
        assert "embedded PostgreSQL" in log and "redis" in log.lower()
        # both embedded servers stopped with the service
        assert not (short_tmp / "data" / "postgres" / "postmaster.pid").exists()

        again = Service(env, free_port())
        try:
            signed_in = httpx.post(
                again.base + "/v1/auth/token", json={"handle": "dora", "password": PASSWORD}
            )
            assert signed_in.status_code == 200
            assert signed_in.json()["user"]["id"] == user_id
        finally:
            again.stop()


class TestServeExternal:
    def test_configured_servers_are_used(self, short_tmp: Path, test_servers: TestServers) -> None:
        url = fresh_database(test_servers, "canopy_serve")
        env = base_env(short_tmp / "data")
        env.update(CANOPY_DATABASE_URL=url, CANOPY_REDIS_URL=test_servers.redis_url)
        try:
            service = Service(env, free_port())
            try:
                register_and_sign_in(service.base)
            finally:
                log = service.stop()
            assert "embedded PostgreSQL" not in log
            assert not (short_tmp / "data" / "postgres").exists()
        finally:
            drop_database(test_servers, url)
