"""What a user collected this day and this week, kept beside the ledger so hot statements can
answer it without summing entries.

``collected_scores`` holds one row per user: the current day's and week's energy (own collects and
takes from friends) with the instant each period began in the rules' time zone; the all-time
score is ``users.collected_total_g``. A collect statement adds its grams in the same statement
(:func:`add_collected`) and gets the absolute scores back for the Redis boards; the friends list
reads the week from it (:func:`week_collected`). The ledger stays the truth: a row whose period
is not the current one (a new day or week, a changed time zone, a user who last collected before
this table existed) is started again from the ledger's entries, so the row can never drift from
what :func:`app.game.leaderboards.service.values_from_db` computes.

Every fragment is SQL text over this module's constants; values travel as bind parameters
(``:day_start``, ``:week_start``), which :class:`Periods` supplies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.game.leaderboards.service import period_bounds

DAY_START = "CAST(:day_start AS timestamptz)"
WEEK_START = "CAST(:week_start AS timestamptz)"


@dataclass(frozen=True)
class Periods:
    """The current day and week of the boards (names for the Redis keys, starts for SQL)."""

    day: str
    day_start: datetime
    week: str
    week_start: datetime

    @classmethod
    def at(cls, now: datetime, tz: str) -> Periods:
        day, day_start = period_bounds("day", now, tz)
        week, week_start = period_bounds("week", now, tz)
        assert day_start is not None and week_start is not None
        return cls(day, day_start, week, week_start)

    def bind(self) -> dict[str, Any]:
        return {"day_start": self.day_start, "week_start": self.week_start}


def _from_ledger(user: str, start: str) -> str:
    """Energy the user collected since ``start``, summed from the ledger (the partial index
    ``ix_ledger_entries_user_collected_at`` serves it)."""
    return f"""(
        SELECT coalesce(sum(e.amount_g), 0)::bigint FROM ledger_entries e
        WHERE e.user_id = {user} AND e.account = 'user' AND e.reason IN ('collect', 'steal')
          AND e.at >= {start})"""  # noqa: S608 (constant fragments)


def _before(user: str, period: str, start: str) -> str:
    # what the period held before this statement: only needed when the row is not this period's
    # (CASE evaluates the ledger sum lazily, so the common case costs one primary-key probe)
    return f"""(CASE
        WHEN EXISTS (SELECT 1 FROM collected_scores p
                     WHERE p.user_id = {user} AND p.{period}_start = {start}) THEN 0
        ELSE {_from_ledger(user, start)} END)"""  # noqa: S608 (constant fragments)


def add_collected(user: str, grams: str) -> str:
    """The body of a CTE that adds ``grams`` (a scalar SQL expression, e.g. ``(SELECT grams
    FROM total)``) to the user's day and week when it is positive, returning ``day_g, week_g``
    — the absolute scores after this collect.

    Concurrent collects of one user are safe: ``ON CONFLICT`` waits for the other's row and then
    adds to what it left (the statement's snapshot sums are used only to start a new period,
    which the first of them does)."""
    return f"""
        INSERT INTO collected_scores AS s (user_id, day_start, day_g, week_start, week_g)
        SELECT {user}, {DAY_START}, {_before(user, "day", DAY_START)} + {grams},
               {WEEK_START}, {_before(user, "week", WEEK_START)} + {grams}
        WHERE {grams} > 0
        ON CONFLICT (user_id) DO UPDATE SET
            day_g = CASE WHEN s.day_start = EXCLUDED.day_start THEN s.day_g + {grams}
                         ELSE EXCLUDED.day_g END,
            day_start = EXCLUDED.day_start,
            week_g = CASE WHEN s.week_start = EXCLUDED.week_start THEN s.week_g + {grams}
                          ELSE EXCLUDED.week_g END,
            week_start = EXCLUDED.week_start
        RETURNING s.day_g, s.week_g
    """


def week_collected(scores: str, user: str) -> str:
    """This week's energy of ``user`` given its ``collected_scores`` row aliased ``scores``
    (LEFT JOINed; NULL when the user never collected since the table exists)."""
    return (
        f"(CASE WHEN {scores}.week_start = {WEEK_START} THEN {scores}.week_g "
        f"ELSE {_from_ledger(user, WEEK_START)} END)"
    )
