"""Everything the benchmark knows about Canopy itself, in one place.

When the app changes shape, this is the module to adapt. It holds:

- how the server is started and configured (command, environment, rules with limits lifted);
- the routes and request bodies the scenarios send, and the markers that say a call did its work;
- setup through the public API (register, partner ingestion, own collect, catalog, forest view,
  ledger check);
- the only setup done by SQL against the app's tables: bulk friendships (``befriend``).

Nothing else in ``bench/`` reads ``app/`` or the app's tables. Keep this list in
``docs/performance.md`` ("What the benchmark depends on") in step with the code.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sys
import tomllib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

LIMIT = "1000000/minute"  # every [limits] entry of the bench's rules copy
PASSWORD = "benchmark-pw"

# --- the server ---------------------------------------------------------------------------------


def serve_command(port: int, workers: int) -> list[str]:
    """``canopy serve`` from this checkout's virtualenv: no background worker, ``workers``
    uvicorn processes."""
    exe = str(Path(sys.executable).parent / "canopy")
    return [exe, "serve", "--port", str(port), "--workers", str(workers), "--no-worker"]


def server_env(
    *, database_url: str, redis_url: str, admin_token: str, jwt_secret: str, rules: Path, data: Path
) -> dict[str, str]:
    """The settings the bench server runs with (``CANOPY_*``)."""
    return {
        "CANOPY_DATABASE_URL": database_url,
        "CANOPY_REDIS_URL": redis_url,
        "CANOPY_ADMIN_TOKEN": admin_token,
        "CANOPY_JWT_SECRET": jwt_secret,
        "CANOPY_RULES": str(rules),
        "CANOPY_DATA_DIR": str(data),
        "CANOPY_LOG_LEVEL": "WARNING",
        # setup registers hundreds of users: the cheapest argon2id argon2-cffi accepts (no
        # measured call hashes a password) ...
        "CANOPY_ARGON2_TIME_COST": "1",
        "CANOPY_ARGON2_MEMORY_KIB": "64",
        # ... and access tokens that outlive the run
        "CANOPY_ACCESS_TOKEN_TTL": "12h",
    }


READY_PATH = "/readyz"


def rules_with_limits_lifted(source: Path, target: Path) -> dict[str, Any]:
    """Copy the rules file with every ``[limits]`` value set to ``LIMIT`` (comments and all other
    tables unchanged); returns the parsed copy."""
    text = source.read_text()
    start = re.search(r"(?m)^\[limits\][^\n]*\n", text)
    if start is None:
        raise RuntimeError(f"{source} has no [limits] table")
    nxt = re.search(r"(?m)^\[", text[start.end() :])
    end = start.end() + nxt.start() if nxt else len(text)
    body = re.sub(
        r'(?m)^(\s*[A-Za-z0-9_]+\s*=\s*)"[^"]*"',
        lambda m: f'{m.group(1)}"{LIMIT}"',
        text[start.end() : end],
    )
    target.write_text(text[: start.end()] + body + text[end:])
    parsed = tomllib.loads(target.read_text())
    left = [k for k, v in parsed.get("limits", {}).items() if v != LIMIT]
    if left:
        raise RuntimeError(f"limits not lifted: {left}")
    return parsed


def owner_floor(rules: dict[str, Any]) -> float:
    """The share of each ball friends may never take (``[stealing] owner_floor``)."""
    return float(rules["stealing"]["owner_floor"])


# --- routes, bodies and what a successful answer contains -----------------------------------------

HEALTHZ = "/healthz"
ME = "/v1/me"
FRIENDS = "/v1/friends"
PLANTINGS = "/v1/plantings"
PARTNER_BATCH = "/partner/v1/activities/batch"
LEDGER_CHECK = "/admin/v1/ledger/check"


def friend_collect_path(owner: str) -> str:
    return f"/v1/friends/{owner}/collect"


def collect_one_body(ball: str) -> bytes:
    return b'{"ball_ids":["' + ball.encode() + b'"]}'


COLLECT_ALL_BODY = b"{}"
# markers: a JSON member ("key", "value") found in answers (whitespace around ':' allowed)
COLLECTED = ("status", "collected")  # in a friend-collect answer: a ball was taken from
MINTED = ("status", "minted")  # per event in a batch answer
CAPPED = ("status", "capped")


def planting_body(item_id: str) -> bytes:
    return json.dumps({"item_id": item_id, "quantity": 1}).encode()


IDEMPOTENCY_HEADER = "Idempotency-Key"

# S2's batches: per (user, local day, capped kind) slot, CAPPED_PER_SLOT events of a kind capped
# at DAILY_CAP a day (so the last one is capped whatever else that slot saw: none) and
# FREE_PER_SLOT events of an uncapped kind. Kinds and caps as in rules/default.toml.
CAPPED_KINDS = ("metro", "bus", "e_invoice")  # daily_cap_count = 5 each
DAILY_CAP = 5
CAPPED_PER_SLOT = 6
FREE_KIND = "etc_toll"  # no cap
FREE_PER_SLOT = 4
SLOTS_PER_BATCH = 10  # 10 slots x 10 events = 100 events: 90 minted, 10 capped
DAYS = 7  # days back an event may be dated (rules: [ingest] max_age = "7d")


def batch_slot(slot: int, users: Sequence[str]) -> tuple[str, int, str]:
    """Slot number -> (user id, days back, capped kind). Slots never repeat a (user, day, kind)
    until ``len(users) * DAYS * len(CAPPED_KINDS)`` slots were used."""
    n = len(users)
    return users[slot % n], (slot // n) % DAYS, CAPPED_KINDS[(slot // (n * DAYS)) % 3]


def batch_stamps(now: datetime) -> list[str]:
    """``occurred_at`` for each of the ``DAYS`` days back (24 h apart: distinct local days)."""
    return [
        (now - timedelta(days=d, minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ") for d in range(DAYS)
    ]


def batch_body(batch: int, users: Sequence[str], tag: str, stamps: Sequence[str]) -> bytes:
    """Batch number ``batch``'s 100 events (see ``batch_slot``); event ids ``tag-batch-k``.
    ``bench/lua/bench.lua`` (mode ``batch``) builds the very same bodies."""
    events = []
    k = 0
    for s in range(batch * SLOTS_PER_BATCH, (batch + 1) * SLOTS_PER_BATCH):
        user, days, kind = batch_slot(s, users)
        for j in range(CAPPED_PER_SLOT + FREE_PER_SLOT):
            which = kind if j < CAPPED_PER_SLOT else FREE_KIND
            events.append(
                f'{{"id":"{tag}-{batch}-{k}","user_id":"{user}","kind":"{which}",'
                f'"occurred_at":"{stamps[days]}"}}'
            )
            k += 1
    return ('{"activities":[' + ",".join(events) + "]}").encode()


# --- setup through the API ------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    id: str
    handle: str
    token: str


class Api:
    """The public API, for setup and checks (not for load)."""

    def __init__(self, base: str, admin_token: str) -> None:
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        self.client = httpx.AsyncClient(
            base_url=base,
            timeout=120,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )
        self.partner_key: str | None = None
        self.partner_id: str | None = None

    async def close(self) -> None:
        await self.client.aclose()

    async def _ok(self, r: httpx.Response) -> Any:
        if r.status_code >= 300:
            raise RuntimeError(
                f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:300]}"
            )
        return r.json() if r.content else None

    async def register(self, count: int, prefix: str, concurrency: int = 32) -> list[User]:
        """``count`` new users (handles ``prefix0``, ``prefix1``...), each with an access token."""
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> User:
            handle = f"{prefix}{i}"
            async with sem:
                r = await self.client.post(
                    "/v1/auth/register", json={"handle": handle, "password": PASSWORD}
                )
            body = await self._ok(r)
            return User(body["user"]["id"], handle, body["access_token"])

        return list(await asyncio.gather(*(one(i) for i in range(count))))

    async def partner(self) -> tuple[str, str]:
        """A partner allowed to report activities and receive orders: (id, api key)."""
        if self.partner_key is None:
            r = await self.client.post(
                "/admin/v1/partners",
                json={"name": "bench partner", "scopes": ["activities", "orders"]},
                headers=self.admin,
            )
            body = await self._ok(r)
            self.partner_id, self.partner_key = body["id"], body["api_key"]
        assert self.partner_id is not None and self.partner_key is not None
        return self.partner_id, self.partner_key

    async def partner_headers(self) -> dict[str, str]:
        _, key = await self.partner()
        return {"Authorization": f"Bearer {key}"}

    async def mint(
        self, events: Iterable[tuple[str, str, float | None, datetime]], concurrency: int = 4
    ) -> list[tuple[str, int]]:
        """Report activities (user id, kind, quantity, occurred_at) as the partner, 100 per
        batch; returns (ball id, grams) per event, in order. Every event must mint."""
        headers = await self.partner_headers()
        items = list(events)
        chunks = [items[i : i + 100] for i in range(0, len(items), 100)]
        sem = asyncio.Semaphore(concurrency)
        tag = uuid.uuid4().hex[:10]

        async def one(n: int, chunk: list[tuple[str, str, float | None, datetime]]) -> list[Any]:
            activities = []
            for k, (user, kind, quantity, at) in enumerate(chunk):
                item: dict[str, Any] = {
                    "id": f"setup-{tag}-{n}-{k}",
                    "user_id": user,
                    "kind": kind,
                    "occurred_at": at.astimezone(UTC).isoformat(timespec="seconds"),
                }
                if quantity is not None:
                    item["quantity"] = quantity
                activities.append(item)
            async with sem:
                r = await self.client.post(
                    PARTNER_BATCH, json={"activities": activities}, headers=headers
                )
            results = (await self._ok(r))["results"]
            bad = [x for x in results if x["status"] != "minted"]
            if bad:
                raise RuntimeError(f"setup events not minted: {bad[:3]}")
            return [(x["ball_id"], x["energy_g"]) for x in results]

        done = await asyncio.gather(*(one(n, c) for n, c in enumerate(chunks)))
        return [ball for chunk in done for ball in chunk]

    async def collect_own(self, users: Sequence[User], concurrency: int = 16) -> int:
        """Each user collects their own ripe balls; returns the grams collected in all."""
        sem = asyncio.Semaphore(concurrency)

        async def one(u: User) -> int:
            async with sem:
                r = await self.client.post(
                    "/v1/forest/collect", headers={"Authorization": f"Bearer {u.token}"}
                )
            return int((await self._ok(r))["collected_g"])

        return sum(await asyncio.gather(*(one(u) for u in users)))

    async def catalog_item(self, cost_g: int, budget: int) -> str:
        """A tree planted by the bench partner: ``cost_g`` a unit, ``budget`` units."""
        partner_id, _ = await self.partner()
        r = await self.client.post(
            "/admin/v1/catalog",
            json={
                "kind": "tree",
                "name": f"bench tree {uuid.uuid4().hex[:6]}",
                "cost_g": cost_g,
                "region": "bench",
                "partner_id": partner_id,
                "budget": budget,
            },
            headers=self.admin,
        )
        return str((await self._ok(r))["id"])

    async def catalog_remaining(self, user: User, item_id: str) -> int:
        r = await self.client.get("/v1/catalog", headers={"Authorization": f"Bearer {user.token}"})
        for item in (await self._ok(r))["items"]:
            if item["id"] == item_id:
                return int(item["remaining"])
        raise RuntimeError(f"catalog item {item_id} not listed")

    async def own_balls(self, user: User) -> list[dict[str, Any]]:
        """The user's live balls as their forest shows them (amount, remaining, collections)."""
        r = await self.client.get("/v1/forest", headers={"Authorization": f"Bearer {user.token}"})
        return list((await self._ok(r))["balls"])

    async def ledger_check(self) -> dict[str, Any]:
        r = await self.client.get(LEDGER_CHECK, headers=self.admin)
        return dict(await self._ok(r))


