"""Reading, checking and loading rules files, with every problem reported by key path."""

from __future__ import annotations

import difflib
import errno
import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

import app
from app.rules import schema
from app.rules.schema import ENERGY_SPEC_ERROR, Rules, energy_spec_problems

FILE_LOC = "(file)"


class RuleIssue(BaseModel):
    """One problem in a rules file: where (dotted key path) and what, for a designer."""

    loc: str
    msg: str


class RulesInvalid(Exception):
    """A rules file that cannot be used; ``errors`` lists every problem found."""

    def __init__(self, errors: list[RuleIssue]) -> None:
        self.errors = errors
        lines = "; ".join(f"{e.loc}: {e.msg}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"invalid rules: {lines}{more}")


@dataclass(frozen=True)
class LoadedRules:
    """A valid rules file with the exact text it came from and that text's SHA-256 (hex)."""

    rules: Rules
    text: str
    sha256: str


def validate_rules_text(text: str) -> list[RuleIssue]:
    """Every problem in a rules file's text; an empty list means it is valid."""
    return _check(text)[1]


def parse_rules_text(text: str) -> Rules:
    """The rules in ``text``; raises :class:`RulesInvalid` listing every problem."""
    rules, issues = _check(text)
    if rules is None or issues:
        raise RulesInvalid(issues)
    return rules


def default_rules_path() -> Path:
    """The shipped ruleset, ``rules/default.toml`` next to the ``app`` package."""
    return Path(app.__file__).resolve().parent.parent / "rules" / "default.toml"


def load_rules(path: Path | None = None) -> LoadedRules:
    """Read and check a rules file (None: the shipped default).

    Raises ``FileNotFoundError`` for a missing file and :class:`RulesInvalid` for a bad one.
    """
    path = default_rules_path() if path is None else Path(path)
    try:
        data = path.read_bytes()  # bytes, not read_text: keep CRLF so the hash is the file's
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "rules file not found", str(path)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesInvalid(
            [RuleIssue(loc=FILE_LOC, msg=f"is not UTF-8 text (byte {exc.start})")]
        ) from None
    return LoadedRules(rules=parse_rules_text(text), text=text, sha256=rules_sha256(text))


def rules_sha256(text: str) -> str:
    """SHA-256 (hex) of a rules file's UTF-8 text: the identity of a published version."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def rules_warnings(rules: Rules) -> list[RuleIssue]:
    """Things that are allowed but that a designer should fix: kinds without methodology."""
    warnings = []
    for kind, activity in rules.activities.items():
        for key in ("method", "source"):
            if not getattr(activity, key).strip():
                warnings.append(RuleIssue(loc=f"activities.{kind}.{key}", msg="is not documented"))
    return warnings


# --- checking ---------------------------------------------------------------------------------


# a rules file is a few kilobytes and three levels deep; anything far past that is an attack on
# the parser (tomllib recurses per nesting level) rather than a rules file
MAX_RULES_BYTES = 256 * 1024
MAX_NESTING = 32


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and inline tables, outside strings and comments."""
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            i = text.find("\n", i)
            if i < 0:
                break
        elif c in "\"'":
            quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else c
            i += len(quote)
            while i < n and not text.startswith(quote, i):
                i += 2 if quote[0] == '"' and text[i] == "\\" else 1
            i += len(quote) - 1
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return deepest


def _check(text: str) -> tuple[Rules | None, list[RuleIssue]]:
    if len(text.encode()) > MAX_RULES_BYTES:
        return None, [RuleIssue(loc=FILE_LOC, msg=f"is larger than {MAX_RULES_BYTES} bytes")]
    if nesting_depth(text) > MAX_NESTING:
        return None, [RuleIssue(loc=FILE_LOC, msg=f"nests deeper than {MAX_NESTING} levels")]
    try:
        data = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        return None, [RuleIssue(loc=FILE_LOC, msg=f"TOML syntax error: {exc}")]
    except RecursionError:  # the depth scan should have caught it; never a 500
        return None, [RuleIssue(loc=FILE_LOC, msg=f"nests deeper than {MAX_NESTING} levels")]
    rules: Rules | None = None
    issues: list[RuleIssue] = []
    try:
        rules = Rules.model_validate(data)
    except ValidationError as exc:
        # The cross-key energy checks come from _energy_issues, one issue per key.
        issues = [_issue(e) for e in exc.errors() if e["type"] != ENERGY_SPEC_ERROR]
    issues += _energy_issues(data)
    if rules is not None:
        issues += _bound_issues(rules)
    unique = {(i.loc, i.msg): i for i in issues}
    return rules, sorted(unique.values(), key=lambda i: i.loc)


def _bound_issues(rules: Rules) -> list[RuleIssue]:
    """Every kind an app may report needs a bound on one user's energy per local day, in each
    region (an app chooses what it reports; a partner is trusted and limited to its kinds)."""
    return [
        RuleIssue(loc=format_loc(("activities", name, *key.split("."))), msg=msg)
        for name, kind in rules.activities.items()
        for key, msg in kind.daily_bound_problems()
    ]


def _energy_issues(data: dict[str, Any]) -> list[RuleIssue]:
    """The energy-spec checks on the raw tables, so they are reported even when a kind has
    other errors too (a pydantic model validator would only run on an otherwise valid kind)."""
    activities = data.get("activities")
    if not isinstance(activities, dict):
        return []
    issues = []
    for kind, table in activities.items():
        if not isinstance(table, dict):
            continue
        for key, msg in energy_spec_problems(table):
            issues.append(RuleIssue(loc=format_loc(("activities", kind, key)), msg=msg))
        regions = table.get("regions")
        if not isinstance(regions, dict):
            continue
        for name, override in regions.items():
            if isinstance(override, dict):
                for key, msg in energy_spec_problems(override, table):
                    loc = format_loc(("activities", kind, "regions", name, key))
                    issues.append(RuleIssue(loc=loc, msg=msg))
    return issues


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def format_loc(parts: tuple[str | int, ...]) -> str:
    """A TOML-style key path: ``activities.metro.regions.shenzhen``, ``watering.amounts_g[1]``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("", "[key]"):
            continue
        else:
            key = part if _BARE_KEY.match(part) else '"' + part.replace('"', '\\"') + '"'
            out += f".{key}" if out else key
    return out or FILE_LOC


def _known_keys() -> set[str]:
    keys: set[str] = set()
    for model in vars(schema).values():
        if isinstance(model, type) and issubclass(model, schema._Table):
            keys.update(model.model_fields)
    return keys


_KNOWN_KEYS = _known_keys()

_TYPE_MESSAGES = {
    "missing": "is required",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "string_type": "must be text in quotes",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "string_too_short": "must not be empty",
}


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _issue(error: ErrorDetails) -> RuleIssue:
    loc = format_loc(tuple(error["loc"]))
    ctx = error.get("ctx", {})
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        close = difflib.get_close_matches(key, _KNOWN_KEYS, n=1, cutoff=0.75)
        msg = f"unknown key; did you mean {close[0]}?" if close else "unknown key"
    elif kind in _TYPE_MESSAGES:
        msg = _TYPE_MESSAGES[kind]
    elif kind == "greater_than_equal":
        msg = f"must be ≥ {_number(ctx['ge'])}"
    elif kind == "greater_than":
        msg = f"must be > {_number(ctx['gt'])}"
    elif kind == "less_than_equal":
        msg = f"must be ≤ {_number(ctx['le'])}"
    elif kind == "less_than":
        msg = f"must be < {_number(ctx['lt'])}"
    elif kind == "literal_error":
        msg = f"must be {ctx['expected']}"
    elif kind == "too_short":
        msg = "must not be empty"
    elif kind == "string_too_long":
        msg = f"must be at most {ctx['max_length']} characters"
    elif kind == "value_error":
        msg = str(ctx.get("error", error["msg"]))
    else:
        msg = error["msg"]
    return RuleIssue(loc=loc, msg=msg)
