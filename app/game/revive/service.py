"""Reviving a friend's expired energy (Ant Forest's 复活能量).

A ball that expired with energy left can be revived by one of the owner's friends within the
rules' ``revive.window`` after it expired. What expiry took comes back out of
``system:expired`` as two new ripe balls that nobody can steal: ``reviver_share`` of it
(floored) for the reviver, the rest for the owner — so a revive never creates energy, it
returns what was lost. Once per ball however many friends race (the ball's row is the guard),
at most ``revive.per_day_limit`` revives per reviver per local day, revived balls cannot be
revived again. One statement (:mod:`app.game.revive.repository`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from app.core.errors import Conflict, Forbidden, NotFound
from app.game.friends.service import NotAFriend
from app.game.hot import Body, Fetch, LoginEnded
from app.game.revive.repository import REVIVABLE, REVIVE, REVIVE_KIND, ReviveRow
from app.rules.registry import ActiveRules


class ReviveDisabled(Forbidden):
    code, title = "revive_disabled", "Reviving friends' energy is switched off"


class AlreadyRevived(Conflict):
    code, title = "already_revived", "This energy was revived already"


class NotRevivable(Conflict):
    code, title = "not_revivable", "This ball cannot be revived"


class ReviveLimitReached(Conflict):
    code, title = "daily_limit_reached", "You have revived enough energy today"


def _params(rules: ActiveRules, me: uuid.UUID, owner: uuid.UUID, now: datetime) -> Body:
    revive = rules.rules.revive
    return {
        "me": me,
        "owner": owner,
        "now": now,
        "window": revive.window,
        "limit": revive.per_day_limit,
        "enabled": revive.enabled,
    }


async def revivable(
    fetch: Fetch, me: uuid.UUID, owner: uuid.UUID, rules: ActiveRules, now: datetime
) -> Body:
    """The friend's balls I could revive now (empty when reviving is off), oldest first;
    :class:`NotAFriend` for anyone else."""
    rows = await fetch(REVIVABLE, **_params(rules, me, owner, now))
    if not rows:
        raise NotAFriend()
    share = rules.rules.revive.reviver_share
    return {
        "balls": [
            {
                "id": r.ball_id,
                "kind": r.kind,
                "amount_g": r.amount_g,
                "lost_g": r.lost_g,
                "reviver_g": reviver_part(r.lost_g or 0, share),
                "expired_at": r.expired_at,
                "revive_until": r.revive_until,
            }
            for r in rows
            if r.ball_id is not None
        ]
    }


def reviver_part(lost_g: int, share: float) -> int:
    """The reviver's grams of a revive: ``floor(lost_g * reviver_share)`` (the same numeric
    arithmetic as the statement); the owner gets ``lost_g`` minus this."""
    return int((Decimal(lost_g) * Decimal(str(share))).to_integral_value(ROUND_FLOOR))


async def revive(
    fetch: Fetch,
    me: uuid.UUID,
    owner: uuid.UUID,
    ball_id: uuid.UUID,
    rules: ActiveRules,
    now: datetime,
) -> Body:
    """Revive the friend's expired ball; ``{ball_id, revived_g, reviver_g}``. Strangers (not a
    friend, blocked) and unknown balls are 404, reviving switched off 403, a ball revived
    already, not expired, past the window or with nothing lost 409, my day's limit 409."""
    params = _params(rules, me, owner, now)
    [row] = await fetch(
        REVIVE,
        **params,
        ball=ball_id,
        share=rules.rules.revive.reviver_share,
        owner_ball=uuid.uuid4(),
        reviver_ball=uuid.uuid4(),
        expires=now + rules.rules.balls.expire_after,
        version=rules.version,
    )
    if row.revived_g is not None:
        return {"ball_id": ball_id, "revived_g": row.revived_g, "reviver_g": row.reviver_g or 0}
    _refuse(row, rules, now)
    raise AssertionError("unreachable")  # pragma: no cover


def _refuse(row: ReviveRow, rules: ActiveRules, now: datetime) -> None:
    revive = rules.rules.revive
    if not row.friend:
        raise NotAFriend()
    if not revive.enabled:
        raise ReviveDisabled()
    if not row.reviver:
        raise LoginEnded()
    if not row.ball_found:
        raise NotFound("No such ball")
    if row.revived_before:
        raise AlreadyRevived()
    if row.kind == REVIVE_KIND:
        raise NotRevivable("Revived energy cannot be revived again")
    assert row.expires_at is not None
    if row.expires_at > now:
        raise NotRevivable("This ball has not expired")
    if row.expires_at + revive.window <= now:
        raise NotRevivable(f"Energy can be revived only within {revive.window} of expiring")
    if not row.lost_g:
        raise NotRevivable("Nothing of this ball expired")
    if row.locked:
        raise ReviveLimitReached(f"At most {revive.per_day_limit} revives per day")
    # revivable as the statement began, gone once locked: a friend revived it meanwhile
    raise AlreadyRevived()
