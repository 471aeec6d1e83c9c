"""Webhook delivery to a real HTTP receiver on loopback, verified with the ``standardwebhooks``
library: signatures, retries with the same webhook-id and growing gaps, giving up, 410 Gone,
timeouts, concurrent workers, a worker killed mid-delivery, private-address refusal."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from standardwebhooks import Webhook

from app.config import Settings
from app.core.clock import FrozenClock
from app.core.worker import Worker
from app.jobs import default_jobs
from app.planting import webhooks
from app.planting.repository import PlantingRepository
from tests.helpers import assert_problem
from tests.planting.conftest import (
    NGO,
    Receiver,
    add_item,
    create_ngo,
    cut_orders,
    fund,
    plant,
    quick_players,
    scalar,
)

SCHEDULE = [timedelta(seconds=10), timedelta(seconds=20), timedelta(seconds=40)]


@pytest.fixture
def clock() -> FrozenClock:
    # standardwebhooks checks webhook-timestamp against the real time (±5 minutes)
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"webhook_allow_private": True, "webhook_retry_schedule": SCHEDULE}
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()


async def deliver(app: FastAPI, clock: FrozenClock, **kwargs: Any) -> int:
    return await webhooks.deliver_due(
        app.state.engine,
        settings=app.state.settings,
        keys=app.state.keys,
        now=clock.now(),
        **kwargs,
    )


async def emit(app: FastAPI, ngo: NGO, count: int = 1) -> list[str]:
    """Events for a partner, written the way services write them (in a transaction)."""
    async with app.state.sessionmaker() as session, session.begin():
        repo = PlantingRepository(session)
        return [
            await webhooks.enqueue(
                repo, uuid.UUID(ngo.id), "order.created", {"n": n}, app.state.clock.now()
            )
            for n in range(count)
        ]


async def delivery(app: FastAPI) -> dict[str, Any]:
    async with app.state.engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM webhook_deliveries"))).mappings().one()
        return dict(row)


async def attempts(app: FastAPI) -> list[dict[str, Any]]:
    async with app.state.engine.connect() as conn:
        rows = await conn.execute(text("SELECT * FROM webhook_attempts ORDER BY id"))
        return [dict(r) for r in rows.mappings()]


class TestDelivery:
    async def test_an_order_reaches_the_partner_signed(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
        receiver: Receiver,
    ) -> None:
        ngo = await create_ngo(client, admin_headers, webhook_url=receiver.url)
        item = await add_item(client, admin_headers, ngo.id, cost_g=10)
        [alice] = await quick_players(app, 1)
        await fund(app, alice.id, 10)
        made = await plant(client, alice, item["id"])
        [order] = await cut_orders(client, admin_headers)
        # the worker's job, as `canopy worker` and `canopy serve` run it
        jobs = default_jobs(
            app.state.rules_registry, settings=app.state.settings, keys=app.state.keys
        )
        await Worker(app.state.sessionmaker, clock, jobs).run_due()
        [request] = receiver.requests
        assert request.method == "POST" and request.path == "/hooks"
        event = Webhook(ngo.webhook_secret).verify(request.body, request.headers)
        assert event["type"] == "order.created"
        assert event["data"]["id"] == order["id"]
        assert event["data"]["certificates"] == [
            {"number": made["certificate_number"], "quantity": 1}
        ]
        assert request.headers["webhook-id"].startswith("msg_")
        assert request.headers["webhook-timestamp"] == str(int(clock.now().timestamp()))
        assert request.headers["content-type"] == "application/json"
        forged = request.headers | {"webhook-signature": "v1," + "A" * 44}
        with pytest.raises(Exception, match="signature"):
            Webhook(ngo.webhook_secret).verify(request.body, forged)
        row = await delivery(app)
        assert row["status"] == "delivered" and row["delivered_at"] is not None
        assert await deliver(app, clock) == 0  # delivered once, never again

    async def test_failures_are_retried_with_the_same_id_and_growing_gaps(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
        receiver: Receiver,
    ) -> None:
        ngo = await create_ngo(client, admin_headers, webhook_url=receiver.url)
        receiver.queued = [500, 503]
        [event_id] = await emit(app, ngo)
        sent_at = []
        for _ in range(3):
            assert await deliver(app, clock) == 1
            sent_at.append(clock.now())
            row = await delivery(app)
            if row["status"] == "delivered":
                break
            # not due a moment before its time
            clock.set(row["next_attempt_at"] - timedelta(milliseconds=1))
            assert await deliver(app, clock) == 0
            clock.set(row["next_attempt_at"])
        assert [r.headers["webhook-id"] for r in receiver.requests] == [event_id] * 3
        assert len({r.headers["webhook-signature"] for r in receiver.requests}) == 3
        for r in receiver.requests:
            Webhook(ngo.webhook_secret).verify(r.body, r.headers)
        assert len({r.body for r in receiver.requests}) == 1  # the same bytes every time
        gaps = [b - a for a, b in itertools.pairwise(sent_at)]
        assert SCHEDULE[0] <= gaps[0] <= SCHEDULE[0] * 1.1 + timedelta(seconds=1)
        assert SCHEDULE[1] <= gaps[1] <= SCHEDULE[1] * 1.1 + timedelta(seconds=1)
        assert gaps[1] > gaps[0]
        assert (await delivery(app))["status"] == "delivered"
        recorded = await attempts(app)
        assert [(a["number"], a["status_code"]) for a in recorded] == [(1, 500), (2, 503), (3, 200)]
        assert recorded[0]["error"] == "HTTP 500" and recorded[2]["error"] is None
        assert all(a["finished_at"] is not None for a in recorded)

    async def test_a_delivery_is_given_up_then_retried_by_an_operator(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
        receiver: Receiver,
    ) -> None:
        ngo = await create_ngo(client, admin_headers, webhook_url=receiver.url)
        receiver.status = 500
        [event_id] = await emit(app, ngo)
        for _ in range(len(SCHEDULE) + 1):
            assert await deliver(app, clock) == 1
            clock.advance(minutes=2)
        assert len(receiver.requests) == len(SCHEDULE) + 1
        assert await deliver(app, clock) == 0
        listed = await client.get(
            "/admin/v1/webhook-deliveries", params={"status": "failed"}, headers=admin_headers
        )
        [failed] = listed.json()["deliveries"]
        assert failed["event_id"] == event_id and failed["attempts"] == 4
        assert failed["last_status_code"] == 500 and failed["next_attempt_at"] is None
        assert failed["partner"]["id"] == ngo.id
        pending = await client.get(
            "/admin/v1/webhook-deliveries", params={"status": "pending"}, headers=admin_headers
        )
        assert pending.json()["deliveries"] == []
        receiver.status = 204
        retried = await client.post(
            f"/admin/v1/webhook-deliveries/{failed['id']}/retry", headers=admin_headers
        )
        assert retried.status_code == 200 and retried.json()["status"] == "pending"
        assert await deliver(app, clock) == 1
        assert receiver.requests[-1].headers["webhook-id"] == event_id
        assert (await delivery(app))["status"] == "delivered"
        assert len(await attempts(app)) == 5
        assert_problem(
            await client.post(
                f"/admin/v1/webhook-deliveries/{failed['id']}/retry", headers=admin_headers
            ),
            409,
            "not_retryable",
        )
        for missing in ("00000000-0000-0000-0000-000000000000", "nope"):
            assert_problem(
                await client.post(
                    f"/admin/v1/webhook-deliveries/{missing}/retry", headers=admin_headers
                ),
                404,
                "not_found",
            )

    async def test_410_gone_disables_the_endpoint_until_an_operator_retries(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
        receiver: Receiver,
    ) -> None:
        ngo = await create_ngo(client, admin_headers, webhook_url=receiver.url)
        receiver.queued = [410]
        await emit(app, ngo)
        assert await deliver(app, clock) == 1
        assert (await delivery(app))["status"] == "failed"  # at once, no retries
        await emit(app, ngo)
        assert await deliver(app, clock) == 1
        assert len(receiver.requests) == 1  # the disabled endpoint is not called
        failed = (
            await client.get(
                "/admin/v1/webhook-deliveries", params={"status": "failed"}, headers=admin_headers
            )
        ).json()["deliveries"]
        assert len(failed) == 2 and "disabled" in failed[0]["last_error"]
        for d in failed:
            await client.post(
                f"/admin/v1/webhook-deliveries/{d['id']}/retry", headers=admin_headers
            )
        assert await deliver(app, clock) == 2
        assert len(receiver.requests) == 3
        assert (
            await scalar(app, "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'")
            == 2
        )

    async def test_a_timeout_is_a_failed_attempt(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
        receiver: Receiver,
    ) -> None:
        ngo = await create_ngo(client, admin_headers, webhook_url=receiver.url)
        receiver.delay = 1.0
        await emit(app, ngo)
        await deliver(app, clock, request_timeout=timedelta(seconds=0.2))
        row = await delivery(app)
        assert row["status"] == "pending" and "timed out" in row["last_error"]
        assert row["next_attempt_at"] >= clock.now() + SCHEDULE[0]

    async def test_an_unreachable_endpoint_is_a_failed_attempt(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
    ) -> None:
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()  # nothing listens there now
        ngo = await create_ngo(client, admin_headers, webhook_url=f"http://127.0.0.1:{port}/h")
        await emit(app, ngo)
        assert await deliver(app, clock) == 1
        row = await delivery(app)
        assert row["status"] == "pending" and "ConnectError" in row["last_error"]


class TestWorkers:
    async def test_concurrent_workers_never_send_the_same_attempt_twice(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
        receiver: Receiver,
    ) -> None:
        ngo = await create_ngo(client, admin_headers, webhook_url=receiver.url)
        ids = await emit(app, ngo, 12)
        sent = await asyncio.gather(*(deliver(app, clock, limit=3) for _ in range(8)))
        assert sum(sent) == 12
        assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(ids)
        assert await scalar(app, "SELECT count(*) FROM webhook_attempts") == 12

    async def test_a_worker_killed_mid_delivery_leaves_it_to_be_retried(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
        receiver: Receiver,
    ) -> None:
        ngo = await create_ngo(client, admin_headers, webhook_url=receiver.url)
        [event_id] = await emit(app, ngo)
        # a worker claims the delivery and dies before sending or recording anything
        async with app.state.sessionmaker() as session, session.begin():
            claimed = await PlantingRepository(session).claim_deliveries(
                clock.now(), clock.now() + webhooks.LEASE, 10
            )
        assert len(claimed) == 1
        assert await deliver(app, clock) == 0  # leased: other workers leave it alone
        clock.advance(webhooks.LEASE)
        assert await deliver(app, clock) == 1
        [request] = receiver.requests
        assert request.headers["webhook-id"] == event_id
        assert (await delivery(app))["status"] == "delivered"
        lost, done = await attempts(app)
        assert lost["finished_at"] is None and done["status_code"] == 200

    async def test_one_broken_delivery_does_not_hold_up_the_others(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
        receiver: Receiver,
    ) -> None:
        good = await create_ngo(client, admin_headers, webhook_url=receiver.url)
        broken = await create_ngo(client, admin_headers, "B", webhook_url=receiver.url)
        async with app.state.engine.begin() as conn:  # a secret the keys cannot decrypt
            await conn.execute(
                text("UPDATE partners SET webhook_secret_encrypted = 'x' WHERE id = :id"),
                {"id": uuid.UUID(broken.id)},
            )
        [ok] = await emit(app, good)
        await emit(app, broken)
        assert await deliver(app, clock) == 2
        assert [r.headers["webhook-id"] for r in receiver.requests] == [ok]
        errors = await scalar(
            app,
            "SELECT string_agg(coalesce(last_error, 'none'), ',' ORDER BY seq) "
            "FROM webhook_deliveries",
        )
        assert errors == "none,internal error: RuntimeError"

    async def test_a_late_worker_cannot_overwrite_the_new_owner(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
    ) -> None:
        ngo = await create_ngo(client, admin_headers, webhook_url="http://127.0.0.1:9/h")
        await emit(app, ngo)
        async with app.state.sessionmaker() as session, session.begin():
            repo = PlantingRepository(session)
            [stale] = await repo.claim_deliveries(clock.now(), clock.now(), 10)
            [fresh] = await repo.claim_deliveries(clock.now(), clock.now() + webhooks.LEASE, 10)
            for claim, status in ((fresh, "delivered"), (stale, "failed")):
                await repo.finish_attempt(
                    delivery_id=claim["id"],
                    attempt_id=claim["attempt_id"],
                    finished_at=clock.now(),
                    status_code=200 if status == "delivered" else 500,
                    error=None,
                    duration_ms=1,
                    outcome=status,
                    next_attempt_at=None,
                )
        assert (await delivery(app))["status"] == "delivered"
        assert [a["status_code"] for a in await attempts(app)] == [500, 200]


class TestAddressPolicy:
    async def test_private_addresses_are_refused_at_delivery_unless_allowed(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
        receiver: Receiver,
    ) -> None:
        ngo = await create_ngo(client, admin_headers, webhook_url=receiver.url)
        await emit(app, ngo)
        app.state.settings.webhook_allow_private = False
        assert await deliver(app, clock) == 1
        assert receiver.requests == []
        row = await delivery(app)
        assert row["status"] == "pending" and "private" in row["last_error"]

    async def test_names_are_checked_against_what_they_resolve_to(self) -> None:
        def resolves_to(*addresses: str) -> webhooks.Resolver:
            async def resolver(host: str, port: int) -> list[str]:
                return list(addresses)

            return resolver

        public = await webhooks.public_address("ngo.example.org", 443, resolves_to("93.184.215.14"))
        assert public == "93.184.215.14"
        for addresses in (("10.0.0.7",), ("93.184.215.14", "127.0.0.1"), ("fe80::1%eth0",), ()):
            with pytest.raises(webhooks.RefusedAddress):
                await webhooks.public_address("ngo.example.org", 443, resolves_to(*addresses))
        for host in ("localhost", "127.0.0.1", "192.168.1.4", "[::1]", "printer.local"):
            with pytest.raises(webhooks.RefusedAddress):
                await webhooks.public_address(host, 80, resolves_to("93.184.215.14"))
        # the machine's own name really resolves (via /etc/hosts) to a non-public address
        with pytest.raises(webhooks.RefusedAddress):
            await webhooks.public_address(socket.gethostname(), 80)

    async def test_requests_go_to_the_checked_address_with_the_original_host(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
        clock: FrozenClock,
        receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        port = receiver.url.split(":")[2].split("/")[0]
        url = f"http://ngo.example.org:{port}/hooks"
        ngo = await create_ngo(client, admin_headers, webhook_url=url)
        await emit(app, ngo)
        app.state.settings.webhook_allow_private = False

        async def checked(host: str, port: int, resolver: object = None) -> str:
            assert host == "ngo.example.org"
            return "127.0.0.1"  # stands in for the public address the name resolved to

        monkeypatch.setattr(webhooks, "public_address", checked)
        assert await deliver(app, clock) == 1
        [request] = receiver.requests
        assert request.headers["host"] == f"ngo.example.org:{port}"
        Webhook(ngo.webhook_secret).verify(request.body, request.headers)


class TestDeliveryList:
    async def test_list_is_paged_newest_first(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        ngo = await create_ngo(client, admin_headers, webhook_url="https://ngo.example.org/h")
        ids = await emit(app, ngo, 3)
        first = (
            await client.get(
                "/admin/v1/webhook-deliveries", params={"limit": 2}, headers=admin_headers
            )
        ).json()
        second = (
            await client.get(
                "/admin/v1/webhook-deliveries",
                params={"limit": 2, "cursor": first["next_cursor"]},
                headers=admin_headers,
            )
        ).json()
        seen = [d["event_id"] for d in first["deliveries"] + second["deliveries"]]
        assert seen == list(reversed(ids)) and second["next_cursor"] is None
        assert_problem(
            await client.get(
                "/admin/v1/webhook-deliveries", params={"status": "lost"}, headers=admin_headers
            ),
            422,
            "validation_error",
        )
        body = json.loads(await scalar(app, "SELECT body FROM webhook_deliveries LIMIT 1"))
        assert set(body) == {"type", "timestamp", "data"}
