"""The economy simulator (no database): determinism, agreement with the service's rules code,
conservation of energy, stealing limits, watering, the CLI and the publishing guardrail."""

from __future__ import annotations

import json
import tomllib
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from app.core.users import UserRef
from app.energy.ingest import Incoming, Outcome, apply_caps, evaluate
from app.energy.periods import local_midnight
from app.energy.repository import CapKey, Counter
from app.game.simulator import (
    SimulationConfig,
    guardrail_check,
    simulate,
    simulate_days_to_first_tree,
)
from app.game.simulator.cli import simulate as simulate_command
from app.game.simulator.personas import (
    PersonasInvalid,
    PersonaSpec,
    default_personas,
    load_personas,
    parse_personas,
)
from app.game.simulator.report import build_report, median_days
from app.rules.loader import default_rules_path, load_rules
from app.rules.registry import BEGINNING, ActiveRules, RulesRegistry
from app.rules.schema import Rules

SHANGHAI = ZoneInfo("Asia/Shanghai")
START = date(2026, 3, 30)  # Monday; the month turns on day 3 (monthly caps start over)


def rules_with(**changes: Any) -> Rules:
    """The shipped rules with some sections or activity kinds changed."""
    rules = load_rules().rules
    activities = dict(rules.activities)
    for kind, update in changes.pop("activities", {}).items():
        activities[kind] = activities[kind].model_copy(update=update)
    sections = {
        name: getattr(rules, name).model_copy(update=update) for name, update in changes.items()
    }
    return rules.model_copy(update={"activities": activities, **sections})


def personas(**tables: dict[str, Any]) -> dict[str, PersonaSpec]:
    """Only the given personas (a personas file with ``replace = true``)."""
    return parse_personas({"replace": True, "personas": tables})


def run(
    rules: Any = None,
    specs: dict[str, PersonaSpec] | None = None,
    **config: Any,
) -> dict[str, Any]:
    """One run's report entry (the first run of the report)."""
    settings = {"players": 120, "days": 21, "seed": 7, "start": START, "workers": 1, **config}
    result = simulate(
        rules if rules is not None else load_rules(), SimulationConfig(**settings), specs
    )
    runs: list[dict[str, Any]] = build_report([result])["runs"]
    return runs[0]


def report_bytes(**config: Any) -> str:
    settings = {"players": 150, "days": 20, "seed": 3, "start": START, "workers": 1, **config}
    result = simulate(default_rules_path(), SimulationConfig(**settings))
    return json.dumps(build_report([result]), indent=2)


class TestDeterminism:
    def test_same_seed_gives_the_same_report(self) -> None:
        assert report_bytes() == report_bytes()

    def test_another_seed_gives_another_report(self) -> None:
        assert report_bytes() != report_bytes(seed=4)

    def test_worker_processes_do_not_change_the_result(self) -> None:
        # communities are seeded by their number, so splitting the work changes nothing
        # (more than one chunk of 500 players, so the two processes both get work)
        one = report_bytes(players=1200, days=8, workers=1)
        assert one == report_bytes(players=1200, days=8, workers=2)

    def test_two_rules_files_see_the_same_activities(self) -> None:
        # common random numbers: changing stealing must not change what anyone walks or rides
        base = run()
        greedy = run(rules_with(stealing={"max_share": 0.3, "mode": "fixed"}))
        for name, summary in base["personas"].items():
            other = greedy["personas"][name]
            assert summary["energy_per_day_g"] == other["energy_per_day_g"], name
            assert summary["caps"] == other["caps"], name
        assert (
            greedy["personas"]["early_bird"]["taken_from_friends_per_day_g"]
            > base["personas"]["early_bird"]["taken_from_friends_per_day_g"]
        )


# --- agreement with the service's own code -----------------------------------------------------

