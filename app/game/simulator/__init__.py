"""The economy simulator: a seeded population of personas playing under a rules file, through
the service's own rules code (``canopy simulate``), and the publishing guardrail built on it."""

from app.game.simulator.engine import (
    SAXAUL_G,
    SimulationConfig,
    SimulationResult,
    simulate,
)
from app.game.simulator.guardrails import guardrail_check, simulate_days_to_first_tree
from app.game.simulator.personas import PersonasInvalid, PersonaSpec, load_personas

__all__ = [
    "SAXAUL_G",
    "PersonaSpec",
    "PersonasInvalid",
    "SimulationConfig",
    "SimulationResult",
    "guardrail_check",
    "load_personas",
    "simulate",
    "simulate_days_to_first_tree",
]
