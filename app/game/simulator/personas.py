"""Who plays in a simulation: personas (behaviours) and the population mix.

A persona says what a kind of player does on a day: how far they walk, which activities they
report (how many, when, how far), when they open the app, and whether they then collect their own
energy, collect from friends ("steal"), water a friend and plant. The built-in mix covers the
players a designer must not hurt; a personas file (TOML, see docs/simulator.md) changes it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from app.rules.loader import FILE_LOC, RuleIssue, format_loc
from app.rules.schema import NAME_PATTERN, LocalTime, Name

#: Step totals are simulated in multiples of this many steps (≈ 1.65 g of walking energy), so that
#: players with the same day share one evaluation of the rules.
STEP_GRANULARITY = 100


def _pair(kind: type[int] | type[float]) -> Any:
    """``n`` or ``[low, high]`` (both included) → ``(low, high)``."""

    def convert(value: Any) -> tuple[Any, Any]:
        ok = (int,) if kind is int else (int, float)
        if isinstance(value, ok) and not isinstance(value, bool):
            value = [value, value]
        if not (
            isinstance(value, list | tuple)
            and len(value) == 2
            and all(isinstance(v, ok) and not isinstance(v, bool) for v in value)
        ):
            noun = "whole number" if kind is int else "number"
            raise PydanticCustomError("range", f"must be a {noun} or a list [low, high]")
        low, high = kind(value[0]), kind(value[1])
        if not 0 <= low <= high or high == float("inf"):
            raise PydanticCustomError("range", "must be [low, high] with 0 ≤ low ≤ high")
        return (low, high)

    return BeforeValidator(convert)


IntRange = Annotated[tuple[int, int], _pair(int)]
FloatRange = Annotated[tuple[float, float], _pair(float)]
Chance = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


def _times(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SessionSpec(_Table):
    """One time of day the player opens the app, and what they do then."""

    at: LocalTime
    jitter_minutes: int = Field(default=0, ge=0, le=720)  # opens up to this much later, at random
    collect: bool = True  # collect own ripe energy
    steal_chance: Chance = 0.0  # collect from every friend's ripe balls
    water_chance: Chance = 0.0  # water one friend (picked at random)


class ActivitySpec(_Table):
    """An activity the player reports: how many a day, on which days, when, how far."""

    kind: Name
    per_day: IntRange = (1, 1)
    chance: Chance = 1.0  # chance that an eligible day has these activities at all
    days: Literal["every", "weekdays", "weekends"] = "every"
    at: Annotated[list[LocalTime], BeforeValidator(_times)] = Field(default_factory=list)
    between: Annotated[tuple[LocalTime, LocalTime], BeforeValidator(tuple)] = (
        time(8, 0),
        time(21, 0),
    )
    quantity: FloatRange | None = None  # units per event for per-unit kinds (km ...)
    quantity_step: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    origin: Literal["client", "partner"] = "partner"

    @field_validator("between")
    @classmethod
    def _ordered(cls, value: tuple[time, time]) -> tuple[time, time]:
        if value[1] <= value[0]:
            raise PydanticCustomError("between", "must be [earliest, latest] with earliest first")
        return value


class RedeemSpec(_Table):
    """How a player spends energy on rewards (vouchers, transit rides ...) before planting:
    whenever they open the app, up to ``per_day`` rewards of ``cost_g`` a day, keeping
    ``keep_g`` back — within the rules' ``[rewards]`` (``enabled``, ``daily_limit_g``)."""

    cost_g: int = Field(default=500, gt=0, le=1_000_000)
    per_day: int = Field(default=1, ge=1, le=100)
    keep_g: int = Field(default=0, ge=0)


class PersonaSpec(_Table):
    """A kind of player."""

    weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)  # share of the population
    description: str = ""
    timezone: str | None = None  # None: the rules' timezone
    region: Name | None = None
    friends: IntRange = (2, 5)  # friendships each player starts (friends also come to them)
    steps: IntRange = (0, 0)  # daily step total, uniform in the range
    walk_chance: Chance = 1.0
    sessions: list[SessionSpec] = Field(default_factory=list)  # [] never opens the app
    plants: bool = True  # plants a saxaul whenever the balance allows
    redeems: RedeemSpec | None = None  # spends energy on rewards first (None: never)
    water_amount: Literal["smallest", "largest", "random"] = "smallest"
    activities: list[ActivitySpec] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise PydanticCustomError(
                    "timezone", 'must be an IANA time zone such as "Asia/Shanghai"'
                ) from None
        return value


