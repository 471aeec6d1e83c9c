"""Secrets kept encrypted at rest, across domains, and ``canopy keys``: check that every one of
them reads with the configured keys, and re-encrypt them with the current key after a rotation.

Rotating ``CANOPY_ENCRYPTION_KEY``: set the new key, move the old one to
``CANOPY_ENCRYPTION_PREVIOUS_KEYS`` (both still decrypt), restart, run ``canopy keys rotate``,
then drop the old key once ``canopy keys check`` says nothing needs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from cryptography.fernet import InvalidToken
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.security import Keys


@dataclass(frozen=True)
class EncryptedColumn:
    """A column whose values are ``Keys.encrypt`` tokens, with the key that finds its row."""

    table: str
    key: tuple[str, ...]
    column: str

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"

    def sa_table(self) -> sa.TableClause:
        return sa.table(self.table, *(sa.column(c) for c in (*self.key, self.column)))


# Every encrypted column (a test checks that every binary column of the models is listed here).
ENCRYPTED_COLUMNS: tuple[EncryptedColumn, ...] = (
    EncryptedColumn("partners", ("id",), "webhook_secret_encrypted"),
    EncryptedColumn("idempotency_keys", ("owner", "key"), "response"),
    EncryptedColumn("reward_codes", ("id",), "code_encrypted"),
    EncryptedColumn("redemptions", ("id",), "code_encrypted"),
)


@dataclass
class ColumnReport:
    """What ``check`` or ``rotate`` found in one column."""

    current: int = 0  # readable with CANOPY_ENCRYPTION_KEY itself
    older: int = 0  # readable only with an older key (rotate re-encrypts these)
    unreadable: int = 0  # no configured key reads these
    rotated: int = 0
    unreadable_keys: list[tuple[Any, ...]] = field(default_factory=list)


async def _batches(
    engine: AsyncEngine,
    spec: EncryptedColumn,
    keys: Keys,
    *,
    rotate: bool,
    batch: int,
    report: ColumnReport,
) -> None:
    table = spec.sa_table()
    key_cols = [table.c[c] for c in spec.key]
    value = table.c[spec.column]
    after: tuple[Any, ...] | None = None
    while True:
        query = (
            sa.select(*key_cols, value).where(value.is_not(None)).order_by(*key_cols).limit(batch)
        )
        if after is not None:
            query = query.where(sa.tuple_(*key_cols) > sa.tuple_(*after))
        if rotate:
            # a writer that changes a row meanwhile must not be overwritten with its old value
            query = query.with_for_update()
        async with engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            for row in rows:
                row_key = tuple(row[: len(key_cols)])
                try:
                    fresh = keys.reencrypt(bytes(row[-1]))
                except InvalidToken:
                    report.unreadable += 1
                    report.unreadable_keys.append(row_key)
                    continue
                if fresh is None:
                    report.current += 1
                    continue
                report.older += 1
                if rotate:
                    match = sa.and_(*(c == v for c, v in zip(key_cols, row_key, strict=True)))
                    await conn.execute(sa.update(table).where(match).values({spec.column: fresh}))
                    report.rotated += 1
        if len(rows) < batch:
            return
        after = tuple(rows[-1][: len(key_cols)])


async def scan(
    engine: AsyncEngine,
    keys: Keys,
    *,
    rotate: bool,
    columns: Sequence[EncryptedColumn] = ENCRYPTED_COLUMNS,
    batch: int = 500,
) -> dict[str, ColumnReport]:
    """Read every encrypted value; with ``rotate``, re-encrypt those that need an older key with
    the current one (in batches, each its own short transaction). Safe to run while the service
    runs, and again after an interruption."""
    reports: dict[str, ColumnReport] = {}
    for spec in columns:
        report = reports[spec.name] = ColumnReport()
        await _batches(engine, spec, keys, rotate=rotate, batch=batch, report=report)
    return reports


keys_app = typer.Typer(
    help="Encryption and signing keys: check what the keys read, re-encrypt after a rotation.",
    no_args_is_help=True,
)


def _run(rotate: bool) -> dict[str, ColumnReport]:
    from app.admin import audit
    from app.config import get_settings
    from app.core.clock import SystemClock
    from app.core.db import create_engine, create_sessionmaker
    from app.core.services import resolve_services

    settings = get_settings()
    services = resolve_services(settings)
    keys = Keys.from_settings(settings)
    typer.echo(f"signing key id {keys.jwt_kid}; tokens verify with {', '.join(keys.verifying)}")
    typer.echo(f"{keys.decrypting_keys} key(s) decrypt, the current one encrypts")

    async def run() -> dict[str, ColumnReport]:
        engine = create_engine(services.database_url, settings)
        try:
            reports = await scan(engine, keys, rotate=rotate)
            rotated = sum(r.rotated for r in reports.values())
            if rotated:
                async with create_sessionmaker(engine)() as session, session.begin():
                    await audit.record(
                        session,
                        action="keys.rotated",
                        target="encryption",
                        summary=f"{rotated} stored secret(s) re-encrypted with the current key",
                        at=SystemClock().now(),
                        actor="cli",
                    )
            return reports
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    finally:
        services.stop_embedded()


def _print(reports: dict[str, ColumnReport]) -> bool:
    ok = True
    for name, r in reports.items():
        line = f"{name}: {r.current} current, {r.older} on an older key"
        if r.rotated:
            line += f", {r.rotated} re-encrypted"
        if r.unreadable:
            ok = False
            shown = ", ".join("/".join(str(v) for v in k) for k in r.unreadable_keys[:5])
            line += f", {r.unreadable} UNREADABLE ({shown})"
        typer.echo(line)
    return ok


@keys_app.command("check")
def check_cmd() -> None:
    """Read every secret kept encrypted in the database with the configured keys; exit 1 if
    any cannot be read (a key is missing: restore it before going further)."""
    reports = _run(rotate=False)
    if not _print(reports):
        raise typer.Exit(1)
    older = sum(r.older for r in reports.values())
    typer.echo(
        f"{older} value(s) still need an older key: run canopy keys rotate"
        if older
        else "every value reads with the current key; older keys can be removed"
    )


@keys_app.command("rotate")
def rotate_cmd(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be re-encrypted.")
    ] = False,
) -> None:
    """Re-encrypt every secret that still needs an older key with CANOPY_ENCRYPTION_KEY.
    Run it after moving the old key to CANOPY_ENCRYPTION_PREVIOUS_KEYS; exit 1 if some value
    cannot be read at all."""
    reports = _run(rotate=not dry_run)
    if not _print(reports):
        raise typer.Exit(1)
