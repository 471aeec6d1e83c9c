"""Publishing rules versions: validate, guard, store (immutable, content-hashed), announce."""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.admin import audit
from app.core.errors import Unprocessable, ValidationFailed
from app.rules.loader import LoadedRules, RulesInvalid, parse_rules_text, rules_sha256
from app.rules.models import RulesVersion, Source
from app.rules.registry import (
    BEGINNING,
    RulesRegistry,
    latest_version,
    load_registry,
    lock_publishing,
    publish,
)
from app.rules.schema import Rules

logger = logging.getLogger("canopy.rules")

# clocks differ a little between a designer's laptop and the servers
PAST_TOLERANCE = timedelta(minutes=1)


class InvalidRules(ValidationFailed):
    code, title = "invalid_rules", "The rules file is not valid"


class EffectiveInPast(Unprocessable):
    code, title = "effective_from_in_past", "A version cannot take effect in the past"


class GuardrailRefused(Unprocessable):
    code, title = "guardrail_refused", "The simulated effect of this change is too large"


def parse_or_raise(text: str) -> LoadedRules:
    try:
        rules = parse_rules_text(text)
    except RulesInvalid as exc:
        raise InvalidRules(
            [{"loc": issue.loc, "msg": issue.msg} for issue in exc.errors],
            detail="; ".join(f"{i.loc}: {i.msg}" for i in exc.errors[:5]),
        ) from None
    return LoadedRules(rules=rules, text=text, sha256=rules_sha256(text))


@dataclass(frozen=True)
class Published:
    version: RulesVersion
    created: bool


async def publish_text(
    session: AsyncSession,
    text: str,
    *,
    effective_from: datetime | None,
    now: datetime,
    registry: RulesRegistry,
    simulate: bool = False,
    force: bool = False,
    threshold: float = 0.2,
    source: Source = "api",
) -> Published:
    """Validate and store a rules text as a version effective from ``effective_from`` (default:
    now). The latest version's own text returns that version unchanged; an earlier version's
    text is published anew (a rollback). With ``simulate``, refuse a change that moves any
    persona's simulated days-to-first-tree by more than ``threshold``, unless ``force``."""
    loaded = parse_or_raise(text)
    await lock_publishing(session)
    latest = await latest_version(session)
    if latest is not None and latest.sha256 == loaded.sha256:
        return Published(latest, created=False)
    when = effective_from or now
    if when < now - PAST_TOLERANCE:
        raise EffectiveInPast(
            f"effective_from {when.isoformat()} is before now ({now.isoformat()})"
        )
    if simulate and not force:
        reasons = await _guardrail(registry.at(when).rules, loaded, threshold)
        if reasons:
            raise GuardrailRefused(
                "Refused: " + "; ".join(reasons) + " (publish with force to override)",
                reasons=reasons,
            )
    version = await publish(session, loaded, effective_from=when, now=now, source=source)
    return Published(version, created=True)


async def _guardrail(current: Rules, candidate: LoadedRules, threshold: float) -> list[str]:
    # a few seconds of CPU: off the event loop
    return await asyncio.to_thread(guardrail_reasons, current, candidate, threshold)


class FileOutcome(enum.Enum):
    """What starting with a rules file did."""

    SEEDED = "seeded"  # the first version ever
    UNCHANGED = "unchanged"  # the file holds its baseline's text: nothing to do
    ADOPTED = "adopted"  # the file holds the latest version's text (e.g. after `rules pull`)
    PUBLISHED = "published"  # the file changed and became the latest version
    KEPT_NEWER = "kept_newer"  # changed, but a newer version came from the API or CLI
    REFUSED = "refused"  # changed, but the guardrail refused it


@dataclass(frozen=True)
class FileSync:
    outcome: FileOutcome
    version: RulesVersion | None
    message: str
    reasons: list[str]


