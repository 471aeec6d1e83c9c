"""Schemathesis over every operation of /openapi.json: no 5xx, responses conform to the schema.

The real app is served by uvicorn on a loopback port (in a thread of this process) against the
run's PostgreSQL and Redis. Each operation is called with the credentials its security scheme
names — a user's bearer token, a partner key (scopes ``activities`` and ``orders``) or the admin
token — with positive and negative cases (schemathesis' examples, coverage and fuzzing phases),
``max_examples`` per operation kept small so the whole module stays within about a minute and a
half. Operations that end the caller's own login (logout, password change, erasure) get a fresh
user each time, so they do not take the shared user's token away from the rest.

Every operation listed by /openapi.json is fuzzed — including ones added later: the schema is
read from the running app, not from a list kept here.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from app.config import Settings
from app.core.clock import FrozenClock
from app.main import create_app
from app.rules.schema import LimitsRules
from tests.conftest import ADMIN_TOKEN, GENEROUS_LIMIT, TestServers, _clean, set_limits
from tests.helpers import PASSWORD

MAX_EXAMPLES = int(os.environ.get("CANOPY_FUZZ_EXAMPLES", "12"))  # per operation and mode
# calls that end the caller's login: each gets a user of its own
OWN_USER = {("POST", "/v1/auth/logout"), ("POST", "/v1/me/password"), ("DELETE", "/v1/me")}


@dataclass
class Served:
    base_url: str
    user: str
    partner: str
    admin: str = ADMIN_TOKEN


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(test_servers: TestServers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    asyncio.run(_clean(test_servers))
    settings = Settings(
        database_url=test_servers.database_url,
        redis_url=test_servers.redis_url,
        data_dir=Path(tmp_path_factory.mktemp("fuzz")),
        admin_token=SecretStr(ADMIN_TOKEN),
        jwt_secret=SecretStr("test-jwt-secret-that-is-long-enough-0123456789"),
        webhook_allow_private=False,
        access_token_ttl=timedelta(days=365),
        rules_refresh_seconds=0,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
    )
    app = create_app(
        settings, clock=FrozenClock(datetime(2026, 11, 29, 4, 0, tzinfo=UTC)), run_worker=False
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        set_limits(app, **{name: GENEROUS_LIMIT for name in LimitsRules.model_fields})
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base) as c:
            user = _register(c)
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            made = c.post(
                "/admin/v1/partners",
                json={"name": "Fuzz partner", "scopes": ["activities", "orders"]},
                headers=admin,
            )
            assert made.status_code == 201, made.text
            partner = made.json()
            # something to list and look at: a catalog item of that partner
            item = c.post(
                "/admin/v1/catalog",
                json={
                    "kind": "tree",
                    "name": "Saxaul",
                    "species": "Haloxylon ammodendron",
                    "cost_g": 17_900,
                    "region": "Alxa League",
                    "partner_id": partner["id"],
                    "budget": 100,
                    "status": "available",
                },
                headers=admin,
            )
            assert item.status_code == 201, item.text
        yield Served(base, user, partner["api_key"])
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _register(c: httpx.Client) -> str:
    response = c.post(
        "/v1/auth/register", json={"handle": f"f{uuid.uuid4().hex[:12]}", "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture(scope="module")
def api_schema(served: Served) -> Any:
    schema = schemathesis.openapi.from_url(f"{served.base_url}/openapi.json")
    schema.config.generation.update(max_examples=MAX_EXAMPLES)
    return schema


def _operations() -> list[tuple[str, str]]:
    """Every (method, path) of the app's OpenAPI document, read from the app itself (no
    database needed to build it), so operations added later are fuzzed too."""
    probe = create_app(
        Settings(
            database_url="postgresql://probe@127.0.0.1/probe",
            redis_url="redis://probe",
            argon2_time_cost=1,  # building the app sets the hashing cost: keep the tests' one
            argon2_memory_kib=1024,
        ),
        run_worker=False,
    )
    paths = probe.openapi()["paths"]
    return [(m.upper(), path) for path, ops in paths.items() for m in ops]


def _credentials(served: Served, operation: Any) -> dict[str, str]:
    schemes = {name for req in operation.definition.raw.get("security", []) for name in req}
    if "AdminToken" in schemes:
        token = served.admin
    elif "PartnerKey" in schemes:
        token = served.partner
    elif "UserToken" in schemes:
        if (operation.method.upper(), operation.path) in OWN_USER:
            with httpx.Client(base_url=served.base_url) as c:
                token = _register(c)
        else:
            token = served.user
    else:
        return {}
    return {"Authorization": f"Bearer {token}"}


# the rules endpoints take the rules file's TOML text as the body; fuzzed as any text
schemathesis.serializer.alias("application/toml", "text/plain")

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("method", "path"), _operations())
def test_no_5xx_and_schema_conformance(
    method: str, path: str, mode: GenerationMode, served: Served, api_schema: Any
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        deadline=None,
        suppress_health_check=list(HealthCheck),
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def run(case: Any) -> None:
        case.call_and_validate(
            base_url=served.base_url,
            headers=_credentials(served, operation),
            checks=CHECKS,
            timeout=30,
        )

    try:
        run()
    except Unsatisfiable:
        # no parameters and no body: nothing a negative case could get wrong
        assert mode is GenerationMode.NEGATIVE, "no positive case could be generated"
