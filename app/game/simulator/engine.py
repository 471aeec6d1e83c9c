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
behaviour (personas). It is fast because identical inputs are evaluated once: players of the
same time zone and region reporting the same kind, minute and quantity share one ``evaluate``
result and its ball times, and a take with the same ball state and draw shares one
``take_size`` result; the caps are still applied per player, event by event.

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
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from app.energy.ingest import Outcome, Pending, UserRef, apply_caps, ball_row, evaluate
from app.energy.ingest import Incoming as _Incoming
from app.energy.periods import local_midnight, zone
from app.energy.repository import CapKey, Counter
from app.game.rules.loader import LoadedRules, load_rules
from app.game.rules.registry import BEGINNING, ActiveRules, RulesRegistry
from app.game.rules.schema import Rules
from app.game.stealing.service import one_take_g, take_size
from app.game.simulator.personas import STEP_GRANULARITY, PersonaSpec, default_personas

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
_EVENT, _STEPS, _SESSION = 0, 1, 2
# Above this many player-days a run uses worker processes (when the machine has several cores).
_PARALLEL_FROM = 100_000
_CHUNK_PLAYERS = 500
_TAKE_MEMO_LIMIT = 400_000


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
    trees: int = 0
    balance_at_end_g: int = 0
    capped_player_days: int = 0
    kinds: dict[str, KindTotals] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    minted_by_day: list[int] = field(default_factory=list)
    gathered_by_day: list[int] = field(default_factory=list)  # own collects + takes, by day
    first_tree_days: list[int] = field(default_factory=list)  # 1-based, one per player who planted

    def __post_init__(self) -> None:
        if not self.minted_by_day:
            self.minted_by_day = [0] * self.days
            self.gathered_by_day = [0] * self.days

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


@dataclass(frozen=True)
class _Minted:
    """A memoized ``evaluate`` result with the cap keys it touches and its ball's times."""

    pending: Pending
    cap_keys: tuple[CapKey, ...]
    ripens: int
    expires: int


class _RulesRuntime:
    """The service's rules code behind memos (per process, per rules and start date)."""

    def __init__(self, rules: Rules, sha256: str, epoch: datetime) -> None:
        self.rules = rules
        self.registry = RulesRegistry([ActiveRules(1, sha256, BEGINNING, rules)])
        self.epoch = epoch
        self.random_takes = rules.stealing.mode == "random"
        self.stealing = rules.stealing.enabled
        self.amounts = list(rules.watering.amounts_g)
        self.water_limit = rules.watering.per_friend_daily_limit
        self.water_life = _ceil_minutes(rules.balls.expire_after)
        self._refs: dict[tuple[str, str | None], UserRef] = {}
        self._events: dict[tuple[Any, ...], _Minted | Outcome] = {}
        self._most: dict[int, int] = {}
        self._takes: dict[tuple[int, int, int, int], int] = {}
        self._local: dict[tuple[str, date, time], int] = {}

    def ref(self, tz: str, region: str | None) -> UserRef:
        """One stand-in user per time zone and region (cap keys carry its id; each player
        keeps their own counters)."""
        found = self._refs.get((tz, region))
        if found is None:
            found = UserRef(uuid5(_NAMESPACE, f"{tz}|{region}"), tz, region)
            self._refs[(tz, region)] = found
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
        return self.minute(local_midnight(day, tz))

    def event(
        self,
        ref: UserRef,
        kind: str,
        occurred: int,
        quantity: float | None,
        origin: str,
        minted: int,
        check_window: bool,
    ) -> _Minted | Outcome:
        key = (ref.id, kind, occurred, quantity, origin, minted, check_window)
        found = self._events.get(key)
        if found is not None:
            return found
        occurred_at, now = self.moment(occurred), self.moment(minted)
        incoming = _Incoming(
            external_id="sim",
            kind=kind,
            occurred_at=occurred_at,
            quantity=None if quantity is None else Decimal(str(quantity)),
        )
        result = evaluate(0, ref, incoming, origin, self.registry, now, check_window)
        if isinstance(result, Outcome):
            found = result
        else:
            row = ball_row(
                _BALL_ID,
                ref,
                kind,
                result.computed_g,
                "sim",
                occurred_at,
                now,
                result.rules,
                result.kind,
            )
            found = _Minted(
                result,
                tuple(key for _, key in result.cap_keys),
                self.minute(row["ripens_at"]),
                self.minute(row["expires_at"]),
            )
        self._events[key] = found
        return found

    def take(self, amount: int, remaining: int, stolen: int, draw: Callable[[], float]) -> int:
        """One friend's take from a ball. ``j`` is the random mode's uniform pick among the
        ``most`` possible sizes, handed to ``take_size`` as the draw ``(j + ½) / most``."""
        most = self._most.get(amount)
        if most is None:
            most = self._most[amount] = one_take_g(amount, self.rules.stealing.max_share)
        pick = int(draw() * most) if self.random_takes else 0
        key = (amount, remaining, stolen, pick)
        grams = self._takes.get(key)
        if grams is None:
            if len(self._takes) > _TAKE_MEMO_LIMIT:
                self._takes.clear()
            grams = take_size(amount, remaining, stolen, self.rules, (pick + 0.5) / most)
            self._takes[key] = grams
        return grams


