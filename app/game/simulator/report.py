"""What a simulation says, per persona: as ``report.json`` and as a table in the terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.game.simulator.engine import SAXAUL_G, PersonaTotals, SimulationResult

REPORT_FORMAT = 1


def median_days(totals: PersonaTotals) -> float | None:
    """Median over the persona's players of the day they planted their first saxaul; players
    who never did count as "later than the run", so None when half of them or more never did."""
    days = sorted(totals.first_tree_days)
    count = totals.players
    if count == 0:
        return None

    def nth(i: int) -> float | None:
        return float(days[i]) if i < len(days) else None

    if count % 2:
        return nth(count // 2)
    low, high = nth(count // 2 - 1), nth(count // 2)
    return None if low is None or high is None else (low + high) / 2


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _grams(value: float) -> float:
    return round(value, 2)


def persona_summary(totals: PersonaTotals) -> dict[str, Any]:
    """One persona's numbers (per player and day where it says so)."""
    player_days = max(1, totals.players * totals.days)
    players = max(1, totals.players)
    income = totals.minted_g + totals.water_received_g
    cumulative, running = [], 0
    for gathered in totals.gathered_by_day:
        running += gathered
        cumulative.append(_grams(running / players))
    return {
        "players": totals.players,
        "energy_per_day_g": _grams(totals.minted_g / player_days),
        "gathered_per_day_g": _grams(
            (totals.collected_own_g + totals.taken_from_friends_g) / player_days
        ),
        "days_to_first_saxaul": median_days(totals),
        "first_saxaul_share": _share(len(totals.first_tree_days), totals.players),
        "saxauls_per_player": round(totals.trees / players, 3),
        "income_lost_to_friends_share": _share(totals.lost_to_friends_g, income),
        "taken_from_friends_per_day_g": _grams(totals.taken_from_friends_g / player_days),
        "expired_per_day_g": _grams(totals.expired_g / player_days),
        "expired_share": _share(totals.expired_g, income),
        "watering_given_per_day_g": _grams(totals.water_given_g / player_days),
        "watering_received_per_day_g": _grams(totals.water_received_g / player_days),
        "cap_hit_rate": _share(totals.capped_player_days, player_days),
        "redeemed_per_day_g": _grams(totals.redeemed_g / player_days),
        "redemptions_per_player": round(totals.redemptions / players, 3),
        "redemptions_refused": totals.redemptions_refused,
        "caps": {
            kind: {
                "events": k.events,
                "capped": k.capped,
                "rate": _share(k.capped, k.events),
                "capped_g": k.capped_g,
                "minted_g": k.minted_g,
            }
            for kind, k in sorted(totals.kinds.items())
        },
        "rejected": dict(sorted(totals.rejected.items())),
        "totals_g": {
            "minted": totals.minted_g,
            "watering_received": totals.water_received_g,
            "collected_own": totals.collected_own_g,
            "taken_from_friends": totals.taken_from_friends_g,
            "lost_to_friends": totals.lost_to_friends_g,
            "expired": totals.expired_g,
            "live_at_end": totals.live_at_end_g,
            "watering_given": totals.water_given_g,
            "planted": totals.trees * SAXAUL_G,
            "redeemed": totals.redeemed_g,
            "balance_at_end": totals.balance_at_end_g,
        },
        "series": {
            "energy_per_day_g": [_grams(g / players) for g in totals.minted_by_day],
            "collected_per_day_g": [_grams(g / players) for g in totals.collected_by_day],
            "stolen_per_day_g": [_grams(g / players) for g in totals.stolen_by_day],
            "expired_per_day_g": [_grams(g / players) for g in totals.expired_by_day],
            "redeemed_per_day_g": [_grams(g / players) for g in totals.redeemed_by_day],
            "gathered_cumulative_g": cumulative,
        },
    }


def run_summary(result: SimulationResult, rules_file: str | None = None) -> dict[str, Any]:
    return {
        "rules": {"label": result.rules_label, "sha256": result.rules_sha256, "file": rules_file},
        "personas": {name: persona_summary(t) for name, t in result.totals.items()},
    }


