"""A real ``canopy serve`` for the browser tests, and what they need around it: an API client, a
partner whose webhook endpoint always fails, users with energy, orders."""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from app.rules.loader import default_rules_path
from tests.acceptance.test_serve import free_port

CANOPY = str(Path(sys.executable).parent / "canopy")
ADMIN_TOKEN = "browser-admin-token-0123456789-0123456789-abcdef"
PASSWORD = "correct horse battery"
# the shipped rules with sign-in limits a test run from one address does not trip
RULES = (
    default_rules_path()
    .read_text()
    .replace('login = "10/minute"', 'login = "1000/minute"')
    .replace('register = "20/minute"', 'register = "1000/minute"')
)


@dataclass
class Served:
    base: str
    dsn: str
    process: subprocess.Popen[str]

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def sql(self, statement: str, *args: Any) -> Any:
        async def run() -> Any:
            conn = await asyncpg.connect(self.dsn)
            try:
                return await conn.fetchval(statement, *args)
            finally:
                await conn.close()

        return asyncio.run(run())


@contextmanager
def serve(database_url: str, redis_url: str, data_dir: Path) -> Iterator[Served]:
    """``canopy serve`` (one worker process, background jobs in process) on a free port."""
    port = free_port()
    rules = data_dir / "rules.toml"
    data_dir.mkdir(parents=True, exist_ok=True)
    rules.write_text(RULES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANOPY_")}
    env.update(
        CANOPY_DATABASE_URL=database_url,
        CANOPY_REDIS_URL=redis_url,
        CANOPY_DATA_DIR=str(data_dir),
        CANOPY_RULES=str(rules),
        CANOPY_ADMIN_TOKEN=ADMIN_TOKEN,
        CANOPY_JWT_SECRET="browser-jwt-secret-0123456789-0123456789-abcdef",
        CANOPY_WEBHOOK_ALLOW_PRIVATE="true",
        CANOPY_WEBHOOK_RETRY_SCHEDULE="1s",
        CANOPY_ARGON2_TIME_COST="1",
        CANOPY_ARGON2_MEMORY_KIB="1024",
        CANOPY_LOG_FORMAT="text",
        CANOPY_RULES_REFRESH_SECONDS="1",
    )
    log = (data_dir / "serve.log").open("w")
    process = subprocess.Popen(
        [CANOPY, "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    "canopy serve exited:\n" + (data_dir / "serve.log").read_text()
                )
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("canopy serve was not ready in 90 s")
            time.sleep(0.2)
        dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
        yield Served(base, dsn, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


class _Failing(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(500)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def failing_endpoint() -> Iterator[str]:
    """A webhook endpoint on loopback that answers every delivery with 500."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    finally:
        server.shutdown()
        server.server_close()


# --- data through the API ---------------------------------------------------------------------


def create_partner(
    served: Served, name: str, webhook_url: str | None = None, scopes: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "scopes": scopes or ["orders"]}
    if webhook_url:
        body["webhook_url"] = webhook_url
    with served.api() as api:
        response = api.post("/admin/v1/partners", json=body, headers=served.admin)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def add_item(served: Served, partner_id: str, **values: Any) -> dict[str, Any]:
    body = {
        "kind": "tree",
        "name": "Saxaul",
        "species": "Haloxylon ammodendron",
        "cost_g": 17_900,
        "region": "Alxa League, Inner Mongolia",
        "budget": 500,
        "status": "available",
        "partner_id": partner_id,
        **values,
    }
    with served.api() as api:
        response = api.post("/admin/v1/catalog", json=body, headers=served.admin)
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


def register(served: Served, handle: str, display_name: str) -> dict[str, str]:
    with served.api() as api:
        response = api.post(
            "/v1/auth/register",
            json={"handle": handle, "password": PASSWORD, "display_name": display_name},
        )
    assert response.status_code == 201, response.text
    body = response.json()
    return {"id": body["user"]["id"], "Authorization": f"Bearer {body['access_token']}"}


def fund(served: Served, user_id: str, grams: int) -> None:
    """Energy as minting and collecting would leave it: a balanced transfer from
    ``system:minted`` into the user's balance (the ledger check stays green)."""

    async def run() -> None:
        conn = await asyncpg.connect(served.dsn)
        try:
            async with conn.transaction():
                balance = await conn.fetchval(
                    "UPDATE users SET balance_g = balance_g + $1 WHERE id = $2 RETURNING balance_g",
                    grams,
                    uuid.UUID(user_id),
                )
                transfer = uuid.uuid4()
                for account, user, amount, after in (
                    ("system:minted", None, -grams, None),
                    ("user", uuid.UUID(user_id), grams, balance),
                ):
                    await conn.execute(
                        "INSERT INTO ledger_entries (transfer_id, account, user_id, amount_g, "
                        "balance_after_g, reason, ref, rules_version, at) "
                        "VALUES ($1, $2, $3, $4, $5, 'mint', 'test:fund', 1, now())",
                        transfer,
                        account,
                        user,
                        amount,
                        after,
                    )
        finally:
            await conn.close()

    asyncio.run(run())


def plant(served: Served, user: dict[str, str], item_id: str, quantity: int) -> None:
    with served.api() as api:
        response = api.post(
            "/v1/plantings",
            json={"item_id": item_id, "quantity": quantity},
            headers={"Authorization": user["Authorization"]},
        )
    assert response.status_code == 201, response.text


def cut_orders(served: Served) -> list[dict[str, Any]]:
    with served.api() as api:
        response = api.post("/admin/v1/orders/batch", headers=served.admin)
    assert response.status_code == 200, response.text
    orders: list[dict[str, Any]] = response.json()["orders"]
    return orders


def wait_for(check: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)