METRO_TIMES = ["07:10", "07:40", "08:20", "09:00", "09:30", "10:10", "10:50"]
PAY_TIMES = [f"{h:02d}:{m:02d}" for h in range(9, 15) for m in (5, 35)]  # 12 payments
BILL_TIMES = ["10:00", "11:00", "12:00", "13:00", "14:00", "15:00"]
COMMUTER_DAY: dict[str, Any] = {
    "steps": 20000,  # 330 g of steps: the 296 g cap cuts it
    "activities": [
        {"kind": "metro", "per_day": 7, "at": METRO_TIMES, "origin": "client"},  # cap 5/day
        {"kind": "bus", "per_day": 2, "at": ["08:05", "11:15"], "origin": "client"},
        {
            "kind": "cycling",
            "per_day": 1,
            "at": ["09:45"],
            "quantity": 12.5,
            "quantity_step": 0.5,
            "origin": "client",
        },
        {"kind": "offline_payment", "per_day": 12, "at": PAY_TIMES},  # cap 10/day
        {"kind": "utility_bill", "per_day": 6, "at": BILL_TIMES},  # cap 10/month
        {"kind": "e_invoice", "per_day": 1, "at": ["09:10"], "origin": "client"},  # untrusted
    ],
}


def wall(day: date, hh_mm: str) -> datetime:
    hour, minute = map(int, hh_mm.split(":"))
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI).astimezone(UTC)


def service_days(rules: Rules, days: list[date], region: str | None = None) -> list[int]:
    """What ``evaluate`` + ``apply_caps`` give for COMMUTER_DAY's activities, called directly
    the way the service records them: each activity as it happens, the step total after the
    day ends (as ``steps._mint``), with counters created empty when missing (``lock_counters``)."""
    registry = RulesRegistry([ActiveRules(1, "direct", BEGINNING, rules)])
    user = UserRef(uuid.uuid4(), "Asia/Shanghai", region)
    counters: dict[CapKey, Counter] = {}
    totals = []
    for day in days:
        events: list[tuple[datetime, Incoming, str, datetime, bool]] = []
        for activity in COMMUTER_DAY["activities"]:
            quantity = activity.get("quantity")
            for at in activity["at"]:
                when = wall(day, at)
                incoming = Incoming(
                    f"{activity['kind']}-{day}-{at}",
                    activity["kind"],
                    when,
                    None if quantity is None else Decimal(str(quantity)),
                )
                events.append((when, incoming, activity.get("origin", "partner"), when, True))
        midnight = local_midnight(day, "Asia/Shanghai")
        steps = Incoming(str(day), "walking", midnight, Decimal(COMMUTER_DAY["steps"]))
        events.append((midnight + timedelta(days=1), steps, "client", midnight, False))
        total = 0
        for index, (now, incoming, origin, _, window) in enumerate(
            sorted(events, key=lambda e: (e[0], e[1].external_id))
        ):
            pending = evaluate(index, user, incoming, origin, registry, now, window)
            if isinstance(pending, Outcome):
                assert pending.reason == "untrusted_source", pending
                continue
            for _, key in pending.cap_keys:
                counters.setdefault(key, Counter(0, 0))
            total += apply_caps(pending, counters)
        totals.append(total)
    return totals


