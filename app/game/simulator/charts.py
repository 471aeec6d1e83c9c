"""PNG charts of a simulation report (matplotlib, Agg: no display needed).

- ``energy_over_time.png``: energy gathered so far per player, one line per persona, with the
  price of a saxaul marked; with two runs, side by side on the same scale.
- ``energy_per_day.png``: energy minted per player and day (income), per persona.
- ``collected_per_day.png``, ``stolen_per_day.png``, ``expired_per_day.png``: where energy went
  each day, per player and persona (own collects, taken from friends, lost to expiry).
- ``days_to_first_saxaul.png``: median days to the first saxaul per persona (grouped bars for
  two runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything draws: files only, never a window

from matplotlib.axes import Axes
from matplotlib.figure import Figure

_METADATA = {"Software": None}  # keep PNGs free of the matplotlib version


def _title(run: dict[str, Any]) -> str:
    rules = run["rules"]
    return f"{rules['label']} ({rules['sha256'][:12]})"


def _lines(axes: Axes, run: dict[str, Any], series: str, saxaul_g: int | None) -> None:
    for name, summary in run["personas"].items():
        values = summary["series"][series]
        axes.plot(range(1, len(values) + 1), values, label=name, linewidth=1.6)
    if saxaul_g is not None:
        axes.axhline(saxaul_g, color="grey", linestyle="--", linewidth=1)
        axes.annotate(
            f"saxaul {saxaul_g:,} g",
            (1, saxaul_g),
            textcoords="offset points",
            xytext=(2, 4),
            color="grey",
            fontsize=8,
        )
    axes.set_title(_title(run), fontsize=10)
    axes.set_xlabel("day")
    axes.grid(alpha=0.3)


def _side_by_side(report: dict[str, Any], series: str, ylabel: str, saxaul: bool) -> Figure:
    runs = report["runs"]
    figure = Figure(figsize=(7 * len(runs), 5), dpi=100, layout="constrained")
    axes_list = figure.subplots(1, len(runs), sharey=True, squeeze=False)[0]
    for axes, run in zip(axes_list, runs, strict=True):
        _lines(axes, run, series, report["saxaul_g"] if saxaul else None)
    axes_list[0].set_ylabel(ylabel)
    axes_list[-1].legend(loc="upper left", fontsize=8)
    return figure


def _first_saxaul(report: dict[str, Any]) -> Figure:
    runs = report["runs"]
    names = list(runs[0]["personas"])
    figure = Figure(figsize=(max(6, 1.4 * len(names) * len(runs)), 4.5), dpi=100)
    axes = figure.subplots()
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        xs = [n + (i - (len(runs) - 1) / 2) * width for n in range(len(names))]
        days = [run["personas"].get(name, {}).get("days_to_first_saxaul") for name in names]
        bars = axes.bar(xs, [d or 0 for d in days], width, label=_title(run))
        for bar, value in zip(bars, days, strict=True):
            axes.annotate(
                "never" if value is None else f"{value:g}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    axes.set_xticks(range(len(names)), names)
    axes.set_ylabel(f"median days to the first saxaul (within {report['config']['days']})")
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def write_charts(report: dict[str, Any], out: Path) -> list[Path]:
    """Draw the charts of ``report`` into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "energy_over_time.png": _side_by_side(
            report, "gathered_cumulative_g", "energy gathered so far per player (g)", True
        ),
        "energy_per_day.png": _side_by_side(
            report, "energy_per_day_g", "energy minted per player and day (g)", False
        ),
        "collected_per_day.png": _side_by_side(
            report, "collected_per_day_g", "collected from own balls per player and day (g)", False
        ),
        "stolen_per_day.png": _side_by_side(
            report, "stolen_per_day_g", "taken from friends per player and day (g)", False
        ),
        "expired_per_day.png": _side_by_side(
            report, "expired_per_day_g", "expired per player and day (g)", False
        ),
        "days_to_first_saxaul.png": _first_saxaul(report),
    }
    written = []
    for name, figure in figures.items():
        path = out / name
        figure.savefig(path, format="png", metadata=_METADATA)
        written.append(path)
    return written
