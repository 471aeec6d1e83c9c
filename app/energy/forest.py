"""A user's own balls as SQL parts: listing them with who collected them, and collecting them.

Energy's repository for the own forest. The page and the collect route are assembled higher up
(``app.game.forest``), which adds the props, trees and leaderboard parts of the same statement;
these functions return named CTE bodies and expressions over this module's constants and bind
parameters (``:me``, ``:now``), never values.
"""

from __future__ import annotations

from app.ledger.balls import BallState, expired, live, ripe
from app.ledger.booking import Side, ball, book, running_balance
from app.ledger.booking import user as ledger_user

__all__ = [
    "ME",
    "BallState",
    "collect_ctes",
    "collect_status",
    "collections_of",
    "collector",
    "own_balls",
    "state_of",
]

ME = "CAST(:me AS uuid)"
NOW = "CAST(:now AS timestamptz)"


def collector(user: str, ball_id: str, *, balance_after: str) -> Side:
    """The user side of a collect or take: the user's balance, noting which ball it came from
    (the forest lists a ball's collections from these entries)."""
    return ledger_user(user, balance_after=balance_after, ball=ball_id)


def state_of(b: str = "b") -> str:
    """:func:`app.ledger.balls.ball_state` as SQL, for a ball row aliased ``b``."""
    return (
        f"CASE WHEN {expired(b, NOW)} THEN 'expired' WHEN {b}.remaining_g = 0 THEN 'collected' "
        f"WHEN {b}.ripens_at > {NOW} THEN 'growing' ELSE 'ripe' END"
    )


def own_balls(*, include_all: str) -> str:
    """The body of a CTE: my live balls (or, when the boolean SQL ``include_all`` holds, any),
    newest first, at most ``:limit``, with their state."""
    return f"""
        SELECT b.id, b.kind, b.amount_g, b.remaining_g, b.created_at, b.ripens_at, b.expires_at,
               {state_of("b")} AS state, b.stealable, b.rules_version
        FROM energy_balls b
        WHERE b.user_id = {ME} AND ({include_all} OR {live("b", NOW)})
        ORDER BY b.created_at DESC, b.id
        LIMIT :limit
    """  # noqa: S608 (constant fragments)


def collections_of(ball_id: str) -> str:
    """A LATERAL subquery: who collected how much from the ball, oldest first, as parallel
    arrays ``by_ids, by_handles, by_amounts, by_ats`` (NULL when nobody did)."""
    return f"""
        SELECT array_agg(le.user_id ORDER BY le.id) AS by_ids,
               array_agg(u.handle ORDER BY le.id) AS by_handles,
               array_agg(le.amount_g ORDER BY le.id) AS by_amounts,
               array_agg(le.at ORDER BY le.id) AS by_ats
        FROM ledger_entries le JOIN users u ON u.id = le.user_id
        WHERE le.ball_id = {ball_id} AND le.account = 'user' AND le.reason IN ('collect', 'steal')
    """  # noqa: S608 (constant fragments)


def collect_ctes(which: str) -> str:
    """The CTEs that take every ripe ball of mine matching ``which`` (SQL over ``b``) whole,
    credit my balance and book both ledger sides:

    - ``taken(id, grams)``: what each ball gave;
    - ``total(grams)``: their sum;
    - ``owner(balance_g, collected_total_g)``: my row after it (no row when nothing was taken:
      an empty collect writes nothing).

    The balls are locked in id order before my row (``FOR UPDATE`` hands back each ball's newest
    version once its lock is ours), so concurrent collects and friends' takes queue on the balls
    and then see them empty: a ball is never paid out twice."""
    entries = book(
        "moves",
        amount="moves.grams",
        debit=ball(ME, "moves.id"),
        credit=collector(
            ME,
            "moves.id",
            balance_after=running_balance("owner.balance_g", "total.grams", "moves.running"),
        ),
        reason="'collect'",
        ref="moves.ref",
        rules_version="moves.rules_version",
        joins="CROSS JOIN owner CROSS JOIN total",
    )
    return f"""
    candidates AS (
        SELECT b.id, b.remaining_g, b.ref, b.rules_version FROM energy_balls b
        WHERE b.user_id = {ME} AND {which} AND {ripe("b", NOW)}
        ORDER BY b.id
        FOR UPDATE
    ), taken AS (
        UPDATE energy_balls b SET remaining_g = 0 FROM candidates c
        WHERE b.id = c.id
        RETURNING b.id, c.remaining_g AS grams, c.ref, c.rules_version
    ), total AS (
        SELECT coalesce(sum(grams), 0)::bigint AS grams FROM taken
    ), owner AS (
        UPDATE users SET balance_g = balance_g + total.grams,
                         collected_total_g = collected_total_g + total.grams
        FROM total WHERE users.id = {ME} AND total.grams > 0
        RETURNING users.balance_g, users.collected_total_g
    ), moves AS MATERIALIZED (
        SELECT taken.*, sum(grams) OVER (ORDER BY id) AS running FROM taken
    ), entries AS ({entries})
    """  # noqa: S608 (constant fragments)


def collect_status(b: str, taken: str) -> str:
    """A requested ball's outcome, given its row ``b`` (NULL: not mine or no such ball) and its
    ``taken`` row (NULL: nothing taken)."""
    return (
        f"CASE WHEN {taken}.id IS NOT NULL THEN 'collected' "
        f"WHEN {b}.id IS NULL THEN 'not_found' "
        f"WHEN {expired(b, NOW)} THEN 'expired' "
        f"WHEN {b}.ripens_at > {NOW} THEN 'not_ripe' "
        "ELSE 'empty' END"
    )
