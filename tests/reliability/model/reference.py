"""The reference model: Canopy's economy in plain Python, written from the rules file's meaning
(rules/default.toml, docs/rules.md), not from the app's code. It holds what the app should hold —
users, balances, balls, friendships, caps, step days, props, plantings and the system accounts —
and says what each request must answer.

Amounts the rules leave to chance (a random-mode take is 1..max g) are checked against their
bounds and then adopted from the app's answer; everything else is predicted exactly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any
from zoneinfo import ZoneInfo

# --- the rules (rules/default.toml), as the model reads them -----------------------------------

MAX_AGE = timedelta(days=7)
MAX_FUTURE_SKEW = timedelta(minutes=5)
RIPEN_AFTER = timedelta(hours=24)
EXPIRE_AFTER = timedelta(hours=72)
MAX_SHARE = Decimal("0.1")
OWNER_FLOOR = Decimal("0.5")
WATER_AMOUNTS = (10, 18, 33, 66)
WATER_PER_FRIEND_DAY = 3
PROP_DURATION = {"shield": timedelta(hours=24), "double_collect": timedelta(minutes=5)}
WALK_G_PER_STEP = Decimal("0.0165")
WALK_DAY_CAP_G = 296
WALK_MAX_STEPS = 100_000
WALK_RIPEN_AT = time(7, 0)


@dataclass(frozen=True)
class Kind:
    name: str
    sources: frozenset[str]
    per_event_g: int | None = None
    per_unit_g: Decimal | None = None
    max_units: Decimal | None = None
    day_cap_count: int | None = None
    month_cap_count: int | None = None
    # region → (per_event_g, per_unit_g, max_units) overriding the defaults
    regions: dict[str, tuple[int | None, Decimal | None, Decimal | None]] = field(
        default_factory=dict
    )

    def factor(self, region: str | None) -> tuple[int | None, Decimal | None, Decimal | None]:
        if region in self.regions:
            return self.regions[region]
        return self.per_event_g, self.per_unit_g, self.max_units


BOTH = frozenset({"client", "partner"})
PARTNER = frozenset({"partner"})
KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("offline_payment", PARTNER, per_event_g=5, day_cap_count=10),
        Kind("e_invoice", PARTNER, per_event_g=5, day_cap_count=5),
        Kind(
            "metro",
            BOTH,
            per_event_g=52,
            day_cap_count=5,
            regions={"shenzhen": (None, Decimal("46.8"), Decimal(100))},
        ),
        Kind(
            "bus",
            BOTH,
            per_event_g=80,
            day_cap_count=5,
            regions={"shenzhen": (None, Decimal("26.9"), Decimal(60))},
        ),
        Kind("utility_bill", PARTNER, per_event_g=262, month_cap_count=10),
        Kind("train_ticket", PARTNER, per_event_g=136, month_cap_count=10),
        Kind("etc_toll", PARTNER, per_event_g=23),
        Kind(
            "cycling",
            BOTH,
            per_unit_g=Decimal(50),
            max_units=Decimal(200),
            regions={"wuhan": (None, Decimal("93.3"), Decimal(200))},
        ),
    )
}


def floor_g(x: Decimal) -> int:
    return int(x.to_integral_value(rounding=ROUND_FLOOR))


def one_take(amount: int) -> int:
    return max(1, floor_g(Decimal(amount) * MAX_SHARE))


def friends_cap(amount: int) -> int:
    return floor_g(Decimal(amount) * (1 - OWNER_FLOOR))


def local_day(moment: datetime, tz: str) -> date:
    return moment.astimezone(ZoneInfo(tz)).date()


def local_start(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def next_wall(after: datetime, at: time, tz: str) -> datetime:
    """First instant >= ``after`` whose wall clock in ``tz`` reads ``at``."""
    zone = ZoneInfo(tz)
    day = after.astimezone(zone).date()
    for d in (day, day + timedelta(days=1)):
        for fold in (0, 1):
            c = datetime.combine(d, at, tzinfo=zone).replace(fold=fold).astimezone(UTC)
            if c >= after:
                return c
    raise AssertionError("unreachable")


# --- state -------------------------------------------------------------------------------------


@dataclass
class Ball:
    id: str
    owner: str
    kind: str
    amount: int
    remaining: int
    ripens_at: datetime
    expires_at: datetime
    stealable: bool
    stolen: int = 0
    booked_expired: bool = False
    takes: dict[str, int] = field(default_factory=dict)  # collector → times taken
    # the order the model learned of it: picks go by this, not by the app's random ids, so a
    # seed's steps choose the same balls on every run
    seq: int = 0

    def live(self, now: datetime) -> bool:
        return self.remaining > 0 and not self.booked_expired and self.expires_at > now

    def ripe(self, now: datetime) -> bool:
        return self.live(now) and self.ripens_at <= now

    def expired(self, now: datetime) -> bool:
        return self.booked_expired or (self.remaining > 0 and self.expires_at <= now)


@dataclass
class User:
    id: str
    handle: str
    token: str
    tz: str
    region: str | None
    balance: int = 0
    erased: bool = False
    props: dict[str, int] = field(default_factory=dict)
    active_until: dict[str, datetime] = field(default_factory=dict)
    steps: dict[date, int] = field(default_factory=dict)
    minted_days: set[date] = field(default_factory=set)
    step_g: dict[date, int] = field(default_factory=dict)  # what each minted day gave

    def card(self, prop: str, now: datetime) -> bool:
        until = self.active_until.get(prop)
        return until is not None and until > now


@dataclass
class Counter:
    count: int = 0
    grams: int = 0
    units: Decimal = Decimal(0)


@dataclass
class Sent:
    """An activity sent before (for duplicates and Idempotency-Key replays)."""

    path: str
    token: str
    body: dict[str, Any]
    key: str | None
    status: int
    reply: dict[str, Any]
    user: str
    source: str


@dataclass
class Planting:
    id: str
    user: str
    cost: int
    status: str
    order: str | None = None


@dataclass
class Model:
    now: datetime
    users: dict[str, User] = field(default_factory=dict)
    balls: dict[str, Ball] = field(default_factory=dict)
    friends: set[frozenset[str]] = field(default_factory=set)
    pending: set[tuple[str, str]] = field(default_factory=set)  # (from, to)
    blocks: set[tuple[str, str]] = field(default_factory=set)  # (blocker, blocked)
    counters: dict[tuple[str, str, str, date], Counter] = field(default_factory=dict)
    events: dict[tuple[str, str, str], tuple[str, int, str | None]] = field(default_factory=dict)
    watered: dict[tuple[str, str, date], int] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    plantings: dict[str, Planting] = field(default_factory=dict)
    item_taken: dict[str, int] = field(default_factory=dict)
    minted: int = 0
    burned: int = 0
    expired: int = 0
    # what the current step should move: account key → grams (see Checker)
    delta: dict[str, int] = field(default_factory=dict)
    # indexes, so a long run stays fast: balls by owner, and the balls still holding energy
    by_owner: dict[str, list[Ball]] = field(default_factory=dict)
    holding: dict[int, Ball] = field(default_factory=dict)

    # --- helpers --------------------------------------------------------------------------------

    def live_users(self) -> list[User]:
        return [u for u in self.users.values() if not u.erased]

    def are_friends(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self.friends

    def in_order(self, ids: Iterable[str]) -> list[str]:
        """User ids in the order they registered (the app's ids are random: sorting by them
        would pick other people on another run of the same seed)."""
        rank = {uid: n for n, uid in enumerate(self.users)}
        return sorted(ids, key=lambda uid: rank.get(uid, len(rank)))

    def friends_of(self, a: str) -> list[str]:
        return self.in_order(next(iter(p - {a})) for p in self.friends if a in p)

    def move(self, key: str, grams: int) -> None:
        self.delta[key] = self.delta.get(key, 0) + grams

    def credit_user(self, user: str, grams: int) -> None:
        self.users[user].balance += grams
        self.move(f"user:{user}", grams)

    def ball_change(self, ball: Ball, grams: int) -> None:
        ball.remaining += grams
        self.move(f"ball:{ball.id}", grams)
        if ball.remaining == 0:
            self.holding.pop(id(ball), None)

    def new_ball(self, ball: Ball) -> None:
        ball.seq = len(self.balls)
        self.balls[ball.id] = ball
        self.by_owner.setdefault(ball.owner, []).append(ball)
        if ball.remaining > 0:
            self.holding[id(ball)] = ball
        self.move(f"ball:{ball.id}", ball.remaining)

    def mint(self, grams: int) -> None:
        self.minted += grams
        self.move("system:minted", -grams)

    # --- activities ------------------------------------------------------------------------------

    def activity(
        self,
        user_id: str | None,
        source: str,
        origin: str,
        event: dict[str, Any],
        granted: frozenset[str] | None = None,
    ) -> dict[str, Any]:
        """The result an activity must get: ``{status, energy_g, reason, ball}`` where ``ball``
        is (ripens_at, expires_at) when a ball must be made (its id comes from the reply)."""
        user = self.users.get(user_id) if user_id else None
        if user is None or user.erased:
            return {"status": "rejected", "energy_g": 0, "reason": "unknown_user"}
        key = (user.id, source, event["id"])
        if key in self.events:
            _, grams, ball = self.events[key]
            return {"status": "duplicate", "energy_g": grams, "reason": None, "ball_id": ball}
        occurred = datetime.fromisoformat(event["occurred_at"])
        kind = KINDS.get(event["kind"])
        result: dict[str, Any]
        if kind is None:
            result = {"status": "rejected", "energy_g": 0, "reason": "unknown_kind"}
        elif origin not in kind.sources or (granted is not None and kind.name not in granted):
            result = {"status": "rejected", "energy_g": 0, "reason": "untrusted_source"}
        elif occurred > self.now + MAX_FUTURE_SKEW:
            result = {"status": "rejected", "energy_g": 0, "reason": "in_future"}
        elif occurred < self.now - MAX_AGE:
            result = {"status": "rejected", "energy_g": 0, "reason": "too_old"}
        else:
            result = self._value(user, kind, occurred, event)
        return result  # recorded (record_event) only if minted or capped: a rejection is not kept

    def _value(
        self, user: User, kind: Kind, occurred: datetime, event: dict[str, Any]
    ) -> dict[str, Any]:
        per_event, per_unit, max_units = kind.factor(user.region)
        qty = Decimal(str(event["quantity"])) if event.get("quantity") is not None else None
        if per_event is not None:
            computed = per_event
        else:
            assert per_unit is not None
            if qty is None or qty <= 0:
                return {"status": "rejected", "energy_g": 0, "reason": "invalid_quantity"}
            if max_units is not None and qty > max_units:
                return {"status": "rejected", "energy_g": 0, "reason": "implausible"}
            computed = floor_g(qty * per_unit)
        day = local_day(occurred, user.tz)
        day_counter = month_counter = None
        if kind.day_cap_count is not None or max_units is not None:
            day_counter = self.counters.setdefault((user.id, kind.name, "day", day), Counter())
        if kind.month_cap_count is not None:
            month_counter = self.counters.setdefault(
                (user.id, kind.name, "month", day.replace(day=1)), Counter()
            )
        grams = computed
        fit = None
        if day_counter is not None and max_units is not None and per_unit is not None:
            assert qty is not None
            fit = max(Decimal(0), min(qty, max_units - day_counter.units))
            if fit != qty:
                grams = floor_g(per_unit * fit)
        cap = kind.day_cap_count
        if day_counter is not None and cap is not None and day_counter.count >= cap:
            grams = 0
        cap = kind.month_cap_count
        if month_counter is not None and cap is not None and month_counter.count >= cap:
            grams = 0
        if grams > 0:
            for counter in (day_counter, month_counter):
                if counter is not None:
                    counter.count += 1
                    counter.grams += grams
            if day_counter is not None and fit is not None:
                day_counter.units += fit
        status = "minted" if grams == computed else "capped"
        out: dict[str, Any] = {"status": status, "energy_g": grams, "reason": None}
        if grams > 0:
            ripens = occurred + RIPEN_AFTER
            out["ball"] = (ripens, max(ripens, self.now) + EXPIRE_AFTER)
        return out

    def record_event(
        self, user_id: str, source: str, event_id: str, grams: int, ball_id: str | None
    ) -> None:
        self.events[(user_id, source, event_id)] = ("done", grams, ball_id)

    def minted_ball(
        self,
        ball_id: str,
        owner: str,
        kind: str,
        grams: int,
        ripens: datetime,
        expires: datetime,
        stealable: bool = True,
    ) -> Ball:
        ball = Ball(ball_id, owner, kind, grams, grams, ripens, expires, stealable)
        self.new_ball(ball)
        self.mint(grams)
        return ball

    # --- steps ------------------------------------------------------------------------------------

    def steps_verdict(self, user: User, day: date, steps: int) -> str:
        today = local_day(self.now, user.tz)
        if day > today:
            return "not_begun"
        if local_start(day, user.tz) < self.now - MAX_AGE:
            return "too_old"
        if steps > WALK_MAX_STEPS:
            return "implausible"
        return "ok"

    def due_step_days(self, user: User) -> list[date]:
        if user.erased:
            return []
        today = local_day(self.now, user.tz)
        return sorted(d for d in user.steps if d < today and d not in user.minted_days)

    def step_energy(self, user: User, day: date) -> int:
        return min(floor_g(Decimal(user.steps[day]) * WALK_G_PER_STEP), WALK_DAY_CAP_G)

    def step_ball_times(self, user: User, day: date) -> tuple[datetime, datetime]:
        ripens = next_wall(local_start(day, user.tz) + RIPEN_AFTER, WALK_RIPEN_AT, user.tz)
        return ripens, max(ripens, self.now) + EXPIRE_AFTER

    # --- collecting --------------------------------------------------------------------------------

    def own_balls(self, user: str) -> list[Ball]:
        return sorted(self.by_owner.get(user, []), key=lambda b: b.seq)

    def collect_status(self, ball: Ball | None, user: str) -> str:
        if ball is None or ball.owner != user:
            return "not_found"
        if ball.expired(self.now):
            return "expired"
        if ball.ripens_at > self.now:
            return "not_ripe"
        return "empty"

    def possible(self, ball: Ball) -> int:
        return min(one_take(ball.amount), friends_cap(ball.amount) - ball.stolen, ball.remaining)

    def viewer_status(self, ball: Ball, me: str) -> str:
        owner = self.users[ball.owner]
        allowed = 2 if self.users[me].card("double_collect", self.now) else 1
        if ball.expired(self.now):
            return "expired"
        if ball.ripens_at > self.now:
            return "waiting"
        if owner.card("shield", self.now) or not ball.stealable:
            return "protected"
        if ball.takes.get(me, 0) >= allowed:
            return "collected_by_you"
        if self.possible(ball) <= 0:
            return "insufficient"
        return "available"

    def expire_ball(self, ball: Ball) -> None:
        grams = ball.remaining
        ball.booked_expired = True
        self.holding.pop(id(ball), None)
        if grams:
            self.ball_change(ball, -grams)
            self.expired += grams
            self.move("system:expired", grams)

    # --- invariants --------------------------------------------------------------------------------

    def check_conservation(self) -> None:
        balances = sum(u.balance for u in self.users.values())
        in_balls = sum(b.remaining for b in self.holding.values())
        assert self.minted == balances + in_balls + self.burned + self.expired, (
            "model: minted != balances + balls + burned + expired",
            self.minted,
            balances,
            in_balls,
            self.burned,
            self.expired,
        )
        for u in self.users.values():
            assert u.balance >= 0, ("model: negative balance", u.id)
        for b in self.holding.values():
            assert b.remaining >= 0, ("model: negative ball", b.id)
            assert b.stolen <= friends_cap(b.amount), ("model: ball over-taken", b.id)


def new_id() -> str:
    return uuid.uuid4().hex
