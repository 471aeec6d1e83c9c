"""One model run on a fresh app, and the shrinker: on a failure, the shortest step list that
still fails (delta debugging over the seed's steps), printed with the seed."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from asgi_lifespan import LifespanManager

from app.config import Settings
from app.core.clock import FrozenClock
from app.main import create_app
from app.rules.schema import LimitsRules
from tests.conftest import ADMIN_TOKEN, GENEROUS_LIMIT, TestServers, _clean, set_limits
from tests.reliability.model.driver import Driver, StepFailed
from tests.reliability.model.workload import Step, generate

START = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
SHORT_PREFIX = 5_000  # failing prefixes up to this long are replayed with every check every step


@dataclass
class Outcome:
    steps_run: int
    seconds: float
    failure: str | None = None
    failed_at: int | None = None
    stats: dict[str, int] | None = None


async def run_steps(
    servers: TestServers,
    settings: Settings,
    steps: Sequence[Step],
    full_check_every: int = 1,
    progress_every: int = 0,
) -> Outcome:
    """Run ``steps`` against a fresh app on emptied databases."""
    await _clean(servers)
    clock = FrozenClock(START)
    app = create_app(settings, clock=clock, run_worker=False)
    started = time.monotonic()
    async with LifespanManager(app):
        set_limits(app, **{name: GENEROUS_LIMIT for name in LimitsRules.model_fields})
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            driver = Driver(app, client, clock, ADMIN_TOKEN, full_check_every, progress_every)
            await driver.setup()
            try:
                await driver.run(steps)
            except StepFailed as exc:
                index = int(str(exc).split()[1])
                return Outcome(driver.steps_run, time.monotonic() - started, str(exc), index)
    return Outcome(driver.steps_run, time.monotonic() - started, stats=dict(driver.stats))


async def shrink(
    servers: TestServers,
    settings: Settings,
    steps: list[Step],
    budget: int = 40,
    full_check_every: int = 1,
) -> list[Step]:
    """Delta debugging: drop chunks of the failing prefix while the run still fails."""
    current = list(steps)
    chunk = max(1, len(current) // 2)
    tries = 0
    while chunk >= 1 and tries < budget:
        i, shrunk = 0, False
        while i < len(current) and tries < budget:
            candidate = current[:i] + current[i + chunk :]
            tries += 1
            outcome = await run_steps(servers, settings, candidate, full_check_every)
            if outcome.failure is not None:
                assert outcome.failed_at is not None
                current = candidate[: outcome.failed_at + 1]
                shrunk = True
            else:
                i += chunk
        if not shrunk:
            chunk //= 2
    return current


def report(seed: int, outcome: Outcome, shortest: list[Step] | None) -> str:
    lines = [
        f"model run failed: seed {seed}, at step {outcome.failed_at}",
        f"  {outcome.failure}",
        f"reproduce: make soak-model SEED={seed} STEPS={(outcome.failed_at or 0) + 1}",
    ]
    if shortest is not None:
        lines.append(f"shortest failing step list ({len(shortest)} steps):")
        lines += [f"  {n}: {step}" for n, step in enumerate(shortest)]
    return "\n".join(lines)


async def check_seed(
    servers: TestServers,
    settings: Settings,
    seed: int,
    count: int,
    *,
    full_check_every: int = 1,
    shrink_budget: int = 40,
    progress_every: int = 0,
    announce: Callable[[str], None] | None = None,
) -> tuple[Outcome, str | None]:
    """Run a seed; on failure shrink it and return the printable report. ``announce`` is told
    the failure at once, before shrinking (which replays the failing prefix many times: on a long
    run that takes a while)."""
    steps = generate(seed, count)
    outcome = await run_steps(servers, settings, steps, full_check_every, progress_every)
    if outcome.failure is None:
        return outcome, None
    assert outcome.failed_at is not None
    if announce is not None:
        announce(report(seed, outcome, None) + "\nshrinking ...")
    shortest = None
    if shrink_budget:
        prefix = steps[: outcome.failed_at + 1]
        # replays of a long prefix check the whole ledger as often as the run did, not every step
        every = 1 if len(prefix) <= SHORT_PREFIX else full_check_every
        shortest = await shrink(servers, settings, prefix, shrink_budget, every)
    return outcome, report(seed, outcome, shortest)
