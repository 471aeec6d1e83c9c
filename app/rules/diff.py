"""What changed between two rules files, in designers' words ("metro: 52 g → 60 g per ride")."""

from __future__ import annotations

from typing import Any

from app.rules.schema import ActivityRules, Rules

_UNITLESS_SHARES = {"max_share", "owner_floor", "reviver_share"}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _show(key: str, value: Any) -> str:
    leaf = key.rsplit(".", 1)[-1]
    if value is None:
        return "none"
    if isinstance(value, list):
        return "[" + ", ".join(_show(key, v) for v in value) + "]"
    if leaf in _UNITLESS_SHARES and isinstance(value, int | float):
        return f"{value:.0%}" if float(value * 100).is_integer() else f"{value * 100:g}%"
    if leaf.endswith("_g") and isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g} g"
    return str(value)


def _energy_words(kind: str, rules: ActivityRules) -> str:
    if rules.energy_per_event_g is not None:
        return f"{rules.energy_per_event_g} g per event"
    return f"{rules.energy_per_unit_g:g} g per {rules.unit}"


def describe_changes(old: Rules, new: Rules) -> list[str]:
    """One line per change; an empty list means the two rule sets behave the same."""
    lines: list[str] = []
    for kind in sorted(set(old.activities) | set(new.activities)):
        before, after = old.activities.get(kind), new.activities.get(kind)
        if before is None and after is not None:
            lines.append(f"{kind}: new kind, {_energy_words(kind, after)}")
        elif after is None and before is not None:
            lines.append(f"{kind}: removed (was {_energy_words(kind, before)})")
        elif before is not None and after is not None:
            old_energy, new_energy = _energy_words(kind, before), _energy_words(kind, after)
            if old_energy != new_energy:
                old_value, _, unit_old = old_energy.partition(" per ")
                new_value, _, unit_new = new_energy.partition(" per ")
                tail = (
                    f" per {unit_new}"
                    if unit_old == unit_new
                    else f" per {unit_new} (was per {unit_old})"
                )
                lines.append(f"{kind}: {old_value} → {new_value}{tail}")
            old_flat = _flatten(before.model_dump(mode="json"))
            new_flat = _flatten(after.model_dump(mode="json"))
            for key in sorted(set(old_flat) | set(new_flat)):
                if key in ("energy_per_event_g", "energy_per_unit_g", "unit"):
                    continue
                a, b = old_flat.get(key), new_flat.get(key)
                if a != b:
                    lines.append(f"{kind}.{key}: {_show(key, a)} → {_show(key, b)}")
    old_rest = _flatten(old.model_dump(mode="json", exclude={"activities"}))
    new_rest = _flatten(new.model_dump(mode="json", exclude={"activities"}))
    for key in sorted(set(old_rest) | set(new_rest)):
        a, b = old_rest.get(key), new_rest.get(key)
        if a != b:
            lines.append(f"{key}: {_show(key, a)} → {_show(key, b)}")
    return lines
