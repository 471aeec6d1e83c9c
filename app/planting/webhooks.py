"""Webhooks to partners: a transactional outbox delivered by the worker, signed per Standard
Webhooks 1.0 (the ``standardwebhooks`` library) with the partner's ``whsec_`` secret.

- An event is a ``webhook_deliveries`` row written in the transaction that caused it, with its
  ``webhook-id`` and the exact body every attempt sends.
- Workers claim due rows with ``FOR UPDATE SKIP LOCKED`` and a lease, commit, POST outside any
  transaction, then record the outcome — so no two workers send the same attempt, and a worker
  killed mid-delivery leaves the row to be claimed again when its lease runs out.
- Non-2xx, timeouts and connection errors are retried after ``CANOPY_WEBHOOK_RETRY_SCHEDULE``
  (plus up to 10 % jitter); after the last delay the delivery is ``failed`` for operators to
  see and retry. ``410 Gone`` disables the partner's endpoint at once.
- Unless ``CANOPY_WEBHOOK_ALLOW_PRIVATE``, the host is resolved at delivery time, refused if
  any address is loopback/private/link-local, and the request is sent to the address that was
  checked (so a DNS answer cannot change between the check and the connection).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from standardwebhooks import Webhook

from app.config import Settings
from app.core.db import create_sessionmaker
from app.core.errors import NotFound
from app.core.pagination import split_page
from app.core.security import Keys
from app.partners.schemas import is_private_host, is_public_address
from app.planting.errors import NotRetryable
from app.planting.repository import PlantingRepository, history_at
from app.planting.schemas import DeliveryOut, DeliveryPage, PartnerRef

logger = logging.getLogger("canopy.webhooks")

DELIVERY_TIMEOUT = timedelta(seconds=10)
# longer than any attempt can take (twice the timeout, a hard cap), so a live worker never
# loses its lease
LEASE = timedelta(seconds=60)
CLAIM_BATCH = 50
JITTER = 0.1  # each delay grows by up to 10 %, so retries of many events do not arrive together
USER_AGENT = "Canopy-Webhooks/1.0"
_random = secrets.SystemRandom()

Resolver = Callable[[str, int], Awaitable[list[str]]]


# --- writing events (in the caller's transaction) --------------------------------------------


def new_event_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


async def enqueue(
    repo: PlantingRepository,
    partner_id: uuid.UUID,
    event_type: str,
    data: dict[str, Any],
    now: datetime,
) -> str:
    """Write an event for a partner into the outbox, in the caller's transaction; its
    ``webhook-id``. The body is fixed now, so every attempt sends the same bytes."""
    event_id = new_event_id()
    body = orjson.dumps({"type": event_type, "timestamp": history_at(now), "data": data})
    await repo.enqueue_event(
        delivery_id=uuid.uuid4(),
        event_id=event_id,
        partner_id=partner_id,
        type=event_type,
        body=body.decode(),
        now=now,
    )
    return event_id


# --- delivering (worker) ---------------------------------------------------------------------


class RefusedAddress(Exception):
    pass


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an address literal resolves to itself)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def public_address(host: str, port: int, resolver: Resolver = resolve) -> str:
    """The address to connect to, if ``host`` names only public addresses."""
    if is_private_host(host):
        raise RefusedAddress(f"refused: {host} is a private or loopback address")
    try:
        addresses = await resolver(host, port)
    except OSError as exc:
        raise RefusedAddress(f"cannot resolve {host}: {exc}") from exc
    if not addresses:
        raise RefusedAddress(f"cannot resolve {host}")
    for address in addresses:
        if not is_public_address(address):
            raise RefusedAddress(f"refused: {host} resolves to a private address ({address})")
    return addresses[0]


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    error: str | None
    duration_ms: int
    final: bool = False  # no point retrying (no endpoint, endpoint disabled)

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def signed_headers(secret: str, event_id: str, body: str, at: datetime) -> dict[str, str]:
    """Standard Webhooks 1.0 headers for one attempt."""
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(math.floor(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=event_id, timestamp=at, data=body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


async def _attempt(
    client: httpx.AsyncClient,
    claim: RowMapping,
    *,
    keys: Keys,
    allow_private: bool,
    now: datetime,
    resolver: Resolver,
) -> AttemptResult:
    """One attempt, whatever happens: a hard deadline (a server trickling its answer must not
    outlive the lease), and any surprise recorded as a failed attempt rather than leaving the
    whole batch unrecorded (and so sent again)."""
    started = time.monotonic()
    deadline = client.timeout.read or DELIVERY_TIMEOUT.total_seconds()
    try:
        async with asyncio.timeout(2 * deadline):
            return await _send(
                client, claim, keys=keys, allow_private=allow_private, now=now, resolver=resolver
            )
    except TimeoutError:
        error = f"timed out after {2 * deadline:g}s"
    except Exception as exc:
        logger.exception("webhook attempt failed", extra={"delivery": str(claim["id"])})
        error = f"internal error: {type(exc).__name__}"
    return AttemptResult(None, error, int((time.monotonic() - started) * 1000))


async def _send(
    client: httpx.AsyncClient,
    claim: RowMapping,
    *,
    keys: Keys,
    allow_private: bool,
    now: datetime,
    resolver: Resolver,
) -> AttemptResult:
    started = time.monotonic()

    def result(
        code: int | None = None, error: str | None = None, final: bool = False
    ) -> AttemptResult:
        return AttemptResult(code, error, int((time.monotonic() - started) * 1000), final)

    if claim["endpoint_disabled_at"] is not None:
        return result(error="not sent: the partner's webhook endpoint is disabled", final=True)
    if not claim["webhook_url"]:
        return result(error="not sent: the partner has no webhook URL", final=True)
    target = httpx.URL(claim["webhook_url"])
    secret = keys.decrypt(claim["webhook_secret_encrypted"]).decode()
    headers = signed_headers(secret, claim["event_id"], claim["body"], now)
    extensions: dict[str, Any] = {}
    if not allow_private:
        try:
            address = await public_address(
                target.host, target.port or _default_port(target), resolver
            )
        except RefusedAddress as exc:
            return result(error=str(exc)[:500])
        # connect to the address just checked; Host and TLS SNI keep naming the partner's host
        headers["host"] = target.netloc.decode("ascii")
        extensions["sni_hostname"] = target.host
        target = target.copy_with(host=address)
    try:
        async with client.stream(
            "POST",
            target,
            content=claim["body"].encode(),
            headers=headers,
            extensions=extensions,
        ) as response:
            code = response.status_code  # the body is never read: it could be anything
    except httpx.TimeoutException:
        return result(error=f"timed out after {client.timeout.read:g}s")
    except httpx.HTTPError as exc:
        return result(error=f"{type(exc).__name__}: {exc}"[:500])
    return result(code=code, error=None if 200 <= code < 300 else f"HTTP {code}")


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


def next_delay(schedule: list[timedelta], attempts: int) -> timedelta | None:
    """The wait after the ``attempts``-th failed attempt of a round, or None when that was the
    last one (a round has ``len(schedule) + 1`` attempts)."""
    if attempts > len(schedule):
        return None
    return schedule[attempts - 1] * (1 + _random.uniform(0, JITTER))


async def deliver_due(
    engine: AsyncEngine,
    *,
    settings: Settings,
    keys: Keys,
    now: datetime,
    limit: int = CLAIM_BATCH,
    request_timeout: timedelta = DELIVERY_TIMEOUT,
    lease: timedelta = LEASE,
    resolver: Resolver = resolve,
) -> int:
    """Claim due deliveries, attempt each once (concurrently), record the outcomes (worker
    job). Claiming commits before any request is sent, and recording happens after, each in
    its own short transaction. Returns how many attempts were made."""
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session, session.begin():
        claimed = await PlantingRepository(session).claim_deliveries(now, now + lease, limit)
    if not claimed:
        return 0
    async with httpx.AsyncClient(
        timeout=request_timeout.total_seconds(), follow_redirects=False, trust_env=False
    ) as client:
        results = await asyncio.gather(
            *(
                _attempt(
                    client,
                    c,
                    keys=keys,
                    allow_private=settings.webhook_allow_private,
                    now=now,
                    resolver=resolver,
                )
                for c in claimed
            )
        )
    async with sessionmaker() as session, session.begin():
        repo = PlantingRepository(session)
        for claim, outcome in zip(claimed, results, strict=True):
            await _record(repo, claim, outcome, settings.webhook_retry_schedule, now)
    return len(claimed)


async def _record(
    repo: PlantingRepository,
    claim: RowMapping,
    outcome: AttemptResult,
    schedule: list[timedelta],
    now: datetime,
) -> None:
    finished = now + timedelta(milliseconds=outcome.duration_ms)
    delay = None if outcome.final or outcome.gone else next_delay(schedule, claim["attempts"])
    status = "delivered" if outcome.delivered else ("failed" if delay is None else "pending")
    await repo.finish_attempt(
        delivery_id=claim["id"],
        attempt_id=claim["attempt_id"],
        finished_at=finished,
        status_code=outcome.status_code,
        error=outcome.error,
        duration_ms=outcome.duration_ms,
        outcome=status,
        next_attempt_at=finished + delay if status == "pending" and delay is not None else None,
    )
    if outcome.gone:
        await repo.disable_endpoint(claim["partner_id"], "410 Gone from the webhook URL", finished)
    if status == "failed":
        logger.warning(
            "webhook delivery failed",
            extra={
                "delivery": str(claim["id"]),
                "event": claim["event_id"],
                "error": outcome.error,
            },
        )


# --- operators -------------------------------------------------------------------------------


def delivery_out(row: RowMapping) -> DeliveryOut:
    return DeliveryOut(
        id=row["id"],
        event_id=row["event_id"],
        type=row["type"],
        partner=PartnerRef(id=row["partner_id"], name=row["partner_name"]),
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"] if row["status"] == "pending" else None,
        last_attempt_at=row["last_attempt_at"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        delivered_at=row["delivered_at"],
        created_at=row["created_at"],
    )


async def list_deliveries(
    session: AsyncSession,
    status: str | None,
    partner_id: uuid.UUID | None,
    before_seq: int | None,
    limit: int,
) -> DeliveryPage:
    rows = await PlantingRepository(session).deliveries(status, partner_id, before_seq, limit)
    page, next_cursor = split_page(rows, limit, lambda r: r["seq"])
    return DeliveryPage(
        deliveries=[delivery_out(r) for r in page],
        next_cursor=next_cursor,
    )


async def retry(session: AsyncSession, delivery_id: uuid.UUID, now: datetime) -> DeliveryOut:
    """Give a failed delivery a new round of attempts, starting now, and enable its partner's
    endpoint again if a ``410`` had disabled it."""
    repo = PlantingRepository(session)
    if await repo.requeue_failed(delivery_id, now) is None:
        existing = await repo.delivery(delivery_id)
        if existing is None:
            raise NotFound("No such webhook delivery")
        raise NotRetryable(f"This delivery is {existing['status']}")
    row = await repo.delivery(delivery_id)
    assert row is not None
    return delivery_out(row)
