"""The simulation: a seeded population living day after day under a rules file.

Every number that the rules decide comes from the service's own code, called here:
- activities → energy: :func:`app.energy.ingest.evaluate` (rules version, kind, trust, window,
  regional factor, grams) then :func:`app.energy.ingest.apply_caps` on the player's own cap
  counters (created empty when missing, as the service's ``lock_counters`` does);
- when a ball ripens and expires: :func:`app.energy.ingest.ball_row`;
- a step day is one walking event on its local midnight, minted when the day is over, like
  ``app.energy.steps._mint`` (client origin, no ingest window);
- what a friend takes from a ball: :func:`app.game.stealing.service.take_size`, once per friend
  per ball (a take of 0 g is not a take), never from watering balls;
- watering: an amount from ``watering.amounts_g``, at most ``per_friend_daily_limit`` times per
  friend per local day, only from the giver's balance, as a ball that is ripe at once, cannot be
  stolen and expires ``balls.expire_after`` later (as ``app.game.watering.service.water``).

What stays in the simulator is bookkeeping (who holds which ball, balances, statistics) and
behaviour (personas). It is fast because identical inputs are evaluated once, never because a
formula was copied: with a single rules version an event's ``evaluate`` result depends on its
kind, local day, quantity, origin and the player's time zone and region, so it is shared by all
such events; ``apply_caps`` runs once per distinct sequence of a player's events of one kind and
day (and month counter); ``ball_row`` once per kind and minute; ``take_size`` once per ball state
and draw.

The population is cut into communities of friends (friendships never cross a community), each
simulated on its own with random streams derived from the seed and its number, so a run gives
the same result whether communities run in one process or in several. Activities and choices
come from one stream and stealing draws from another, so two rules files run with the same seed
see the very same players doing the very same things.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import multiprocessing
import os
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID, uuid5

from app.core.users import UserRef
from app.energy.ingest import Incoming as _Incoming
from app.energy.ingest import Outcome, Pending, apply_caps, ball_row, evaluate
from app.energy.periods import local_midnight, zone
from app.energy.repository import CapKey, Counter
from app.game.simulator.personas import (
    STEP_GRANULARITY,
    ActivitySpec,
    PersonaSpec,
    RedeemSpec,
    SessionSpec,
    default_personas,
)
from app.game.stealing.service import one_take_g, take_size
from app.rules.loader import LoadedRules, load_rules
from app.rules.registry import BEGINNING, ActiveRules, RulesRegistry
from app.rules.schema import Rules

#: What planting a saxaul costs (Ant Forest): "days to the first saxaul" is the first day a
#: player's collected balance reaches this, and they plant it at once.
SAXAUL_G = 17_900
#: A Monday; runs start here unless told otherwise, so a seed alone fixes the result.
DEFAULT_START = date(2026, 3, 2)

RulesInput = Rules | LoadedRules | Path | str

_MINUTE = timedelta(minutes=1)
_NAMESPACE = UUID("7d1c3a51-6f0e-4c8e-9a49-5b1f0e6c2a10")
_BALL_ID = uuid5(_NAMESPACE, "ball")
_ORIGIN_STEPS = "client"  # step days are minted with the client origin (app.energy.steps)
_WALKING = "walking"
# Above this many player-days a run uses worker processes (when the machine has several cores).
_PARALLEL_FROM = 100_000
_CHUNK_PLAYERS = 500  # players per unit of work handed to a process
_TAKE_MEMO_LIMIT = 400_000
# Activities without a fixed time happen on a grid of this many minutes within their window.
_SLOT_MINUTES = 15
_NEVER = 1 << 62


@dataclass(frozen=True)
class SimulationConfig:
    """How big and how long a run is, and its seed."""

    players: int = 2_000
    days: int = 90
    seed: int = 1
    start: date = DEFAULT_START
    community_size: int = 100
    workers: int | None = None  # None: several processes for big runs; 1: in this process


@dataclass
class KindTotals:
    """One activity kind's events for a persona: how many, how many a cap cut, grams."""

    events: int = 0
    capped: int = 0
    capped_g: int = 0
    minted_g: int = 0

    def add(self, other: KindTotals) -> None:
        self.events += other.events
        self.capped += other.capped
        self.capped_g += other.capped_g
        self.minted_g += other.minted_g


