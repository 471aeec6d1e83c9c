"""``canopy rules``: commands for game designers' rules files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.rules.diff import describe_changes
from app.rules.loader import (
    FILE_LOC,
    LoadedRules,
    RuleIssue,
    RulesInvalid,
    load_rules,
    rules_warnings,
)
from app.rules.schema import ActivityRules, EnergyFactor

rules_app = typer.Typer(
    help="Check, compare and publish game rules files (TOML).", no_args_is_help=True
)


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


@rules_app.command("diff")
def diff(
    old: Annotated[Path, typer.Argument(help="The rules in force (or any base).", dir_okay=False)],
    new: Annotated[Path, typer.Argument(help="The changed rules.", dir_okay=False)],
) -> None:
    """What changes from OLD to NEW, one line per change ("metro: 52 g → 60 g per event").
    Exit 0 either way; 1 if a file is invalid."""
    loaded = []
    for file in (old, new):
        try:
            loaded.append(load_rules(file))
        except RulesInvalid as exc:
            _fail(file, exc.errors)
        except OSError as exc:
            _fail(file, [RuleIssue(loc=FILE_LOC, msg=f"cannot read {file}: {exc.strerror}")])
    changes = describe_changes(loaded[0].rules, loaded[1].rules)
    if not changes:
        typer.echo(
            "no changes in behaviour"
            + ("" if loaded[0].sha256 == loaded[1].sha256 else " (the texts differ only in form)")
        )
        return
    for line in changes:
        typer.echo(line)


@rules_app.command("publish")
def publish_cmd(
    file: Annotated[Path, typer.Argument(help="The rules file to publish.", dir_okay=False)],
    effective_from: Annotated[
        datetime | None,
        typer.Option("--effective-from", help="When it takes effect (ISO 8601 with offset)."),
    ] = None,
    simulate: Annotated[
        bool, typer.Option("--simulate", help="Refuse changes with a big simulated effect.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Publish despite the simulation.")] = False,
) -> None:
    """Publish FILE as a new version in the configured database; running services switch to it
    at --effective-from (default: now) without a restart."""
    import asyncio

    from app.admin import audit
    from app.config import get_settings
    from app.core.clock import SystemClock
    from app.core.db import create_engine, create_sessionmaker
    from app.core.errors import CanopyError
    from app.core.redis import create_redis
    from app.core.services import resolve_services
    from app.rules.hot import announce
    from app.rules.registry import load_registry
    from app.rules.service import publish_text

    if effective_from is not None and effective_from.tzinfo is None:
        typer.echo("--effective-from needs an offset, e.g. 2026-12-01T07:00:00+08:00", err=True)
        raise typer.Exit(2)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(file, [RuleIssue(loc=FILE_LOC, msg=f"cannot read {file}: {exc.strerror}")])
    settings = get_settings()
    services = resolve_services(settings)

    async def run() -> None:
        engine = create_engine(services.database_url, settings)
        redis = create_redis(services.redis_url)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                registry = await load_registry(session)
                published = await publish_text(
                    session,
                    text,
                    effective_from=effective_from,
                    now=SystemClock().now(),
                    registry=registry,
                    simulate=simulate,
                    force=force,
                    source="cli",
                )
                pv = published.version
                if published.created:
                    await audit.record(
                        session,
                        action="rules.published",
                        target=f"rules:{pv.version}",
                        summary=f"{pv.label!r} sha256 {pv.sha256[:12]} from {file.name}, "
                        f"effective from {pv.effective_from.isoformat()}"
                        + (" (guardrail overridden)" if force else ""),
                        at=pv.created_at,
                        actor="cli",
                    )
            v = published.version
            assert v.version is not None
            if published.created:
                await announce(redis, v.version)
                typer.echo(
                    f"published version {v.version} ({v.sha256[:12]}), "
                    f"effective from {v.effective_from.isoformat()}"
                )
            else:
                typer.echo(
                    f"already published as version {v.version} ({v.sha256[:12]}), the latest; "
                    "nothing changed"
                )
        finally:
            await redis.aclose()
            await engine.dispose()

    try:
        asyncio.run(run())
    except CanopyError as exc:
        for error in exc.extra.get("errors", []):
            typer.echo(f"{error['loc']}: {error['msg']}")
        for reason in exc.extra.get("reasons", []):
            typer.echo(reason)
        typer.echo(f"not published: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    finally:
        services.stop_embedded()


@rules_app.command("pull")
def pull_cmd(
    version: Annotated[
        int | None,
        typer.Option("--version", "-v", min=1, help="This version instead of the one in force."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", dir_okay=False, help="Write here instead of stdout."),
    ] = None,
) -> None:
    """Write the exact text of the rules in force now (or of --version) from the configured
    database, so designers edit what is live. Pulling an earlier version and publishing it is
    how a change is rolled back."""
    import asyncio

    from sqlalchemy import select
    from sqlmodel import col

    from app.config import get_settings
    from app.core.clock import SystemClock
    from app.core.db import create_engine, create_sessionmaker
    from app.core.services import resolve_services
    from app.rules.models import RulesVersion
    from app.rules.registry import load_registry

    settings = get_settings()
    services = resolve_services(settings)

    async def run() -> RulesVersion | None:
        engine = create_engine(services.database_url, settings)
        try:
            async with create_sessionmaker(engine)() as session:
                wanted = version
                if wanted is None:
                    registry = await load_registry(session)
                    if not registry.versions:
                        return None
                    wanted = registry.at(SystemClock().now()).version
                found = await session.execute(
                    select(RulesVersion).where(col(RulesVersion.version) == wanted)
                )
                return found.scalars().first()
        finally:
            await engine.dispose()

    try:
        found = asyncio.run(run())
    finally:
        services.stop_embedded()
    if found is None:
        typer.echo(f"no rules version {version}" if version else "no rules published yet", err=True)
        raise typer.Exit(1)
    data = found.text.encode("utf-8")
    if out is None:
        typer.echo(found.text, nl=False)
    else:
        out.write_bytes(data)  # bytes: the file hashes to the version's sha256
    typer.echo(
        f"version {found.version} ({found.sha256[:12]}, from the {found.source}), effective "
        f"from {found.effective_from.isoformat()}" + (f", written to {out}" if out else ""),
        err=True,
    )


@rules_app.command("sync")
def sync_cmd(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="The rules file [default: CANOPY_RULES, else the packaged rules].", dir_okay=False
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Publish the file even over a newer version from the API and despite the "
            "simulation guardrail.",
        ),
    ] = False,
) -> None:
    """What every start does with the rules file: publish it when it changed since the version
    it last held, unless a newer version came through the API or `rules publish` (or the
    guardrail refuses it). Exit 1 when the changed file was not published."""
    import asyncio

    from app.config import get_settings
    from app.core.clock import SystemClock
    from app.core.db import create_engine, create_sessionmaker
    from app.core.redis import create_redis
    from app.core.services import resolve_services
    from app.rules.hot import announce
    from app.rules.service import FileOutcome, FileSync, sync_rules_file

    settings = get_settings()
    path = file or settings.rules
    try:
        loaded = load_rules(path)
    except RulesInvalid as exc:
        _fail(path or Path("rules/default.toml"), exc.errors)
    except OSError as exc:
        _fail(path or Path("?"), [RuleIssue(loc=FILE_LOC, msg=f"cannot read: {exc.strerror}")])
    services = resolve_services(settings)

    async def run() -> FileSync:
        engine = create_engine(services.database_url, settings)
        redis = create_redis(services.redis_url)
        try:
            now = SystemClock().now()
            async with create_sessionmaker(engine)() as session, session.begin():
                sync = await sync_rules_file(session, loaded, now, force=force)
            if sync.outcome in (FileOutcome.PUBLISHED, FileOutcome.SEEDED):
                assert sync.version is not None and sync.version.version is not None
                await announce(redis, sync.version.version)
            return sync
        finally:
            await redis.aclose()
            await engine.dispose()

    try:
        sync = asyncio.run(run())
    finally:
        services.stop_embedded()
    typer.echo(sync.message)
    if sync.outcome in (FileOutcome.KEPT_NEWER, FileOutcome.REFUSED):
        raise typer.Exit(1)
