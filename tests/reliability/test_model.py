"""The model-checked economy: a seeded workload of ~2,000 steps against the real app, every answer
predicted by the reference model, the invariants checked after every step (see
docs/reliability.md). ``make soak-model SEED=… STEPS=…`` runs any seed for any length."""

from __future__ import annotations

import os

import pytest

from app.config import Settings
from tests.conftest import TestServers
from tests.reliability.model.runner import check_seed

SEED = int(os.environ.get("CANOPY_MODEL_SEED", "12"))
STEPS = int(os.environ.get("CANOPY_MODEL_STEPS", "2000"))


@pytest.mark.timeout(600)
async def test_the_economy_follows_the_model(test_servers: TestServers, settings: Settings) -> None:
    outcome, failure = await check_seed(test_servers, settings, SEED, STEPS, shrink_budget=30)
    assert failure is None, failure
    assert outcome.steps_run == STEPS
