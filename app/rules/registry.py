"""The rules in force: every published version, and which one applies at a given moment.

Balls and ledger entries record the ``version`` (an integer) of the rules that produced them, so
the registry can answer "which rules made this gram" long after newer rules took over.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.rules.loader import LoadedRules, parse_rules_text
from app.rules.models import RulesVersion
from app.rules.schema import Rules


@dataclass(frozen=True)
class ActiveRules:
    """One published version, parsed."""

    version: int
    sha256: str
    effective_from: datetime
    rules: Rules


@dataclass
class RulesRegistry:
    """Versions ordered by ``effective_from``; ``at(t)`` is the one in force at ``t``."""

    versions: list[ActiveRules] = field(default_factory=list)

    def at(self, when: datetime) -> ActiveRules:
        starts = [v.effective_from for v in self.versions]
        index = bisect.bisect_right(starts, when) - 1
        # before the first version took effect, the first version applies (nothing older exists)
        return self.versions[max(index, 0)]

    def get(self, version: int) -> ActiveRules:
        for candidate in self.versions:
            if candidate.version == version:
                return candidate
        raise KeyError(f"unknown rules version {version}")

    def replace(self, versions: list[ActiveRules]) -> None:
        """Swap in a freshly loaded list (one attribute assignment: readers never see a mix)."""
        self.versions = list(versions)

    def replace_active_rules(self, rules: Rules, when: datetime) -> None:
        """Swap the parsed rules of the version in force (tests tune limits this way)."""
        current = self.at(when)
        index = self.versions.index(current)
        self.versions[index] = ActiveRules(
            current.version, current.sha256, current.effective_from, rules
        )


async def publish(
    session: AsyncSession, loaded: LoadedRules, effective_from: datetime, now: datetime
) -> RulesVersion:
    """Store a rules text as a version (no-op returning the existing one for known content)."""
    # look first: an INSERT ... ON CONFLICT would burn a version number on every restart
    known = await session.execute(
        select(RulesVersion).where(col(RulesVersion.sha256) == loaded.sha256)
    )
    found = known.scalars().first()
    if found is not None:
        return found
    stmt = (
        insert(RulesVersion)
        .values(
            sha256=loaded.sha256,
            label=loaded.rules.version,
            text=loaded.text,
            effective_from=effective_from,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["sha256"])
    )
    await session.execute(stmt)
    stored = await session.execute(
        select(RulesVersion).where(col(RulesVersion.sha256) == loaded.sha256)
    )
    return stored.scalars().one()


# The first version ever published governs everything before it too (late events included).
BEGINNING = datetime(2000, 1, 1, tzinfo=UTC)


async def publish_at_startup(session: AsyncSession, loaded: LoadedRules, now: datetime) -> None:
    """Make sure the configured rules file is a published version: effective from the beginning
    when it is the first, from now when it is new content (a known text changes nothing)."""
    first = (await session.execute(select(col(RulesVersion.version)).limit(1))).first() is None
    await publish(session, loaded, effective_from=BEGINNING if first else now, now=now)


async def load_registry(session: AsyncSession) -> RulesRegistry:
    rows = await session.execute(
        select(RulesVersion).order_by(col(RulesVersion.effective_from), col(RulesVersion.version))
    )
    versions = []
    for row in rows.scalars():
        assert row.version is not None
        versions.append(
            ActiveRules(row.version, row.sha256, row.effective_from, parse_rules_text(row.text))
        )
    return RulesRegistry(versions)