_COMPARED = (
    "energy_per_day_g",
    "days_to_first_saxaul",
    "income_lost_to_friends_share",
    "expired_per_day_g",
    "cap_hit_rate",
)


def relative_change(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before == 0:
        return None
    return round((after - before) / before, 4)


def build_report(
    results: list[SimulationResult], rules_files: list[str | None] | None = None
) -> dict[str, Any]:
    """The whole report: configuration, personas, one entry per run and, for two runs, the
    change of the headline numbers per persona. Holds nothing that varies between two runs
    with the same inputs (no clock, no timings)."""
    first = results[0]
    config = first.config
    files = rules_files or [None] * len(results)
    runs = [run_summary(r, f) for r, f in zip(results, files, strict=True)]
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "config": {
            "players": config.players,
            "days": config.days,
            "seed": config.seed,
            "start": config.start.isoformat(),
            "community_size": config.community_size,
        },
        "saxaul_g": SAXAUL_G,
        "personas": {
            name: spec.model_dump(mode="json", exclude_defaults=False)
            for name, spec in first.personas.items()
        },
        "runs": runs,
    }
    if len(runs) == 2:
        before, after = runs[0]["personas"], runs[1]["personas"]
        report["comparison"] = {
            name: {
                key: {
                    "before": before[name][key],
                    "after": after[name][key],
                    "change": relative_change(before[name][key], after[name][key]),
                }
                for key in _COMPARED
            }
            for name in before
            if name in after
        }
    return report


def write_report(report: dict[str, Any], out: Path) -> Path:
    """``report.json`` in ``out``: same inputs, same bytes."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# --- the terminal -----------------------------------------------------------------------------


def _days(value: float | None) -> str:
    return "never" if value is None else f"{value:g}"


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _g(value: float) -> str:
    return f"{value:,.1f} g"


_COLUMNS: list[tuple[str, str, Any]] = [
    ("energy / day", "energy_per_day_g", _g),
    ("days to 1st saxaul", "days_to_first_saxaul", _days),
    ("lost to friends", "income_lost_to_friends_share", _pct),
    ("taken / day", "taken_from_friends_per_day_g", _g),
    ("expired / day", "expired_per_day_g", _g),
    ("cap-hit days", "cap_hit_rate", _pct),
    ("rewards / day", "redeemed_per_day_g", _g),
]


def _change(before: Any, after: Any, fmt: Any) -> str:
    text = f"{fmt(before)} → {fmt(after)}"
    change = relative_change(before, after)
    if change:
        text += f" ({change:+.0%})"
    return text


def print_report(report: dict[str, Any], console: Console) -> None:
    """A table per persona: one run, or two side by side ("before → after")."""
    runs = report["runs"]
    config = report["config"]
    labels = [f"{escape(r['rules']['label'])} ({r['rules']['sha256'][:12]})" for r in runs]
    title = " vs ".join(labels)
    table = Table(
        title=f"{title}: {config['players']:,} players, {config['days']} days, "
        f"seed {config['seed']}",
        title_justify="left",
    )
    table.add_column("persona", no_wrap=True)
    table.add_column("players", justify="right")
    for header, _, _ in _COLUMNS:
        table.add_column(header, justify="right")
    first = runs[0]["personas"]
    for name, summary in first.items():
        cells = [escape(name), f"{summary['players']:,}"]
        for _, key, fmt in _COLUMNS:
            if len(runs) == 2 and name in runs[1]["personas"]:
                cells.append(_change(summary[key], runs[1]["personas"][name][key], fmt))
            else:
                cells.append(fmt(summary[key]))
        table.add_row(*cells)
    console.print(table)
    console.print(
        "energy / day: minted from the persona's own activities after caps, per player; "
        "days to 1st saxaul: median day the balance reached "
        f"{report['saxaul_g']:,} g; lost to friends: share of income friends collected; "
        "cap-hit days: share of player-days on which a cap cut an activity.",
        style="dim",
    )
