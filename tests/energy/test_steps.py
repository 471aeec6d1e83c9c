"""PUT /v1/steps/{date}: cumulative daily totals, minted once as a walking ball after the user's
LOCAL date has ended (lazily on a forest read, at once for an ended date, or by the worker)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.core.worker import Worker
from app.energy.periods import ball_times, next_local_time
from app.energy.steps import mint_due_step_days
from app.jobs import default_jobs
from tests.helpers import Player, assert_problem, register

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
# the default clock, 2026-11-29T04:00Z, is Nov 29 12:00 in Shanghai and Nov 28 23:00 in New York


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def put_steps(
    client: httpx.AsyncClient, user: Player, day: date | str, steps: int, **extra: Any
) -> dict[str, Any]:
    response = await client.put(
        f"/v1/steps/{day}", json={"steps": steps, **extra}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def forest(client: httpx.AsyncClient, user: Player) -> dict[str, Any]:
    response = await client.get("/v1/forest", headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def walking(forest_body: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in forest_body["balls"] if b["kind"] == "walking"]


async def walking_balls(app: FastAPI, user: Player) -> list[tuple[int, datetime, datetime]]:
    """(amount_g, ripens_at, expires_at) of the user's walking balls, from the database."""
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            text(
                "SELECT amount_g, ripens_at, expires_at FROM energy_balls "
                "WHERE user_id = :user AND kind = 'walking' ORDER BY ripens_at"
            ),
            {"user": uuid.UUID(user.id)},
        )
        return [(int(r[0]), r[1], r[2]) for r in rows]


async def step_rows(app: FastAPI) -> list[tuple[str, date, int, bool]]:
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            text(
                "SELECT user_id, day, steps, minted_at IS NOT NULL FROM step_days "
                "ORDER BY user_id, day"
            )
        )
        return [(str(r[0]), r[1], int(r[2]), bool(r[3])) for r in rows]


async def run_worker(app: FastAPI, clock: FrozenClock) -> None:
    worker = Worker(app.state.sessionmaker, clock, default_jobs(app.state.rules_registry))
    await worker.run_due()


