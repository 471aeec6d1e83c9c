"""The rules in force: every published version, and which one applies at a given moment.

Balls and ledger entries record the ``version`` (an integer) of the rules that produced them, so
the registry can answer "which rules made this gram" long after newer rules took over.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.rules.loader import LoadedRules, parse_rules_text
from app.rules.models import RulesVersion, Source
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


# One publish at a time across every process: "is this text already the latest version?" and
# the insert that follows must not interleave (several workers start with the same new file).
_PUBLISH_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('canopy:rules:publish'))")


async def lock_publishing(session: AsyncSession) -> None:
    """Hold the publishing lock until the session's transaction ends."""
    await session.execute(_PUBLISH_LOCK)


async def latest_version(session: AsyncSession) -> RulesVersion | None:
    """The most recently published version (whatever its ``effective_from``)."""
    found = await session.execute(
        select(RulesVersion).order_by(col(RulesVersion.version).desc()).limit(1)
    )
    return found.scalars().first()


async def publish(
    session: AsyncSession,
    loaded: LoadedRules,
    effective_from: datetime,
    now: datetime,
    *,
    source: Source = "api",
) -> RulesVersion:
    """Store a rules text as a new version, unless it is already the latest version's text
    (then that version is returned unchanged: a retried publish changes nothing). The text of
    an earlier version becomes a new version: that is how a rollback is published."""
    await lock_publishing(session)
    latest = await latest_version(session)
    if latest is not None and latest.sha256 == loaded.sha256:
        return latest
    version = RulesVersion(
        sha256=loaded.sha256,
        label=loaded.rules.version,
        text=loaded.text,
        effective_from=effective_from,
        created_at=now,
        source=source,
        file_synced_at=now if source == "file" else None,
    )
    session.add(version)
    await session.flush()
    return version


# The first version ever published governs everything before it too (late events included).
BEGINNING = datetime(2000, 1, 1, tzinfo=UTC)


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