def log_file_sync(sync: FileSync) -> None:
    """One log line: a warning when the file was not published although it changed."""
    refused = sync.outcome in (FileOutcome.KEPT_NEWER, FileOutcome.REFUSED)
    level = logging.WARNING if refused else logging.INFO
    if sync.outcome is not FileOutcome.UNCHANGED:
        logger.log(level, sync.message, extra={"rules_file": sync.outcome.value})


async def _baseline(session: AsyncSession) -> RulesVersion | None:
    found = await session.execute(
        select(RulesVersion)
        .where(col(RulesVersion.file_synced_at).is_not(None))
        .order_by(col(RulesVersion.file_synced_at).desc(), col(RulesVersion.version).desc())
        .limit(1)
    )
    return found.scalars().first()


async def sync_rules_file(
    session: AsyncSession,
    loaded: LoadedRules,
    now: datetime,
    *,
    force: bool = False,
    threshold: float = 0.2,
) -> FileSync:
    """The rules file and the published versions, at start (and ``canopy rules sync``).

    The file seeds the first version. After that it is published again only when its text
    changed since the version it last held (its *baseline*), through the same simulation
    guardrail as the API, and never over a version published later through the API or
    ``canopy rules publish`` — unless ``force``. A file that holds the latest version's text
    (pulled with ``canopy rules pull``) takes that version as its baseline.
    """
    await lock_publishing(session)
    latest = await latest_version(session)
    if latest is None:
        first = await publish(session, loaded, effective_from=BEGINNING, now=now, source="file")
        return FileSync(
            FileOutcome.SEEDED, first, f"rules file published as version {first.version}", []
        )
    baseline = await _baseline(session)
    if baseline is not None and baseline.sha256 == loaded.sha256:
        return FileSync(FileOutcome.UNCHANGED, baseline, "rules file unchanged", [])
    if latest.sha256 == loaded.sha256:
        latest.file_synced_at = now
        await session.flush()
        return FileSync(
            FileOutcome.ADOPTED,
            latest,
            f"rules file holds version {latest.version} (published through the {latest.source}); "
            "it is now the file's baseline",
            [],
        )
    newer = (
        (
            await session.execute(
                select(RulesVersion)
                .where(
                    col(RulesVersion.source) != "file",
                    col(RulesVersion.version) > (baseline.version if baseline else 0),
                )
                .order_by(col(RulesVersion.version).desc())
                .limit(1)
            )
        )
        .scalars()
        .first()
    )
    if newer is not None and not force:
        return FileSync(
            FileOutcome.KEPT_NEWER,
            newer,
            f"the rules file changed, but version {newer.version} was published through the "
            f"{newer.source} after the file's version; the file is NOT published. Take the live "
            "rules into the file with `canopy rules pull`, or publish the file over them with "
            "`canopy rules sync FILE --force`",
            [],
        )
    registry = await load_registry(session)
    if not force:
        reasons = await _guardrail(registry.at(now).rules, loaded, threshold)
        if reasons:
            return FileSync(
                FileOutcome.REFUSED,
                None,
                "the rules file changed, but the simulation guardrail refused it; it is NOT "
                "published (`canopy rules sync FILE --force` publishes it anyway): "
                + "; ".join(reasons),
                reasons,
            )
    version = await publish(session, loaded, effective_from=now, now=now, source="file")
    await audit.record(
        session,
        action="rules.file_published",
        target=f"rules:{version.version}",
        summary=f"{version.label!r} sha256 {version.sha256[:12]} from the rules file"
        + (" (forced over newer versions and the guardrail)" if force else ""),
        at=now,
        actor="rules-file",
    )
    return FileSync(
        FileOutcome.PUBLISHED,
        version,
        f"rules file changed: published as version {version.version}, effective now",
        [],
    )


def guardrail_reasons(current: Rules, candidate: LoadedRules, threshold: float) -> list[str]:
    """Why the simulator says this change is too big (empty: fine)."""
    from app.game.simulator import guardrail_check  # imported late: numpy/matplotlib are heavy

    return guardrail_check(current, candidate.rules, threshold)
