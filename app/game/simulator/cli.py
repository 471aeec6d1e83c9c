"""``canopy simulate``: run the economy simulator from the command line."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from app.game.simulator.engine import DEFAULT_START, SimulationConfig, SimulationResult
from app.game.simulator.engine import simulate as run_simulation
from app.game.simulator.personas import PersonasInvalid, PersonaSpec, load_personas
from app.game.simulator.report import build_report, print_report, write_report
from app.rules.loader import FILE_LOC, LoadedRules, RuleIssue, RulesInvalid, load_rules

# Runs this long (players times days) get a progress bar.
_LONG_RUN = 100_000


def _fail(console: Console, file: Path, issues: list[RuleIssue]) -> NoReturn:
    for issue in issues:
        console.print(f"{escape(issue.loc)}: {escape(issue.msg)}")
    noun = "error" if len(issues) == 1 else "errors"
    console.print(f"{escape(str(file))}: {len(issues)} {noun}, not valid")
    raise typer.Exit(1)


def _rules(console: Console, file: Path) -> LoadedRules:
    try:
        return load_rules(file)
    except RulesInvalid as exc:
        _fail(console, file, exc.errors)
    except OSError as exc:
        _fail(console, file, [RuleIssue(loc=FILE_LOC, msg=f"cannot read {file}: {exc.strerror}")])


def _personas(console: Console, file: Path | None) -> dict[str, PersonaSpec] | None:
    if file is None:
        return None
    try:
        return load_personas(file)
    except PersonasInvalid as exc:
        _fail(console, file, exc.errors)
    except OSError as exc:
        _fail(console, file, [RuleIssue(loc=FILE_LOC, msg=f"cannot read {file}: {exc.strerror}")])


def simulate(
    rules: Annotated[
        Path, typer.Option("--rules", help="The rules file (TOML) to simulate.", dir_okay=False)
    ],
    compare: Annotated[
        Path | None,
        typer.Option(
            "--compare",
            help="A second rules file, run with the very same players; shown side by side.",
            dir_okay=False,
        ),
    ] = None,
    players: Annotated[int, typer.Option(min=1, help="How many players.")] = 2_000,
    days: Annotated[int, typer.Option(min=1, max=3_650, help="How many days.")] = 90,
    seed: Annotated[int, typer.Option(help="Same seed, same players, same report.")] = 1,
    personas: Annotated[
        Path | None,
        typer.Option(
            "--personas",
            help="A personas file (TOML) that changes or adds personas (docs/simulator.md).",
            dir_okay=False,
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Where report.json and the charts go.", file_okay=False)
    ] = Path("sim-out"),
    start: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help=f"First day [default: {DEFAULT_START}]."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Processes to use [default: every core for big runs]."),
    ] = None,
) -> None:
    """Simulate the energy economy under a rules file: personas walk, commute, shop, collect,
    steal, water and plant through the service's own rules code. Prints a table per persona
    and writes report.json and PNG charts into --out."""
    console = Console(highlight=False)  # made here so it writes to the current sys.stdout
    files = [rules] if compare is None else [rules, compare]
    loaded = [_rules(console, file) for file in files]
    specs = _personas(console, personas)
    config = SimulationConfig(
        players=players,
        days=days,
        seed=seed,
        start=start.date() if start is not None else DEFAULT_START,
        workers=workers,
    )
    results: list[SimulationResult] = []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("players"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        auto_refresh=False,  # no refresh thread: worker processes are forked during the run
        disable=players * days < _LONG_RUN,
    )
    with progress:
        for file, rules_file in zip(files, loaded, strict=True):
            task = progress.add_task(f"simulating {escape(file.name)}", total=players)

            def advance(done: int, task: TaskID = task) -> None:
                progress.advance(task, done)
                progress.refresh()

            results.append(run_simulation(rules_file, config, specs, progress=advance))
    report = build_report(results, [str(file) for file in files])
    print_report(report, console)
    written = [write_report(report, out)]
    from app.game.simulator.charts import write_charts  # matplotlib only when drawing

    written += write_charts(report, out)
    for path in written:
        console.print(f"wrote {escape(str(path))}")
