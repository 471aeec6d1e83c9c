"""Watering a friend: energy from my balance into a ball for them, ripe at once, unstealable.

One statement (:mod:`app.game.watering.repository`) checks the friendship and the per-friend
daily limit on my local day, pays, creates the ball, books it and tells the friend."""

from __future__ import annotations

import uuid
from datetime import datetime

from app.core.errors import Conflict, ValidationFailed
from app.game.friends.service import NotAFriend
from app.game.hot import Body, Fetch, LoginEnded
from app.game.watering.repository import WATER
from app.ledger.transfers import InsufficientEnergy
from app.rules.registry import ActiveRules


class DailyLimitReached(Conflict):
    code, title = "daily_limit_reached", "You have watered this friend enough today"


async def water(
    fetch: Fetch,
    giver_id: uuid.UUID,
    receiver_id: uuid.UUID,
    amount_g: int,
    rules: ActiveRules,
    now: datetime,
) -> Body:
    """Give ``amount_g`` to a friend; ``{watered_g, balance_g}`` (my new balance). Not a friend
    → 404 first, then an amount the rules do not offer → 422, then the day's limit and my
    balance → 409."""
    watering = rules.rules.watering
    valid = amount_g in watering.amounts_g
    ball_id = uuid.uuid4()
    [row] = await fetch(
        WATER,
        me=giver_id,
        owner=receiver_id,
        amount=amount_g,
        valid=valid,
        limit=watering.per_friend_daily_limit,
        ball=ball_id,
        ref=f"water:{giver_id}:{ball_id}",
        now=now,
        expires=now + rules.rules.balls.expire_after,
        version=rules.version,
    )
    if not row.friend:
        raise NotAFriend()
    if not valid:
        raise ValidationFailed(
            [{"loc": ["body", "amount_g"], "msg": f"must be one of {list(watering.amounts_g)}"}]
        )
    if row.balance_g is not None:
        return {"watered_g": amount_g, "balance_g": row.balance_g}
    if row.had_g is None:
        raise LoginEnded()
    limit = watering.per_friend_daily_limit
    if (row.today or 0) < limit and row.had_g < amount_g:
        raise InsufficientEnergy(f"Watering needs {amount_g} g of energy")
    raise DailyLimitReached(f"At most {limit} waterings per friend per day")