class TestAgreementWithTheService:
    def test_a_simulated_day_mints_what_evaluate_and_apply_caps_mint(self) -> None:
        rules = load_rules().rules
        start = date(2026, 4, 29)  # two days that cross into May: the monthly cap starts over
        days = [start + timedelta(days=n) for n in range(3)]
        report = run(rules, personas(tester=COMMUTER_DAY), players=1, days=3, start=start)
        tester = report["personas"]["tester"]
        expected = service_days(rules, days)
        assert tester["series"]["energy_per_day_g"] == [float(g) for g in expected]
        # spelled out: 296 walking + 5 x 52 metro + 2 x 80 bus + 625 cycling + 10 x 5 payments,
        # plus 6, then 4 bills of 262 g (10 a month), then 6 again in May
        daily = 296 + 5 * 52 + 2 * 80 + 625 + 10 * 5
        assert expected == [daily + 6 * 262, daily + 4 * 262, daily + 6 * 262]
        assert tester["caps"]["metro"] == {
            "events": 21,
            "capped": 6,
            "rate": round(6 / 21, 4),
            "capped_g": 6 * 52,
            "minted_g": 15 * 52,
        }
        assert tester["caps"]["walking"]["capped_g"] == 3 * (330 - 296)
        assert tester["caps"]["utility_bill"]["capped"] == 2
        assert tester["rejected"] == {"untrusted_source": 3}
        assert tester["cap_hit_rate"] == 1.0

    def test_regional_factors_apply_to_a_persona_with_a_region(self) -> None:
        rules = load_rules().rules
        day = {
            "region": "shenzhen",
            "activities": [
                {
                    "kind": "metro",
                    "per_day": 2,
                    "at": ["08:00", "18:00"],
                    "quantity": 8.5,
                    "quantity_step": 0.5,
                }
            ],
        }
        report = run(rules, personas(tester=day), players=1, days=1)
        # Shenzhen metro: 46.8 g/km x 8.5 km = 397.8 g, floored per ride
        assert report["personas"]["tester"]["series"]["energy_per_day_g"] == [2 * 397.0]

    def test_a_kind_the_rules_do_not_know_is_rejected(self) -> None:
        rules = load_rules().rules
        without_bus = rules.model_copy(
            update={"activities": {k: v for k, v in rules.activities.items() if k != "bus"}}
        )
        tester = {"activities": [{"kind": "bus", "per_day": 2, "at": ["08:00", "18:00"]}]}
        report = run(without_bus, personas(tester=tester), players=1, days=2)
        assert report["personas"]["tester"]["rejected"] == {"unknown_kind": 4}
        assert report["personas"]["tester"]["energy_per_day_g"] == 0


# --- the economy: conservation, ripening, expiry, stealing, watering, planting -----------------


def totals(report: dict[str, Any], name: str) -> dict[str, int]:
    result: dict[str, int] = report["personas"][name]["totals_g"]
    return result