def over_taken(balls: Sequence[dict[str, Any]], floor: float) -> list[str]:
    """Balls (never collected by their owner) that friends took more of than the owner floor
    allows, or whose collections do not add up to what they lost."""
    bad = []
    for b in balls:
        taken = b["amount_g"] - b["remaining_g"]
        allowed = math.floor(b["amount_g"] * (1 - floor) + 1e-9)
        listed = sum(c["amount_g"] for c in b.get("collections", []))
        if taken > allowed or taken != listed or b["remaining_g"] < 0:
            bad.append(str(b["id"]))
    return bad


# --- setup by SQL ---------------------------------------------------------------------------------

BEFRIEND = """
INSERT INTO friendships (user_id, friend_id, created_at)
SELECT a, b, now() FROM unnest(CAST($1 AS uuid[]), CAST($2 AS uuid[])) AS p(a, b)
ON CONFLICT DO NOTHING
"""


async def befriend(dsn: str, pairs: Sequence[tuple[str, str]]) -> None:
    """Make each pair friends (both directions), as an accepted friend request leaves them.
    Bulk: tens of thousands of pairs in one statement (the API needs two calls a pair)."""
    both = [*pairs, *((b, a) for a, b in pairs)]
    conn = await asyncpg.connect(dsn)
    try:
        for i in range(0, len(both), 50_000):
            chunk = both[i : i + 50_000]
            await conn.execute(
                BEFRIEND, [uuid.UUID(a) for a, _ in chunk], [uuid.UUID(b) for _, b in chunk]
            )
    finally:
        await conn.close()


def embedded_servers(root: Path) -> tuple[Any, Any]:
    """The app's embedded PostgreSQL and Redis (when no servers are given)."""
    from app.core.embedded import ensure_postgres, ensure_redis

    return ensure_postgres(root / ".canopy-bench"), ensure_redis(root / ".canopy-bench")