# The built-in population. Same shape as a personas file (docs/simulator.md shows it as TOML).
BUILTIN_PERSONAS: dict[str, dict[str, Any]] = {
    "walker": {
        "weight": 0.25,
        "description": "walks a lot, opens the app in the evening",
        "friends": [2, 5],
        "steps": [12000, 24000],
        "walk_chance": 0.95,
        "sessions": [{"at": "21:30", "jitter_minutes": 60, "steal_chance": 0.3}],
    },
    "commuter": {
        "weight": 0.3,
        "description": "metro to work and back on weekdays, checks the app on the way",
        "friends": [2, 5],
        "steps": [5000, 10000],
        "sessions": [
            {"at": "08:30", "jitter_minutes": 30, "steal_chance": 0.3},
            {"at": "18:30", "jitter_minutes": 60, "water_chance": 0.05},
        ],
        "activities": [
            {
                "kind": "metro",
                "per_day": 2,
                "days": "weekdays",
                "chance": 0.95,
                "at": ["07:50", "18:05"],
            },
            {"kind": "bus", "per_day": [1, 2], "chance": 0.3, "between": ["11:00", "21:00"]},
        ],
    },
    "shopper": {
        "weight": 0.2,
        "description": "pays by phone many times a day, pays bills online",
        "friends": [2, 5],
        "steps": [2000, 6000],
        "sessions": [
            {"at": "12:30", "jitter_minutes": 60, "steal_chance": 0.4},
            {"at": "22:00", "jitter_minutes": 30},
        ],
        "activities": [
            {"kind": "offline_payment", "per_day": [2, 12], "between": ["09:00", "21:30"]},
            {"kind": "e_invoice", "per_day": [0, 3], "between": ["09:00", "21:30"]},
            {"kind": "utility_bill", "chance": 0.1, "between": ["10:00", "20:00"]},
            {"kind": "movie_ticket", "chance": 0.05, "between": ["12:00", "20:00"]},
            {"kind": "train_ticket", "chance": 0.03, "between": ["09:00", "20:00"]},
        ],
    },
    "hoarder": {
        "weight": 0.1,
        "description": "reports activities but never opens the app: never collects",
        "friends": [1, 3],
        "steps": [4000, 12000],
        "plants": False,
        "activities": [
            {"kind": "metro", "per_day": [0, 2], "days": "weekdays", "between": ["07:00", "20:00"]}
        ],
    },
    "early_bird": {
        "weight": 0.15,
        "description": "up at 07:00 when balls ripen: collects and steals from every friend",
        "friends": [3, 6],
        "steps": [6000, 12000],
        "sessions": [
            {"at": "07:00", "steal_chance": 1.0, "water_chance": 0.2},
            {"at": "22:30", "jitter_minutes": 30, "steal_chance": 0.5},
        ],
        "activities": [
            {
                "kind": "bus",
                "per_day": 1,
                "days": "weekdays",
                "chance": 0.5,
                "between": ["07:30", "09:00"],
            }
        ],
    },
    "redeemer": {
        "weight": 0.1,
        "description": "spends energy on transit rides and vouchers as soon as it can",
        "friends": [2, 5],
        "steps": [4000, 9000],
        "sessions": [{"at": "19:30", "jitter_minutes": 60, "steal_chance": 0.2}],
        "activities": [
            {
                "kind": "metro",
                "per_day": 2,
                "days": "weekdays",
                "chance": 0.9,
                "at": ["08:10", "18:20"],
            }
        ],
        "redeems": {"cost_g": 500, "per_day": 2},
    },
}


class PersonasInvalid(Exception):
    """A personas file that cannot be used; ``errors`` lists every problem found."""

    def __init__(self, errors: list[RuleIssue]) -> None:
        self.errors = errors
        super().__init__("invalid personas: " + "; ".join(f"{e.loc}: {e.msg}" for e in errors))


def _issues(exc: ValidationError, prefix: tuple[str | int, ...]) -> list[RuleIssue]:
    issues = []
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
        msg = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        if error["type"] in ("range", "between", "timezone", "name", "local_time"):
            msg = error["msg"]
        issues.append(RuleIssue(loc=format_loc(prefix + loc), msg=msg))
    return issues


def parse_personas(
    data: Mapping[str, Any], base: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, PersonaSpec]:
    """Personas from a personas file's data: its tables override (key by key) the built-in
    personas of the same name and add new ones; ``replace = true`` drops the built-ins; a weight
    of 0 leaves a persona out. Raises :class:`PersonasInvalid` listing every problem."""
    builtin = BUILTIN_PERSONAS if base is None else base
    issues: list[RuleIssue] = []
    for key in data:
        if key not in ("replace", "personas"):
            issues.append(RuleIssue(loc=format_loc((key,)), msg="unknown key"))
    replace = data.get("replace", False)
    if not isinstance(replace, bool):
        issues.append(RuleIssue(loc="replace", msg="must be true or false"))
        replace = False
    tables = data.get("personas", {})
    if not isinstance(tables, dict):
        issues.append(RuleIssue(loc="personas", msg="must be a table"))
        tables = {}
    merged: dict[str, dict[str, Any]] = {} if replace else {k: dict(v) for k, v in builtin.items()}
    for name, table in tables.items():
        if not isinstance(table, dict):
            issues.append(RuleIssue(loc=format_loc(("personas", name)), msg="must be a table"))
            continue
        merged[name] = {**merged.get(name, {}), **table}
    personas: dict[str, PersonaSpec] = {}
    for name, table in merged.items():
        if not NAME_PATTERN.match(name):
            loc = format_loc(("personas", name))
            issues.append(RuleIssue(loc=loc, msg="name must use only a-z, 0-9 and _"))
            continue
        try:
            persona = PersonaSpec.model_validate(table)
        except ValidationError as exc:
            issues += _issues(exc, ("personas", name))
            continue
        if persona.weight > 0:
            personas[name] = persona
    if not issues and not personas:
        issues.append(RuleIssue(loc="personas", msg="no persona has a weight above 0"))
    if issues:
        raise PersonasInvalid(issues)
    return personas


def default_personas() -> dict[str, PersonaSpec]:
    """The built-in population: walker, commuter, shopper, hoarder, early_bird, redeemer."""
    return parse_personas({})


def load_personas(path: Path) -> dict[str, PersonaSpec]:
    """Read a personas file (TOML) over the built-ins. Raises ``FileNotFoundError`` or
    :class:`PersonasInvalid`."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8").removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise PersonasInvalid([RuleIssue(loc=FILE_LOC, msg=f"TOML syntax error: {exc}")]) from None
    return parse_personas(data)
