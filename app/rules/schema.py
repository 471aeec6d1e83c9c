"""The game designers' rules file (TOML) as pydantic models.

Every table forbids unknown keys, so a misspelt key is an error rather than a silently ignored
setting. Values are checked one by one here; the checks that relate several keys of an activity
kind (per-event energy *or* unit + per-unit energy, region overrides merged onto their kind) live in
:func:`energy_spec_problems`, which both the models and the loader use.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import limits
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.core.durations import format_duration, parse_duration

NAME_PATTERN = re.compile(r"^[a-z0-9_]+$")
_HH_MM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)\s*$")

#: ``PydanticCustomError`` type raised by the models for the cross-key energy checks; the loader
#: reports those itself, one per key, so it drops errors of this type.
ENERGY_SPEC_ERROR = "energy_spec"


# --- value types ------------------------------------------------------------------------------


def _to_duration(value: Any) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc)) from None


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise PydanticCustomError("duration", "must not be negative")
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise PydanticCustomError("duration", "must be longer than 0s")
    return value


_as_text = PlainSerializer(format_duration, return_type=str, when_used="json")

#: A duration ≥ 0: ``"90s"``, ``"15m"``, ``"24h"``, ``"7d"`` or integer seconds, kept as timedelta.
Duration = Annotated[
    timedelta, BeforeValidator(_to_duration), AfterValidator(_not_negative), _as_text
]
#: A duration > 0.
PositiveDuration = Annotated[
    timedelta, BeforeValidator(_to_duration), AfterValidator(_positive), _as_text
]


def _to_local_time(value: Any) -> time:
    # A TOML local time (07:00:00, unquoted) is accepted too when it has no seconds.
    if isinstance(value, time) and not (value.second or value.microsecond or value.tzinfo):
        return value
    if isinstance(value, str) and (match := _HH_MM.match(value)):
        return time(int(match.group(1)), int(match.group(2)))
    raise PydanticCustomError("local_time", 'must be a local time "HH:MM" such as "07:00"')


LocalTime = Annotated[
    time,
    BeforeValidator(_to_local_time),
    PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str, when_used="json"),
]


def _check_name(value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise PydanticCustomError("name", "name must use only a-z, 0-9 and _")
    return value


#: A kind, region or prop name: ``[a-z0-9_]+``.
Name = Annotated[str, AfterValidator(_check_name)]

Source = Literal["client", "partner"]


def _to_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _unique(value: tuple[Source, ...]) -> tuple[Source, ...]:
    return tuple(dict.fromkeys(value))


Sources = Annotated[
    tuple[Source, ...], BeforeValidator(_to_tuple), AfterValidator(_unique), Field(min_length=1)
]


def _check_limit(value: str) -> str:
    match = _LIMIT.match(value)
    if not match:
        raise PydanticCustomError(
            "rate_limit", 'must be a rate "N/second", "N/minute", "N/hour" or "N/day"'
        )
    try:
        item = limits.parse(value)
    except ValueError:  # pragma: no cover - the pattern above only lets valid rates through
        raise PydanticCustomError("rate_limit", "is not a rate limit") from None
    if item.amount < 1:
        raise PydanticCustomError("rate_limit", "must allow at least 1 request")
    return f"{item.amount}/{match.group(2)}"


#: A rate limit ``"N/second|minute|hour|day"`` with N ≥ 1, kept as (normalized) text.
RateLimit = Annotated[str, AfterValidator(_check_limit)]

Grams = Annotated[int, Field(gt=0)]
Cap = Annotated[int, Field(ge=0)]
Text = Annotated[str, Field(min_length=1)]


class _Table(BaseModel):
    # strict: a TOML "5" is not the number 5, true is not 1 — catch it rather than coerce it.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- sections ---------------------------------------------------------------------------------


class IngestRules(_Table):
    """How late or early an activity may arrive."""

    max_age: PositiveDuration = timedelta(days=7)
    max_future_skew: Duration = timedelta(minutes=5)


class BallsRules(_Table):
    """The energy ball lifecycle: growing → ripe → expired."""

    ripen_after: Duration = timedelta(hours=24)
    expire_after: PositiveDuration = timedelta(hours=72)


class StealingRules(_Table):
    """Friends collecting part of each other's ripe balls."""

    enabled: bool = True
    mode: Literal["random", "fixed"] = "random"
    max_share: float = Field(default=0.1, ge=0, le=1, allow_inf_nan=False)
    owner_floor: float = Field(default=0.5, ge=0, le=1, allow_inf_nan=False)