@dataclass
class PersonaTotals:
    """Everything counted for the players of one persona (sums over players, grams)."""

    days: int
    players: int = 0
    minted_g: int = 0  # from the persona's own activities, after caps
    water_received_g: int = 0  # watering balls friends gave them
    collected_own_g: int = 0  # collected from their own balls
    taken_from_friends_g: int = 0  # what they took from friends' balls
    lost_to_friends_g: int = 0  # what friends took from their balls
    expired_g: int = 0
    live_at_end_g: int = 0  # still in balls when the run ended
    water_given_g: int = 0
    redeemed_g: int = 0  # spent on rewards
    redemptions: int = 0
    redemptions_refused: int = 0  # wanted, but the rules' daily ceiling (or enabled) said no
    trees: int = 0
    balance_at_end_g: int = 0
    capped_player_days: int = 0
    kinds: dict[str, KindTotals] = field(default_factory=lambda: defaultdict(KindTotals))
    rejected: dict[str, int] = field(default_factory=dict)
    minted_by_day: list[int] = field(default_factory=list)
    gathered_by_day: list[int] = field(default_factory=list)  # own collects + takes, by day
    collected_by_day: list[int] = field(default_factory=list)  # own collects, by day
    stolen_by_day: list[int] = field(default_factory=list)  # taken from friends, by day
    expired_by_day: list[int] = field(default_factory=list)  # lost to expiry, by day
    redeemed_by_day: list[int] = field(default_factory=list)  # spent on rewards, by day
    first_tree_days: list[int] = field(default_factory=list)  # 1-based, one per player who planted

    def __post_init__(self) -> None:
        if not self.minted_by_day:
            self.minted_by_day = [0] * self.days
            self.gathered_by_day = [0] * self.days
            self.collected_by_day = [0] * self.days
            self.stolen_by_day = [0] * self.days
            self.expired_by_day = [0] * self.days
            self.redeemed_by_day = [0] * self.days

    def add(self, other: PersonaTotals) -> None:
        for name in (
            "players",
            "minted_g",
            "water_received_g",
            "collected_own_g",
            "taken_from_friends_g",
            "lost_to_friends_g",
            "expired_g",
            "live_at_end_g",
            "water_given_g",
            "redeemed_g",
            "redemptions",
            "redemptions_refused",
            "trees",
            "balance_at_end_g",
            "capped_player_days",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for kind, totals in other.kinds.items():
            self.kinds.setdefault(kind, KindTotals()).add(totals)
        for reason, count in other.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + count
        for day in range(self.days):
            self.minted_by_day[day] += other.minted_by_day[day]
            self.gathered_by_day[day] += other.gathered_by_day[day]
            self.collected_by_day[day] += other.collected_by_day[day]
            self.stolen_by_day[day] += other.stolen_by_day[day]
            self.expired_by_day[day] += other.expired_by_day[day]
            self.redeemed_by_day[day] += other.redeemed_by_day[day]
        self.first_tree_days += other.first_tree_days


@dataclass
class SimulationResult:
    """One run: the rules it used, its configuration and the totals per persona."""

    rules_label: str
    rules_sha256: str
    config: SimulationConfig
    personas: dict[str, PersonaSpec]
    totals: dict[str, PersonaTotals]


def resolve_rules(source: RulesInput) -> tuple[Rules, str]:
    """(rules, SHA-256) from parsed rules, a loaded rules file or a path to one. Parsed rules
    have no file text: their hash is that of their JSON form."""
    if isinstance(source, Rules):
        return source, hashlib.sha256(source.model_dump_json().encode()).hexdigest()
    if isinstance(source, LoadedRules):
        return source.rules, source.sha256
    loaded = load_rules(Path(source))
    return loaded.rules, loaded.sha256


# --- the rules, called once per distinct input --------------------------------------------------


class _Evaluation:
    """A memoized ``evaluate`` result (identity-hashed: it keys the caps and times memos)."""

    __slots__ = ("computed_g", "month_key", "pending")

    def __init__(self, pending: Pending) -> None:
        self.pending = pending
        self.computed_g = pending.computed_g
        self.month_key = dict(pending.cap_keys).get("month")


class _Capped(NamedTuple):
    """One player's events of one kind on one day after the caps."""

    grams: tuple[int, ...]  # of each event, in order
    month_after: tuple[int, int]  # the month counter afterwards (count, grams)
    capped: int  # events a cap cut
    capped_g: int  # grams the caps cut
    minted_g: int


# (collectible from, expires, expiry hour) in minutes
_Times = tuple[int, int, int]
# (minted minute, order, evaluation, ball times)
_Event = tuple[int, int, "_Evaluation", _Times]


class _RulesRuntime:
    """The service's rules code behind memos (one per process, rules and start date). The
    memos are public so the hot loop can look up a hit without a call."""

    def __init__(self, rules: Rules, sha256: str, epoch: datetime) -> None:
        self.rules = rules
        self.registry = RulesRegistry([ActiveRules(1, sha256, BEGINNING, rules)])
        self.epoch = epoch
        self.random_takes = rules.stealing.mode == "random"
        self.max_share = rules.stealing.max_share
        self.stealing = rules.stealing.enabled
        self.amounts = list(rules.watering.amounts_g)
        self.water_limit = rules.watering.per_friend_daily_limit
        self.water_life = _ceil_minutes(rules.balls.expire_after)
        self.rewards = rules.rewards.enabled
        self.rewards_daily_g = rules.rewards.daily_limit_g  # 0: no ceiling
        self.evaluations: dict[tuple[Any, ...], _Evaluation | Outcome] = {}
        self.capped: dict[tuple[Any, ...], _Capped] = {}
        self.times: dict[tuple[Any, ...], _Times | None] = {}
        self.slots: dict[tuple[Any, ...], list[_Times | None]] = {}
        self.most: dict[int, int] = {}
        self.takes: dict[tuple[int, int, int, int], int] = {}
        self._refs: dict[tuple[str, str | None], tuple[int, UserRef]] = {}
        self._local: dict[tuple[str, date, time], int] = {}
        self._midnights: dict[tuple[str, date], int] = {}

    def ref(self, tz: str, region: str | None) -> tuple[int, UserRef]:
        """One stand-in user per time zone and region (cap keys carry its id; each player
        keeps their own counters), with a small number that stands for it in memo keys."""
        found = self._refs.get((tz, region))
        if found is None:
            ref = UserRef(uuid5(_NAMESPACE, f"{tz}|{region}"), tz, region)
            found = self._refs[(tz, region)] = (len(self._refs), ref)
        return found

    def minute(self, moment: datetime) -> int:
        return _ceil_minutes(moment - self.epoch)

    def moment(self, minute: int) -> datetime:
        return self.epoch + minute * _MINUTE

    def local_minute(self, tz: str, day: date, at: time) -> int:
        key = (tz, day, at)
        found = self._local.get(key)
        if found is None:
            wall = datetime.combine(day, at, tzinfo=zone(tz))
            found = self._local[key] = self.minute(wall.astimezone(UTC))
        return found

    def midnight(self, tz: str, day: date) -> int:
        key = (tz, day)
        found = self._midnights.get(key)
        if found is None:
            found = self._midnights[key] = self.minute(local_midnight(day, tz))
        return found

    def evaluation(
        self,
        ref: tuple[int, UserRef],
        kind: str,
        day: int,
        occurred: int,
        minted: int,
        quantity: float | None,
        origin: str,
        check_window: bool,
    ) -> _Evaluation | Outcome:
        """``evaluate`` for an event of ``kind`` on local day number ``day``. The simulator
        runs a single rules version, so an event's evaluation depends on its local day, not
        on its minute: the day's first such event is evaluated and stands for the others."""
        key = (ref[0], kind, day, quantity, origin, check_window)
        found = self.evaluations.get(key)
        if found is not None:
            return found
        incoming = _Incoming(
            external_id="sim",
            kind=kind,
            occurred_at=self.moment(occurred),
            quantity=None if quantity is None else Decimal(str(quantity)),
        )
        now = self.moment(minted)
        result = evaluate(0, ref[1], incoming, origin, self.registry, now, check_window)
        found = result if isinstance(result, Outcome) else _Evaluation(result)
        self.evaluations[key] = found
        return found

    def apply_caps(
        self, evaluations: tuple[_Evaluation, ...], month: tuple[int, int] | None
    ) -> _Capped:
        """``apply_caps`` on one player's events of one kind and local day, in order, from
        fresh day counters and the player's month counter (``month``)."""
        counters: dict[CapKey, Counter] = {}
        for period, cap_key in evaluations[0].pending.cap_keys:
            start = month if period == "month" and month is not None else (0, 0)
            counters[cap_key] = Counter(*start)
        grams = tuple(apply_caps(e.pending, counters) for e in evaluations)
        month_key = evaluations[0].month_key
        after = (0, 0)
        if month_key is not None:
            after = (counters[month_key].count, counters[month_key].grams)
        short = [e.computed_g - g for e, g in zip(evaluations, grams, strict=True)]
        found = self.capped[(evaluations, month)] = _Capped(
            grams, after, sum(1 for s in short if s > 0), sum(short), sum(grams)
        )
        return found

    def ball_times(
        self, ref: tuple[int, UserRef], kind: str, occurred: int, minted: int
    ) -> _Times | None:
        """(from when the ball can be collected, when it expires, the hour it expires in), in
        minutes: ``ball_row``'s ripening and expiry under the rules and kind that ``evaluate``
        uses for such an event, and never before the ball was minted. None: no such kind."""
        key = (ref[0], kind, occurred, minted)
        if key in self.times:
            return self.times[key]
        occurred_at, now = self.moment(occurred), self.moment(minted)
        rules = self.registry.at(occurred_at)
        kind_rules = rules.rules.activities.get(kind)
        found = None
        if kind_rules is not None:
            row = ball_row(_BALL_ID, ref[1], kind, 1, "sim", occurred_at, now, rules, kind_rules)
            expires = self.minute(row["expires_at"])
            found = (max(self.minute(row["ripens_at"]), minted), expires, expires // 60)
        self.times[key] = found
        return found

    def slot_times(
        self, ref: tuple[int, UserRef], kind: str, minutes: tuple[int, ...]
    ) -> list[_Times | None]:
        """Room for the ``ball_times`` of events minted as they happen at each of ``minutes``,
        filled in as slots get used (shared by every community of the run)."""
        key = (ref[0], kind, minutes)
        found = self.slots.get(key)
        if found is None:
            found = self.slots[key] = [None] * len(minutes)
        return found

    def slot_time(
        self, ref: tuple[int, UserRef], kind: str, slots: list[_Times | None], minute: int, i: int
    ) -> _Times:
        when = self.ball_times(ref, kind, minute, minute)
        assert when is not None, "an accepted event's kind exists"
        slots[i] = when
        return when

    def take(self, amount: int, remaining: int, stolen: int, pick: int) -> int:
        """``take_size`` for a ball; ``pick`` is the random mode's uniform choice among the
        ``one_take_g`` possible sizes, handed over as the draw ``(pick + ½) / most``."""
        key = (amount, remaining, stolen, pick)
        grams = self.takes.get(key)
        if grams is None:
            if len(self.takes) > _TAKE_MEMO_LIMIT:
                self.takes.clear()
            most = self.most_take(amount)
            grams = take_size(amount, remaining, stolen, self.rules, (pick + 0.5) / most)
            self.takes[key] = grams
        return grams

    def most_take(self, amount: int) -> int:
        most = self.most.get(amount)
        if most is None:
            most = self.most[amount] = one_take_g(amount, self.max_share)
        return most


def _ceil_minutes(span: timedelta) -> int:
    # a ball ripening or expiring within a minute counts from the next whole minute: never early
    return -((-span) // _MINUTE)


_RUNTIMES: dict[tuple[str, datetime], _RulesRuntime] = {}


def _runtime(rules: Rules, sha256: str, epoch: datetime) -> _RulesRuntime:
    found = _RUNTIMES.get((sha256, epoch))
    if found is None:
        if len(_RUNTIMES) >= 2:  # bounded: the memos of a big run are large
            _RUNTIMES.clear()
        found = _RUNTIMES[(sha256, epoch)] = _RulesRuntime(rules, sha256, epoch)
    return found


# --- players and balls --------------------------------------------------------------------------


class _Ball:
    __slots__ = (
        "amount",
        "expires",
        "owner",
        "remaining",
        "ripens",
        "stealable",
        "stolen",
        "takers",
    )

    def __init__(self, amount: int, ripens: int, expires: int, stealable: bool, owner: int) -> None:
        self.amount = amount
        self.remaining = amount
        self.stolen = 0
        self.ripens = ripens  # minute from which it can be collected
        self.expires = expires
        self.stealable = stealable
        self.owner = owner  # persona index, for the statistics
        self.takers: set[int] | None = None


class _Player:
    __slots__ = (
        "balance",
        "capped_days",
        "first_tree_day",
        "friends",
        "index",
        "live",
        "months",
        "next_ripe",
        "persona",
        "redeemed",
        "trees",
        "watered",
    )

    def __init__(self, index: int, persona: int) -> None:
        self.index = index
        self.persona = persona
        self.friends: list[_Player] = []
        self.balance = 0
        self.live: list[_Ball] = []
        self.next_ripe = _NEVER  # no ball in ``live`` is collectible before this minute
        self.months: dict[str, tuple[CapKey, tuple[int, int]]] = {}  # kind → month counter
        self.watered: dict[int, tuple[int, int]] = {}  # friend index → (day, count)
        self.trees = 0
        self.first_tree_day: int | None = None
        self.capped_days = 0
        self.redeemed = (-1, 0, 0)  # (day, rewards, grams) redeemed that day


@dataclass(frozen=True)
class _DaySchedule:
    """A persona's local day in minutes: its step day, activities and sessions."""

    steps_at: int
    steps_minted: int
    steps_times: _Times | None
    activities: list[_Planned]
    sessions: list[tuple[int, SessionSpec]]


@dataclass(frozen=True)
class _Planned:
    """An activity on a given day: the minutes it can happen at (its fixed times, or its
    window in ``_SLOT_MINUTES`` slots) with its balls' times, and its evaluation when it has no
    quantity (then all its events evaluate the same)."""

    spec: ActivitySpec
    minutes: tuple[int, ...]
    times: list[_Times | None]  # filled in as slots get used
    fixed: bool
    evaluation: _Evaluation | Outcome | None


@dataclass(frozen=True)
class _Persona:
    index: int
    name: str
    spec: PersonaSpec
    tz: str


# (minute, rank, seq, player, day, collect, steal, water pick)
_Session = tuple[int, float, int, "_Player", int, bool, bool, tuple[float, float] | None]


class _Community:
    """A group of friends living ``days`` days; the unit of work and of randomness."""

    def __init__(
        self,
        number: int,
        members: list[int],
        personas: list[_Persona],
        runtime: _RulesRuntime,
        config: SimulationConfig,
    ) -> None:
        self.rt = runtime
        self.config = config
        self.personas = personas
        seed = f"{config.seed}/{number}"
        self.behaviour = random.Random(f"{seed}/behaviour")  # noqa: S311 (a simulation, not secrets)
        self.draws = random.Random(f"{seed}/draws")  # noqa: S311
        self.refs = [runtime.ref(p.tz, p.spec.region) for p in personas]
        self.players = [_Player(i, persona) for i, persona in enumerate(members)]
        self.totals = [PersonaTotals(config.days) for _ in personas]
        for player in self.players:
            self.totals[player.persona].players += 1
        self._befriend(random.Random(f"{seed}/friends"))  # noqa: S311
        self._seq = 0
        self._buckets: dict[int, list[_Ball]] = {}
        self._zones = sorted({personas[p.persona].tz for p in self.players})

    def _befriend(self, rng: random.Random) -> None:
        count = len(self.players)
        links: list[set[int]] = [set() for _ in self.players]
        for player in self.players:
            low, high = self.personas[player.persona].spec.friends
            wanted = min(rng.randint(low, high), count - 1)
            for other in rng.sample(range(count - 1), wanted):
                other += other >= player.index  # skip oneself
                links[player.index].add(other)
                links[other].add(player.index)
        for player in self.players:
            player.friends = [self.players[i] for i in sorted(links[player.index])]

    # --- the day loop ---------------------------------------------------------------------------

    def run(self) -> list[PersonaTotals]:
        """Each day: mint the day's activities (their balls become visible when they ripen),
        then play the sessions in time order. Sessions of a later local date can only start at
        its midnight, so each round plays what comes before the earliest next midnight."""
        start, days = self.config.start, self.config.days
        waiting: list[_Session] = []
        for day in range(days):
            waiting += self._plan(day, start + timedelta(days=day))
            waiting.sort()
            cutoff = min(
                self.rt.midnight(tz, start + timedelta(days=day + 1)) for tz in self._zones
            )
            split = bisect.bisect_left(waiting, (cutoff,))
            for minute, _, _, player, day_of, collect, steal, pick in waiting[:split]:
                self._session(player, day_of, minute, collect, steal, pick)
            waiting = waiting[split:]
            self._expire(cutoff, day)
            if day % 7 == 6:
                self._tidy()
        for minute, _, _, player, day_of, collect, steal, pick in waiting:
            self._session(player, day_of, minute, collect, steal, pick)
        end = max(self.rt.midnight(tz, start + timedelta(days=days)) for tz in self._zones)
        self._expire(end, days - 1)
        return self._finish()

    def _schedule(self, persona: _Persona, day: int, today: date) -> _DaySchedule:
        """A persona's local day in minutes (the same for all its players): when its step day
        is minted, the minutes its activities can happen at with their balls' times, and the
        rules' evaluation of each activity without a quantity (identical for all its events)."""
        rt, tz, spec, ref = self.rt, persona.tz, persona.spec, self.refs[persona.index]
        weekend = today.weekday() >= 5
        activities = []
        for activity in spec.activities:
            if (activity.days == "weekdays" and weekend) or (
                activity.days == "weekends" and not weekend
            ):
                continue
            if activity.at:
                minutes = tuple(rt.local_minute(tz, today, at) for at in activity.at)
            else:
                first = rt.local_minute(tz, today, activity.between[0])
                last = rt.local_minute(tz, today, activity.between[1])
                minutes = tuple(range(first, max(first, last) + 1, _SLOT_MINUTES))
            shared = None
            if activity.quantity is None:
                at = minutes[0]
                shared = rt.evaluation(ref, activity.kind, day, at, at, None, activity.origin, True)
            times = rt.slot_times(ref, activity.kind, minutes)
            activities.append(_Planned(activity, minutes, times, bool(activity.at), shared))
        steps_at = rt.midnight(tz, today)
        steps_minted = rt.midnight(tz, today + timedelta(days=1))
        return _DaySchedule(
            steps_at=steps_at,
            steps_minted=steps_minted,
            steps_times=rt.ball_times(ref, _WALKING, steps_at, steps_minted),
            activities=activities,
            sessions=[(rt.local_minute(tz, today, s.at), s) for s in spec.sessions],
        )

    def _plan(self, day: int, today: date) -> list[_Session]:
        """What every player does on local date ``today``: the activities are minted now (a
        ball is invisible until it ripens), the sessions are returned to be played in time
        order. Draws only from the behaviour stream, whatever the rules say, so every rules
        file sees the same players doing the same things."""
        rt = self.rt
        rand = self.behaviour.random
        schedules = [self._schedule(persona, day, today) for persona in self.personas]
        evaluations = rt.evaluations
        sessions: list[_Session] = []
        seq = self._seq
        for player in self.players:
            persona = self.personas[player.persona]
            spec, plan, ref = persona.spec, schedules[player.persona], self.refs[player.persona]
            rank = rand()  # who goes first when players act in the same minute
            groups: dict[str, list[_Event]] = {}
            low, high = spec.steps
            if high > 0 and (spec.walk_chance >= 1 or rand() < spec.walk_chance):
                drawn = low + int(rand() * (high - low + 1))
                steps = float(round(drawn / STEP_GRANULARITY) * STEP_GRANULARITY)
                if steps > 0:
                    # a step day: one walking event on its midnight, minted once it is over
                    found = evaluations.get((ref[0], _WALKING, day, steps, _ORIGIN_STEPS, False))
                    if found is None:
                        found = rt.evaluation(
                            ref,
                            _WALKING,
                            day,
                            plan.steps_at,
                            plan.steps_minted,
                            steps,
                            _ORIGIN_STEPS,
                            False,
                        )
                    if isinstance(found, Outcome):
                        self._reject(player, found)
                    else:
                        when = plan.steps_times
                        assert when is not None, "an accepted event's kind exists"
                        groups[_WALKING] = [(plan.steps_minted, 0, found, when)]
            for planned in plan.activities:
                activity = planned.spec
                if activity.chance < 1 and rand() >= activity.chance:
                    continue
                low, high = activity.per_day
                count = low + int(rand() * (high - low + 1)) if high > low else low
                if count <= 0:
                    continue
                group = groups.get(activity.kind)
                if group is None:
                    group = groups[activity.kind] = []
                minutes, times, slots = planned.minutes, planned.times, len(planned.minutes)
                for n in range(count):
                    i = n % slots if planned.fixed else int(rand() * slots)
                    found = planned.evaluation
                    if found is None:
                        found = self._with_quantity(ref, activity, day, minutes[i], rand())
                    if isinstance(found, Outcome):
                        self._reject(player, found)
                        continue
                    when = times[i]
                    if when is None:
                        when = rt.slot_time(ref, activity.kind, times, minutes[i], i)
                    group.append((minutes[i], len(group), found, when))
            if groups:
                self._mint(player, day, groups)
            for minute, session in plan.sessions:
                if session.jitter_minutes:
                    minute += int(rand() * (session.jitter_minutes + 1))
                steal = session.steal_chance > 0 and rand() < session.steal_chance
                water = session.water_chance > 0 and rand() < session.water_chance
                pick = (rand(), rand()) if water else None
                sessions.append((minute, rank, seq, player, day, session.collect, steal, pick))
                seq += 1
        self._seq = seq
        return sessions

    def _with_quantity(
        self, ref: tuple[int, UserRef], activity: ActivitySpec, day: int, minute: int, draw: float
    ) -> _Evaluation | Outcome:
        assert activity.quantity is not None
        low, high = activity.quantity
        step = activity.quantity_step
        quantity = round(max(step, round((low + draw * (high - low)) / step) * step), 6)
        found = self.rt.evaluations.get(
            (ref[0], activity.kind, day, quantity, activity.origin, True)
        )
        if found is None:
            found = self.rt.evaluation(
                ref, activity.kind, day, minute, minute, quantity, activity.origin, True
            )
        return found

    def _reject(self, player: _Player, outcome: Outcome) -> None:
        reason = outcome.reason or outcome.status
        rejected = self.totals[player.persona].rejected
        rejected[reason] = rejected.get(reason, 0) + 1

    # --- what players do ------------------------------------------------------------------------

    def _mint(self, player: _Player, day: int, groups: dict[str, list[_Event]]) -> None:
        """The day's activities through the caps, one kind at a time (caps count per kind),
        in the order the service would record them: by when each is minted."""
        rt, totals = self.rt, self.totals[player.persona]
        capped, buckets, kinds = rt.capped, self._buckets, totals.kinds
        persona, live = player.persona, player.live
        capped_today = False
        minted_today = 0
        for kind, group in groups.items():
            if not group:
                continue
            if len(group) > 1:
                group.sort()
            chain = tuple([event[2] for event in group])
            first = chain[0]
            month: tuple[int, int] | None = None
            if first.month_key is not None:
                held = player.months.get(kind)
                month = held[1] if held is not None and held[0] == first.month_key else (0, 0)
            result = capped.get((chain, month))
            if result is None:
                result = rt.apply_caps(chain, month)
            if first.month_key is not None:
                player.months[kind] = (first.month_key, result.month_after)
            per_kind = kinds[kind]
            per_kind.events += len(chain)
            if result.capped:
                per_kind.capped += result.capped
                per_kind.capped_g += result.capped_g
                capped_today = True
            per_kind.minted_g += result.minted_g
            minted_today += result.minted_g
            for event, grams in zip(group, result.grams):  # noqa: B905 (same length)
                if grams <= 0:
                    continue
                when = event[3]
                ball = _Ball(grams, when[0], when[1], True, persona)
                live.append(ball)
                if when[0] < player.next_ripe:
                    player.next_ripe = when[0]
                bucket = buckets.get(when[2])
                if bucket is None:
                    buckets[when[2]] = [ball]
                else:
                    bucket.append(ball)
        totals.minted_g += minted_today
        totals.minted_by_day[day] += minted_today
        if capped_today:
            player.capped_days += 1

    def _add_ball(self, owner: _Player, ball: _Ball) -> None:
        owner.live.append(ball)
        if ball.ripens < owner.next_ripe:
            owner.next_ripe = ball.ripens
        bucket = self._buckets.get(ball.expires // 60)
        if bucket is None:
            self._buckets[ball.expires // 60] = [ball]
        else:
            bucket.append(ball)

    def _session(
        self,
        player: _Player,
        day: int,
        now: int,
        collect: bool,
        steal: bool,
        pick: tuple[float, float] | None,
    ) -> None:
        totals = self.totals[player.persona]
        gathered = 0
        if collect and player.next_ripe <= now:
            keep = []
            next_ripe = _NEVER
            for ball in player.live:
                if ball.remaining <= 0 or ball.expires <= now:
                    continue
                if ball.ripens <= now:
                    gathered += ball.remaining
                    ball.remaining = 0
                else:
                    keep.append(ball)
                    if ball.ripens < next_ripe:
                        next_ripe = ball.ripens
            player.live = keep
            player.next_ripe = next_ripe
            totals.collected_own_g += gathered
            totals.collected_by_day[day] += gathered
        if steal and self.rt.stealing:
            gathered += self._steal(player, day, now)
        player.balance += gathered
        totals.gathered_by_day[day] += gathered
        spec = self.personas[player.persona].spec
        if spec.redeems is not None:
            self._redeem(player, day, spec.redeems)
        if spec.plants and player.balance >= SAXAUL_G:
            planted = player.balance // SAXAUL_G
            player.balance -= planted * SAXAUL_G
            player.trees += planted
            if player.first_tree_day is None:
                player.first_tree_day = day + 1
        if pick is not None and player.friends:
            self._water(player, day, now, spec, pick)

    def _redeem(self, player: _Player, day: int, wants: RedeemSpec) -> None:
        """Spend on rewards as ``wants`` says, within the rules' ``[rewards]`` (the service's
        ``rewards.daily_limit_g`` ceiling per day; nothing when rewards are off)."""
        totals = self.totals[player.persona]
        seen, count, grams = player.redeemed
        if seen != day:
            count, grams = 0, 0
        while count < wants.per_day and player.balance - wants.cost_g >= wants.keep_g:
            ceiling = self.rt.rewards_daily_g
            if not self.rt.rewards or (ceiling and grams + wants.cost_g > ceiling):
                totals.redemptions_refused += 1
                break
            player.balance -= wants.cost_g
            count, grams = count + 1, grams + wants.cost_g
            totals.redemptions += 1
            totals.redeemed_g += wants.cost_g
            totals.redeemed_by_day[day] += wants.cost_g
        player.redeemed = (day, count, grams)

    def _steal(self, player: _Player, day: int, now: int) -> int:
        """Take from every friend's ripe, stealable balls not taken from yet."""
        rt, me, draw = self.rt, player.index, self.draws.random
        takes, most_of, random_takes = rt.takes, rt.most, rt.random_takes
        taken = 0
        for friend in player.friends:
            if friend.next_ripe > now:
                continue  # nothing of theirs is ripe yet
            lost = 0
            for ball in friend.live:
                if (
                    ball.ripens > now
                    or ball.remaining <= 0
                    or ball.expires <= now
                    or not ball.stealable
                    or (ball.takers is not None and me in ball.takers)
                ):
                    continue
                amount = ball.amount
                pick = 0
                if random_takes:
                    most = most_of.get(amount) or rt.most_take(amount)
                    pick = int(draw() * most)
                grams = takes.get((amount, ball.remaining, ball.stolen, pick))
                if grams is None:
                    grams = rt.take(amount, ball.remaining, ball.stolen, pick)
                if grams <= 0:
                    continue  # nothing left for friends: not a take
                ball.remaining -= grams
                ball.stolen += grams
                if ball.takers is None:
                    ball.takers = {me}
                else:
                    ball.takers.add(me)
                lost += grams
            if lost:
                self.totals[friend.persona].lost_to_friends_g += lost
                taken += lost
        totals = self.totals[player.persona]
        totals.taken_from_friends_g += taken
        totals.stolen_by_day[day] += taken
        return taken

    def _water(
        self, player: _Player, day: int, now: int, spec: PersonaSpec, pick: tuple[float, float]
    ) -> None:
        rt = self.rt
        friend = player.friends[int(pick[0] * len(player.friends))]
        if spec.water_amount == "smallest":
            amount = min(rt.amounts)
        elif spec.water_amount == "largest":
            amount = max(rt.amounts)
        else:
            amount = rt.amounts[int(pick[1] * len(rt.amounts))]
        # the limit counts the giver's local days; ``day`` is the giver's local day
        last_day, count = player.watered.get(friend.index, (day, 0))
        if last_day != day:
            count = 0
        if count >= rt.water_limit or player.balance < amount:
            return
        player.watered[friend.index] = (day, count + 1)
        player.balance -= amount
        self.totals[player.persona].water_given_g += amount
        self.totals[friend.persona].water_received_g += amount
        self._add_ball(friend, _Ball(amount, now, now + rt.water_life, False, friend.persona))

    # --- time passing -------------------------------------------------------------------------

    def _expire(self, until: int, day: int) -> None:
        """Balls whose expiry has come lose what is left in them (counted on ``day``, the
        round of the run in which they expired)."""
        last_hour = until // 60
        for hour in sorted(h for h in self._buckets if h <= last_hour):
            balls = self._buckets.pop(hour)
            later = []
            for ball in balls:
                if ball.expires > until:
                    later.append(ball)
                elif ball.remaining > 0:
                    owner = self.totals[ball.owner]
                    owner.expired_g += ball.remaining
                    owner.expired_by_day[day] += ball.remaining
                    ball.remaining = 0
            if later:
                self._buckets[hour] = later

    def _tidy(self) -> None:
        """Forget emptied balls (players who never collect keep them otherwise)."""
        for player in self.players:
            player.live = [ball for ball in player.live if ball.remaining > 0]

    def _finish(self) -> list[PersonaTotals]:
        for balls in self._buckets.values():
            for ball in balls:
                self.totals[ball.owner].live_at_end_g += ball.remaining
        for player in self.players:
            totals = self.totals[player.persona]
            totals.trees += player.trees
            totals.balance_at_end_g += player.balance
            totals.capped_player_days += player.capped_days
            if player.first_tree_day is not None:
                totals.first_tree_days.append(player.first_tree_day)
        return self.totals


# --- a whole run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    rules: Rules
    sha256: str
    personas: list[_Persona]
    config: SimulationConfig
    communities: list[tuple[int, list[int]]]  # (number, persona index of each member)


def _run_chunk(chunk: _Chunk) -> list[PersonaTotals]:
    epoch = datetime.combine(chunk.config.start, time(0), tzinfo=UTC)
    runtime = _runtime(chunk.rules, chunk.sha256, epoch)
    totals = [PersonaTotals(chunk.config.days) for _ in chunk.personas]
    for number, members in chunk.communities:
        community = _Community(number, members, chunk.personas, runtime, chunk.config)
        for mine, theirs in zip(totals, community.run(), strict=True):
            mine.add(theirs)
    return totals


def _population(personas: list[_Persona], players: int, seed: int) -> list[int]:
    """Each persona's share of ``players`` by weight (largest remainders), shuffled."""
    weights = [p.spec.weight for p in personas]
    total = sum(weights)
    exact = [players * w / total for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: players - sum(counts)]:
        counts[i] += 1
    members = [i for i, count in enumerate(counts) for _ in range(count)]
    random.Random(f"{seed}/population").shuffle(members)  # noqa: S311
    return members


def _communities(members: list[int], size: int) -> Iterator[tuple[int, list[int]]]:
    count = max(1, round(len(members) / max(2, size)))
    for number in range(count):
        lo, hi = number * len(members) // count, (number + 1) * len(members) // count
        yield number, members[lo:hi]


def simulate(
    rules: RulesInput,
    config: SimulationConfig | None = None,
    personas: dict[str, PersonaSpec] | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Run ``config.players`` players for ``config.days`` days under ``rules``.

    ``progress`` is called with the number of players whose run just finished. The result is
    the same for the same rules, personas and configuration (``workers`` aside)."""
    config = config or SimulationConfig()
    if config.players < 1 or config.days < 1:
        raise ValueError("a simulation needs at least one player and one day")
    parsed, sha256 = resolve_rules(rules)
    specs = personas if personas is not None else default_personas()
    behaviours = [
        _Persona(i, name, spec, spec.timezone or parsed.timezone)
        for i, (name, spec) in enumerate(specs.items())
    ]
    members = _population(behaviours, config.players, config.seed)
    communities = list(_communities(members, config.community_size))
    per_chunk = max(1, _CHUNK_PLAYERS // max(1, len(communities[0][1])))
    chunks = [
        _Chunk(parsed, sha256, behaviours, config, communities[i : i + per_chunk])
        for i in range(0, len(communities), per_chunk)
    ]
    workers = config.workers
    if workers is None:
        big = config.players * config.days >= _PARALLEL_FROM
        workers = min(os.cpu_count() or 1, len(chunks)) if big else 1
    totals = [PersonaTotals(config.days) for _ in behaviours]
    for chunk, result in zip(chunks, _map(chunks, workers), strict=True):
        for mine, theirs in zip(totals, result, strict=True):
            mine.add(theirs)
        if progress is not None:
            progress(sum(len(m) for _, m in chunk.communities))
    return SimulationResult(
        rules_label=parsed.version,
        rules_sha256=sha256,
        config=config,
        personas=dict(specs),
        totals={p.name: t for p, t in zip(behaviours, totals, strict=True)},
    )


def _map(chunks: list[_Chunk], workers: int) -> Iterator[list[PersonaTotals]]:
    """Chunk results in chunk order (so merging is deterministic), in worker processes when
    ``workers`` > 1."""
    if workers <= 1:
        yield from map(_run_chunk, chunks)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(_run_chunk, chunks)