async def assert_ledger_ok(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    response = await client.get("/admin/v1/ledger/check", headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True, response.json()


class TestRecordingAnOpenDay:
    async def test_an_open_day_is_recording_and_mints_nothing(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        body = await put_steps(client, alice, "2026-11-29", 8_000)
        assert body == {"date": "2026-11-29", "steps": 8_000, "status": "recording", "energy_g": 0}
        assert walking(await forest(client, alice)) == []
        assert await walking_balls(app, alice) == []

    async def test_a_lower_total_is_ignored(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        alice = await register(client, "alice")
        await put_steps(client, alice, "2026-11-29", 8_000)
        body = await put_steps(client, alice, "2026-11-29", 5_000)
        assert (body["steps"], body["status"]) == (8_000, "recording")
        assert await step_rows(app) == [(alice.id, date(2026, 11, 29), 8_000, False)]

    async def test_a_higher_total_replaces_the_recorded_one(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        alice = await register(client, "alice")
        await put_steps(client, alice, "2026-11-29", 5_000)
        body = await put_steps(client, alice, "2026-11-29", 9_000, source="healthkit")
        assert (body["steps"], body["status"], body["energy_g"]) == (9_000, "recording", 0)
        assert await step_rows(app) == [(alice.id, date(2026, 11, 29), 9_000, False)]

    async def test_the_highest_total_is_what_gets_minted(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        for steps in (3_000, 9_000, 4_000):
            await put_steps(client, alice, "2026-11-29", steps)
        clock.set(datetime(2026, 11, 30, 0, 1, tzinfo=SHANGHAI))
        [ball] = walking(await forest(client, alice))
        assert ball["amount_g"] == 148  # floor(9000 * 0.0165), not the later 4000

    async def test_today_is_the_users_own_local_today(self, client: httpx.AsyncClient) -> None:
        shanghai = await register(client, "shanghai_user", timezone="Asia/Shanghai")
        new_york = await register(client, "new_york_user", timezone="America/New_York")
        assert (await put_steps(client, shanghai, "2026-11-29", 100))["status"] == "recording"
        assert (await put_steps(client, new_york, "2026-11-28", 100))["status"] == "recording"
        # Nov 29 has begun in Shanghai but not yet in New York
        response = await client.put(
            "/v1/steps/2026-11-29", json={"steps": 100}, headers=new_york.headers
        )
        assert_problem(response, 422, "date_out_of_range")
        # ... and Nov 28 is over in Shanghai: minted at once
        assert (await put_steps(client, shanghai, "2026-11-28", 100))["status"] == "minted"


class TestMintingWhenTheDayEnds:
    async def test_a_day_closed_after_a_long_worker_outage_still_mints_in_full(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        await put_steps(client, alice, "2026-11-29", 12_000)
        clock.advance(timedelta(days=10))  # nobody read the forest, no worker ran
        await run_worker(app, clock)
        [(amount, _, expires_at)] = await walking_balls(app, alice)
        assert amount == 198
        assert expires_at == clock.now() + timedelta(hours=72)  # never born expired

    async def test_a_day_is_minted_when_the_forest_is_read_after_local_midnight(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        await put_steps(client, alice, "2026-11-29", 12_000)
        clock.set(datetime(2026, 11, 29, 23, 59, tzinfo=SHANGHAI))
        assert walking(await forest(client, alice)) == []
        assert await walking_balls(app, alice) == []
        clock.set(datetime(2026, 11, 30, 0, 0, tzinfo=SHANGHAI))
        [ball] = walking(await forest(client, alice))
        assert (ball["amount_g"], ball["remaining_g"], ball["state"]) == (198, 198, "growing")
        assert parse(ball["ripens_at"]) == datetime(2026, 11, 30, 7, 0, tzinfo=SHANGHAI)
        again = await put_steps(client, alice, "2026-11-29", 12_000)
        assert again == {"date": "2026-11-29", "steps": 12_000, "status": "minted", "energy_g": 198}
        assert len(walking(await forest(client, alice))) == 1

    async def test_an_ended_date_is_minted_at_once(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        body = await put_steps(client, alice, "2026-11-28", 10_000)
        assert body == {"date": "2026-11-28", "steps": 10_000, "status": "minted", "energy_g": 165}
        [(amount, ripens_at, _)] = await walking_balls(app, alice)
        assert amount == 165
        assert ripens_at == datetime(2026, 11, 29, 7, 0, tzinfo=SHANGHAI)
        me = (await client.get("/v1/me", headers=alice.headers)).json()
        assert me["co2e_avoided_g"] == 165
        await assert_ledger_ok(client, admin_headers)

    async def test_recording_a_new_day_mints_the_ended_ones(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        await put_steps(client, alice, "2026-11-29", 10_000)
        clock.set(datetime(2026, 11, 30, 9, 0, tzinfo=SHANGHAI))
        await put_steps(client, alice, "2026-11-28", 2_000)  # an ended date: mints every ended day
        assert sorted(b[0] for b in await walking_balls(app, alice)) == [33, 165]

    async def test_a_report_for_a_day_minted_before_still_closes_the_ended_ones(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        # found by the model run (seed 7, step 69,321): the 28th is minted, the 29th has just
        # ended unminted (no worker, no forest read yet); a higher total for the 28th must
        # close the 29th like any report of an ended date does
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        assert (await put_steps(client, alice, "2026-11-28", 5_000))["status"] == "minted"
        await put_steps(client, alice, "2026-11-29", 20_000)
        clock.set(datetime(2026, 11, 30, 9, 0, tzinfo=SHANGHAI))
        again = await put_steps(client, alice, "2026-11-28", 6_000)
        assert (again["status"], again["energy_g"]) == ("minted", 82)  # minted before: kept
        assert sorted(b[0] for b in await walking_balls(app, alice)) == [82, 296]

    async def test_the_worker_mints_each_users_day_when_it_ends_locally(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        shanghai = await register(client, "shanghai_user", timezone="Asia/Shanghai")
        new_york = await register(client, "new_york_user", timezone="America/New_York")
        await put_steps(client, shanghai, "2026-11-29", 10_000)
        await put_steps(client, new_york, "2026-11-28", 12_000)
        clock.set(utc(2026, 11, 29, 5, 30))  # Nov 29 00:30 in New York, 13:30 in Shanghai
        await run_worker(app, clock)
        assert [b[0] for b in await walking_balls(app, new_york)] == [198]
        assert await walking_balls(app, shanghai) == []
        clock.set(utc(2026, 11, 29, 16, 1))  # Nov 30 00:01 in Shanghai
        await run_worker(app, clock)
        assert [b[0] for b in await walking_balls(app, shanghai)] == [165]
        assert [b[0] for b in await walking_balls(app, new_york)] == [198]
        assert [r[3] for r in await step_rows(app)] == [True, True]
        await assert_ledger_ok(client, admin_headers)

    async def test_the_worker_job_reports_what_it_minted_and_runs_once(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        bob = await register(client, "bob", timezone="Asia/Shanghai")
        for user in (alice, bob):
            await put_steps(client, user, "2026-11-29", 10_000)
        await put_steps(client, alice, "2026-11-27", 0)  # minted at once (no energy)
        registry = app.state.rules_registry
        async with app.state.sessionmaker() as session, session.begin():
            assert await mint_due_step_days(session, clock.now(), registry) == 0
        clock.set(datetime(2026, 11, 30, 0, 1, tzinfo=SHANGHAI))
        async with app.state.sessionmaker() as session, session.begin():
            assert await mint_due_step_days(session, clock.now(), registry) == 2
        async with app.state.sessionmaker() as session, session.begin():
            assert await mint_due_step_days(session, clock.now(), registry) == 0
        for user in (alice, bob):
            assert [b[0] for b in await walking_balls(app, user)] == [165]

    @pytest.mark.parametrize(
        ("steps", "energy_g"),
        [
            (0, 0),
            (1, 0),
            (60, 0),  # 0.99 g
            (61, 1),  # 1.0065 g
            (10_000, 165),
            (12_345, 203),  # 203.69 g
            (17_939, 295),  # 295.99 g
            (17_940, 296),  # 296.01 g
            (30_000, 296),  # capped
            (100_000, 296),  # the most accepted, capped
        ],
    )
    async def test_energy_is_floored_steps_times_factor_capped_at_296(
        self, client: httpx.AsyncClient, app: FastAPI, steps: int, energy_g: int
    ) -> None:
        alice = await register(client, "alice")
        body = await put_steps(client, alice, "2026-11-28", steps)
        assert (body["status"], body["energy_g"]) == ("minted", energy_g)
        assert sum(b[0] for b in await walking_balls(app, alice)) == energy_g

    async def test_a_higher_total_after_minting_does_not_mint_again(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        assert (await put_steps(client, alice, "2026-11-28", 5_000))["energy_g"] == 82
        later = await put_steps(client, alice, "2026-11-28", 15_000)
        assert (later["status"], later["energy_g"]) == ("minted", 82)
        clock.advance(hours=1)
        await run_worker(app, clock)
        await forest(client, alice)
        assert [b[0] for b in await walking_balls(app, alice)] == [82]
        me = (await client.get("/v1/me", headers=alice.headers)).json()
        assert me["co2e_avoided_g"] == 82
        await assert_ledger_ok(client, admin_headers)

    async def test_each_day_is_minted_once_into_its_own_ball(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        for day, steps in (("2026-11-26", 4_000), ("2026-11-27", 6_000), ("2026-11-28", 8_000)):
            await put_steps(client, alice, day, steps)
        await put_steps(client, alice, "2026-11-29", 20_000)
        clock.set(datetime(2026, 11, 30, 8, 0, tzinfo=SHANGHAI))
        await forest(client, alice)
        await run_worker(app, clock)
        balls = await walking_balls(app, alice)
        assert [b[0] for b in balls] == [66, 99, 132, 296]
        assert [b[1] for b in balls] == [
            datetime(2026, 11, d, 7, 0, tzinfo=SHANGHAI) for d in (27, 28, 29, 30)
        ]

    async def test_step_totals_and_walking_activities_share_the_daily_cap(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        activity = await client.post(
            "/v1/activities",
            json={
                "id": "walk-1",
                "kind": "walking",
                "occurred_at": datetime(2026, 11, 28, 9, 0, tzinfo=SHANGHAI).isoformat(),
                "quantity": "10000",
            },
            headers=alice.headers,
        )
        assert activity.json()["energy_g"] == 165
        body = await put_steps(client, alice, "2026-11-28", 20_000)
        assert (body["status"], body["energy_g"]) == ("minted", 296 - 165)
        assert sum(b[0] for b in await walking_balls(app, alice)) == 296


class TestRipening:
    @pytest.mark.parametrize(
        ("zone", "day", "ripens_at"),
        [
            pytest.param("Asia/Shanghai", date(2026, 11, 27), utc(2026, 11, 27, 23), id="shanghai"),
            pytest.param("America/New_York", date(2026, 11, 27), utc(2026, 11, 28, 12), id="ny"),
            # 2026-11-01 02:00 EDT falls back to 01:00 EST: Oct 31's ball ripens at 07:00 EST
            pytest.param(
                "America/New_York", date(2026, 10, 31), utc(2026, 11, 1, 12), id="ny-before-fall"
            ),
            pytest.param(
                "America/New_York", date(2026, 11, 1), utc(2026, 11, 2, 12), id="ny-fall-back-day"
            ),
            # 2026-03-08 02:00 EST springs forward to 03:00 EDT
            pytest.param(
                "America/New_York", date(2026, 3, 7), utc(2026, 3, 8, 11), id="ny-before-spring"
            ),
            pytest.param(
                "America/New_York", date(2026, 3, 8), utc(2026, 3, 9, 11), id="ny-spring-day"
            ),
        ],
    )
    async def test_the_ball_ripens_at_seven_local_the_next_morning(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        zone: str,
        day: date,
        ripens_at: datetime,
    ) -> None:
        tz = ZoneInfo(zone)
        clock.set(datetime.combine(day + timedelta(days=1), time(0), tz))
        alice = await register(client, "alice", timezone=zone)
        body = await put_steps(client, alice, day.isoformat(), 10_000)
        assert (body["status"], body["energy_g"]) == ("minted", 165)
        [(_, ripens, expires)] = await walking_balls(app, alice)
        assert ripens == ripens_at
        assert ripens.astimezone(tz).time() == time(7, 0)
        assert expires == ripens_at + timedelta(hours=72)
        [ball] = walking(await forest(client, alice))
        assert (ball["state"], parse(ball["ripens_at"])) == ("growing", ripens_at)

    @pytest.mark.parametrize(
        ("zone", "day", "midnight", "seven"),
        [
            pytest.param(
                "Asia/Shanghai", "2026-11-29", utc(2026, 11, 29, 16), utc(2026, 11, 29, 23), id="sh"
            ),
            pytest.param(
                "America/New_York",
                "2026-11-28",
                utc(2026, 11, 29, 5),
                utc(2026, 11, 29, 12),
                id="ny",
            ),
        ],
    )
    async def test_the_ball_grows_until_seven_then_can_be_collected(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        admin_headers: dict[str, str],
        zone: str,
        day: str,
        midnight: datetime,
        seven: datetime,
    ) -> None:
        alice = await register(client, "alice", timezone=zone)
        await put_steps(client, alice, day, 12_000)
        clock.set(midnight)
        [ball] = walking(await forest(client, alice))
        assert (ball["state"], parse(ball["ripens_at"])) == ("growing", seven)
        clock.set(seven - timedelta(seconds=1))
        early = await client.post(
            "/v1/forest/collect", json={"ball_ids": [ball["id"]]}, headers=alice.headers
        )
        assert early.json()["results"][0]["status"] == "not_ripe"
        clock.set(seven)
        [ball] = walking(await forest(client, alice))
        assert ball["state"] == "ripe"
        collected = await client.post("/v1/forest/collect", headers=alice.headers)
        assert (collected.json()["collected_g"], collected.json()["balance_g"]) == (198, 198)
        await assert_ledger_ok(client, admin_headers)

    async def test_a_late_days_ball_is_ripe_at_once_and_lives_its_full_span(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        body = await put_steps(client, alice, "2026-11-24", 10_000)
        assert body["energy_g"] == 165
        [(_, ripens, expires)] = await walking_balls(app, alice)
        assert ripens == datetime(2026, 11, 25, 7, 0, tzinfo=SHANGHAI)
        assert expires == clock.now() + timedelta(hours=72)  # never born expired
        [ball] = walking(await forest(client, alice))
        assert ball["state"] == "ripe"

    @pytest.mark.parametrize(
        ("after", "at", "expected"),
        [
            # 2026-11-01 in New York: 01:00-02:00 happens twice (EDT 05:00-06:00Z, EST 06:00-07:00Z)
            pytest.param(utc(2026, 11, 1, 5, 15), time(1, 30), utc(2026, 11, 1, 5, 30), id="first"),
            pytest.param(utc(2026, 11, 1, 5, 45), time(1, 30), utc(2026, 11, 1, 6, 30), id="again"),
            pytest.param(utc(2026, 11, 1, 6, 15), time(1, 30), utc(2026, 11, 1, 6, 30), id="2nd"),
            pytest.param(utc(2026, 11, 1, 6, 45), time(1, 30), utc(2026, 11, 2, 6, 30), id="next"),
            # 2026-03-08: 02:30 does not exist; it resolves to 03:30 EDT, just after the jump
            pytest.param(utc(2026, 3, 8, 6, 0), time(2, 30), utc(2026, 3, 8, 7, 30), id="gap"),
            pytest.param(utc(2026, 3, 8, 12, 0), time(7, 0), utc(2026, 3, 9, 11, 0), id="edt"),
            pytest.param(utc(2026, 11, 29, 12, 0), time(7, 0), utc(2026, 11, 29, 12), id="exact"),
        ],
    )
    def test_the_next_local_time_is_never_before_the_given_instant(
        self, after: datetime, at: time, expected: datetime
    ) -> None:
        found = next_local_time(after, at, "America/New_York")
        assert found == expected
        assert found >= after
        assert found.astimezone(NEW_YORK).time() == at or at == time(2, 30)

    def test_a_ball_never_ripens_before_ripen_after_in_a_repeated_hour(self) -> None:
        occurred = utc(2026, 10, 31, 6, 15)  # +24h is 01:15 EST, in the repeated hour
        ripens, expires = ball_times(
            occurred,
            occurred,
            ripen_after=timedelta(hours=24),
            ripen_at_local=time(1, 30),
            expire_after=timedelta(hours=72),
            tz="America/New_York",
        )
        assert ripens == utc(2026, 11, 1, 6, 30)  # 01:30 EST, not 01:30 EDT an hour earlier
        assert ripens >= occurred + timedelta(hours=24)
        assert expires == ripens + timedelta(hours=72)


class TestIdempotencyAndConcurrency:
    async def test_replaying_a_put_for_an_open_day_answers_the_same(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        alice = await register(client, "alice")
        first = await put_steps(client, alice, "2026-11-29", 7_000)
        second = await put_steps(client, alice, "2026-11-29", 7_000)
        assert first == second
        assert await step_rows(app) == [(alice.id, date(2026, 11, 29), 7_000, False)]

    async def test_replaying_a_put_for_an_ended_day_answers_the_same_with_one_ball(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        first = await put_steps(client, alice, "2026-11-28", 7_000)
        second = await put_steps(client, alice, "2026-11-28", 7_000)
        assert (
            first
            == second
            == {
                "date": "2026-11-28",
                "steps": 7_000,
                "status": "minted",
                "energy_g": 115,
            }
        )
        assert [b[0] for b in await walking_balls(app, alice)] == [115]
        await assert_ledger_ok(client, admin_headers)

    async def test_concurrent_puts_for_an_ended_day_mint_once(
        self, client: httpx.AsyncClient, app: FastAPI, admin_headers: dict[str, str]
    ) -> None:
        alice = await register(client, "alice")
        responses = await asyncio.gather(
            *(
                client.put(
                    "/v1/steps/2026-11-28",
                    json={"steps": 10_000 + i},
                    headers=alice.headers,
                )
                for i in range(20)
            )
        )
        assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
        assert {r.json()["status"] for r in responses} == {"minted"}
        assert {r.json()["energy_g"] for r in responses} == {165}
        assert len(await walking_balls(app, alice)) == 1
        await assert_ledger_ok(client, admin_headers)

    async def test_concurrent_forest_reads_and_the_worker_mint_a_day_once(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        await put_steps(client, alice, "2026-11-29", 10_000)
        clock.set(datetime(2026, 11, 30, 0, 1, tzinfo=SHANGHAI))
        results = await asyncio.gather(
            *(client.get("/v1/forest", headers=alice.headers) for _ in range(20)),
            run_worker(app, clock),
        )
        assert {r.status_code for r in results if isinstance(r, httpx.Response)} == {200}
        assert [b[0] for b in await walking_balls(app, alice)] == [165]
        assert len(walking(await forest(client, alice))) == 1
        await assert_ledger_ok(client, admin_headers)


class TestRejectedTotals:
    async def test_more_steps_than_plausible_is_422_implausible(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        alice = await register(client, "alice")
        response = await client.put(
            "/v1/steps/2026-11-28", json={"steps": 100_001}, headers=alice.headers
        )
        assert_problem(response, 422, "implausible")
        assert await step_rows(app) == []
        assert await walking_balls(app, alice) == []

    async def test_an_implausible_total_does_not_replace_a_recorded_one(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        alice = await register(client, "alice")
        await put_steps(client, alice, "2026-11-29", 9_000)
        response = await client.put(
            "/v1/steps/2026-11-29", json={"steps": 5_000_000}, headers=alice.headers
        )
        assert_problem(response, 422, "implausible")
        assert await step_rows(app) == [(alice.id, date(2026, 11, 29), 9_000, False)]

    @pytest.mark.parametrize(
        ("zone", "day"),
        [
            ("Asia/Shanghai", "2026-11-30"),
            ("America/New_York", "2026-11-29"),
            ("Asia/Shanghai", "2027-01-01"),
        ],
    )
    async def test_a_date_that_has_not_begun_is_422(
        self, client: httpx.AsyncClient, app: FastAPI, zone: str, day: str
    ) -> None:
        alice = await register(client, "alice", timezone=zone)
        response = await client.put(f"/v1/steps/{day}", json={"steps": 10}, headers=alice.headers)
        assert_problem(response, 422, "date_out_of_range")
        assert await step_rows(app) == []

    async def test_a_date_older_than_max_age_is_422(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        for day in ("2026-11-21", "2026-11-01", "2025-11-28"):
            response = await client.put(
                f"/v1/steps/{day}", json={"steps": 10}, headers=alice.headers
            )
            assert_problem(response, 422, "date_out_of_range")
        assert await step_rows(app) == []

    async def test_the_window_holds_the_days_that_began_within_max_age(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        bob = await register(client, "bob", timezone="Asia/Shanghai")
        clock.set(datetime(2026, 11, 30, 0, 0, tzinfo=SHANGHAI))
        # Nov 23 began exactly ingest.max_age (7d) ago: still accepted, and minted in full
        body = await put_steps(client, alice, "2026-11-23", 10_000)
        assert (body["status"], body["energy_g"]) == ("minted", 165)
        clock.advance(seconds=1)
        response = await client.put(
            "/v1/steps/2026-11-23", json={"steps": 10_000}, headers=bob.headers
        )
        problem = assert_problem(response, 422, "date_out_of_range")
        assert "2026-11-24" in problem["detail"]
        assert [r[:3] for r in await step_rows(app)] == [(alice.id, date(2026, 11, 23), 10_000)]

    @pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York"])
    async def test_every_accepted_date_mints_its_full_energy(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock, zone: str
    ) -> None:
        """Whatever dates the window accepts, ingestion must not then refuse them as too old."""
        alice = await register(client, "alice", timezone=zone)
        today = clock.now().astimezone(ZoneInfo(zone)).date()
        accepted: list[date] = []
        for back in range(1, 10):
            day = today - timedelta(days=back)
            response = await client.put(
                f"/v1/steps/{day}", json={"steps": 10_000}, headers=alice.headers
            )
            if response.status_code == 422:
                assert_problem(response, 422, "date_out_of_range")
                continue
            assert response.status_code == 200, response.text
            assert (response.json()["status"], response.json()["energy_g"]) == ("minted", 165)
            accepted.append(day)
        assert len(accepted) >= 6  # at least the days that began within ingest.max_age (7d)
        assert accepted == [today - timedelta(days=b) for b in range(1, len(accepted) + 1)]
        assert [b[0] for b in await walking_balls(app, alice)] == [165] * len(accepted)

    @pytest.mark.parametrize(
        "day", ["2026-13-01", "2026-02-30", "29-11-2026", "2026.11.28", "yesterday", "2026-11"]
    )
    async def test_a_malformed_date_is_422_validation_error(
        self, client: httpx.AsyncClient, day: str
    ) -> None:
        alice = await register(client, "alice")
        response = await client.put(f"/v1/steps/{day}", json={"steps": 10}, headers=alice.headers)
        body = assert_problem(response, 422, "validation_error")
        assert any(e["loc"][:2] == ["path", "day"] for e in body["errors"]), body

    @pytest.mark.parametrize(
        "payload",
        [
            {"steps": -1},
            {"steps": 1.5},
            {"steps": "many"},
            {},
            {"steps": 10, "source": "x" * 65},
            {"steps": 10, "energy_g": 296},
        ],
    )
    async def test_a_malformed_body_is_422_validation_error(
        self, client: httpx.AsyncClient, app: FastAPI, payload: dict[str, Any]
    ) -> None:
        alice = await register(client, "alice")
        response = await client.put("/v1/steps/2026-11-28", json=payload, headers=alice.headers)
        body = assert_problem(response, 422, "validation_error")
        assert all(e["loc"][0] == "body" for e in body["errors"]), body
        assert await step_rows(app) == []

    async def test_steps_need_a_logged_in_user(self, client: httpx.AsyncClient) -> None:
        response = await client.put("/v1/steps/2026-11-28", json={"steps": 10})
        assert_problem(response, 401, "unauthorized")


class TestStepsUnderAMovedClock:
    # tokens issued while the app clock is ahead of real time must work (iat judged by the app
    # clock, not the wall clock)
    async def test_a_user_registered_while_the_clock_is_ahead_can_report_steps(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        clock.set(datetime(2099, 1, 1, 12, 0, tzinfo=SHANGHAI))
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        body = await put_steps(client, alice, "2099-01-01", 1_000)
        assert body["status"] == "recording"


class TestRipeningIgnoresRipenAfter:
    @pytest.mark.parametrize("ripen_after", ["1h", "30h", "3d"])
    async def test_a_walking_ball_ripens_at_seven_the_day_after_its_steps(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock, ripen_after: str
    ) -> None:
        from app.rules.loader import LoadedRules, load_rules, parse_rules_text, rules_sha256
        from app.rules.registry import load_registry, publish

        text_ = load_rules(None).text.replace(
            'ripen_at_local = "07:00"', f'ripen_at_local = "07:00"\nripen_after = "{ripen_after}"'
        )
        loaded = LoadedRules(parse_rules_text(text_), text_, rules_sha256(text_))
        since = clock.now() - timedelta(days=5)
        async with app.state.sessionmaker() as session, session.begin():
            await publish(session, loaded, effective_from=since, now=since)
            app.state.rules_registry.replace((await load_registry(session)).versions)
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        # Nov 28's steps, reported on Nov 29 at 12:00 local: ripe at 07:00 on Nov 29
        await put_steps(client, alice, "2026-11-28", 10_000)
        # Nov 29's steps, the day still open, closed by a forest read after midnight
        await put_steps(client, alice, "2026-11-29", 10_000)
        clock.set(datetime(2026, 11, 30, 0, 5, tzinfo=SHANGHAI))
        await forest(client, alice)
        balls = await walking_balls(app, alice)
        assert [r for _, r, _ in balls] == [
            datetime(2026, 11, 29, 7, 0, tzinfo=SHANGHAI),
            datetime(2026, 11, 30, 7, 0, tzinfo=SHANGHAI),
        ]