class WateringRules(_Table):
    """Giving a friend energy."""

    amounts_g: list[Grams] = Field(default_factory=lambda: [10, 18, 33, 66], min_length=1)
    per_friend_daily_limit: Cap = 3


class PropRules(_Table):
    """A prop (card) type: how long it lasts once used, and its price in energy (0: not sold)."""

    duration: PositiveDuration
    cost_g: Cap = 0


DEFAULT_PROPS: dict[str, dict[str, Any]] = {
    "shield": {"duration": timedelta(hours=24), "cost_g": 0},
    "double_collect": {"duration": timedelta(minutes=5), "cost_g": 0},
}


class PlantingRules(_Table):
    """How reserved plantings are cut into orders for NGO partners."""

    batch_size: int = Field(default=100, ge=1)
    batch_max_wait: PositiveDuration = timedelta(hours=24)


class RewardsRules(_Table):
    """What spending energy on rewards (vouchers, rides, discounts, bank benefits) may do."""

    enabled: bool = True
    # the most energy one user may spend on rewards in one local day; 0: no ceiling
    daily_limit_g: Cap = 0
    # how long a partner has to fulfil or fail a partner-fulfilled redemption before it is
    # failed and refunded (a reward may set a shorter or longer one of its own)
    fulfil_timeout: PositiveDuration = timedelta(hours=24)


class CampaignsRules(_Table):
    """What donating energy to campaigns may do."""

    enabled: bool = True
    min_donation_g: Grams = 1
    # the most energy one user may donate in one local day, all campaigns together; 0: no ceiling
    daily_limit_g: Cap = 0


with warnings.catch_warnings():
    # ``register`` is ABCMeta's class method, invisible on instances: the field works as named.
    warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)

    class LimitsRules(_Table):
        """Redis-backed rate limits, ``"N/second|minute|hour|day"``."""

        register: RateLimit = "20/minute"
        login: RateLimit = "10/minute"
        collect: RateLimit = "120/minute"
        friend_requests: RateLimit = "30/minute"
        activities: RateLimit = "600/minute"
        stats: RateLimit = "60/minute"  # per client address, the public /v1/stats

        def item(self, name: str) -> limits.RateLimitItem:
            """The named limit as a ``limits`` item, e.g. ``rules.limits.item("login")``."""
            if name not in type(self).model_fields:
                raise KeyError(name)
            return limits.parse(getattr(self, name))


# --- activities -------------------------------------------------------------------------------

_ENERGY_KEYS = ("energy_per_event_g", "unit", "energy_per_unit_g")


def energy_spec_problems(
    table: Mapping[str, Any], base: Mapping[str, Any] | None = None
) -> list[tuple[str, str]]:
    """What is wrong with how a kind's table (or, given its kind's ``base``, a region override)
    states its energy, as ``(key, message)`` pairs; key ``""`` means the table itself.

    Only the presence of keys matters, so this works on raw TOML tables as well as on models.
    A region override that states energy replaces its kind's: per-event replaces per-unit and
    the other way round; ``energy_per_unit_g`` alone keeps the kind's ``unit``.
    """
    per_event, unit, per_unit = (table.get(key) is not None for key in _ENERGY_KEYS)
    if per_event and (unit or per_unit):
        return [("energy_per_event_g", "use either energy_per_event_g or unit + energy_per_unit_g")]
    problems: list[tuple[str, str]] = []
    if unit and not per_unit:
        problems.append(("energy_per_unit_g", "is required when unit is set"))
    if per_unit and not unit and (base is None or base.get("unit") is None):
        where = "" if base is None else " (the kind has no unit to keep)"
        problems.append(("unit", f"is required when energy_per_unit_g is set{where}"))
    if base is None and not (per_event or unit or per_unit):
        problems.append(("", "needs energy_per_event_g, or unit and energy_per_unit_g"))
    return problems