class TestEconomy:
    def test_energy_is_neither_created_nor_lost_outside_the_rules(self) -> None:
        report = run(players=200, days=30)
        for name, summary in report["personas"].items():
            t = summary["totals_g"]
            # revived energy comes back as new balls (the owner's and the reviver's)
            into_balls = (
                t["minted"] + t["watering_received"] + t["revived_back"] + t["revive_share"]
            )
            out_of_balls = t["collected_own"] + t["lost_to_friends"] + t["expired"]
            assert into_balls == out_of_balls + t["live_at_end"], name
            gathered = t["collected_own"] + t["taken_from_friends"] + t["rain"]
            spent = t["watering_given"] + t["planted"] + t["redeemed"]
            assert gathered - spent == t["balance_at_end"], name
        everyone = report["personas"].values()
        assert sum(s["totals_g"]["taken_from_friends"] for s in everyone) == sum(
            s["totals_g"]["lost_to_friends"] for s in everyone
        )
        assert sum(s["totals_g"]["watering_given"] for s in everyone) == sum(
            s["totals_g"]["watering_received"] for s in everyone
        )

    def test_the_day_by_day_flows_add_up_to_the_totals(self) -> None:
        # the console draws collected / stolen / expired per day: each series, times the
        # players, sums (to rounding) to the run's total of that flow
        report = run(players=200, days=30)
        flows = {
            "collected_per_day_g": "collected_own",
            "stolen_per_day_g": "taken_from_friends",
            "expired_per_day_g": "expired",
        }
        for name, summary in report["personas"].items():
            for series, total in flows.items():
                values = summary["series"][series]
                assert len(values) == 30, (name, series)
                grams = sum(v * summary["players"] for v in values)
                assert abs(grams - summary["totals_g"][total]) <= 0.01 * 30 * summary["players"]

    def test_expiry_shows_on_the_days_balls_expire(self) -> None:
        # a hoarder's first ball ripens on day 2 and expires 72 h later: nothing expires
        # before day 4, then something every day
        report = run(players=200, days=30)
        expired = report["personas"]["hoarder"]["series"]["expired_per_day_g"]
        assert expired[:3] == [0, 0, 0]
        assert all(v > 0 for v in expired[5:]), expired
        assert report["personas"]["hoarder"]["series"]["collected_per_day_g"] == [0] * 30

    def test_a_player_who_never_collects_loses_everything_to_expiry_and_friends(self) -> None:
        report = run(players=200, days=30)
        hoarder = totals(report, "hoarder")
        assert hoarder["collected_own"] == 0 and hoarder["balance_at_end"] == 0
        assert hoarder["expired"] > 0 and hoarder["lost_to_friends"] > 0
        # balls ripen after a day and stay collectible for three more: the last days' are live
        assert hoarder["live_at_end"] > 0

    def test_walking_balls_ripen_at_seven_so_early_birds_find_them(self) -> None:
        walkers = {
            "sleeper": {"steps": 15000, "friends": [3, 3]},  # never opens the app
            "early": {
                "friends": [3, 3],
                "sessions": [{"at": "07:00", "steal_chance": 1.0, "collect": False}],
            },
            "too_early": {
                "friends": [3, 3],
                "sessions": [{"at": "06:59", "steal_chance": 1.0, "collect": False}],
            },
        }
        # day 0's step total ripens at 07:00 on day 1, the last day simulated
        report = run(specs=personas(**walkers), players=60, days=2)
        assert totals(report, "early")["taken_from_friends"] > 0
        assert totals(report, "too_early")["taken_from_friends"] == 0

    @pytest.mark.parametrize(("floor", "share"), [(0.5, 0.5), (0.8, 0.2), (0.0, 1.0)])
    def test_friends_together_never_take_more_than_the_owner_floor_allows(
        self, floor: float, share: float
    ) -> None:
        rules = rules_with(stealing={"mode": "fixed", "max_share": 1.0, "owner_floor": floor})
        crowd = {
            "owner": {"weight": 1, "steps": 15000, "friends": [0, 0]},  # never collects
            "thief": {
                "weight": 4,
                "friends": [10, 20],
                "sessions": [{"at": "07:00", "steal_chance": 1.0}],
            },
        }
        days = 8
        report = run(rules, personas(**crowd), players=50, days=days)
        owner = report["personas"]["owner"]
        minted, lost = owner["totals_g"]["minted"], owner["totals_g"]["lost_to_friends"]
        assert lost <= share * minted
        # with the whole ball on offer the first thief takes all the floor allows (floored per
        # ball); only the last day's ball is still growing when the run ends
        last_day = owner["series"]["energy_per_day_g"][-1] * owner["players"]
        assert lost >= share * (minted - last_day) - owner["players"] * days

    def test_a_friend_takes_once_per_ball(self) -> None:
        rules = rules_with(stealing={"mode": "fixed", "max_share": 0.1})
        pair = {
            "owner": {"steps": 20000, "friends": [1, 1]},  # 296 g a day, never collects
            "thief": {
                "friends": [1, 1],
                "sessions": [
                    {"at": f"{hour:02d}:00", "steal_chance": 1.0} for hour in range(7, 23)
                ],
            },
        }
        report = run(rules, personas(**pair), players=2, days=6)
        # each walking ball ripe within the run gives the thief 29 g once, however often they look
        taken = totals(report, "thief")["taken_from_friends"]
        assert taken == 29 * 5

    def test_no_stealing_when_the_rules_turn_it_off(self) -> None:
        report = run(rules_with(stealing={"enabled": False}), players=150, days=10)
        assert all(s["totals_g"]["taken_from_friends"] == 0 for s in report["personas"].values())

    def test_watering_is_limited_per_friend_and_day_and_cannot_be_stolen(self) -> None:
        hourly = [f"{hour:02d}:00" for hour in range(7, 23)]
        trio = {  # three players, all friends of each other
            "gardener": {
                "steps": 20000,
                "friends": [2, 2],
                "water_amount": "largest",
                "sessions": [{"at": at, "water_chance": 1.0} for at in hourly],
            },
            "lazy": {"friends": [2, 2]},  # never opens the app: watering piles up, ripe
            "thief": {
                "friends": [2, 2],
                "sessions": [{"at": at, "steal_chance": 1.0} for at in hourly],
            },
        }
        days = 10
        report = run(
            rules_with(watering={"per_friend_daily_limit": 2}),
            personas(**trio),
            players=3,
            days=days,
        )
        gardener, lazy = totals(report, "gardener"), totals(report, "lazy")
        # 16 tries a day, at most 2 x 66 g per friend and day, only from collected energy
        given = gardener["watering_given"]
        assert 0 < given <= 2 * 66 * 2 * days and given % 66 == 0
        assert lazy["watering_received"] > 0
        assert lazy["lost_to_friends"] == 0  # the thief looked every hour: watering is safe
        assert gardener["lost_to_friends"] > 0  # ...while walking balls are not

    def test_planting_spends_a_saxaul_and_reports_the_day(self) -> None:
        rich_walker = {
            "steps": 20000,
            "friends": [0, 0],
            "sessions": [{"at": "21:00"}],
        }
        report = run(specs=personas(walker=rich_walker), players=4, days=70)
        walker = report["personas"]["walker"]
        # 296 g a day ripening the next morning: 17,900 g after 61 collected days, on day 62
        assert walker["days_to_first_saxaul"] == 62
        assert walker["saxauls_per_player"] == 1
        assert walker["totals_g"]["planted"] == 4 * 17_900


