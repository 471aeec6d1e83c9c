"""Caps and regional factors: every capped kind of the default rules, counted per user per LOCAL
day or month (the user's own time zone, DST included), through the client and partner APIs, and
under real concurrent requests."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.core.clock import FrozenClock
from tests.helpers import Player, register

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def event(
    kind: str, when: datetime, quantity: float | str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"id": new_id(), "kind": kind, "occurred_at": when.isoformat(), **extra}
    if quantity is not None:
        body["quantity"] = str(quantity)
    return body


@dataclass
class Partner:
    id: str
    headers: dict[str, str]


async def create_partner(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Partner:
    response = await client.post(
        "/admin/v1/partners",
        json={"name": "Transit Co", "scopes": ["activities"]},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Partner(body["id"], {"Authorization": f"Bearer {body['api_key']}"})


async def report(
    client: httpx.AsyncClient,
    user: Player,
    kind: str,
    when: datetime,
    quantity: float | str | None = None,
    *,
    partner: Partner | None = None,
) -> dict[str, Any]:
    """One activity through the client API, or through a partner's when ``partner`` is given."""
    body = event(kind, when, quantity)
    if partner is None:
        response = await client.post("/v1/activities", json=body, headers=user.headers)
    else:
        response = await client.post(
            "/partner/v1/activities", json={**body, "user_id": user.id}, headers=partner.headers
        )
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    assert response.status_code == (201 if result["status"] in ("minted", "capped") else 200)
    return result


async def report_batch(
    client: httpx.AsyncClient,
    user: Player,
    events: list[dict[str, Any]],
    *,
    partner: Partner | None = None,
) -> list[dict[str, Any]]:
    if partner is None:
        response = await client.post(
            "/v1/activities/batch", json={"activities": events}, headers=user.headers
        )
    else:
        response = await client.post(
            "/partner/v1/activities/batch",
            json={"activities": [{**e, "user_id": user.id} for e in events]},
            headers=partner.headers,
        )
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    assert [r["id"] for r in results] == [e["id"] for e in events]
    return results


def outcome(result: dict[str, Any]) -> tuple[str, int]:
    return result["status"], result["energy_g"]


async def minted(app: FastAPI, user: Player, kind: str | None = None) -> tuple[int, int]:
    """(number of balls, grams minted) for a user, straight from the database."""
    async with app.state.sessionmaker() as session:
        row = (
            await session.execute(
                text(
                    "SELECT count(*), coalesce(sum(amount_g), 0) FROM energy_balls "
                    "WHERE user_id = :user AND (CAST(:kind AS text) IS NULL OR kind = :kind)"
                ),
                {"user": uuid.UUID(user.id), "kind": kind},
            )
        ).one()
    return int(row[0]), int(row[1])


async def co2e(client: httpx.AsyncClient, user: Player) -> int:
    response = await client.get("/v1/me", headers=user.headers)
    assert response.status_code == 200, response.text
    return int(response.json()["co2e_avoided_g"])


