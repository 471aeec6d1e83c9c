"""The model-checked economy: a seeded workload of ~2,000 steps against the real app, every answer
predicted by the reference model, the invariants checked after every step (see
docs/reliability.md). ``make soak-model SEED=… STEPS=…`` runs any seed for any length."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from app.config import Settings
from tests.conftest import TestServers
from tests.reliability.model.reference import KINDS
from tests.reliability.model.runner import check_seed

SEED = int(os.environ.get("CANOPY_MODEL_SEED", "12"))
STEPS = int(os.environ.get("CANOPY_MODEL_STEPS", "2000"))


@pytest.mark.timeout(600)
async def test_the_economy_follows_the_model(test_servers: TestServers, settings: Settings) -> None:
    outcome, failure = await check_seed(test_servers, settings, SEED, STEPS, shrink_budget=30)
    assert failure is None, failure
    assert outcome.steps_run == STEPS


@pytest.mark.timeout(300)
async def test_a_broken_rule_is_caught_and_shrunk(
    test_servers: TestServers, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the model believes a metro ride is worth 53 g (the rules say 52): the first ride the run
    # sends fails, and the shrinker cuts the steps before it down to what it needs
    monkeypatch.setitem(KINDS, "metro", replace(KINDS["metro"], per_event_g=53))
    outcome, failure = await check_seed(test_servers, settings, SEED, 300, shrink_budget=12)
    assert failure is not None and outcome.failed_at is not None
    assert f"seed {SEED}" in failure and "shortest failing step list" in failure
    listed = [line for line in failure.splitlines() if line.startswith("  ") and ": " in line]
    shortest = len(listed) - 1  # the first indented line is the failure itself
    assert 1 <= shortest <= outcome.failed_at + 1
    assert "'energy_g': 52" in failure
