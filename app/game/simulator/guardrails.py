"""Guardrails for publishing rules: refuse a change that moves how long players wait for their
first tree by more than a threshold (the lead wires this into ``rules publish --simulate``).

Both rules files run the same small population with the same seed, so the same players do the
same things under both and the difference is the rules' doing, not chance."""

from __future__ import annotations

from app.game.simulator.engine import RulesInput, SimulationConfig, simulate
from app.game.simulator.personas import PersonaSpec
from app.game.simulator.report import median_days

#: Small enough to answer within seconds, long enough for the slowest savers to plant.
GUARDRAIL_PLAYERS = 200
GUARDRAIL_DAYS = 150
GUARDRAIL_SEED = 1


def simulate_days_to_first_tree(
    rules: RulesInput,
    *,
    players: int = GUARDRAIL_PLAYERS,
    days: int = GUARDRAIL_DAYS,
    seed: int = GUARDRAIL_SEED,
    personas: dict[str, PersonaSpec] | None = None,
) -> dict[str, float | None]:
    """Median days to the first saxaul per persona (None: half or more never get there within
    ``days``), for rules given as parsed rules, a loaded file or a path."""
    config = SimulationConfig(players=players, days=days, seed=seed, workers=1)
    result = simulate(rules, config, personas)
    return {name: median_days(totals) for name, totals in result.totals.items()}


def guardrail_check(
    old_rules: RulesInput,
    new_rules: RulesInput,
    threshold: float = 0.2,
    *,
    players: int = GUARDRAIL_PLAYERS,
    days: int = GUARDRAIL_DAYS,
    seed: int = GUARDRAIL_SEED,
) -> list[str]:
    """Why ``new_rules`` moves some persona's days to the first saxaul by more than
    ``threshold`` (a fraction: 0.2 is 20%) compared with ``old_rules``; empty when it does not.
    Reaching a first tree within the simulated days where it was not reached before (or the
    other way round) always counts."""
    before = simulate_days_to_first_tree(old_rules, players=players, days=days, seed=seed)
    after = simulate_days_to_first_tree(new_rules, players=players, days=days, seed=seed)
    reasons = []
    limit = f"threshold {threshold:.0%}"
    never = f"never within {days} days"
    for persona, old in before.items():
        new = after.get(persona)
        if old is None and new is None:
            continue
        if old is None or new is None:
            was = never if old is None else f"{old:g}"
            now = never if new is None else f"{new:g}"
            reasons.append(f"{persona}: days to first saxaul {was} → {now}, {limit}")
            continue
        change = (new - old) / old
        if abs(change) > threshold:
            reasons.append(
                f"{persona}: days to first saxaul {old:g} → {new:g} ({change:+.0%}), {limit}"
            )
    return reasons
