"""``canopy rules``: commands for game designers' rules files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.game.rules.loader import (
    FILE_LOC,
    LoadedRules,
    RuleIssue,
    RulesInvalid,
    load_rules,
    rules_warnings,
)
from app.game.rules.schema import ActivityRules, EnergyFactor

rules_app = typer.Typer(help="Check game rules files (TOML).", no_args_is_help=True)


@rules_app.callback()
def _rules() -> None:
    """Check game rules files (TOML)."""
    # A callback keeps `check` a subcommand even while it is the only one.


@rules_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="The rules file to check.", dir_okay=False)],
) -> None:
    """Validate a rules file: print a summary and exit 0, or print each error as
    "key.path: message" and exit 1."""
    try:
        loaded = load_rules(file)
    except RulesInvalid as exc:
        _fail(file, exc.errors)
    except OSError as exc:
        _fail(file, [RuleIssue(loc=FILE_LOC, msg=f"cannot read {file}: {exc.strerror}")])
    _summary(file, loaded)


def _fail(file: Path, issues: list[RuleIssue]) -> NoReturn:
    for issue in issues:
        typer.echo(f"{issue.loc}: {issue.msg}")
    noun = "error" if len(issues) == 1 else "errors"
    typer.echo(f"{file}: {len(issues)} {noun}, not valid")
    raise typer.Exit(1)


def _summary(file: Path, loaded: LoadedRules) -> None:
    rules = loaded.rules
    console = Console(highlight=False)  # made here so it writes to the current sys.stdout
    console.print(f"{escape(str(file))}: valid")
    console.print(f"version  {escape(rules.version)}")
    console.print(f"sha256   {loaded.sha256[:12]}")
    console.print(f"timezone {escape(rules.timezone)}")
    table = Table(title=f"{len(rules.activities)} activity kinds", title_justify="left")
    for column in ("kind", "energy", "caps", "sources"):
        table.add_column(column, no_wrap=True)
    table.add_column("regions")
    for kind, activity in sorted(rules.activities.items()):
        regions = ", ".join(
            f"{name} {_energy(activity.for_region(name))}" for name in sorted(activity.regions)
        )
        table.add_row(
            escape(kind),
            escape(_energy(activity.for_region(None))),
            _caps(activity),
            "+".join(activity.sources),
            escape(regions) or "—",
        )
    console.print(table)
    for warning in rules_warnings(rules):
        console.print(f"warning: {escape(warning.loc)}: {escape(warning.msg)}")


def _energy(factor: EnergyFactor) -> str:
    if factor.energy_per_event_g is not None:
        return f"{factor.energy_per_event_g} g/event"
    return f"{factor.energy_per_unit_g:g} g/{factor.unit}"


def _caps(activity: ActivityRules) -> str:
    caps = []
    if activity.daily_cap_g is not None:
        caps.append(f"{activity.daily_cap_g} g/day")
    if activity.daily_cap_count is not None:
        caps.append(f"{activity.daily_cap_count}/day")
    if activity.monthly_cap_count is not None:
        caps.append(f"{activity.monthly_cap_count}/month")
    return ", ".join(caps) or "—"
