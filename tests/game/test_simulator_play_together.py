"""The simulator's rain players and revivers: what the rules' ``[energy_rain]`` and ``[revive]``
give them, and their effect on days to the first tree."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.game.simulator.personas import PersonasInvalid, parse_personas
from tests.game.test_simulator import personas, rules_with, run

RAIN_PLAYER = {
    "friends": [0, 0],
    "steps": [10000, 10000],
    "sessions": [{"at": "21:00", "rain_chance": 1.0}],
    "rain_catch": [1.0, 1.0],
}
# owners who never open the app (their energy expires) and friends who revive it every morning
OWNER = {"weight": 1, "friends": [0, 0], "steps": [10000, 10000], "plants": False}
REVIVER = {"weight": 1, "friends": [1, 1], "sessions": [{"at": "07:00", "revive_chance": 1.0}]}


def per_player(report: dict[str, Any], name: str, key: str) -> float:
    summary = report["personas"][name]
    return float(summary["totals_g"][key]) / summary["players"]


class TestRain:
    def test_a_player_who_catches_everything_gets_the_cap_each_day(self) -> None:
        report = run(specs=personas(player=RAIN_PLAYER), days=10)
        assert per_player(report, "player", "rain") == 10 * 120
        assert report["personas"]["player"]["rain_per_day_g"] == 120

    def test_the_rules_decide_plays_and_cap_whatever_the_player_catches(self) -> None:
        more = rules_with(energy_rain={"plays_per_day": 2, "max_g_per_play": 200})
        assert per_player(run(more, personas(player=RAIN_PLAYER), days=10), "player", "rain") == (
            10 * 2 * 200
        )
        off = rules_with(energy_rain={"enabled": False})
        assert per_player(run(off, personas(player=RAIN_PLAYER), days=10), "player", "rain") == 0

    def test_the_rain_brings_the_first_tree_sooner(self) -> None:
        with_rain = run(specs=personas(player=RAIN_PLAYER), days=80)
        without = run(
            rules_with(energy_rain={"enabled": False}), personas(player=RAIN_PLAYER), days=80
        )
        soon = with_rain["personas"]["player"]["days_to_first_saxaul"]
        late = without["personas"]["player"]["days_to_first_saxaul"]
        assert soon is not None and (late is None or soon < late)

    def test_a_catch_share_above_one_is_refused(self) -> None:
        with pytest.raises(PersonasInvalid) as caught:
            parse_personas({"personas": {"walker": {"rain_catch": [0.5, 2.0]}}})
        assert [e.loc for e in caught.value.errors] == ["personas.walker.rain_catch"]


class TestRevive:
    def test_revivers_bring_expired_energy_back_within_the_daily_limit(self) -> None:
        report = run(specs=personas(owner=OWNER, reviver=REVIVER), days=21)
        owner, reviver = report["personas"]["owner"], report["personas"]["reviver"]
        back = owner["totals_g"]["revived_back"]
        share = reviver["totals_g"]["revive_share"]
        assert back > 0 and share > 0 and abs(back - share) <= reviver["players"] * 21
        # a walking day (165 g) expires once a day: at most one revive per owner and day
        assert reviver["revives_per_day"] <= 6

    def test_the_limit_and_the_switch_are_the_rules(self) -> None:
        specs = personas(owner=OWNER, reviver=REVIVER)
        base = run(specs=specs, days=21)["personas"]["reviver"]["totals_g"]["revive_share"]
        half = rules_with(revive={"reviver_share": 0.25})
        quarter = run(half, specs, days=21)["personas"]["reviver"]["totals_g"]["revive_share"]
        assert 0 < quarter < base
        off = run(rules_with(revive={"enabled": False}), specs, days=21)
        assert off["personas"]["owner"]["totals_g"]["revived_back"] == 0
        narrow = run(rules_with(revive={"window": timedelta(minutes=1)}), specs, days=21)
        assert narrow["personas"]["reviver"]["totals_g"]["revive_share"] == 0