async def assert_ledger_ok(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    response = await client.get("/admin/v1/ledger/check", headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True, response.json()


# kind, grams per event, cap per local day; metro and bus are trusted from both apps and partners
DAILY_COUNT_CAPS = [
    pytest.param("metro", 52, 5, "client", id="metro-client"),
    pytest.param("metro", 52, 5, "partner", id="metro-partner"),
    pytest.param("bus", 80, 5, "client", id="bus-client"),
    pytest.param("bus", 80, 5, "partner", id="bus-partner"),
    pytest.param("offline_payment", 5, 10, "partner", id="offline_payment"),
    pytest.param("e_invoice", 5, 5, "partner", id="e_invoice"),
]

# partner-only kinds capped per local month
MONTHLY_COUNT_CAPS = [
    pytest.param("utility_bill", 262, 10, id="utility_bill"),
    pytest.param("train_ticket", 136, 10, id="train_ticket"),
    pytest.param("movie_ticket", 180, 10, id="movie_ticket"),
    pytest.param("hospital_booking", 277, 5, id="hospital_booking"),
]


class TestDailyCountCaps:
    @pytest.mark.parametrize(("kind", "grams", "cap", "via"), DAILY_COUNT_CAPS)
    async def test_cap_events_mint_and_the_next_is_capped_with_nothing(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
        kind: str,
        grams: int,
        cap: int,
        via: str,
    ) -> None:
        alice = await register(client, "alice")
        partner = await create_partner(client, admin_headers) if via == "partner" else None
        now = clock.now()
        for i in range(cap):
            result = await report(client, alice, kind, now - timedelta(minutes=i), partner=partner)
            assert outcome(result) == ("minted", grams)
            assert result["ball_id"] is not None
        over = await report(client, alice, kind, now, partner=partner)
        assert outcome(over) == ("capped", 0)
        assert over["ball_id"] is None
        assert await minted(app, alice) == (cap, cap * grams)
        assert await co2e(client, alice) == cap * grams
        await assert_ledger_ok(client, admin_headers)

    @pytest.mark.parametrize(("kind", "grams", "cap", "via"), DAILY_COUNT_CAPS)
    async def test_a_batch_mints_up_to_the_cap_and_caps_the_rest(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
        kind: str,
        grams: int,
        cap: int,
        via: str,
    ) -> None:
        alice = await register(client, "alice")
        partner = await create_partner(client, admin_headers) if via == "partner" else None
        start = clock.now() - timedelta(hours=2)
        events = [event(kind, start + timedelta(minutes=i)) for i in range(cap + 2)]
        results = await report_batch(client, alice, events, partner=partner)
        assert [outcome(r) for r in results] == [("minted", grams)] * cap + [("capped", 0)] * 2
        assert await minted(app, alice) == (cap, cap * grams)

    async def test_a_batch_fills_the_cap_in_order_of_occurrence(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        start = clock.now() - timedelta(hours=1)
        # listed latest first: the five earliest rides are the ones that fit
        events = [event("metro", start + timedelta(minutes=10 - i)) for i in range(7)]
        results = await report_batch(client, alice, events)
        assert [r["status"] for r in results] == ["capped"] * 2 + ["minted"] * 5

    async def test_a_batch_tops_up_a_partly_used_day(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        now = clock.now()
        for i in range(3):
            await report(client, alice, "metro", now - timedelta(hours=3, minutes=i))
        results = await report_batch(
            client, alice, [event("metro", now - timedelta(minutes=i)) for i in range(4)]
        )
        assert [r["status"] for r in results].count("minted") == 2
        assert [r["status"] for r in results].count("capped") == 2
        assert await minted(app, alice) == (5, 5 * 52)

    async def test_client_and_partner_reports_share_one_cap(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice")
        transit = await create_partner(client, admin_headers)
        now = clock.now()
        for i in range(3):
            await report(client, alice, "metro", now - timedelta(minutes=i))
        for i in range(2):
            result = await report(
                client, alice, "metro", now - timedelta(minutes=10 + i), partner=transit
            )
            assert result["status"] == "minted"
        assert (await report(client, alice, "metro", now))["status"] == "capped"
        assert (await report(client, alice, "metro", now, partner=transit))["status"] == "capped"
        assert await minted(app, alice) == (5, 5 * 52)

    async def test_the_cap_is_per_user(self, client: httpx.AsyncClient, clock: FrozenClock) -> None:
        alice = await register(client, "alice")
        bob = await register(client, "bob")
        now = clock.now()
        for i in range(5):
            await report(client, alice, "metro", now - timedelta(minutes=i))
        assert (await report(client, alice, "metro", now))["status"] == "capped"
        assert outcome(await report(client, bob, "metro", now)) == ("minted", 52)

    async def test_the_cap_is_per_kind(self, client: httpx.AsyncClient, clock: FrozenClock) -> None:
        alice = await register(client, "alice")
        now = clock.now()
        for i in range(5):
            await report(client, alice, "metro", now - timedelta(minutes=i))
        assert (await report(client, alice, "metro", now))["status"] == "capped"
        assert outcome(await report(client, alice, "bus", now)) == ("minted", 80)

    async def test_the_next_local_day_starts_a_fresh_cap(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")  # Asia/Shanghai, the rules' default zone
        yesterday = clock.now() - timedelta(days=1)
        for i in range(6):
            await report(client, alice, "metro", yesterday - timedelta(minutes=i))
        for i in range(5):
            result = await report(client, alice, "metro", clock.now() - timedelta(minutes=i))
            assert result["status"] == "minted"
        assert (await report(client, alice, "metro", clock.now()))["status"] == "capped"
        assert await minted(app, alice) == (10, 10 * 52)

    async def test_replayed_events_do_not_use_up_the_cap(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        first = event("metro", clock.now() - timedelta(hours=1))
        for _ in range(6):
            response = await client.post("/v1/activities", json=first, headers=alice.headers)
            assert response.status_code in (200, 201)
        for i in range(4):
            result = await report(client, alice, "metro", clock.now() - timedelta(minutes=i))
            assert result["status"] == "minted"
        assert (await report(client, alice, "metro", clock.now()))["status"] == "capped"
        assert await minted(app, alice) == (5, 5 * 52)

    async def test_a_capped_event_replayed_stays_capped(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        for i in range(5):
            await report(client, alice, "metro", clock.now() - timedelta(minutes=i + 1))
        late = event("metro", clock.now())
        first = await client.post("/v1/activities", json=late, headers=alice.headers)
        again = await client.post("/v1/activities", json=late, headers=alice.headers)
        assert outcome(first.json()) == ("capped", 0)
        assert again.status_code == 200
        assert outcome(again.json()) == ("duplicate", 0)
        assert again.json()["ball_id"] is None
        assert await minted(app, alice) == (5, 5 * 52)

    async def test_rejected_events_do_not_use_up_the_cap(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        now = clock.now()
        too_late = now + timedelta(minutes=6)  # beyond ingest.max_future_skew, same local day
        for _ in range(5):
            result = await report(client, alice, "metro", too_late)
            assert (result["status"], result["reason"]) == ("rejected", "in_future")
        for i in range(5):
            assert (await report(client, alice, "metro", now - timedelta(minutes=i)))[
                "status"
            ] == "minted"
        assert await minted(app, alice) == (5, 5 * 52)


class TestMonthlyCountCaps:
    @pytest.mark.parametrize(("kind", "grams", "cap"), MONTHLY_COUNT_CAPS)
    async def test_cap_events_across_the_month_mint_and_the_next_is_capped(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
        kind: str,
        grams: int,
        cap: int,
    ) -> None:
        alice = await register(client, "alice")
        partner = await create_partner(client, admin_headers)
        now = clock.now()  # 2026-11-29 12:00 in Shanghai
        # spread over six different local days: a daily cap would not stop these
        for i in range(cap):
            result = await report(
                client, alice, kind, now - timedelta(hours=13 * i), partner=partner
            )
            assert outcome(result) == ("minted", grams)
        over = await report(client, alice, kind, now, partner=partner)
        assert outcome(over) == ("capped", 0)
        assert over["ball_id"] is None
        assert await minted(app, alice) == (cap, cap * grams)
        await assert_ledger_ok(client, admin_headers)

    @pytest.mark.parametrize(("kind", "grams", "cap"), MONTHLY_COUNT_CAPS)
    async def test_a_partner_batch_mints_up_to_the_cap(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
        kind: str,
        grams: int,
        cap: int,
    ) -> None:
        alice = await register(client, "alice")
        partner = await create_partner(client, admin_headers)
        events = [event(kind, clock.now() - timedelta(hours=12 * i)) for i in range(cap + 2)]
        events.reverse()  # chronological
        results = await report_batch(client, alice, events, partner=partner)
        assert [outcome(r) for r in results] == [("minted", grams)] * cap + [("capped", 0)] * 2
        assert await minted(app, alice) == (cap, cap * grams)

    @pytest.mark.parametrize(("kind", "grams", "cap"), MONTHLY_COUNT_CAPS)
    async def test_the_first_local_day_of_the_month_starts_a_fresh_cap(
        self,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        admin_headers: dict[str, str],
        kind: str,
        grams: int,
        cap: int,
    ) -> None:
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        partner = await create_partner(client, admin_headers)
        last_minute = datetime(2026, 11, 30, 23, 59, tzinfo=SHANGHAI)
        first_minute = datetime(2026, 12, 1, 0, 1, tzinfo=SHANGHAI)
        clock.set(first_minute)
        events = [event(kind, last_minute - timedelta(minutes=cap - i)) for i in range(cap + 1)]
        results = await report_batch(client, alice, events, partner=partner)
        assert [r["status"] for r in results] == ["minted"] * cap + ["capped"]
        december = await report(client, alice, kind, first_minute, partner=partner)
        assert outcome(december) == ("minted", grams)

    async def test_the_month_is_the_users_local_month(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        shanghai = await register(client, "shanghai_user", timezone="Asia/Shanghai")
        new_york = await register(client, "new_york_user", timezone="America/New_York")
        partner = await create_partner(client, admin_headers)
        filled = utc(2026, 11, 30, 15, 0)  # Nov 30 23:00 in Shanghai, Nov 30 10:00 in New York
        later = utc(2026, 11, 30, 16, 30)  # Dec 1 00:30 in Shanghai, still Nov 30 in New York
        clock.set(later)
        for user in (shanghai, new_york):
            events = [event("hospital_booking", filled - timedelta(minutes=i)) for i in range(5)]
            results = await report_batch(client, user, events, partner=partner)
            assert {r["status"] for r in results} == {"minted"}
        assert (await report(client, shanghai, "hospital_booking", later, partner=partner))[
            "status"
        ] == "minted"
        assert (await report(client, new_york, "hospital_booking", later, partner=partner))[
            "status"
        ] == "capped"

    async def test_new_york_month_ends_at_new_york_midnight(
        self, client: httpx.AsyncClient, clock: FrozenClock, admin_headers: dict[str, str]
    ) -> None:
        bob = await register(client, "bob", timezone="America/New_York")
        partner = await create_partner(client, admin_headers)
        # 2026-12-01 04:30Z is already December in UTC but Nov 30 23:30 in New York (EST)
        november_late = utc(2026, 12, 1, 4, 30)
        december_early = utc(2026, 12, 1, 5, 1)  # Dec 1 00:01 EST
        clock.set(december_early)
        events = [event("utility_bill", november_late - timedelta(hours=i)) for i in range(10)]
        assert {r["status"] for r in await report_batch(client, bob, events, partner=partner)} == {
            "minted"
        }
        assert (await report(client, bob, "utility_bill", november_late, partner=partner))[
            "status"
        ] == "capped"
        assert (await report(client, bob, "utility_bill", december_early, partner=partner))[
            "status"
        ] == "minted"


class TestDailyGramCaps:
    async def test_an_event_that_partly_fits_mints_what_fits_as_capped(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        now = clock.now()
        first = await report(client, alice, "walking", now - timedelta(hours=2), 10_000)
        assert outcome(first) == ("minted", 165)  # floor(10000 * 0.0165)
        second = await report(client, alice, "walking", now - timedelta(hours=1), 10_000)
        assert outcome(second) == ("capped", 296 - 165)
        assert second["ball_id"] is not None
        third = await report(client, alice, "walking", now, 1_000)
        assert outcome(third) == ("capped", 0)
        assert third["ball_id"] is None
        assert await minted(app, alice) == (2, 296)
        assert await co2e(client, alice) == 296

    async def test_an_event_exactly_filling_the_cap_is_minted(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        now = clock.now()
        exact = await report(client, alice, "walking", now - timedelta(hours=1), 17_940)
        assert outcome(exact) == ("minted", 296)  # floor(296.01)
        assert outcome(await report(client, alice, "walking", now, 61)) == ("capped", 0)
        assert await minted(app, alice) == (1, 296)

    async def test_one_event_above_the_cap_mints_the_cap(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        result = await report(client, alice, "walking", clock.now(), 30_000)
        assert outcome(result) == ("capped", 296)
        assert await minted(app, alice) == (1, 296)

    async def test_a_batch_fills_the_gram_cap_in_order(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        start = clock.now() - timedelta(hours=3)
        events = [event("walking", start + timedelta(hours=i), 10_000) for i in range(3)]
        results = await report_batch(client, alice, events)
        assert [outcome(r) for r in results] == [("minted", 165), ("capped", 131), ("capped", 0)]
        assert await minted(app, alice) == (2, 296)

    async def test_partner_walking_counts_against_the_same_cap(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice")
        partner = await create_partner(client, admin_headers)
        now = clock.now()
        await report(client, alice, "walking", now - timedelta(hours=1), 12_000)  # 198 g
        result = await report(client, alice, "walking", now, 12_000, partner=partner)
        assert outcome(result) == ("capped", 98)
        assert await minted(app, alice) == (2, 296)

    async def test_the_gram_cap_resets_at_local_midnight(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice", timezone="Asia/Shanghai")
        before = datetime(2026, 11, 28, 23, 59, tzinfo=SHANGHAI)
        after = datetime(2026, 11, 29, 0, 1, tzinfo=SHANGHAI)
        clock.set(after)
        assert outcome(await report(client, alice, "walking", before, 20_000)) == ("capped", 296)
        assert outcome(await report(client, alice, "walking", after, 10_000)) == ("minted", 165)
        assert await minted(app, alice) == (2, 296 + 165)


class TestLocalDays:
    async def test_same_utc_instants_fall_on_different_local_days(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        shanghai = await register(client, "shanghai_user", timezone="Asia/Shanghai")
        new_york = await register(client, "new_york_user", timezone="America/New_York")
        evening = utc(2026, 11, 29, 15, 30)  # Nov 29 23:30 in Shanghai, Nov 29 10:30 in New York
        later = utc(2026, 11, 29, 16, 30)  # Nov 30 00:30 in Shanghai, Nov 29 11:30 in New York
        clock.set(later)
        for user in (shanghai, new_york):
            for i in range(5):
                result = await report(client, user, "metro", evening - timedelta(minutes=i))
                assert result["status"] == "minted"
        assert (await report(client, shanghai, "metro", later))["status"] == "minted"
        assert (await report(client, new_york, "metro", later))["status"] == "capped"

    async def test_a_utc_day_is_split_across_two_local_days(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        bob = await register(client, "bob", timezone="America/New_York")
        # all on 2026-11-29 in UTC; in New York the first three are still Nov 28
        clock.set(utc(2026, 11, 29, 23, 0))
        nov_28 = [utc(2026, 11, 29, h, 0) for h in (1, 2, 3)]
        nov_29 = [utc(2026, 11, 29, h, 0) for h in (6, 7, 8, 9, 10, 11)]
        for when in nov_28 + nov_29[:5]:
            assert (await report(client, bob, "metro", when))["status"] == "minted"
        assert (await report(client, bob, "metro", nov_29[5]))["status"] == "capped"

    @pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York"])
    async def test_one_minute_before_and_after_local_midnight_are_different_days(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock, zone: str
    ) -> None:
        alice = await register(client, "alice", timezone=zone)
        tz = ZoneInfo(zone)
        last_minute = datetime(2026, 11, 27, 23, 59, tzinfo=tz)
        first_minute = datetime(2026, 11, 28, 0, 1, tzinfo=tz)
        clock.set(first_minute + timedelta(minutes=1))
        for i in range(5):
            await report(client, alice, "metro", last_minute - timedelta(minutes=i))
        assert (await report(client, alice, "metro", last_minute))["status"] == "capped"
        results = [await report(client, alice, "metro", first_minute) for _ in range(6)]
        assert [r["status"] for r in results] == ["minted"] * 5 + ["capped"]
        assert await minted(app, alice) == (10, 10 * 52)

    async def test_offsets_in_occurred_at_do_not_change_the_local_day(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        bob = await register(client, "bob", timezone="America/New_York")
        instant = utc(2026, 11, 29, 3, 30)  # Nov 28 22:30 in New York
        clock.set(utc(2026, 11, 29, 5, 30))  # Nov 29 00:30 in New York
        # the same Nov 28 evening written in three offsets counts on one day
        for tz in (UTC, SHANGHAI, NEW_YORK, UTC, SHANGHAI):
            assert (await report(client, bob, "metro", instant.astimezone(tz)))[
                "status"
            ] == "minted"
        assert (await report(client, bob, "metro", instant.astimezone(SHANGHAI)))[
            "status"
        ] == "capped"
        assert (await report(client, bob, "metro", clock.now()))["status"] == "minted"

    async def test_dst_fall_back_day_lasts_25_hours(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        bob = await register(client, "bob", timezone="America/New_York")
        # 2026-11-01: clocks go back 02:00 EDT -> 01:00 EST, so Nov 1 runs 04:00Z..05:00Z Nov 2
        clock.set(utc(2026, 11, 2, 5, 30))
        # 00:00 EDT, 01:00 EDT, 01:00 EST (again), 02:00 EST
        early = [utc(2026, 11, 1, 4, 0) + timedelta(hours=i) for i in range(4)]
        for when in early:
            assert (await report(client, bob, "metro", when))["status"] == "minted"
        late_evening = utc(2026, 11, 2, 4, 30)  # 23:30 EST on Nov 1 (00:30 Nov 2 at UTC-4)
        assert (await report(client, bob, "metro", late_evening))["status"] == "minted"
        assert (await report(client, bob, "metro", utc(2026, 11, 2, 4, 59)))["status"] == "capped"
        next_day = utc(2026, 11, 2, 5, 0)  # 00:00 EST Nov 2
        assert (await report(client, bob, "metro", next_day))["status"] == "minted"

    async def test_dst_spring_forward_day_lasts_23_hours(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        bob = await register(client, "bob", timezone="America/New_York")
        # 2026-03-08: clocks jump 02:00 EST -> 03:00 EDT, so Mar 8 runs 05:00Z..04:00Z Mar 9
        clock.set(utc(2026, 3, 9, 5, 0))
        for hour in range(5):  # 00:00, 01:00, 03:00, 04:00, 05:00 local on Mar 8
            result = await report(client, bob, "metro", utc(2026, 3, 8, 5 + hour, 0))
            assert result["status"] == "minted"
        last_minute = utc(2026, 3, 9, 3, 59)  # 23:59 EDT on Mar 8
        assert (await report(client, bob, "metro", last_minute))["status"] == "capped"
        just_after = utc(2026, 3, 9, 4, 30)  # 00:30 EDT Mar 9 (still Mar 8 at UTC-5)
        assert (await report(client, bob, "metro", just_after))["status"] == "minted"

    async def test_dst_day_gram_cap_counts_the_local_day(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        bob = await register(client, "bob", timezone="America/New_York")
        clock.set(utc(2026, 11, 2, 6, 0))
        # 01:30 happens twice on 2026-11-01 (EDT then EST): both belong to Nov 1
        first = datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK, fold=0)
        second = datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK, fold=1)
        assert second - first == timedelta(0)  # wall-clock equal, one hour apart in UTC
        assert second.astimezone(UTC) - first.astimezone(UTC) == timedelta(hours=1)
        assert outcome(await report(client, bob, "walking", first, 10_000)) == ("minted", 165)
        assert outcome(await report(client, bob, "walking", second, 10_000)) == ("capped", 131)
        next_day = utc(2026, 11, 2, 5, 30)  # 00:30 EST Nov 2
        assert outcome(await report(client, bob, "walking", next_day, 10_000)) == ("minted", 165)
        assert await minted(app, bob) == (3, 296 + 165)


class TestRegionalFactors:
    @pytest.mark.parametrize(
        ("region", "kind", "quantity", "grams"),
        [
            pytest.param("shenzhen", "metro", "12.5", 585, id="shenzhen-metro-46.8-per-km"),
            pytest.param("shenzhen", "metro", "0.7", 32, id="shenzhen-metro-floored"),
            pytest.param("shenzhen", "bus", "3.7", 99, id="shenzhen-bus-26.9-per-km"),
            pytest.param("shenzhen", "bus", "10", 269, id="shenzhen-bus-exact"),
            pytest.param("wuhan", "cycling", "2.5", 233, id="wuhan-cycling-93.3-per-km"),
            pytest.param("wuhan", "cycling", "10", 933, id="wuhan-cycling-exact"),
            pytest.param(None, "cycling", "2.5", 125, id="default-cycling-50-per-km"),
            pytest.param(None, "metro", "12.5", 52, id="default-metro-per-ride"),
            pytest.param(None, "bus", "3.7", 80, id="default-bus-per-ride"),
            pytest.param("wuhan", "metro", "12.5", 52, id="region-without-override"),
            pytest.param("shenzhen", "cycling", "2.5", 125, id="other-regions-factor-not-used"),
        ],
    )
    async def test_energy_follows_the_users_region(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        region: str | None,
        kind: str,
        quantity: str,
        grams: int,
    ) -> None:
        extra = {"region": region} if region else {}
        alice = await register(client, "alice", **extra)
        result = await report(client, alice, kind, clock.now(), quantity)
        assert outcome(result) == ("minted", grams)
        assert await minted(app, alice) == (1, grams)

    async def test_the_factor_used_is_recorded_with_the_activity(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice", region="shenzhen")
        bob = await register(client, "bob")
        for user in (alice, bob):
            await report(client, user, "metro", clock.now(), "12.5")
        async with app.state.sessionmaker() as session:
            rows = (
                await session.execute(
                    text(
                        "SELECT user_id, region, unit, factor_g, computed_g FROM activities "
                        "WHERE kind = 'metro'"
                    )
                )
            ).all()
        by_user = {str(r[0]): tuple(r[1:]) for r in rows}
        assert by_user[alice.id][:2] == ("shenzhen", "km")
        assert float(by_user[alice.id][2]) == 46.8 and by_user[alice.id][3] == 585
        assert by_user[bob.id][:2] == (None, None)
        assert float(by_user[bob.id][2]) == 52 and by_user[bob.id][3] == 52

    async def test_a_per_km_region_needs_a_quantity(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice", region="shenzhen")
        result = await report(client, alice, "metro", clock.now())
        assert (result["status"], result["reason"], result["energy_g"]) == (
            "rejected",
            "invalid_quantity",
            0,
        )
        assert await minted(app, alice) == (0, 0)

    async def test_per_km_rides_still_count_against_the_ride_cap(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice", region="shenzhen")
        now = clock.now()
        for i in range(5):
            result = await report(client, alice, "metro", now - timedelta(minutes=i), "10")
            assert outcome(result) == ("minted", 468)
        assert outcome(await report(client, alice, "metro", now, "10")) == ("capped", 0)
        assert await minted(app, alice) == (5, 5 * 468)

    async def test_a_region_set_later_applies_from_the_next_local_day(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        assert outcome(await report(client, alice, "bus", clock.now(), "10")) == ("minted", 80)
        patched = await client.patch("/v1/me", json={"region": "shenzhen"}, headers=alice.headers)
        assert patched.status_code == 200, patched.text
        assert outcome(await report(client, alice, "bus", clock.now(), "10")) == ("minted", 80)
        clock.set(clock.now() + timedelta(days=1))
        assert outcome(await report(client, alice, "bus", clock.now(), "10")) == ("minted", 269)


class TestConcurrentCaps:
    async def test_fifty_requests_racing_for_the_last_daily_slot_mint_it_once(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice")
        now = clock.now()
        for i in range(4):
            await report(client, alice, "metro", now - timedelta(hours=1, minutes=i))
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/activities",
                    json=event("metro", now - timedelta(seconds=i)),
                    headers=alice.headers,
                )
                for i in range(50)
            )
        )
        assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
        results = [outcome(r.json()) for r in responses]
        assert sorted(results) == [("capped", 0)] * 49 + [("minted", 52)]
        assert await minted(app, alice) == (5, 5 * 52)
        assert await co2e(client, alice) == 5 * 52
        await assert_ledger_ok(client, admin_headers)

    async def test_fifty_batches_racing_for_the_last_slots_mint_them_once(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice")
        transit = await create_partner(client, admin_headers)
        now = clock.now()
        for i in range(3):
            await report(client, alice, "bus", now - timedelta(hours=1, minutes=i))

        async def batch(i: int) -> httpx.Response:
            events = [event("bus", now - timedelta(seconds=i, milliseconds=j)) for j in range(2)]
            if i % 2:
                return await client.post(
                    "/v1/activities/batch", json={"activities": events}, headers=alice.headers
                )
            return await client.post(
                "/partner/v1/activities/batch",
                json={"activities": [{**e, "user_id": alice.id} for e in events]},
                headers=transit.headers,
            )

        responses = await asyncio.gather(*(batch(i) for i in range(50)))
        assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
        statuses = [r["status"] for resp in responses for r in resp.json()["results"]]
        assert statuses.count("minted") == 2
        assert statuses.count("capped") == 98
        assert await minted(app, alice) == (5, 5 * 80)
        await assert_ledger_ok(client, admin_headers)

    async def test_fifty_requests_racing_for_the_last_grams_mint_them_once(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice")
        now = clock.now()
        first = await report(client, alice, "walking", now - timedelta(hours=1), 17_334)
        assert outcome(first) == ("minted", 286)  # floor(286.011), 10 g left today
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/activities",
                    json=event("walking", now - timedelta(seconds=i), 1_000),  # 16 g each
                    headers=alice.headers,
                )
                for i in range(50)
            )
        )
        assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
        results = sorted(outcome(r.json()) for r in responses)
        assert results == [("capped", 0)] * 49 + [("capped", 10)]
        assert sum(1 for r in responses if r.json()["ball_id"] is not None) == 1
        assert await minted(app, alice) == (2, 296)
        assert await co2e(client, alice) == 296
        await assert_ledger_ok(client, admin_headers)

    async def test_fifty_partner_requests_racing_for_the_last_monthly_slot_mint_it_once(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        alice = await register(client, "alice")
        partner = await create_partner(client, admin_headers)
        now = clock.now()
        for i in range(4):
            await report(
                client, alice, "hospital_booking", now - timedelta(days=i), partner=partner
            )
        responses = await asyncio.gather(
            *(
                client.post(
                    "/partner/v1/activities",
                    json={
                        **event("hospital_booking", now - timedelta(seconds=i)),
                        "user_id": alice.id,
                    },
                    headers=partner.headers,
                )
                for i in range(50)
            )
        )
        assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
        results = sorted(outcome(r.json()) for r in responses)
        assert results == [("capped", 0)] * 49 + [("minted", 277)]
        assert await minted(app, alice) == (5, 5 * 277)
        await assert_ledger_ok(client, admin_headers)

    async def test_racing_users_do_not_share_a_cap(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        players = [await register(client, f"rider_{i}") for i in range(5)]
        now = clock.now()
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/activities",
                    json=event("metro", now - timedelta(seconds=i)),
                    headers=player.headers,
                )
                for player in players
                for i in range(8)
            )
        )
        assert {r.status_code for r in responses} == {201}
        for player in players:
            assert await minted(app, player) == (5, 5 * 52)
