"""Publishing rules versions: validate, guard, store (immutable, content-hashed), announce."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.core.errors import Unprocessable, ValidationFailed
from app.rules.loader import LoadedRules, RulesInvalid, parse_rules_text, rules_sha256
from app.rules.models import RulesVersion
from app.rules.registry import RulesRegistry, publish
from app.rules.schema import Rules

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
) -> Published:
    """Validate and store a rules text as a version effective from ``effective_from`` (default:
    now). Known content returns the existing version unchanged. With ``simulate``, refuse a
    change that moves any persona's simulated days-to-first-tree by more than ``threshold``,
    unless ``force``."""
    loaded = parse_or_raise(text)
    existing = (
        (
            await session.execute(
                select(RulesVersion).where(col(RulesVersion.sha256) == loaded.sha256)
            )
        )
        .scalars()
        .first()
    )
    if existing is not None:
        return Published(existing, created=False)
    when = effective_from or now
    if when < now - PAST_TOLERANCE:
        raise EffectiveInPast(
            f"effective_from {when.isoformat()} is before now ({now.isoformat()})"
        )
    if simulate and not force:
        # a few seconds of CPU: off the event loop
        reasons = await asyncio.to_thread(
            guardrail_reasons, registry.at(when).rules, loaded, threshold
        )
        if reasons:
            raise GuardrailRefused(
                "Refused: " + "; ".join(reasons) + " (publish with force to override)",
                reasons=reasons,
            )
    version = await publish(session, loaded, effective_from=when, now=now)
    return Published(version, created=True)


def guardrail_reasons(current: Rules, candidate: LoadedRules, threshold: float) -> list[str]:
    """Why the simulator says this change is too big (empty: fine)."""
    from app.game.simulator import guardrail_check  # imported late: numpy/matplotlib are heavy

    return guardrail_check(current, candidate.rules, threshold)
