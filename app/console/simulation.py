"""The designers' simulator in the page: a draft against the rules in force, the very same players
under both (``canopy simulate --compare``), turned into charts and the report table."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field

from app.console.charts import Series, grouped_bars, lines, nice_max
from app.game.simulator import SimulationConfig, simulate
from app.game.simulator.report import build_report, relative_change
from app.rules.loader import LoadedRules

# a page waits for the answer: keep runs to seconds (the CLI has no such limits)
MAX_PLAYERS = 2_000
MAX_DAYS = 365
# one run at a time per process: a simulation is CPU work that must not starve the API
_ONE_AT_A_TIME = asyncio.Semaphore(1)


class SimulationIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    players: Annotated[int, Field(ge=1, le=MAX_PLAYERS)] = 500
    days: Annotated[int, Field(ge=1, le=MAX_DAYS)] = 90
    seed: Annotated[int, Field(ge=0, le=2_147_483_647)] = 1


@dataclass(frozen=True)
class Cell:
    before: str
    after: str
    change: float | None

    @property
    def change_label(self) -> str:
        """``+12%``, or a decimal for small changes (``-0.4%``); empty for none."""
        if self.change is None or abs(self.change) < 0.0005:
            return ""
        return f"{self.change:+.1%}" if abs(self.change) < 0.1 else f"{self.change:+.0%}"


@dataclass(frozen=True)
class Row:
    persona: str
    players: int
    cells: list[Cell]


@dataclass(frozen=True)
class SimulationView:
    config: dict[str, Any]
    runs: list[str]
    personas: list[str]
    saxaul_g: int
    first_tree: Markup
    per_day: list[tuple[str, Markup]]
    minted_lines: list[tuple[str, Markup]]
    gathered_lines: list[tuple[str, Markup]]
    # collected / stolen / expired per player, day by day: (title, [(run, chart)])
    flow_lines: list[tuple[str, list[tuple[str, Markup]]]]
    columns: list[str]
    rows: list[Row]


def _days(value: float | None) -> str:
    return "never" if value is None else f"{value:g} days"


def _g(value: float) -> str:
    return f"{value:,.0f} g" if float(value).is_integer() else f"{value:,.1f} g"


def _pct(value: float) -> str:
    return f"{value:.1%}"


_COLUMNS: list[tuple[str, str, Any]] = [
    ("energy / day", "energy_per_day_g", _g),
    ("days to 1st saxaul", "days_to_first_saxaul", _days),
    ("lost to friends", "income_lost_to_friends_share", _pct),
    ("taken / day", "taken_from_friends_per_day_g", _g),
    ("expired / day", "expired_per_day_g", _g),
    ("cap-hit days", "cap_hit_rate", _pct),
]


# the energy flows shown day by day, beside minted: (title, series key, axis label)
_FLOWS = (
    ("Collected from their own forest", "collected_per_day_g", "g collected per player"),
    ("Stolen (taken from friends)", "stolen_per_day_g", "g taken per player"),
    ("Expired before anyone collected it", "expired_per_day_g", "g expired per player"),
)


def _per_player_day(summary: dict[str, Any], total: str, days: int) -> float:
    player_days = max(1, int(summary["players"]) * days)
    return round(float(summary["totals_g"][total]) / player_days, 2)


def view(report: dict[str, Any], run_names: list[str]) -> SimulationView:
    """Charts and table of a two-run report (the rules in force, then the draft)."""
    runs = report["runs"]
    days = report["config"]["days"]
    personas = list(runs[0]["personas"])

    def values(run: dict[str, Any], pick: Any) -> list[float | None]:
        return [pick(run["personas"][p]) if p in run["personas"] else None for p in personas]

    first_tree = grouped_bars(
        "first-tree",
        "Median days to the first saxaul, per persona",
        personas,
        [
            Series(name, values(run, lambda s: s["days_to_first_saxaul"]))
            for name, run in zip(run_names, runs, strict=True)
        ],
        lambda d: f"{d:g} d",
    )
    measures = [
        ("Minted", lambda s: s["energy_per_day_g"]),
        ("Collected (own)", lambda s: _per_player_day(s, "collected_own", days)),
        ("Stolen (taken from friends)", lambda s: s["taken_from_friends_per_day_g"]),
        ("Expired", lambda s: s["expired_per_day_g"]),
    ]
    per_day = [
        (
            title,
            grouped_bars(
                f"per-day-{i}",
                f"{title}: grams per player and day",
                personas,
                [
                    Series(name, values(run, pick))
                    for name, run in zip(run_names, runs, strict=True)
                ],
                _g,
                missing="—",
            ),
        )
        for i, (title, pick) in enumerate(measures)
    ]

    def line_charts(key: str, label: str, threshold: bool) -> list[tuple[str, Markup]]:
        peak = max(
            (v for run in runs for s in run["personas"].values() for v in s["series"][key]),
            default=0.0,
        )
        if threshold:
            peak = max(peak, report["saxaul_g"])
        top = nice_max(peak)  # the same scale for both runs
        return [
            (
                name,
                lines(
                    f"{key}-{i}",
                    f"{label} — {name}",
                    [Series(p, run["personas"][p]["series"][key]) for p in run["personas"]],
                    label,
                    top=top,
                    threshold=(report["saxaul_g"], f"saxaul {report['saxaul_g']:,} g")
                    if threshold
                    else None,
                ),
            )
            for i, (name, run) in enumerate(zip(run_names, runs, strict=True))
        ]

    rows = []
    for persona in personas:
        before = runs[0]["personas"][persona]
        after = runs[1]["personas"].get(persona, before)
        rows.append(
            Row(
                persona,
                before["players"],
                [
                    Cell(
                        fmt(before[key]), fmt(after[key]), relative_change(before[key], after[key])
                    )
                    for _, key, fmt in _COLUMNS
                ],
            )
        )
    return SimulationView(
        config=report["config"],
        runs=run_names,
        personas=personas,
        saxaul_g=report["saxaul_g"],
        first_tree=first_tree,
        per_day=per_day,
        minted_lines=line_charts("energy_per_day_g", "g minted per player", False),
        flow_lines=[(title, line_charts(key, label, False)) for title, key, label in _FLOWS],
        gathered_lines=line_charts("gathered_cumulative_g", "g gathered per player", True),
        columns=[c[0] for c in _COLUMNS],
        rows=rows,
    )


def _report(active: LoadedRules, draft: LoadedRules, form: SimulationIn) -> dict[str, Any]:
    config = SimulationConfig(players=form.players, days=form.days, seed=form.seed, workers=1)
    results = [simulate(active, config), simulate(draft, config)]
    return build_report(results)


async def compare(
    active: LoadedRules, draft: LoadedRules, form: SimulationIn, run_names: list[str]
) -> SimulationView:
    """Simulate both rule sets with the same players (off the event loop, one run at a time)."""
    async with _ONE_AT_A_TIME:
        report = await asyncio.to_thread(_report, active, draft, form)
    return view(report, run_names)
