"""The energy rain, decided by the server (Ant Forest's version trusted the client's sum).

Starting a play draws its schedule on the server — ``energy_rain.balls`` balls whose amounts add
up to ``max_g_per_play``, each with an unguessable id and the moment it appears — from a random
seed stored with the session. The client reports which ids it caught; settling pays the sum of
the *issued* balls it names (unknown ids count nothing, repeats count once), never more than the
session's cap, once, and only between the end of the rain (``duration``) and ``settle_within``
after it. Plays are counted on the player's local day (``plays_per_day``, plus at most
``extra_plays_per_day`` granted by friends, each friend once a day), so a user's rain energy
per day is bounded by ``(plays_per_day + extra_plays_per_day) * max_g_per_play``. The energy is
minted through the ledger (reason ``energy_rain``) straight onto the balance: it is a game
reward, not avoided CO2e, so it counts toward no activity kind.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, Forbidden, NotFound
from app.game.friends.service import friend_profile
from app.game.hot import Body, Fetch, LoginEnded
from app.game.rain import repository
from app.game.rain.repository import SETTLE, START, TODAY
from app.rules.registry import ActiveRules
from app.rules.schema import EnergyRainRules


class EnergyRainDisabled(Forbidden):
    code, title = "energy_rain_disabled", "The energy rain is switched off"


class PlaysUsedUp(Conflict):
    code, title = "daily_limit_reached", "No energy rain plays left today"


class TooEarly(Conflict):
    code, title = "too_early", "The rain is not over yet"


class AlreadySettled(Conflict):
    code, title = "already_settled", "This play was settled already"


class SessionExpired(Conflict):
    code, title = "session_expired", "This play can no longer be settled"


class GrantUsed(Conflict):
    code, title = "daily_limit_reached", "You granted an extra play today already"


class FriendHasExtraPlays(Conflict):
    code, title = "friend_limit_reached", "Your friend has all the extra plays a day allows"


@dataclass(frozen=True)
class RainBall:
    id: str
    amount_g: int
    appears_at_ms: int


def schedule(seed: bytes, balls: int, total_g: int, duration: timedelta) -> list[RainBall]:
    """The rain a seed makes: ``balls`` balls of at least 1 g adding up to ``total_g``, each
    appearing within the first ``duration`` less a second (so the last can still be caught),
    in order of appearance. Ids are HMACs of the seed: nobody without the seed can name a
    ball that was not issued."""
    rng = random.Random(seed)  # noqa: S311 (amounts and times; the ids come from the HMAC)
    cuts = sorted(rng.sample(range(1, total_g), balls - 1)) if balls > 1 else []
    amounts = [b - a for a, b in zip([0, *cuts], [*cuts, total_g], strict=True)]
    span = max(1, int(duration.total_seconds() * 1000) - 1000)
    times = sorted(rng.randrange(span) for _ in range(balls))
    return [
        RainBall(
            id=hmac.new(seed, f"ball:{i}".encode(), hashlib.sha256).hexdigest()[:20],
            amount_g=amount,
            appears_at_ms=at,
        )
        for i, (amount, at) in enumerate(zip(amounts, times, strict=True))
    ]


async def start(fetch: Fetch, me: uuid.UUID, rules: ActiveRules, now: datetime) -> Body:
    """A new play: ``{session_id, balls, duration_s, expires_at}`` (201), or 403 when the rain
    is off, 409 ``daily_limit_reached`` when today's plays are used up."""
    rain = rules.rules.energy_rain
    if not rain.enabled:
        raise EnergyRainDisabled()
    seed = os.urandom(32)
    balls = schedule(seed, rain.balls, rain.max_g_per_play, rain.duration)
    session_id = uuid.uuid4()
    settle_from, expires_at = now + rain.duration, now + rain.duration + rain.settle_within
    listed = [{"id": b.id, "amount_g": b.amount_g, "appears_at_ms": b.appears_at_ms} for b in balls]
    [row] = await fetch(
        START,
        me=me,
        now=now,
        session=session_id,
        seed=seed,
        balls=orjson.dumps(listed).decode(),
        max_g=rain.max_g_per_play,
        settle_from=settle_from,
        expires=expires_at,
        plays_per_day=rain.plays_per_day,
        version=rules.version,
    )
    if not row.player:
        raise LoginEnded()
    if not row.started:
        raise PlaysUsedUp(f"{_allowance(rain, row.extra or 0)} plays today, all played")
    return {
        "session_id": session_id,
        "balls": listed,
        "duration_s": int(rain.duration.total_seconds()),
        "settle_from": settle_from,
        "expires_at": expires_at,
        "max_g": rain.max_g_per_play,
    }


def _allowance(rain: EnergyRainRules, extra: int) -> int:
    return rain.plays_per_day + extra


async def settle(
    fetch: Fetch, me: uuid.UUID, session_id: uuid.UUID, collected: list[str], now: datetime
) -> Body:
    """Pay the issued balls among ``collected``, capped: ``{energy_g, balance_g}``. Another
    user's session or an unknown one is 404; before the rain ended, twice, or too late 409."""
    [row] = await fetch(
        SETTLE, me=me, now=now, session=session_id, collected=list(dict.fromkeys(collected))
    )
    if row.energy_g is not None:
        return {"energy_g": row.energy_g, "caught": row.caught or 0, "balance_g": row.balance_g}
    if not row.found:
        raise NotFound("No such energy rain session")
    if row.settled_before is not None:
        raise AlreadySettled()
    assert row.settle_from is not None and row.expires_at is not None
    if now < row.settle_from:
        raise TooEarly(f"Settle from {row.settle_from.isoformat()}")
    if now >= row.expires_at:
        raise SessionExpired(f"This play could be settled until {row.expires_at.isoformat()}")
    raise AlreadySettled()  # settled by a concurrent request while this one waited


async def today(fetch: Fetch, me: uuid.UUID, rules: ActiveRules, now: datetime) -> Body:
    """My plays today: ``{plays_per_day, extra, played, plays_left, granted_today}``."""
    rain = rules.rules.energy_rain
    rows = await fetch(TODAY, me=me, now=now)
    if not rows:
        raise LoginEnded()
    row = rows[0]
    allowance = _allowance(rain, row.extra) if rain.enabled else 0
    return {
        "enabled": rain.enabled,
        "day": row.day,
        "plays_per_day": rain.plays_per_day,
        "extra": row.extra,
        "played": row.plays,
        "plays_left": max(0, allowance - row.plays),
        "granted_to": row.granted_to,
        "max_g_per_play": rain.max_g_per_play,
    }


async def grant(
    session: AsyncSession,
    me: uuid.UUID,
    friend_id: uuid.UUID,
    rules: ActiveRules,
    now: datetime,
) -> None:
    """Give a friend one extra play on their local day: once per my local day; not a friend
    404; the friend's extra plays for the day at the rules' cap 409 (my grant is not used)."""
    await friend_profile(session, me, friend_id)
    rain = rules.rules.energy_rain
    if not rain.enabled:
        raise EnergyRainDisabled()
    if not await repository.record_grant(session, me, friend_id, now):
        raise GrantUsed("One extra play a day: you granted one today")
    if not await repository.add_extra_play(session, friend_id, now, rain.extra_plays_per_day):
        # the error rolls the transaction back: my grant is kept for someone else
        raise FriendHasExtraPlays(
            f"Friends may grant at most {rain.extra_plays_per_day} extra plays a day"
        )