class TestRewards:
    REDEEMER = {
        "steps": 20000,
        "friends": [0, 0],
        "sessions": [{"at": "21:00"}],
        "plants": False,
        "redeems": {"cost_g": 100, "per_day": 3},
    }

    def test_a_redeemer_spends_within_the_rules_daily_ceiling(self) -> None:
        free = run(specs=personas(redeemer=self.REDEEMER), players=4, days=10)
        capped = run(
            rules_with(rewards={"daily_limit_g": 200}),
            specs=personas(redeemer=self.REDEEMER),
            players=4,
            days=10,
        )
        spent, held = free["personas"]["redeemer"], capped["personas"]["redeemer"]
        # 296 g a day from day 2: two rewards a day fit the balance, and the ceiling allows two
        assert spent["totals_g"]["redeemed"] > 0
        assert max(held["series"]["redeemed_per_day_g"]) <= 200
        assert held["totals_g"]["redeemed"] <= spent["totals_g"]["redeemed"]
        assert held["redemptions_refused"] > 0 and spent["redemptions_refused"] == 0
        t = held["totals_g"]
        assert t["collected_own"] - t["redeemed"] == t["balance_at_end"]

    def test_no_redemptions_when_the_rules_switch_rewards_off(self) -> None:
        off = run(
            rules_with(rewards={"enabled": False}),
            specs=personas(redeemer=self.REDEEMER),
            players=4,
            days=10,
        )
        redeemer = off["personas"]["redeemer"]
        assert redeemer["totals_g"]["redeemed"] == 0 and redeemer["redemptions_refused"] > 0

    def test_the_builtin_mix_has_a_redeemer_who_spends(self) -> None:
        assert default_personas()["redeemer"].redeems is not None
        report = run(players=200, days=30)
        assert report["personas"]["redeemer"]["redemptions_per_player"] > 0
        assert report["personas"]["walker"]["totals_g"]["redeemed"] == 0


class TestMedianDays:
    def test_median_is_none_when_half_never_plant(self) -> None:
        from app.game.simulator.engine import PersonaTotals

        totals = PersonaTotals(days=10, players=4, first_tree_days=[3, 5])
        assert median_days(totals) is None
        totals.first_tree_days.append(9)
        assert median_days(totals) == 7.0


# --- personas files --------------------------------------------------------------------------