@dataclass(frozen=True)
class EnergyFactor:
    """A kind's effective energy parameters in one region (or its defaults)."""

    energy_per_event_g: int | None
    unit: str | None
    energy_per_unit_g: float | None
    method: str
    source: str
    region: str | None = None  # the region whose override applied; None: the kind's defaults
    # the most units one user's events of the day may count (their total, not each event's)
    max_units_per_day: float | None = None

    def energy_g(self, quantity: float | None = None) -> int:
        """Whole grams for one event: the per-event amount, or floor(per-unit * quantity).

        Decimal arithmetic so that e.g. 0.29 g/km * 100 km is 29 g, not 28.
        """
        if self.energy_per_event_g is not None:
            return self.energy_per_event_g
        if self.energy_per_unit_g is None:  # pragma: no cover - excluded by validation
            raise ValueError("no energy factor")
        if quantity is None or not math.isfinite(quantity) or quantity < 0:
            raise ValueError(f"needs a quantity ≥ 0 in {self.unit}")
        grams = Decimal(str(self.energy_per_unit_g)) * Decimal(str(quantity))
        return int(grams.to_integral_value(rounding=ROUND_FLOOR))


class RegionOverride(_Table):
    """Regional factors for a kind; unset keys keep the kind's value."""

    unit: Text | None = None
    energy_per_unit_g: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    energy_per_event_g: Grams | None = None
    # the day's unit bound where the region counts in another unit than its kind
    max_units_per_day: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    method: str | None = None
    source: str | None = None