def _ceil_minutes(span: timedelta) -> int:
    # a ball ripening or expiring within a minute counts from the next whole minute: never early
    return -((-span) // _MINUTE)


_RUNTIMES: dict[tuple[str, datetime], _RulesRuntime] = {}


def _runtime(rules: Rules, sha256: str, epoch: datetime) -> _RulesRuntime:
    found = _RUNTIMES.get((sha256, epoch))
    if found is None:
        if len(_RUNTIMES) > 8:
            _RUNTIMES.clear()
        found = _RUNTIMES[(sha256, epoch)] = _RulesRuntime(rules, sha256, epoch)
    return found


# --- players and balls --------------------------------------------------------------------------


class _Ball:
    __slots__ = ("amount", "expires", "owner", "remaining", "ripens", "stealable", "stolen", "takers")

    def __init__(self, amount: int, ripens: int, expires: int, stealable: bool, owner: int) -> None:
        self.amount = amount
        self.remaining = amount
        self.stolen = 0
        self.ripens = ripens
        self.expires = expires
        self.stealable = stealable
        self.owner = owner  # persona index, for the statistics
        self.takers: set[int] | None = None


class _Player:
    __slots__ = (
        "balance",
        "capped_days",
        "counters",
        "first_tree_day",
        "friends",
        "index",
        "live",
        "persona",
        "ref",
        "trees",
        "watered",
    )

    def __init__(self, index: int, persona: int, ref: UserRef) -> None:
        self.index = index
        self.persona = persona
        self.ref = ref
        self.friends: list[_Player] = []
        self.balance = 0
        self.live: list[_Ball] = []
        self.counters: dict[CapKey, Counter] = {}
        self.watered: dict[int, tuple[int, int]] = {}  # friend index → (day, count)
        self.trees = 0
        self.first_tree_day: int | None = None
        self.capped_days: set[int] = set()


@dataclass(frozen=True)
class _Persona:
    index: int
    name: str
    spec: PersonaSpec
    tz: str


Action = tuple[Any, ...]  # (minute, rank, seq, code, player, day, ...)


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
        self.behaviour = random.Random(f"{seed}/behaviour")
        self.draws = random.Random(f"{seed}/draws")
        self.players = [
            _Player(i, persona, runtime.ref(personas[persona].tz, personas[persona].spec.region))
            for i, persona in enumerate(members)
        ]
        self.totals = [PersonaTotals(config.days) for _ in personas]
        for player in self.players:
            self.totals[player.persona].players += 1
        self._befriend(random.Random(f"{seed}/friends"))
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
        start, days = self.config.start, self.config.days
        waiting: list[Action] = []
        for day in range(days):
            waiting += self._plan(day, start + timedelta(days=day))
            waiting.sort()
            # everything before the earliest next local midnight can no longer be preceded by a
            # later day's action; the rest waits for the next round
            cutoff = min(self.rt.midnight(tz, start + timedelta(days=day + 1)) for tz in self._zones)
            split = bisect.bisect_left(waiting, (cutoff,))
            self._dispatch(waiting[:split])
            waiting = waiting[split:]
            self._expire(cutoff)
            if day % 7 == 6:
                self._tidy(start + timedelta(days=day))
        self._dispatch(waiting)  # the last day's step totals, minted after it ended
        end = max(self.rt.midnight(tz, start + timedelta(days=days)) for tz in self._zones)
        self._expire(end)
        return self._finish()

    def _plan(self, day: int, today: date) -> list[Action]:
        """Everything the players will do on local date ``today``, in random order within a
        minute. Draws only from the behaviour stream and never looks at the rules."""
        rng, rt = self.behaviour, self.rt
        ranks = list(range(len(self.players)))
        rng.shuffle(ranks)
        weekend = today.weekday() >= 5
        actions: list[Action] = []
        seq = self._seq
        for player in self.players:
            persona = self.personas[player.persona]
            spec, tz, rank = persona.spec, persona.tz, ranks[player.index]
            low, high = spec.steps
            if high > 0 and (spec.walk_chance >= 1 or rng.random() < spec.walk_chance):
                steps = rng.randint(low, high) if high > low else low
                steps = round(steps / STEP_GRANULARITY) * STEP_GRANULARITY
                if steps > 0:
                    minted = rt.midnight(tz, today + timedelta(days=1))
                    actions.append(
                        (minted, rank, seq, _STEPS, player, day, rt.midnight(tz, today), steps)
                    )
                    seq += 1
            for activity in spec.activities:
                if (activity.days == "weekdays" and weekend) or (
                    activity.days == "weekends" and not weekend
                ):
                    continue
                if activity.chance < 1 and rng.random() >= activity.chance:
                    continue
                low, high = activity.per_day
                count = rng.randint(low, high) if high > low else low
                for n in range(count):
                    if activity.at:
                        minute = rt.local_minute(tz, today, activity.at[n % len(activity.at)])
                    else:
                        first = rt.local_minute(tz, today, activity.between[0])
                        last = rt.local_minute(tz, today, activity.between[1])
                        minute = first + 5 * rng.randint(0, max(0, (last - first) // 5))
                    quantity = None
                    if activity.quantity is not None:
                        q_low, q_high = activity.quantity
                        step = activity.quantity_step
                        value = q_low + rng.random() * (q_high - q_low)
                        quantity = round(max(step, round(value / step) * step), 6)
                    actions.append(
                        (minute, rank, seq, _EVENT, player, day, activity.kind, quantity,
                         activity.origin)
                    )
                    seq += 1
            for session in spec.sessions:
                minute = rt.local_minute(tz, today, session.at)
                if session.jitter_minutes:
                    minute += rng.randint(0, session.jitter_minutes)
                steal = session.steal_chance > 0 and rng.random() < session.steal_chance
                water = session.water_chance > 0 and rng.random() < session.water_chance
                pick = (rng.random(), rng.random()) if water else None
                actions.append(
                    (minute, rank, seq, _SESSION, player, day, session.collect, steal, pick)
                )
                seq += 1
        self._seq = seq
        return actions

    def _dispatch(self, actions: list[Action]) -> None:
        for action in actions:
            code = action[3]
            if code == _EVENT:
                minute, _, _, _, player, day, kind, quantity, origin = action
                self._mint(player, day, kind, minute, quantity, origin, minute, True)
            elif code == _STEPS:
                minute, _, _, _, player, day, midnight, steps = action
                self._mint(player, day, _WALKING, midnight, float(steps), _ORIGIN_STEPS, minute,
                           False)
            else:
                minute, _, _, _, player, day, collect, steal, pick = action
                self._session(player, day, minute, collect, steal, pick)

    # --- what players do ------------------------------------------------------------------------

    def _mint(
        self,
        player: _Player,
        day: int,
        kind: str,
        occurred: int,
        quantity: float | None,
        origin: str,
        now: int,
        check_window: bool,
    ) -> None:
        totals = self.totals[player.persona]
        found = self.rt.event(player.ref, kind, occurred, quantity, origin, now, check_window)
        if isinstance(found, Outcome):
            reason = found.reason or found.status
            totals.rejected[reason] = totals.rejected.get(reason, 0) + 1
            return
        counters = player.counters
        for key in found.cap_keys:
            if key not in counters:
                counters[key] = Counter(0, 0)
        grams = apply_caps(found.pending, counters)
        per_kind = totals.kinds.get(kind)
        if per_kind is None:
            per_kind = totals.kinds[kind] = KindTotals()
        per_kind.events += 1
        computed = found.pending.computed_g
        if grams < computed:
            per_kind.capped += 1
            per_kind.capped_g += computed - grams
            player.capped_days.add(day)
        if grams > 0:
            per_kind.minted_g += grams
            totals.minted_g += grams
            totals.minted_by_day[day] += grams
            self._add_ball(player, _Ball(grams, found.ripens, found.expires, True, player.persona))

    def _add_ball(self, owner: _Player, ball: _Ball) -> None:
        owner.live.append(ball)
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
        if collect:
            keep = []
            for ball in player.live:
                if ball.remaining <= 0 or ball.expires <= now:
                    continue
                if ball.ripens <= now:
                    gathered += ball.remaining
                    ball.remaining = 0
                else:
                    keep.append(ball)
            player.live = keep
            totals.collected_own_g += gathered
        if steal and self.rt.stealing:
            me, take, draw = player.index, self.rt.take, self.draws.random
            taken = 0
            for friend in player.friends:
                friend_totals = self.totals[friend.persona]
                for ball in friend.live:
                    if (
                        not ball.stealable
                        or ball.remaining <= 0
                        or ball.ripens > now
                        or ball.expires <= now
                        or (ball.takers is not None and me in ball.takers)
                    ):
                        continue
                    grams = take(ball.amount, ball.remaining, ball.stolen, draw)
                    if grams <= 0:
                        continue
                    ball.remaining -= grams
                    ball.stolen += grams
                    if ball.takers is None:
                        ball.takers = {me}
                    else:
                        ball.takers.add(me)
                    taken += grams
                    friend_totals.lost_to_friends_g += grams
            totals.taken_from_friends_g += taken
            gathered += taken
        player.balance += gathered
        totals.gathered_by_day[day] += gathered
        spec = self.personas[player.persona].spec
        if spec.plants and player.balance >= SAXAUL_G:
            planted = player.balance // SAXAUL_G
            player.balance -= planted * SAXAUL_G
            player.trees += planted
            if player.first_tree_day is None:
                player.first_tree_day = day + 1
        if pick is not None and player.friends:
            self._water(player, day, now, spec, pick)

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
        # the giver's local day counts the limit; the day index is the giver's local day
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

    def _expire(self, until: int) -> None:
        """Balls whose expiry has come lose what is left in them."""
        last_hour = until // 60
        for hour in sorted(h for h in self._buckets if h <= last_hour):
            balls = self._buckets.pop(hour)
            later = []
            for ball in balls:
                if ball.expires > until:
                    later.append(ball)
                elif ball.remaining > 0:
                    self.totals[ball.owner].expired_g += ball.remaining
                    ball.remaining = 0
            if later:
                self._buckets[hour] = later

    def _tidy(self, today: date) -> None:
        """Forget cap counters no event can touch any more, and emptied balls."""
        oldest_day = today - timedelta(days=3)
        oldest_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
        for player in self.players:
            player.counters = {
                key: counter
                for key, counter in player.counters.items()
                if key[3] >= (oldest_day if key[2] == "day" else oldest_month)
            }
            player.live = [ball for ball in player.live if ball.remaining > 0]

    def _finish(self) -> list[PersonaTotals]:
        for balls in self._buckets.values():
            for ball in balls:
                self.totals[ball.owner].live_at_end_g += ball.remaining
        for player in self.players:
            totals = self.totals[player.persona]
            totals.trees += player.trees
            totals.balance_at_end_g += player.balance
            totals.capped_player_days += len(player.capped_days)
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
    random.Random(f"{seed}/population").shuffle(members)
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