class TestPersonas:
    def test_builtin_mix_has_the_required_personas(self) -> None:
        assert set(default_personas()) >= {
            "walker",
            "commuter",
            "shopper",
            "hoarder",
            "early_bird",
        }
        early = default_personas()["early_bird"]
        assert early.sessions[0].at == time(7, 0) and early.sessions[0].steal_chance == 1.0

    def test_the_documented_builtins_are_the_builtins(self) -> None:
        docs = (Path(__file__).resolve().parents[2] / "docs" / "simulator.md").read_text("utf-8")
        listing = docs.split("### Built-in personas", 1)[1].split("```toml\n", 1)[1]
        data = tomllib.loads(listing.split("```", 1)[0])
        assert parse_personas({"replace": True, **data}) == default_personas()

    def test_the_documented_example_file_is_valid(self) -> None:
        docs = (Path(__file__).resolve().parents[2] / "docs" / "simulator.md").read_text("utf-8")
        example = docs.split("## Personas file", 1)[1].split("```toml\n", 1)[1]
        loaded = parse_personas(tomllib.loads(example.split("```", 1)[0]))
        assert "hoarder" not in loaded and loaded["wuhan_cyclist"].region == "wuhan"

    def test_a_file_overrides_builtins_key_by_key_and_adds_personas(self, tmp_path: Path) -> None:
        path = tmp_path / "personas.toml"
        path.write_text(
            "[personas.walker]\nsteps = [20000, 30000]\n"
            "[personas.hoarder]\nweight = 0\n"
            '[personas.cyclist]\nweight = 0.2\nregion = "wuhan"\n'
            '[[personas.cyclist.activities]]\nkind = "cycling"\nquantity = [3, 15]\n'
            'origin = "client"\n',
            encoding="utf-8",
        )
        loaded = load_personas(path)
        assert "hoarder" not in loaded
        assert loaded["walker"].steps == (20000, 30000)
        assert loaded["walker"].sessions == default_personas()["walker"].sessions
        assert loaded["cyclist"].activities[0].quantity == (3.0, 15.0)

    def test_every_problem_is_reported_with_its_key_path(self, tmp_path: Path) -> None:
        path = tmp_path / "personas.toml"
        path.write_text(
            '[personas.walker]\nsteps = [9, 1]\nstpes = 3\ntimezone = "Mars/Base"\n'
            "[[personas.walker.sessions]]\n"
            'at = "25:00"\n'
            '[personas."Bad Name"]\n',
            encoding="utf-8",
        )
        with pytest.raises(PersonasInvalid) as caught:
            load_personas(path)
        problems = {issue.loc: issue.msg for issue in caught.value.errors}
        assert problems["personas.walker.steps"].startswith("must be [low, high]")
        assert problems["personas.walker.stpes"] == "unknown key"
        assert "IANA" in problems["personas.walker.timezone"]
        assert "HH:MM" in problems["personas.walker.sessions[0].at"]
        assert "a-z" in problems['personas."Bad Name"']


# --- the command -------------------------------------------------------------------------------

runner = CliRunner()


def invoke(*args: str) -> Any:
    import typer

    app = typer.Typer()
    app.command()(simulate_command)
    return runner.invoke(app, list(args), catch_exceptions=False)


