"""All SQL of the energy domain: one statement per ingestion, built from named CTE parts.

Recording activities and closing step days is one statement each (one round trip, one implicit
transaction) composed of these parts, in this order:

1. ``who`` — the users named, read (zone, region) and locked ``FOR NO KEY UPDATE`` in id order.
   Every writer of a user's activities, counters and step days holds this lock, so concurrent
   requests for one user queue here, and batches naming the same users in any order cannot
   deadlock (nor can they later, updating ``users.co2e_avoided_g``).
2. ``valued`` — one row per event with what it is worth (computed in Python for activities,
   from the rules' walking terms for step days).
3. the minting core (:func:`minting`): events already recorded (``known``), today's cap usage
   (``usage``), read through the functions of migration 6b1d2e3f4a51 — a VOLATILE function takes
   a fresh snapshot, so it sees what a request this one waited for has just committed — then the
   caps walked in order (``walk``: :func:`app.energy.ingest.apply_caps` in SQL), and the writes:
   activities, balls, the ledger (:func:`app.ledger.booking.book`), counters (absolute values,
   one row per user, kind and period), the carbon account (``carbon_months``: events and grams
   per local month, kind, rules version and region) and ``co2e_avoided_g`` (one sum per user).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from app.core.sql import Statement
from app.energy.periods import local_date_sql, local_midnight_sql, next_local_time_sql
from app.ledger.booking import MINTED, ball, book, system

CapKey = tuple[uuid.UUID, str, str, date]  # user, kind, "day" | "month", period start
NOW = "CAST(:now AS timestamptz)"


@dataclass
class Counter:
    """A cap counter in Python (the economy simulator's; ingestion keeps them in SQL)."""

    count: int
    grams: int
    units: Decimal = Decimal(0)  # the day's units (per-unit kinds with a day's unit bound)


# --- rows ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActivityRow:
    """One event's outcome, in request order; ``status`` is None when its user does not exist."""

    n: int
    id: str
    kind: str
    status: str | None
    energy_g: int | None
    ball_id: uuid.UUID | None
    reason: str | None
    rules_version: int | None


@dataclass(frozen=True, slots=True)
class StepsRow:
    """The asked day after a step report, or why it was refused (``verdict``)."""

    verdict: str | None
    tz: str
    version: int
    steps: int | None
    minted: bool
    energy_g: int


@dataclass(frozen=True, slots=True)
class ClosedRow:
    minted: int


# --- parts ---------------------------------------------------------------------------------------


def lock_users(ids: str, *, skip_locked: bool = False) -> str:
    """CTE body: the live users among ``ids`` (a query of user ids) with their zone and region,
    locked in id order (the order every statement of this module locks users in)."""
    skip = " SKIP LOCKED" if skip_locked else ""
    return (
        "SELECT id, timezone, region, region_previous, region_from FROM users "  # noqa: S608
        f"WHERE id IN ({ids}) AND erased_at IS NULL ORDER BY id FOR NO KEY UPDATE{skip}"
    )


def region_on(day: str, user: str) -> str:
    """The region that values a user's events of local date ``day``: the one in force when that
    day began. A change made during a day applies from the next (``region_from``), so switching
    mid-day never changes the rate or the bound of the day's events (see PATCH /v1/me)."""
    return (
        f"CASE WHEN {user}.region_from IS NOT NULL AND ({day}) < {user}.region_from "
        f"THEN {user}.region_previous ELSE {user}.region END"
    )


def minting() -> str:
    """The minting core, as CTEs after ``who`` and ``valued``. ``valued`` has one row per event:
    ``n`` (its number), ``user_id``, ``tz``, ``source``, ``external_id``, ``kind``,
    ``occurred_at``, ``quantity``, ``attributes``, ``version``, ``reject`` (a reason, or NULL),
    ``computed``, ``factor``, ``unit``, ``region``, ``max_units`` (the day's unit bound of a
    per-unit factor), ``day_cap_g``, ``day_cap_n``,
    ``month_cap_n``, ``ripens_base`` (occurred_at + ripen_after), ``ripen_local``,
    ``expire_after`` and ``ref``. It defines ``outcomes`` (n, kind, status, energy_g, ball_id,
    reason, rules_version) for every event of a known user."""
    ripens = next_local_time_sql("v.ripens_base", "v.ripen_local", "v.tz")
    entries = book(
        "decided",
        amount="decided.grams",
        debit=system(MINTED),
        credit=ball("decided.user_id", "decided.ball_id"),
        reason="'mint'",
        ref="decided.ref",
        rules_version="decided.version",
        at=NOW,
        where="decided.grams > 0",
    )
    at = "[w.i + 1]"
    return f"""
    known AS MATERIALIZED (  -- recorded before (same source and id): the original answer,
        -- whatever the event would get now (a retry after the time window closed, or after the
        -- partner lost the kind, is still a duplicate: it was minted once)
        SELECT v.n, r.kind, r.energy_g, r.ball_id, r.rules_version
        FROM (
            SELECT array_agg(user_id ORDER BY n) AS users, array_agg(source ORDER BY n) AS sources,
                   array_agg(external_id ORDER BY n) AS ids
            FROM valued
        ) AS a
        CROSS JOIN LATERAL canopy_recorded_activities(a.users, a.sources, a.ids) AS r
        JOIN valued v ON v.user_id = r.user_id AND v.source = r.source
                     AND v.external_id = r.external_id
    ),
    fresh AS MATERIALIZED (  -- new events, numbered in order of occurrence per user and kind
        SELECT v.*, p.day, p.month,
            v.day_cap_g IS NOT NULL OR v.day_cap_n IS NOT NULL OR v.max_units IS NOT NULL
                AS has_day,
            v.month_cap_n IS NOT NULL AS has_month,
            row_number() OVER lane AS seq,
            (lag(p.day) OVER lane) IS DISTINCT FROM p.day AS new_day,
            (lag(p.month) OVER lane) IS DISTINCT FROM p.month AS new_month,
            CASE WHEN v.ripen_local IS NULL THEN v.ripens_base ELSE {ripens} END AS ripens_at
        FROM valued v
        CROSS JOIN LATERAL (SELECT {local_date_sql("v.occurred_at", "v.tz")} AS day) AS d
        CROSS JOIN LATERAL (SELECT d.day, CAST(date_trunc('month', d.day) AS date) AS month) AS p
        WHERE v.reject IS NULL AND NOT EXISTS (SELECT 1 FROM known k WHERE k.n = v.n)
        WINDOW lane AS (PARTITION BY v.user_id, v.kind ORDER BY v.occurred_at, v.n)
    ),
    usage AS MATERIALIZED (  -- what the caps have counted so far in those days and months
        SELECT u.*
        FROM (
            SELECT array_agg(user_id ORDER BY user_id, kind, period, start) AS users,
                   array_agg(kind ORDER BY user_id, kind, period, start) AS kinds,
                   array_agg(period ORDER BY user_id, kind, period, start) AS periods,
                   array_agg(start ORDER BY user_id, kind, period, start) AS starts
            FROM (
                SELECT user_id, kind, CAST('day' AS text) AS period, day AS start
                FROM fresh WHERE has_day
                UNION
                SELECT user_id, kind, 'month', month FROM fresh WHERE has_month
            ) AS keys
        ) AS a
        CROSS JOIN LATERAL canopy_cap_usage(a.users, a.kinds, a.periods, a.starts) AS u
    ),
    lanes AS (  -- one user's new events of one kind, in order, as arrays for the walk
        SELECT f.user_id, f.kind, count(*) AS len,
            array_agg(f.computed ORDER BY f.seq) AS c,
            array_agg(CASE WHEN f.unit IS NOT NULL THEN f.quantity END ORDER BY f.seq) AS q,
            array_agg(f.factor ORDER BY f.seq) AS fac,
            array_agg(f.max_units ORDER BY f.seq) AS max_u,
            array_agg(coalesce(d.units, 0) ORDER BY f.seq) AS day_u0,
            array_agg(f.day_cap_g ORDER BY f.seq) AS cap_g,
            array_agg(f.day_cap_n ORDER BY f.seq) AS cap_n,
            array_agg(f.month_cap_n ORDER BY f.seq) AS cap_m,
            array_agg(f.new_day ORDER BY f.seq) AS new_day,
            array_agg(f.new_month ORDER BY f.seq) AS new_month,
            array_agg(coalesce(d.count, 0) ORDER BY f.seq) AS day_n0,
            array_agg(coalesce(d.grams, 0) ORDER BY f.seq) AS day_g0,
            array_agg(coalesce(m.count, 0) ORDER BY f.seq) AS month_n0,
            array_agg(coalesce(m.grams, 0) ORDER BY f.seq) AS month_g0
        FROM fresh f
        LEFT JOIN usage d ON d.user_id = f.user_id AND d.kind = f.kind AND d.period = 'day'
                         AND d.period_start = f.day
        LEFT JOIN usage m ON m.user_id = f.user_id AND m.kind = f.kind AND m.period = 'month'
                         AND m.period_start = f.month
        GROUP BY f.user_id, f.kind
    ),
    walk (user_id, kind, i, grams, day_n, day_g, day_u, month_n, month_g) AS (
        -- apply_caps, event by event: the day's and month's counts, grams and the day's units
        -- before each event (the stored ones when it opens a day or month), what fits (the
        -- units left of the day's bound, at the event's factor; then the caps), and the
        -- counts after it
        SELECT user_id, kind, 0, CAST(0 AS bigint), 0, CAST(0 AS bigint), CAST(0 AS numeric), 0,
            CAST(0 AS bigint)
        FROM lanes
        UNION ALL
        SELECT w.user_id, w.kind, w.i + 1, g.grams,
            s.day_n + CASE WHEN g.grams > 0 AND s.has_day THEN 1 ELSE 0 END,
            s.day_g + CASE WHEN s.has_day THEN g.grams ELSE 0 END,
            s.day_u + CASE WHEN g.grams > 0 AND s.has_day THEN coalesce(u.fit, 0) ELSE 0 END,
            s.month_n + CASE WHEN g.grams > 0 AND s.has_month THEN 1 ELSE 0 END,
            s.month_g + CASE WHEN s.has_month THEN g.grams ELSE 0 END
        FROM walk w
        JOIN lanes l ON l.user_id = w.user_id AND l.kind = w.kind
        CROSS JOIN LATERAL (SELECT l.c{at} AS c, l.cap_g{at} AS cap_g, l.cap_n{at} AS cap_n,
            l.cap_m{at} AS cap_m, l.q{at} AS q, l.fac{at} AS fac, l.max_u{at} AS max_u,
            l.cap_g{at} IS NOT NULL OR l.cap_n{at} IS NOT NULL OR l.max_u{at} IS NOT NULL
                AS has_day,
            l.cap_m{at} IS NOT NULL AS has_month,
            CASE WHEN l.new_day{at} THEN l.day_n0{at} ELSE w.day_n END AS day_n,
            CASE WHEN l.new_day{at} THEN l.day_g0{at} ELSE w.day_g END AS day_g,
            CASE WHEN l.new_day{at} THEN l.day_u0{at} ELSE w.day_u END AS day_u,
            CASE WHEN l.new_month{at} THEN l.month_n0{at} ELSE w.month_n END AS month_n,
            CASE WHEN l.new_month{at} THEN l.month_g0{at} ELSE w.month_g END AS month_g
        ) AS s
        CROSS JOIN LATERAL (SELECT CASE WHEN s.max_u IS NOT NULL AND s.q IS NOT NULL
            THEN GREATEST(0, LEAST(s.q, s.max_u - s.day_u)) END AS fit) AS u
        CROSS JOIN LATERAL (SELECT CASE WHEN u.fit IS NULL OR u.fit = s.q THEN s.c
            ELSE CAST(floor(s.fac * u.fit) AS bigint) END AS c) AS b
        CROSS JOIN LATERAL (SELECT CASE
            WHEN s.cap_n IS NOT NULL AND s.day_n >= s.cap_n THEN 0
            WHEN s.cap_m IS NOT NULL AND s.month_n >= s.cap_m THEN 0
            WHEN s.cap_g IS NOT NULL THEN GREATEST(0, LEAST(b.c, s.cap_g - s.day_g))
            ELSE b.c END AS grams) AS g
        WHERE w.i < l.len
    ),
    decided AS MATERIALIZED (  -- each new event with what it mints and its ball
        SELECT f.*, w.grams, w.day_n, w.day_g, w.day_u, w.month_n, w.month_g,
            CASE WHEN w.grams > 0 THEN gen_random_uuid() END AS ball_id,
            CASE WHEN w.grams = f.computed THEN 'minted' ELSE 'capped' END AS status
        FROM fresh f JOIN walk w ON w.user_id = f.user_id AND w.kind = f.kind AND w.i = f.seq
    ),
    tallies AS (  -- each counter after its day's (month's) last event, and before this request
        SELECT t.*, u.count AS was
        FROM (
            (SELECT DISTINCT ON (user_id, kind, day) user_id, kind, CAST('day' AS text) AS period,
                day AS period_start, day_n AS count, day_g AS grams, day_u AS units
             FROM decided WHERE has_day ORDER BY user_id, kind, day, seq DESC)
            UNION ALL
            (SELECT DISTINCT ON (user_id, kind, month) user_id, kind, 'month', month, month_n,
                month_g, CAST(0 AS numeric)
             FROM decided WHERE has_month ORDER BY user_id, kind, month, seq DESC)
        ) AS t
        LEFT JOIN usage u ON u.user_id = t.user_id AND u.kind = t.kind AND u.period = t.period
                         AND u.period_start = t.period_start
    ),
    tallied AS (
        INSERT INTO cap_counters AS c (user_id, kind, period, period_start, count, grams, units)
        SELECT user_id, kind, period, period_start, count, grams, units FROM tallies
        WHERE count > coalesce(was, 0)
        ORDER BY user_id, kind, period, period_start
        ON CONFLICT (user_id, kind, period, period_start)
        DO UPDATE SET count = EXCLUDED.count, grams = EXCLUDED.grams, units = EXCLUDED.units
    ),
    recorded AS (  -- a plain INSERT: a clash would mean a writer without the user's lock
        INSERT INTO activities (user_id, source, external_id, kind, occurred_at, received_at,
            quantity, unit, attributes, region, factor_g, rules_version, computed_g, energy_g,
            status, ball_id)
        SELECT user_id, source, external_id, kind, occurred_at, {NOW}, quantity, unit,
            attributes, region, factor, version, computed, grams, status, ball_id
        FROM decided
    ),
    rolled AS (  -- the carbon account: events and grams per local month, kind, version, region
        INSERT INTO carbon_months AS c (user_id, month, kind, rules_version, region, events,
            co2e_g)
        SELECT user_id, month, kind, version, coalesce(region, ''), count(*), sum(grams)
        FROM decided
        GROUP BY user_id, month, kind, version, coalesce(region, '')
        ORDER BY user_id, month, kind, version, coalesce(region, '')
        ON CONFLICT (user_id, month, kind, rules_version, region)
        DO UPDATE SET events = c.events + EXCLUDED.events, co2e_g = c.co2e_g + EXCLUDED.co2e_g
    ),
    grown AS (
        INSERT INTO energy_balls (id, user_id, kind, ref, amount_g, remaining_g, stealable,
            created_at, ripens_at, expires_at, expired_g, stolen_g, rules_version)
        SELECT ball_id, user_id, kind, ref, grams, grams, true, {NOW}, ripens_at,
            GREATEST(ripens_at, {NOW}) + expire_after, 0, 0, version
        FROM decided WHERE grams > 0
        RETURNING *  -- for a statement that reads balls next: its snapshot does not show these
    ),
    minted AS ({entries}),
    credited AS (
        UPDATE users u SET co2e_avoided_g = u.co2e_avoided_g + t.grams
        FROM (SELECT user_id, sum(grams) AS grams FROM decided WHERE grams > 0 GROUP BY user_id)
            AS t
        WHERE u.id = t.user_id
    ),
    outcomes AS (
        SELECT n, kind, status, grams AS energy_g, ball_id, CAST(NULL AS text) AS reason,
            version AS rules_version
        FROM decided
        UNION ALL
        SELECT n, kind, 'duplicate', energy_g, ball_id, NULL, rules_version FROM known
        UNION ALL
        SELECT n, kind, 'rejected', 0, NULL, reject, version FROM valued v
        WHERE reject IS NOT NULL AND NOT EXISTS (SELECT 1 FROM known k WHERE k.n = v.n)
    )"""  # noqa: S608 (composed from this module's constant parts)


# --- activities ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventIn:
    """One reported event as the statement takes it: valued for its kind's default factor
    (``reject`` is why it cannot be recorded at all; ``value_reject`` why not at that factor)."""

    user_id: uuid.UUID
    external_id: str
    kind: str
    occurred_at: datetime
    quantity: Decimal | None
    attributes: str | None  # JSON text
    version: int
    reject: str | None
    computed_g: int | None = None
    factor: Decimal | None = None
    unit: str | None = None
    value_reject: str | None = None
    day_cap_g: int | None = None
    day_cap_count: int | None = None
    month_cap_count: int | None = None
    ripens_base: datetime | None = None
    ripen_at_local: time | None = None
    expire_after: timedelta | None = None
    max_units: Decimal | None = None  # the day's unit bound at the default factor


@dataclass(frozen=True, slots=True)
class RegionalValue:
    """Event ``n``'s value (1-based, in request order) for a user of ``region``."""

    n: int
    region: str
    computed_g: int | None
    factor: Decimal | None
    unit: str | None
    reject: str | None
    max_units: Decimal | None = None


INGEST = Statement(
    f"""
    WITH RECURSIVE
    events AS MATERIALIZED (
        SELECT * FROM unnest(
            CAST(:users AS uuid[]), CAST(:ids AS text[]), CAST(:kinds AS text[]),
            CAST(:times AS timestamptz[]), CAST(:quantities AS numeric[]),
            CAST(:attributes AS text[]), CAST(:versions AS int[]), CAST(:rejects AS text[]),
            CAST(:computed AS bigint[]), CAST(:factors AS numeric[]), CAST(:units AS text[]),
            CAST(:value_rejects AS text[]), CAST(:cap_g AS bigint[]), CAST(:cap_n AS int[]),
            CAST(:cap_m AS int[]), CAST(:ripens AS timestamptz[]), CAST(:ripen_local AS time[]),
            CAST(:expire_after AS interval[]), CAST(:max_units AS numeric[])
        ) WITH ORDINALITY AS e(user_id, external_id, kind, occurred_at, quantity, attributes,
            version, reject, computed, factor, unit, value_reject, day_cap_g, day_cap_n,
            month_cap_n, ripens_base, ripen_local, expire_after, max_units, n)
    ),
    regional AS (
        SELECT * FROM unnest(
            CAST(:r_n AS bigint[]), CAST(:r_region AS text[]), CAST(:r_computed AS bigint[]),
            CAST(:r_factor AS numeric[]), CAST(:r_unit AS text[]), CAST(:r_reject AS text[]),
            CAST(:r_max_units AS numeric[])
        ) AS r(n, region, computed, factor, unit, reject, max_units)
    ),
    who AS MATERIALIZED ({lock_users("SELECT user_id FROM events")}),
    valued AS MATERIALIZED (  -- each event of a known user, valued for that user's region
        SELECT e.n, e.user_id, w.timezone AS tz, CAST(:source AS text) AS source, e.external_id,
            e.kind, e.occurred_at, e.quantity, CAST(e.attributes AS jsonb) AS attributes,
            e.version,
            coalesce(e.reject, CASE WHEN r.n IS NULL THEN e.value_reject ELSE r.reject END)
                AS reject,
            CASE WHEN r.n IS NULL THEN e.computed ELSE r.computed END AS computed,
            CASE WHEN r.n IS NULL THEN e.factor ELSE r.factor END AS factor,
            CASE WHEN r.n IS NULL THEN e.unit ELSE r.unit END AS unit,
            CASE WHEN r.n IS NULL THEN e.max_units ELSE r.max_units END AS max_units,
            r.region, e.day_cap_g, e.day_cap_n, e.month_cap_n, e.ripens_base, e.ripen_local,
            e.expire_after, 'activity:' || CAST(:source AS text) || ':' || e.external_id AS ref
        FROM events e
        JOIN who w ON w.id = e.user_id
        LEFT JOIN regional r ON r.n = e.n
            AND r.region = {region_on(local_date_sql("e.occurred_at", "w.timezone"), "w")}
    ),
    {minting()}
    SELECT e.n, e.external_id AS id, coalesce(o.kind, e.kind) AS kind, o.status, o.energy_g,
        o.ball_id, o.reason, o.rules_version
    FROM events e LEFT JOIN outcomes o ON o.n = e.n
    ORDER BY e.n
    """,  # noqa: S608 (composed from this module's constant parts)
    row=ActivityRow,
)


def ingest_params(
    events: list[EventIn], regional: list[RegionalValue], *, source: str, now: datetime
) -> dict[str, object]:
    """The arrays :data:`INGEST` takes."""
    return {
        "source": source,
        "now": now,
        "users": [e.user_id for e in events],
        "ids": [e.external_id for e in events],
        "kinds": [e.kind for e in events],
        "times": [e.occurred_at for e in events],
        "quantities": [e.quantity for e in events],
        "attributes": [e.attributes for e in events],
        "versions": [e.version for e in events],
        "rejects": [e.reject for e in events],
        "computed": [e.computed_g for e in events],
        "factors": [e.factor for e in events],
        "units": [e.unit for e in events],
        "value_rejects": [e.value_reject for e in events],
        "cap_g": [e.day_cap_g for e in events],
        "cap_n": [e.day_cap_count for e in events],
        "cap_m": [e.month_cap_count for e in events],
        "ripens": [e.ripens_base for e in events],
        "ripen_local": [e.ripen_at_local for e in events],
        "expire_after": [e.expire_after for e in events],
        "max_units": [e.max_units for e in events],
        "r_n": [r.n for r in regional],
        "r_region": [r.region for r in regional],
        "r_computed": [r.computed_g for r in regional],
        "r_factor": [r.factor for r in regional],
        "r_unit": [r.unit for r in regional],
        "r_reject": [r.reject for r in regional],
        "r_max_units": [r.max_units for r in regional],
    }


# --- step days -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WalkingTerms:
    """Walking under one rules version (``known`` False: that version defines no walking)."""

    version: int
    effective_from: datetime
    max_age: timedelta
    ripen_after: timedelta
    expire_after: timedelta
    known: bool = False
    trusted: bool = False  # apps may report it (step totals come from the app)
    per_event_g: int | None = None
    per_unit_g: Decimal | None = None
    unit: str | None = None
    max_units: Decimal | None = None
    day_cap_g: int | None = None
    day_cap_count: int | None = None
    month_cap_count: int | None = None
    ripen_at_local: time | None = None


@dataclass(frozen=True, slots=True)
class RegionalWalking:
    version: int
    region: str
    per_event_g: int | None
    per_unit_g: Decimal | None
    unit: str | None


def terms_params(terms: list[WalkingTerms], regional: list[RegionalWalking]) -> dict[str, object]:
    """The arrays of :data:`WALKING_TERMS`, in the registry's order of versions."""
    return {
        "t_from": [t.effective_from for t in terms],
        "t_version": [t.version for t in terms],
        "t_max_age": [t.max_age for t in terms],
        "t_known": [t.known for t in terms],
        "t_trusted": [t.trusted for t in terms],
        "t_per_event": [t.per_event_g for t in terms],
        "t_per_unit": [t.per_unit_g for t in terms],
        "t_unit": [t.unit for t in terms],
        "t_max_units": [t.max_units for t in terms],
        "t_cap_g": [t.day_cap_g for t in terms],
        "t_cap_n": [t.day_cap_count for t in terms],
        "t_cap_m": [t.month_cap_count for t in terms],
        "t_ripen_after": [t.ripen_after for t in terms],
        "t_ripen_local": [t.ripen_at_local for t in terms],
        "t_expire_after": [t.expire_after for t in terms],
        "tr_version": [r.version for r in regional],
        "tr_region": [r.region for r in regional],
        "tr_per_event": [r.per_event_g for r in regional],
        "tr_per_unit": [r.per_unit_g for r in regional],
        "tr_unit": [r.unit for r in regional],
    }


WALKING_TERMS = """
    terms AS MATERIALIZED (  -- walking under each rules version; o: the registry's order
        SELECT * FROM unnest(
            CAST(:t_from AS timestamptz[]), CAST(:t_version AS int[]),
            CAST(:t_max_age AS interval[]), CAST(:t_known AS boolean[]),
            CAST(:t_trusted AS boolean[]), CAST(:t_per_event AS bigint[]),
            CAST(:t_per_unit AS numeric[]), CAST(:t_unit AS text[]),
            CAST(:t_max_units AS numeric[]), CAST(:t_cap_g AS bigint[]), CAST(:t_cap_n AS int[]),
            CAST(:t_cap_m AS int[]), CAST(:t_ripen_after AS interval[]),
            CAST(:t_ripen_local AS time[]), CAST(:t_expire_after AS interval[])
        ) WITH ORDINALITY AS t(effective_from, version, max_age, known, trusted, per_event,
            per_unit, unit, max_units, cap_g, cap_n, cap_m, ripen_after, ripen_local,
            expire_after, o)
    ),
    regional_terms AS (
        SELECT * FROM unnest(
            CAST(:tr_version AS int[]), CAST(:tr_region AS text[]),
            CAST(:tr_per_event AS bigint[]), CAST(:tr_per_unit AS numeric[]),
            CAST(:tr_unit AS text[])
        ) AS r(version, region, per_event, per_unit, unit)
    )"""


def _terms_at(instant: str) -> str:
    """Join condition: the walking terms of the version in force at ``instant`` (the registry's
    rule: the last to take effect by then; the first one before any took effect)."""
    latest = f"SELECT coalesce(max(p.o), 1) FROM terms p WHERE p.effective_from <= {instant}"  # noqa: S608 (constant parts)
    return f"t.o = ({latest})"


# ``due``: (n, user_id, tz, region, day, steps, midnight) → each day as a walking event, valued
# exactly as app.energy.ingest.value values one (floor(per-unit factor * steps), or per event).
# A day's ball ripens at walking's ripen_at_local (07:00 unless the rules say otherwise) of the
# NEXT local day, whatever ripen_after is: the contract's rule, and a short ripen_after must
# not ripen the ball before the day it counts has ended.
VALUED_DAYS = f"""
    valued AS MATERIALIZED (
        SELECT d.n, d.user_id, d.tz, CAST('steps' AS text) AS source,
            to_char(d.day, 'YYYY-MM-DD') AS external_id, CAST('walking' AS text) AS kind,
            d.midnight AS occurred_at, CAST(d.steps AS numeric) AS quantity,
            CAST(NULL AS jsonb) AS attributes, t.version,
            CASE WHEN NOT t.known THEN 'unknown_kind'
                 WHEN NOT t.trusted THEN 'untrusted_source'
                 WHEN x.per_event IS NULL AND d.steps <= 0 THEN 'invalid_quantity'
                 WHEN x.per_event IS NULL AND t.max_units IS NOT NULL AND d.steps > t.max_units
                     THEN 'implausible'
            END AS reject,
            coalesce(x.per_event, CAST(floor(x.per_unit * d.steps) AS bigint)) AS computed,
            coalesce(CAST(x.per_event AS numeric), x.per_unit) AS factor, x.unit, x.region,
            CASE WHEN x.per_event IS NULL THEN t.max_units END AS max_units,
            t.cap_g AS day_cap_g, t.cap_n AS day_cap_n, t.cap_m AS month_cap_n,
            {local_midnight_sql("d.day + 1", "d.tz")} AS ripens_base,
            coalesce(t.ripen_local, TIME '07:00') AS ripen_local, t.expire_after,
            'activity:steps:' || to_char(d.day, 'YYYY-MM-DD') AS ref
        FROM due d
        JOIN terms t ON {_terms_at("d.midnight")}
        LEFT JOIN regional_terms r ON r.version = t.version AND r.region = d.region
        CROSS JOIN LATERAL (SELECT
            CASE WHEN r.version IS NULL THEN t.per_event ELSE r.per_event END AS per_event,
            CASE WHEN r.version IS NULL THEN t.per_unit ELSE r.per_unit END AS per_unit,
            CASE WHEN r.version IS NULL THEN t.unit ELSE r.unit END AS unit,
            r.region
        ) AS x
    )"""  # noqa: S608

# the write of every step day a statement minted (``closing``: user_id, day, steps, source,
# updated_at, minted_at, energy_g, ball_id, rules_version), absolute values read fresh under the
# user's lock: an upsert, so a row committed after this statement's snapshot is written too
WRITE_DAYS = """
    kept AS (
        INSERT INTO step_days AS s (user_id, day, steps, source, updated_at, minted_at, energy_g,
            ball_id, rules_version)
        SELECT user_id, day, steps, source, updated_at, minted_at, energy_g, ball_id,
            rules_version
        FROM closing
        ORDER BY user_id, day
        ON CONFLICT (user_id, day) DO UPDATE SET steps = EXCLUDED.steps,
            source = EXCLUDED.source, updated_at = EXCLUDED.updated_at,
            minted_at = EXCLUDED.minted_at, energy_g = EXCLUDED.energy_g,
            ball_id = EXCLUDED.ball_id, rules_version = EXCLUDED.rules_version
    )"""

_DAY = "CAST(:day AS date)"
_STEPS = "CAST(:steps AS bigint)"

RECORD_STEPS = Statement(
    f"""
    WITH RECURSIVE
    {WALKING_TERMS},
    who AS MATERIALIZED ({lock_users("SELECT CAST(:user AS uuid)")}),
    asked AS MATERIALIZED (  -- the date reported: its local start, the rules then, the verdict
        SELECT w.id AS user_id, w.timezone AS tz, w.region, w.region_previous, w.region_from,
            m.today, m.midnight, t.version,
            CASE WHEN {_DAY} > m.today THEN 'not_begun'
                 WHEN m.midnight < {NOW} - t.max_age THEN 'too_old'
                 WHEN NOT t.known THEN 'no_walking'
                 WHEN t.max_units IS NOT NULL AND {_STEPS} > t.max_units THEN 'implausible'
            END AS verdict
        FROM who w
        CROSS JOIN LATERAL (SELECT {local_date_sql(NOW, "w.timezone")} AS today,
            {local_midnight_sql(":day", "w.timezone")} AS midnight) AS m
        JOIN terms t ON {_terms_at("m.midnight")}
    ),
    days AS MATERIALIZED (  -- the day (and, if it is over, every unminted ended day), fresh
        SELECT s.*
        FROM asked a
        CROSS JOIN LATERAL canopy_step_days(ARRAY[a.user_id],
            ARRAY[CASE WHEN {_DAY} < a.today THEN a.today END], {_DAY}) AS s
        WHERE a.verdict IS NULL
    ),
    total AS MATERIALIZED (  -- the day after this report: the higher total is kept
        SELECT a.user_id, {_DAY} AS day, g.grew,
            CASE WHEN g.grew THEN {_STEPS} ELSE d.steps END AS steps,
            CASE WHEN g.grew THEN CAST(:source AS text) ELSE d.source END AS source,
            CASE WHEN g.grew THEN {NOW} ELSE d.updated_at END AS updated_at,
            d.minted_at, d.energy_g, d.ball_id, d.rules_version
        FROM asked a
        LEFT JOIN days d ON d.day = {_DAY}
        CROSS JOIN LATERAL (SELECT d.steps IS NULL OR {_STEPS} > d.steps AS grew) AS g
        WHERE a.verdict IS NULL
    ),
    due AS MATERIALIZED (  -- a report for a day that is over closes every ended day
        SELECT row_number() OVER (ORDER BY x.day) AS n, a.user_id, a.tz,
            {region_on("x.day", "a")} AS region, x.day,
            x.steps, {local_midnight_sql("x.day", "a.tz")} AS midnight
        FROM asked a
        CROSS JOIN LATERAL (
            SELECT day, steps FROM total WHERE minted_at IS NULL
            UNION ALL
            SELECT day, steps FROM days WHERE minted_at IS NULL AND day <> {_DAY}
        ) AS x
        WHERE {_DAY} < a.today
    ),
    {VALUED_DAYS},
    {minting()},
    closed AS (SELECT d.day, o.* FROM due d JOIN outcomes o ON o.n = d.n),
    closing AS (
        SELECT t.user_id, t.day, t.steps, t.source, t.updated_at,
            CASE WHEN c.n IS NULL THEN t.minted_at ELSE {NOW} END AS minted_at,
            CASE WHEN c.n IS NULL THEN t.energy_g ELSE c.energy_g END AS energy_g,
            CASE WHEN c.n IS NULL THEN t.ball_id ELSE c.ball_id END AS ball_id,
            CASE WHEN c.n IS NULL THEN t.rules_version ELSE c.rules_version END AS rules_version
        FROM total t LEFT JOIN closed c ON c.day = t.day
        WHERE t.grew OR c.n IS NOT NULL
        UNION ALL
        SELECT s.user_id, s.day, s.steps, s.source, s.updated_at, {NOW}, c.energy_g, c.ball_id,
            c.rules_version
        FROM closed c JOIN days s ON s.day = c.day
        WHERE c.day <> {_DAY}
    ),
    {WRITE_DAYS}
    SELECT a.verdict, a.tz, a.version, t.steps,
        coalesce(t.minted_at IS NOT NULL OR c.n IS NOT NULL, false) AS minted,
        coalesce(c.energy_g, t.energy_g, 0) AS energy_g
    FROM asked a
    LEFT JOIN total t ON true
    LEFT JOIN closed c ON c.day = {_DAY}
    """,  # noqa: S608 (composed from this module's constant parts)
    row=StepsRow,
)


def closing_days(candidates: str, *, skip_locked: bool = False) -> str:
    """CTEs (after ``WITH RECURSIVE`` and :data:`WALKING_TERMS`) that mint the ended, unminted
    step days of the users ``candidates`` (a query giving ``user_id``), each once its local date
    is over. A statement that reads the forest afterwards finds the new balls in ``grown`` (its
    snapshot predates them) and the closed days in ``closing``. Parameters: ``now`` and those of
    :func:`app.energy.steps.walking_terms`."""
    return f"""
        candidates AS ({candidates}),
        who AS MATERIALIZED (
            {lock_users("SELECT user_id FROM candidates", skip_locked=skip_locked)}
        ),
        days AS MATERIALIZED (
            SELECT s.*
            FROM (
                SELECT array_agg(id ORDER BY id) AS users,
                       array_agg({local_date_sql(NOW, "timezone")} ORDER BY id) AS befores
                FROM who
            ) AS a
            CROSS JOIN LATERAL canopy_step_days(a.users, a.befores, NULL) AS s
        ),
        due AS MATERIALIZED (
            SELECT row_number() OVER (ORDER BY s.user_id, s.day) AS n, s.user_id,
                w.timezone AS tz, {region_on("s.day", "w")} AS region, s.day, s.steps,
                {local_midnight_sql("s.day", "w.timezone")} AS midnight
            FROM days s JOIN who w ON w.id = s.user_id
        ),
        {VALUED_DAYS},
        {minting()},
        closing AS (
            SELECT s.user_id, s.day, s.steps, s.source, s.updated_at, {NOW} AS minted_at,
                o.energy_g, o.ball_id, o.rules_version
            FROM due d JOIN outcomes o ON o.n = d.n
            JOIN days s ON s.user_id = d.user_id AND s.day = d.day
        ),
        {WRITE_DAYS}"""  # noqa: S608 (composed from this module's constant parts)


def _close_days(candidates: str, *, skip_locked: bool) -> Statement[ClosedRow]:
    return Statement(
        f"""
        WITH RECURSIVE
        {WALKING_TERMS},
        {closing_days(candidates, skip_locked=skip_locked)}
        SELECT count(*) AS minted FROM due
        """,  # noqa: S608 (composed from this module's constant parts)
        row=ClosedRow,
    )


# one user's ended days (when their forest is read); the user is locked only when a day is due,
# so reading a forest with nothing to mint takes no lock
CLOSE_USER_DAYS = _close_days(
    f"""SELECT s.user_id FROM step_days s JOIN users u ON u.id = s.user_id
        WHERE s.user_id = CAST(:user AS uuid) AND s.minted_at IS NULL AND u.erased_at IS NULL
          AND s.day < {local_date_sql(NOW, "u.timezone")}
        LIMIT 1""",  # noqa: S608 (constant parts)
    skip_locked=False,
)
# the worker: the oldest ended days of anyone, a batch at a time, skipping users busy elsewhere
CLOSE_DUE_DAYS = _close_days(
    f"""SELECT DISTINCT user_id FROM (
        SELECT s.user_id FROM step_days s JOIN users u ON u.id = s.user_id
        WHERE s.minted_at IS NULL AND u.erased_at IS NULL
          AND s.day < {local_date_sql(NOW, "u.timezone")}
        ORDER BY s.day LIMIT CAST(:batch AS int)
    ) AS oldest""",  # noqa: S608 (constant parts)
    skip_locked=True,
)


# --- the carbon account ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CarbonRow:
    """One (month, kind, rules version, region) of a user's year, with the user's names; the
    ``month`` ... ``co2e_g`` columns are NULL on the one row of a year with nothing in it.
    ``found`` is False for a user who does not exist (or was erased)."""

    found: bool
    handle: str | None
    display_name: str | None
    year: int
    month: date | None
    kind: str | None
    rules_version: int | None
    region: str | None
    events: int | None
    co2e_g: int | None


# one query on the rollup (never a scan of activities): the year defaults to the user's local one
CARBON_YEAR = Statement(
    """
    SELECT u.id IS NOT NULL AS found, u.handle, u.display_name, y.year,
        c.month, c.kind, c.rules_version, c.region, c.events, c.co2e_g
    FROM (VALUES (1)) AS one (x)
    LEFT JOIN users u ON u.id = CAST(:user AS uuid) AND u.erased_at IS NULL
    CROSS JOIN LATERAL (SELECT coalesce(CAST(:year AS int),
        CAST(extract(year FROM CAST(:now AS timestamptz) AT TIME ZONE
            coalesce(u.timezone, 'UTC')) AS int)) AS year) AS y
    LEFT JOIN carbon_months c ON c.user_id = u.id
        AND c.month >= make_date(y.year, 1, 1) AND c.month < make_date(y.year + 1, 1, 1)
    ORDER BY c.month, c.kind, c.rules_version, c.region
    """,
    row=CarbonRow,
)
