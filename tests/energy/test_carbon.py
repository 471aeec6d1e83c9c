"""GET /v1/me/carbon and its printable statement: the personal carbon account, read from the
rollup the ingest statement keeps, equal to the sum of the user's activities across rules
versions, regions and step days; erased users have none."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from app.core.clock import FrozenClock
from app.rules.loader import default_rules_path
from tests.energy.conftest import event, ledger_ok
from tests.helpers import Player, assert_problem, register
from tests.planting.conftest import scalar

DEFAULT = default_rules_path().read_text(encoding="utf-8")
V2_METHOD = "Metro ride, version two methodology."
METRO_60 = DEFAULT.replace("energy_per_event_g = 52", "energy_per_event_g = 60", 1).replace(
    'method = "Taking the metro instead of a car: a typical ride',
    f'method = "{V2_METHOD}" # ',
    1,
)
TOML = {"Content-Type": "application/toml"}


async def report(client: httpx.AsyncClient, user: Player, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/activities", json=body, headers=user.headers)
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


async def account(client: httpx.AsyncClient, user: Player, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/me/carbon", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def activity_sums(app: FastAPI, user: Player) -> tuple[int, int]:
    events = await scalar(app, "SELECT count(*) FROM activities WHERE user_id = :u", u=user.id)
    grams = await scalar(
        app, "SELECT coalesce(sum(energy_g), 0) FROM activities WHERE user_id = :u", u=user.id
    )
    return int(events), int(grams)


class TestCarbonAccount:
    async def test_equals_the_sum_of_activities_across_versions_and_regions(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        admin_headers: dict[str, str],
        clock: FrozenClock,
    ) -> None:
        alice = await register(client, "alice")
        shen = await register(client, "shen", region="shenzhen")
        # version 1: metro at 52 g (alice) and per km in Shenzhen (shen)
        await report(client, alice, event(clock, "a1"))
        await report(client, alice, event(clock, "a2", kind="bus"))
        await report(client, shen, event(clock, "s1", quantity=10))
        await report(client, shen, event(clock, "s1", quantity=10))  # a duplicate counts once
        switch = clock.now() + timedelta(minutes=1)
        published = await client.post(
            "/admin/v1/rules",
            params={"effective_from": switch.isoformat()},
            content=METRO_60,
            headers=admin_headers | TOML,
        )
        assert published.status_code == 201, published.text
        clock.set(switch + timedelta(minutes=10))
        # version 2: metro at 60 g
        v2 = await report(client, alice, event(clock, "a3", ago=timedelta(minutes=5)))
        assert (v2["energy_g"], v2["rules_version"]) == (60, 2)
        await report(client, shen, event(clock, "s2", quantity=3, ago=timedelta(minutes=5)))

        for user in (alice, shen):
            body = await account(client, user)
            events, grams = await activity_sums(app, user)
            assert (body["events"], body["total_co2e_g"]) == (events, grams)
            assert sum(k["co2e_g"] for k in body["by_kind"]) == grams
            assert sum(m["co2e_g"] for m in body["by_month"]) == grams
            assert body["year"] == 2026 and len(body["by_month"]) == 12

        mine = {k["kind"]: k for k in (await account(client, alice))["by_kind"]}
        assert (mine["metro"]["events"], mine["metro"]["co2e_g"]) == (2, 112)
        assert mine["metro"]["method"] == V2_METHOD  # the latest version that valued it
        versions = {v["rules_version"]: v for v in mine["metro"]["valuations"]}
        assert versions[1]["co2e_g"] == 52 and versions[1]["method"].startswith("Taking the metro")
        assert versions[2]["co2e_g"] == 60 and versions[2]["method"] == V2_METHOD
        bus = await scalar(app, "SELECT energy_g FROM activities WHERE external_id = 'a2'")
        assert (mine["bus"]["events"], mine["bus"]["co2e_g"]) == (1, bus)

        theirs = {k["kind"]: k for k in (await account(client, shen))["by_kind"]}
        metro = theirs["metro"]
        assert metro["co2e_g"] == 468 + 140  # floor(46.8 * 10) + floor(46.8 * 3)
        assert {v["region"] for v in metro["valuations"]} == {"shenzhen"}
        assert metro["source"] == "Ant Forest published value for Shenzhen."
        await ledger_ok(client, admin_headers)

    async def test_step_days_are_counted_as_walking(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        walker = await register(client, "walker")
        put = await client.put(
            "/v1/steps/2026-11-28", json={"steps": 10_000}, headers=walker.headers
        )
        assert put.status_code == 200, put.text
        body = await account(client, walker)
        assert [k["kind"] for k in body["by_kind"]] == ["walking"]
        assert (body["events"], body["total_co2e_g"]) == await activity_sums(app, walker)
        assert body["total_co2e_g"] == 165

    async def test_months_are_the_users_local_months(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")  # Asia/Shanghai, UTC+8
        clock.set(datetime(2026, 11, 30, 17, 0, tzinfo=UTC))  # 1 December, 01:00 local
        await report(client, alice, event(clock, "late-night", ago=timedelta(minutes=30)))
        await report(client, alice, event(clock, "evening", ago=timedelta(hours=10)))
        months = {m["month"]: m["co2e_g"] for m in (await account(client, alice))["by_month"]}
        assert (months["2026-11"], months["2026-12"]) == (52, 52)

    async def test_another_year_is_empty_and_out_of_range_is_422(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        await report(client, alice, event(clock, "a1"))
        empty = await account(client, alice, year=2025)
        assert (empty["year"], empty["total_co2e_g"], empty["by_kind"]) == (2025, 0, [])
        assert [m["month"] for m in empty["by_month"]][:2] == ["2025-01", "2025-02"]
        for bad in ("1999", "abc", "99999999999999999999"):
            response = await client.get(
                "/v1/me/carbon", params={"year": bad}, headers=alice.headers
            )
            assert_problem(response, 422, "validation_error")
        assert (await client.get("/v1/me/carbon")).status_code == 401

    async def test_an_erased_user_has_none(
        self, client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice")
        await report(client, alice, event(clock, "a1"))
        rows = "SELECT count(*) FROM carbon_months WHERE user_id = :u"
        assert await scalar(app, rows, u=alice.id) == 1
        assert (await client.delete("/v1/me", headers=alice.headers)).status_code == 204
        assert await scalar(app, rows, u=alice.id) == 0


class TestStatement:
    async def test_a_printable_svg_with_hostile_names_escaped(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        alice = await register(client, "alice", display_name='<script>alert("x")</script>&')
        await report(client, alice, event(clock, "a1"))
        response = await client.get("/v1/me/carbon/statement", headers=alice.headers)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("image/svg+xml")
        assert "default-src 'none'" in response.headers["content-security-policy"]
        root = ET.fromstring(response.content)  # well-formed XML
        assert root.tag.endswith("svg")
        assert "<script>" not in response.text
        texts = " ".join("".join(t.itertext()) for t in root.iter() if t.tag.endswith("text"))
        assert '<script>alert("x")</script>&' in texts  # shown as text, not markup
        assert "52 g CO2e" in texts and "Personal Carbon Statement 2026" in texts
        assert "metro" in texts

    async def test_an_empty_year_still_renders(self, client: httpx.AsyncClient) -> None:
        alice = await register(client, "alice")
        response = await client.get(
            "/v1/me/carbon/statement", params={"year": 2024}, headers=alice.headers
        )
        assert response.status_code == 200
        ET.fromstring(response.content)
        assert "No activities counted this year." in response.text