class TestCommand:
    def test_writes_report_and_charts(self, tmp_path: Path) -> None:
        out = tmp_path / "sim"
        result = invoke(
            "--rules", str(default_rules_path()), "--players", "80", "--days", "15",
            "--seed", "5", "--out", str(out),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
        assert report["config"]["players"] == 80 and report["config"]["seed"] == 5
        assert set(report["runs"][0]["personas"]) == set(default_personas())
        assert "comparison" not in report
        for name in (
            "energy_over_time.png",
            "energy_per_day.png",
            "collected_per_day.png",
            "stolen_per_day.png",
            "expired_per_day.png",
            "days_to_first_saxaul.png",
        ):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        # rich wraps long paths at the terminal's width (a longer tmp path under xdist): unwrap
        unwrapped = "".join(result.stdout.split())
        assert "early_bird" in unwrapped and "report.json" in unwrapped

    def test_compare_runs_both_files_side_by_side(self, tmp_path: Path) -> None:
        changed = tmp_path / "metro60.toml"
        changed.write_text(
            default_rules_path()
            .read_text(encoding="utf-8")
            .replace("energy_per_event_g = 52", "energy_per_event_g = 60"),
            encoding="utf-8",
        )
        out = tmp_path / "sim"
        result = invoke(
            "--rules", str(default_rules_path()), "--compare", str(changed),
            "--players", "80", "--days", "10", "--out", str(out),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
        before, after = report["runs"]
        assert before["rules"]["sha256"] != after["rules"]["sha256"]
        commuter = report["comparison"]["commuter"]["energy_per_day_g"]
        assert commuter["after"] > commuter["before"] and commuter["change"] > 0
        # the walkers do not ride the metro: the same players, the same energy
        assert report["comparison"]["walker"]["energy_per_day_g"]["change"] == 0
        assert "→" in result.stdout
        assert (out / "energy_over_time.png").exists()

    def test_same_seed_writes_the_same_bytes(self, tmp_path: Path) -> None:
        args = ["--rules", str(default_rules_path()), "--players", "60", "--days", "8"]
        invoke(*args, "--out", str(tmp_path / "a"))
        invoke(*args, "--out", str(tmp_path / "b"))
        assert (tmp_path / "a" / "report.json").read_bytes() == (
            tmp_path / "b" / "report.json"
        ).read_bytes()

    def test_personas_file_changes_the_population(self, tmp_path: Path) -> None:
        path = tmp_path / "personas.toml"
        path.write_text("replace = true\n[personas.runner]\nsteps = 30000\n", encoding="utf-8")
        out = tmp_path / "sim"
        result = invoke(
            "--rules", str(default_rules_path()), "--personas", str(path),
            "--players", "10", "--days", "3", "--out", str(out),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
        assert list(report["runs"][0]["personas"]) == ["runner"]

    def test_invalid_rules_are_listed_and_exit_1(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad.toml"
        bad.write_text('version = "x"\n[stealing]\nmax_share = 2\n', encoding="utf-8")
        result = invoke("--rules", str(bad), "--out", str(tmp_path / "sim"))
        assert result.exit_code == 1
        assert "stealing.max_share: must be ≤ 1" in result.stdout
        assert not (tmp_path / "sim").exists()

    def test_invalid_personas_are_listed_and_exit_1(self, tmp_path: Path) -> None:
        path = tmp_path / "personas.toml"
        path.write_text("[personas.walker]\nsteps = -5\n", encoding="utf-8")
        result = invoke(
            "--rules", str(default_rules_path()), "--personas", str(path),
            "--out", str(tmp_path / "sim"),
        )  # fmt: skip
        assert result.exit_code == 1
        assert "personas.walker.steps" in result.stdout


# --- the guardrail -----------------------------------------------------------------------------


class TestGuardrail:
    def test_a_walking_cap_typo_is_refused_with_reasons(self) -> None:
        reasons = guardrail_check(
            load_rules().rules, rules_with(activities={"walking": {"daily_cap_g": 30}}), 0.2
        )
        by_persona = {reason.split(":")[0]: reason for reason in reasons}
        assert {"walker", "commuter", "early_bird"} <= set(by_persona)
        assert "hoarder" not in by_persona  # never plants, under either rules
        assert by_persona["walker"].startswith("walker: days to first saxaul ")
        assert by_persona["walker"].endswith(", threshold 20%")

    def test_a_tiny_change_passes(self) -> None:
        old = load_rules().rules
        new = rules_with(activities={"metro": {"energy_per_event_g": 53}})
        assert guardrail_check(old, new, 0.2, players=100, days=150) == []

    def test_the_reason_spells_out_the_change(self) -> None:
        old = load_rules().rules
        new = rules_with(activities={"walking": {"energy_per_unit_g": 0.01}})
        before = simulate_days_to_first_tree(old, players=100, days=120)
        after = simulate_days_to_first_tree(new, players=100, days=120)
        assert before["walker"] is not None and after["walker"] is not None
        change = (after["walker"] - before["walker"]) / before["walker"]
        assert change > 0.2
        reasons = guardrail_check(old, new, 0.2, players=100, days=120)
        assert (
            f"walker: days to first saxaul {before['walker']:g} → {after['walker']:g} "
            f"({change:+.0%}), threshold 20%"
        ) in reasons

    def test_accepts_paths_and_loaded_files(self, tmp_path: Path) -> None:
        path = tmp_path / "same.toml"
        path.write_text(default_rules_path().read_text(encoding="utf-8"), encoding="utf-8")
        assert guardrail_check(default_rules_path(), load_rules(path), players=60, days=60) == []
