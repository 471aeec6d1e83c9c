from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from app.core.clock import FrozenClock
from app.core.idempotency import IdempotencyRecord
from app.core.worker import Worker
from tests.helpers import PASSWORD


async def count_keys(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        return int(
            (
                await session.execute(select(func.count()).select_from(IdempotencyRecord))
            ).scalar_one()
        )


class TestWorker:
    async def test_expired_idempotency_keys_are_purged_by_the_clock(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        await client.post(
            "/v1/auth/register",
            json={"handle": "alice", "password": PASSWORD},
            headers={"Idempotency-Key": "a"},
        )
        worker = Worker(app.state.sessionmaker, clock)
        await worker.run_due()
        assert await count_keys(app) == 1
        clock.advance(timedelta(hours=24, seconds=1))
        worker = Worker(app.state.sessionmaker, clock)
        await worker.run_due()
        assert await count_keys(app) == 0

    async def test_an_expired_key_can_be_used_again(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        headers = {"Idempotency-Key": "reused-later"}
        await client.post(
            "/v1/auth/register", json={"handle": "alice", "password": PASSWORD}, headers=headers
        )
        clock.advance(timedelta(hours=25))
        response = await client.post(
            "/v1/auth/register", json={"handle": "bob", "password": PASSWORD}, headers=headers
        )
        assert response.status_code == 201 and response.json()["user"]["handle"] == "bob"

    async def test_a_failing_job_does_not_stop_the_others(
        self, app: FastAPI, clock: FrozenClock
    ) -> None:
        from app.core.worker import Job

        ran: list[str] = []

        async def broken(session, now):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

        async def fine(session, now):  # type: ignore[no-untyped-def]
            ran.append("fine")
            return 0

        worker = Worker(
            app.state.sessionmaker,
            clock,
            jobs=[
                Job("broken", timedelta(minutes=1), broken),
                Job("fine", timedelta(minutes=1), fine),
            ],
        )
        await worker.run_due()
        assert ran == ["fine"]


class TestStopBetweenJobs:
    async def test_a_stop_during_a_job_lets_it_finish_and_starts_no_other(
        self, app: FastAPI, clock: FrozenClock
    ) -> None:
        from datetime import datetime

        from sqlalchemy.ext.asyncio import AsyncSession

        from app.core.worker import Job

        ran: list[str] = []
        worker: Worker

        async def first(session: AsyncSession, now: datetime) -> int:
            worker.stop()  # SIGTERM arrives while this job runs
            ran.append("first finished")
            return 0

        async def second(session: AsyncSession, now: datetime) -> int:
            ran.append("second")
            return 0

        worker = Worker(
            app.state.sessionmaker,
            clock,
            [
                Job("first", timedelta(minutes=1), first),
                Job("second", timedelta(minutes=1), second),
            ],
        )
        await worker.run_forever()  # returns: stopped
        assert ran == ["first finished"]
