"""The SQL of watering a friend: ONE statement that checks the friendship, counts the watering
against the per-friend daily limit on the giver's local day, debits the giver, creates the
receiver's ball, books both ledger sides and tells the receiver."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.sql import Statement
from app.game.feed.service import WATERED_YOU
from app.game.friends.repository import friend_of
from app.ledger.booking import ball, book, user

ME = "CAST(:me AS uuid)"
OWNER = "CAST(:owner AS uuid)"
NOW = "CAST(:now AS timestamptz)"
AMOUNT = "CAST(:amount AS bigint)"
LIMIT = "CAST(:limit AS int)"
BALL = "CAST(:ball AS uuid)"
REF = "CAST(:ref AS text)"
VERSION = "CAST(:version AS int)"


@dataclass(frozen=True, slots=True)
class WaterRow:
    friend: bool
    balance_g: int | None  # after the watering; NULL when nothing happened
    had_g: int | None  # the giver's balance when it was checked
    today: int | None  # waterings of this friend today, as the statement's snapshot saw them


_ENTRIES = book(
    "paid",
    amount=AMOUNT,
    # the giver's entry names the ball the energy went into
    debit=user(ME, balance_after="paid.balance_g", ball=BALL),
    credit=ball(OWNER, BALL),
    reason="'water'",
    ref=REF,
    rules_version=VERSION,
    where="EXISTS (SELECT 1 FROM made)",
)

WATER = Statement(
    f"""
    WITH friend AS ({friend_of(ME, OWNER)}),
    giver AS (
        -- the giver's row, locked: waterings by one giver run one after the other, so the
        -- daily count below and the balance are decided together (a watering refused for want
        -- of energy does not use up one of the day's waterings)
        SELECT u.id, u.balance_g, ({NOW} AT TIME ZONE u.timezone)::date AS today
        FROM users u
        WHERE u.id = {ME} AND EXISTS (SELECT 1 FROM friend) AND CAST(:valid AS boolean)
        FOR UPDATE
    ), counted AS (
        INSERT INTO watering_days AS w (giver_id, receiver_id, day, count)
        SELECT g.id, {OWNER}, g.today, 1 FROM giver g
        WHERE g.balance_g >= {AMOUNT} AND {LIMIT} > 0
        ON CONFLICT (giver_id, receiver_id, day) DO UPDATE SET count = w.count + 1
        WHERE w.count < {LIMIT}
        RETURNING count
    ), paid AS (
        -- The new balance is computed from the locked row ``giver`` read, not from the row
        -- this UPDATE finds: that is the statement snapshot's version, which may predate a
        -- collect that committed while we waited for the lock. A condition on it would skip the
        -- row on a stale "too little", and an expression on it is checked against the CHECK
        -- constraint before PostgreSQL notices the newer version (a false violation). Nobody can
        -- change the row between ``giver`` and here: we hold its lock.
        UPDATE users u SET balance_g = g.balance_g - {AMOUNT}
        FROM giver g
        WHERE u.id = g.id AND EXISTS (SELECT 1 FROM counted)
        RETURNING u.balance_g
    ), made AS (
        INSERT INTO energy_balls (id, user_id, kind, ref, amount_g, remaining_g, stealable,
            created_at, ripens_at, expires_at, expired_at, expired_g, stolen_g, rules_version)
        SELECT {BALL}, {OWNER}, 'watering', {REF}, {AMOUNT}, {AMOUNT}, FALSE, {NOW}, {NOW},
               CAST(:expires AS timestamptz), NULL, 0, 0, {VERSION}
        FROM paid
        RETURNING id
    ), entries AS ({_ENTRIES}),
    told AS (
        INSERT INTO feed_items (user_id, type, actor_id, amount_g, ref, at)
        SELECT {OWNER}, '{WATERED_YOU}', {ME}, {AMOUNT}, {REF}, {NOW} FROM made
    )
    SELECT EXISTS (SELECT 1 FROM friend) AS friend,
           (SELECT balance_g FROM paid) AS balance_g,
           (SELECT balance_g FROM giver) AS had_g,
           (SELECT w.count FROM watering_days w JOIN giver g ON w.giver_id = g.id
            WHERE w.receiver_id = {OWNER} AND w.day = g.today) AS today
    """,  # noqa: S608 (constant fragments; values are bind parameters)
    row=WaterRow,
)