class ActivityRules(_Table):
    """One activity kind: its energy, caps, ripening, trusted sources and methodology."""

    unit: Text | None = None
    energy_per_unit_g: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    energy_per_event_g: Grams | None = None
    daily_cap_g: Cap | None = None
    daily_cap_count: Cap | None = None
    monthly_cap_count: Cap | None = None
    max_units_per_day: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    ripen_after: Duration | None = None
    ripen_at_local: LocalTime | None = None
    sources: Sources = ("partner",)
    method: str = ""
    source: str = ""
    regions: dict[Name, RegionOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _energy_spec(self) -> ActivityRules:
        base = self.model_dump(include=set(_ENERGY_KEYS))
        problems = energy_spec_problems(base)
        for name, region in self.regions.items():
            region_table = region.model_dump(include=set(_ENERGY_KEYS))
            problems += [
                (f"regions.{name}.{key}", msg)
                for key, msg in energy_spec_problems(region_table, base)
            ]
        if problems:
            text = "; ".join(f"{key}: {msg}" if key else msg for key, msg in problems)
            raise PydanticCustomError(ENERGY_SPEC_ERROR, "{problems}", {"problems": text})
        return self

    def for_region(self, region: str | None = None) -> EnergyFactor:
        """Effective energy parameters where ``region`` applies (unknown or None → defaults)."""
        override = self.regions.get(region) if region else None
        if override is None:
            return EnergyFactor(
                self.energy_per_event_g,
                self.unit,
                self.energy_per_unit_g,
                self.method,
                self.source,
                max_units_per_day=self.max_units_per_day if self.unit else None,
            )
        if override.energy_per_event_g is not None:
            per_event, unit, per_unit = override.energy_per_event_g, None, None
        elif override.energy_per_unit_g is not None:
            per_event = None
            unit = override.unit or self.unit
            per_unit = override.energy_per_unit_g
        else:
            per_event, unit, per_unit = self.energy_per_event_g, self.unit, self.energy_per_unit_g
        # the kind's bound counts the kind's unit; a region counting another states its own
        max_units = override.max_units_per_day
        if max_units is None and unit is not None and unit == self.unit:
            max_units = self.max_units_per_day
        return EnergyFactor(
            energy_per_event_g=per_event,
            unit=unit,
            energy_per_unit_g=per_unit,
            method=self.method if override.method is None else override.method,
            source=self.source if override.source is None else override.source,
            region=region,
            max_units_per_day=max_units if unit is not None else None,
        )

    def daily_bound_problem(self, region: str | None = None) -> tuple[str, str] | None:
        """Why one user's energy of this kind in one local day (where ``region`` applies) has
        no bound, as ``(key, message)``; None when it has one. A bound is ``daily_cap_g``; for
        a per-event factor ``daily_cap_count`` or ``monthly_cap_count``; for a per-unit factor
        ``max_units_per_day`` (the day's total units)."""
        if self.daily_cap_g is not None:
            return None
        factor = self.for_region(region)
        if factor.energy_per_event_g is not None:
            if self.daily_cap_count is None and self.monthly_cap_count is None:
                return (
                    "daily_cap_count",
                    "apps may report this kind, so its daily energy needs a bound: set "
                    "daily_cap_g, daily_cap_count or monthly_cap_count",
                )
            return None
        if factor.max_units_per_day is None:
            return (
                "max_units_per_day",
                f"apps may report this kind, so its daily energy needs a bound: set "
                f"max_units_per_day (the day's total {factor.unit}) or daily_cap_g",
            )
        return None

    def daily_bound_problems(self) -> list[tuple[str, str]]:
        """:meth:`daily_bound_problem` for the kind and each region override, keyed by path
        within the kind (``max_units_per_day``, ``regions.shenzhen.max_units_per_day``)."""
        if "client" not in self.sources:
            return []
        problems = []
        base = self.daily_bound_problem()
        if base is not None:
            problems.append(base)
        for name in self.regions:
            found = self.daily_bound_problem(name)
            if found is not None and found != base:
                # a per-event region of a per-unit kind is bounded by the kind's count caps
                key = "energy_per_event_g" if found[0] == "daily_cap_count" else found[0]
                problems.append((f"regions.{name}.{key}", found[1]))
        return problems


# --- the file ---------------------------------------------------------------------------------


class Rules(_Table):
    """A whole rules file. Every section has the contract's defaults; kinds must be listed."""

    version: Annotated[str, Field(min_length=1, max_length=100)]
    timezone: str = "Asia/Shanghai"
    ingest: IngestRules = Field(default_factory=IngestRules)
    balls: BallsRules = Field(default_factory=BallsRules)
    stealing: StealingRules = Field(default_factory=StealingRules)
    watering: WateringRules = Field(default_factory=WateringRules)
    props: dict[Name, PropRules] = Field(
        default_factory=lambda: {k: PropRules(**v) for k, v in DEFAULT_PROPS.items()}
    )
    planting: PlantingRules = Field(default_factory=PlantingRules)
    activities: dict[Name, ActivityRules] = Field(default_factory=dict)
    limits: LimitsRules = Field(default_factory=LimitsRules)
    rewards: RewardsRules = Field(default_factory=RewardsRules)
    campaigns: CampaignsRules = Field(default_factory=CampaignsRules)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError(
                "timezone", 'must be an IANA time zone such as "Asia/Shanghai"'
            ) from None
        return value

    @field_validator("props", mode="before")
    @classmethod
    def _default_props(cls, value: Any) -> Any:
        # shield and double_collect always exist; a file only restates what it changes.
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = {}
        for name, defaults in DEFAULT_PROPS.items():
            given = value.get(name, {})
            merged[name] = {**defaults, **given} if isinstance(given, dict) else given
        return {**value, **merged}

    @property
    def tz(self) -> ZoneInfo:
        """The default time zone for new users."""
        return ZoneInfo(self.timezone)

    def activity(self, kind: str) -> ActivityRules:
        """The rules of one activity kind; ``KeyError`` when the file does not define it."""
        try:
            return self.activities[kind]
        except KeyError:
            raise KeyError(f"unknown activity kind {kind!r}") from None
