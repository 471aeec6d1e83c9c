"""Booking moves inside a caller's one statement: the double-entry write, written once.

A caller's statement computes *what moves* (a CTE with one row per transfer); :func:`book` turns
that into the CTE that writes both ledger entries of every transfer, under one transfer id, with
the same cause, rules version and time. Callers describe each side with :class:`Side` — a user's
balance, a ball, or a system account — and never write ``INSERT INTO ledger_entries`` themselves::

    entries AS ({book(
        "taken",
        amount="taken.grams",
        debit=ball("CAST(:owner AS uuid)", "taken.id"),
        credit=user("CAST(:me AS uuid)", balance_after=running_balance("c.balance_g", ...)),
        reason="'steal'", ref="'ball:' || taken.id", rules_version="taken.rules_version",
        joins="CROSS JOIN collector c",
    )})

Every argument is a SQL expression over the source's columns (constants of the caller's own
module, never user input: values travel as bind parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

ENTRY_COLUMNS = (
    "transfer_id, account, user_id, ball_id, amount_g, balance_after_g, reason, ref, "
    "rules_version, at"
)

# the system accounts: their totals are sums over entries, never a hot row
MINTED = "system:minted"
EXPIRED = "system:expired"
BURNED = "system:burned"
# energy a member put into a grove (joint planting), held there until the grove plants (burned)
# or gives it back (leaving): booked under the member, the transfer's ref names the grove
GROVE = "grove"


@dataclass(frozen=True)
class Side:
    """One side of a transfer: which account, and the user/ball it belongs to."""

    account: str
    user: str = "NULL::uuid"
    ball: str = "NULL::uuid"
    balance_after: str = "NULL::bigint"


def user(user_id: str, *, balance_after: str, ball: str = "NULL::uuid") -> Side:
    """A user's balance (``users.balance_g``); ``balance_after`` is what it holds after this
    transfer (see :func:`running_balance` when one statement moves several). ``ball`` names the
    ball the energy came from or went to, when there is one (the forest's "collected by" list
    reads it from the user's side)."""
    return Side("'user'", user_id, ball, balance_after)


def ball(owner_id: str, ball_id: str) -> Side:
    """An energy ball (``energy_balls.remaining_g``), booked under its owner."""
    return Side("'ball'", owner_id, ball_id)


def grove(member_id: str) -> Side:
    """What ``member_id`` holds in groves (:data:`GROVE`): not theirs to spend, not burned yet."""
    return Side(f"'{GROVE}'", member_id)


def system(account: str) -> Side:
    """A system account (:data:`MINTED`, :data:`EXPIRED`, :data:`BURNED`)."""
    return Side(f"'{account}'")


def running_balance(final: str, total: str, running: str) -> str:
    """A user's balance after each of several transfers booked in one statement, in the order
    of ``running`` (a ``sum(...) OVER (ORDER BY ...)`` of the amounts): the balance the
    statement ended with, less what the later transfers still added."""
    return f"({final} - {total} + {running})"


def book(
    source: str,
    *,
    amount: str,
    debit: Side,
    credit: Side,
    reason: str,
    ref: str,
    rules_version: str,
    at: str = "CAST(:now AS timestamptz)",
    joins: str = "",
    where: str = "TRUE",
) -> str:
    """The body of a CTE that books one transfer of ``amount`` (> 0) from ``debit`` to
    ``credit`` per row of ``source`` (``joins``/``where`` may bring in other CTEs)."""
    pick = "SELECT transfer_, {a}, {u}, {b}, {sign}amount_, {bal}, reason_, ref_, version_, at_"
    return (
        "WITH moves_ AS MATERIALIZED ("
        f"SELECT gen_random_uuid() AS transfer_, CAST({amount} AS bigint) AS amount_, "
        f"CAST({debit.account} AS text) AS d_account, CAST({debit.user} AS uuid) AS d_user, "
        f"CAST({debit.ball} AS uuid) AS d_ball, "
        f"CAST({debit.balance_after} AS bigint) AS d_after, "
        f"CAST({credit.account} AS text) AS c_account, CAST({credit.user} AS uuid) AS c_user, "
        f"CAST({credit.ball} AS uuid) AS c_ball, "
        f"CAST({credit.balance_after} AS bigint) AS c_after, "
        f"CAST({reason} AS text) AS reason_, CAST({ref} AS text) AS ref_, "
        f"CAST({rules_version} AS int) AS version_, {at} AS at_ "
        f"FROM {source} {joins} WHERE {where}) "
        f"INSERT INTO ledger_entries ({ENTRY_COLUMNS}) "
        + pick.format(a="d_account", u="d_user", b="d_ball", sign="-", bal="d_after")
        + " FROM moves_ UNION ALL "
        + pick.format(a="c_account", u="c_user", b="c_ball", sign="", bal="c_after")
        + " FROM moves_"
    )
