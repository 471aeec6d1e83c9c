"""Every kind an app can report has a bound on one user's energy per local day — on the day's
total, not per event — in every region; the rules refuse a client kind without one."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from fastapi import FastAPI

from app.core.clock import FrozenClock
from app.rules.loader import validate_rules_text
from app.rules.schema import ActivityRules
from tests.energy.conftest import ledger_ok
from tests.helpers import register


def day_bound(kind: ActivityRules, region: str | None) -> int:
    """The most one user may mint of ``kind`` in one local day where ``region`` applies."""
    factor = kind.for_region(region)
    bounds = [kind.daily_cap_g] if kind.daily_cap_g is not None else []
    if factor.energy_per_event_g is not None:
        for cap in (kind.daily_cap_count, kind.monthly_cap_count):
            if cap is not None:
                bounds.append(cap * factor.energy_per_event_g)
    elif factor.max_units_per_day is not None:
        assert factor.energy_per_unit_g is not None
        per_unit = Decimal(str(factor.energy_per_unit_g))
        bounds.append(math.floor(per_unit * Decimal(str(factor.max_units_per_day))))
    assert bounds, "the rules check lets no client kind go unbounded"
    return min(bounds)


class TestFloodOfClientEvents:
    async def test_a_flood_of_every_client_kind_in_every_region_mints_at_most_the_days_bound(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        clock: FrozenClock,
        admin_headers: dict[str, str],
    ) -> None:
        # 10:00 in Shanghai: every event below falls in the same local day
        clock.set(datetime(2026, 12, 3, 2, 0, tzinfo=UTC))
        rules = app.state.rules_registry.at(clock.now()).rules
        client_kinds = {n: k for n, k in rules.activities.items() if "client" in k.sources}
        assert {"walking", "metro", "bus", "cycling"} <= client_kinds.keys()
        regions = sorted({r for k in client_kinds.values() for r in k.regions})
        assert {"shenzhen", "wuhan"} <= set(regions)
        for region in [None, *regions]:
            attacker = await register(
                client, f"mallory_{region or 'none'}", **({"region": region} if region else {})
            )
            for name, kind in client_kinds.items():
                factor = kind.for_region(region)
                # as much per event as is not implausible, 500 events a batch, three batches
                quantity = factor.max_units_per_day if factor.unit is not None else None
                minted = 0
                for batch in range(3):
                    events = []
                    for i in range(500):
                        event = {
                            "id": f"{name}-{batch}-{i}",
                            "kind": name,
                            "occurred_at": (
                                clock.now() - timedelta(seconds=batch * 500 + i)
                            ).isoformat(),
                        }
                        if quantity is not None:
                            event["quantity"] = quantity
                        events.append(event)
                    response = await client.post(
                        "/v1/activities/batch",
                        json={"activities": events},
                        headers=attacker.headers,
                    )
                    assert response.status_code == 200, response.text
                    results = response.json()["results"]
                    assert {r["status"] for r in results} <= {"minted", "capped"}, results[0]
                    minted += sum(r["energy_g"] for r in results)
                bound = day_bound(kind, region)
                assert 0 < minted <= bound, (name, region, minted, bound)
                # the bound is what the day holds, not a trickle: the first events reach it
                assert minted == bound, (name, region, minted, bound)
        await ledger_ok(client, admin_headers)

    async def test_per_unit_events_count_the_days_total_units(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        clock.set(datetime(2026, 12, 3, 2, 0, tzinfo=UTC))
        rider = await register(client, "rider")

        async def ride(eid: str, km: str) -> dict[str, object]:
            event = {
                "id": eid,
                "kind": "cycling",
                "occurred_at": (clock.now() - timedelta(minutes=1)).isoformat(),
                "quantity": km,
            }
            response = await client.post("/v1/activities", json=event, headers=rider.headers)
            result: dict[str, object] = response.json()
            return result

        # cycling: 50 g/km, 200 km a day in total
        assert (await ride("a", "150"))["energy_g"] == 7_500
        second = await ride("b", "80")  # only 50 km of it still count
        assert (second["status"], second["energy_g"]) == ("capped", 2_500)
        third = await ride("c", "1")
        assert (third["status"], third["energy_g"]) == ("capped", 0)
        over = await ride("d", "201")  # more than a whole day in one event
        assert (over["status"], over["reason"]) == ("rejected", "implausible")


UNBOUNDED = """version = "t"
[activities.ride]
unit = "km"
energy_per_unit_g = 5
sources = ["client"]
[activities.metro]
energy_per_event_g = 52
sources = ["partner", "client"]
[activities.metro.regions.shenzhen]
unit = "km"
energy_per_unit_g = 46.8
[activities.toll]
energy_per_event_g = 23
sources = ["partner"]
"""


class TestRulesRefuseUnboundedClientKinds:
    def test_each_unbounded_client_kind_and_region_is_named_by_key_path(self) -> None:
        issues = {i.loc: i.msg for i in validate_rules_text(UNBOUNDED)}
        assert set(issues) == {
            "activities.ride.max_units_per_day",
            "activities.metro.daily_cap_count",
            "activities.metro.regions.shenzhen.max_units_per_day",
        }  # the partner-only toll may go uncapped: partners are limited to their kinds
        assert "daily energy needs a bound" in issues["activities.ride.max_units_per_day"]

    def test_a_region_in_the_kinds_unit_keeps_the_kinds_bound(self) -> None:
        text = UNBOUNDED.replace(
            'sources = ["client"]', 'max_units_per_day = 100\nsources = ["client"]'
        )
        text += "[activities.ride.regions.wuhan]\nenergy_per_unit_g = 9\n"
        assert "activities.ride.regions.wuhan.max_units_per_day" not in {
            i.loc for i in validate_rules_text(text)
        }

    async def test_publishing_an_unbounded_client_kind_is_refused(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        response = await client.post(
            "/admin/v1/rules",
            content=UNBOUNDED,
            headers={**admin_headers, "Content-Type": "application/toml"},
        )
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["code"] == "invalid_rules"
        assert {e["loc"] for e in body["errors"]} >= {"activities.ride.max_units_per_day"}
