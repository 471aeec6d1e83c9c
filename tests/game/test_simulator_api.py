"""The simulator agrees with the running service: a simulated persona's day mints what the API
mints for the same activities (activities batch plus the day's step total)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from app.core.clock import FrozenClock
from app.game.simulator import SimulationConfig, simulate
from app.game.simulator.personas import parse_personas
from app.game.simulator.report import build_report
from app.rules.loader import load_rules
from tests.helpers import register

SHANGHAI = ZoneInfo("Asia/Shanghai")
METRO = ["07:10", "07:40", "08:20", "09:00", "09:30", "10:10", "10:50"]  # 7 rides, cap 5
BUS = ["08:05", "18:15"]
CYCLING = ["12:30"]
STEPS = 20000  # 330 g: the 296 g daily cap cuts it


def persona(region: str | None) -> dict[str, Any]:
    table: dict[str, Any] = {
        "steps": STEPS,
        "activities": [
            {"kind": "metro", "per_day": len(METRO), "at": METRO, "origin": "client"},
            {"kind": "bus", "per_day": len(BUS), "at": BUS, "origin": "client"},
            {
                "kind": "cycling",
                "per_day": 1,
                "at": CYCLING,
                "quantity": 12.5,
                "quantity_step": 0.5,
                "origin": "client",
            },
        ],
    }
    if region is not None:  # Shenzhen counts metro and bus rides by the km
        table["region"] = region
        for activity in table["activities"][:2]:
            activity.update(quantity=8.5, quantity_step=0.5)
    return table


def simulated_day(day: date, region: str | None) -> int:
    specs = parse_personas({"replace": True, "personas": {"tester": persona(region)}})
    config = SimulationConfig(players=1, days=1, seed=1, start=day, workers=1)
    report = build_report([simulate(load_rules(), config, specs)])
    [energy] = report["runs"][0]["personas"]["tester"]["series"]["energy_per_day_g"]
    return int(energy)


def activities(day: date, region: str | None) -> list[dict[str, Any]]:
    items = []
    for kind, times in (("metro", METRO), ("bus", BUS), ("cycling", CYCLING)):
        for at in times:
            hour, minute = map(int, at.split(":"))
            when = datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI).astimezone(UTC)
            item: dict[str, Any] = {
                "id": f"{kind}-{at}",
                "kind": kind,
                "occurred_at": when.isoformat(),
            }
            if kind == "cycling":
                item["quantity"] = "12.5"
            elif region is not None:
                item["quantity"] = "8.5"
            items.append(item)
    return items


async def api_day(client: httpx.AsyncClient, day: date, region: str | None) -> int:
    extra = {} if region is None else {"region": region}
    user = await register(client, f"tester_{region or 'none'}", **extra)
    batch = await client.post(
        "/v1/activities/batch", json={"activities": activities(day, region)}, headers=user.headers
    )
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert {r["status"] for r in results} <= {"minted", "capped"}, results
    steps = await client.put(f"/v1/steps/{day}", json={"steps": STEPS}, headers=user.headers)
    assert steps.status_code == 200, steps.text
    assert steps.json()["status"] == "minted"  # the day is over: minted at once
    return sum(int(r["energy_g"]) for r in results) + int(steps.json()["energy_g"])


class TestSimulatorAgreesWithTheApi:
    async def test_a_commuter_day_mints_the_same_energy(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        yesterday = clock.now().astimezone(SHANGHAI).date() - timedelta(days=1)
        minted = await api_day(client, yesterday, None)
        # 296 walking + 5 x 52 metro (7 rides, 5 a day) + 2 x 80 bus + 12.5 km x 50 g cycling
        assert minted == 296 + 5 * 52 + 2 * 80 + 625
        assert simulated_day(yesterday, None) == minted

    async def test_a_shenzhen_commuter_day_mints_the_same_energy(
        self, client: httpx.AsyncClient, clock: FrozenClock
    ) -> None:
        yesterday = clock.now().astimezone(SHANGHAI).date() - timedelta(days=1)
        minted = await api_day(client, yesterday, "shenzhen")
        # per km in Shenzhen: metro 46.8 g x 8.5 km = 397 g (5 a day), e-bus 26.9 g x 8.5 = 228 g
        assert minted == 296 + 5 * 397 + 2 * 228 + 625
        assert simulated_day(yesterday, "shenzhen") == minted
