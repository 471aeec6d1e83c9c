"""How many PostgreSQL connections each process may open, from one budget.

An API process holds three kinds of connection: the SQLAlchemy engine's pool (cold paths, the
in-process worker, the rules watcher's poll), the raw asyncpg hot pool (:mod:`app.core.sql`)
and one connection that LISTENs for revoked logins (:mod:`app.accounts.revocations`, which
also runs its poll on it). ``canopy serve --workers N`` runs N such processes, so the budget
``CANOPY_DB_MAX_CONNECTIONS`` is divided by N. ``canopy worker`` runs its jobs one at a time
and needs a small pool of its own, outside that budget.

The default budget (80) leaves room, under PostgreSQL's default ``max_connections = 100``, for
one ``canopy worker`` (4), a migration (1), ``pg_dump`` or ``psql`` (a few) and the 3
connections PostgreSQL reserves for superusers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.config import Settings

# the per-process sizes used when the budget allows them (and before there was a budget)
DEFAULT_ENGINE_POOL, DEFAULT_ENGINE_OVERFLOW, DEFAULT_HOT_POOL = 10, 20, 10
LISTENERS = 1
# below this a process cannot hold one connection of each kind plus one to spare
MIN_PER_PROCESS = 4
# what `canopy worker` holds: its jobs run one after another
WORKER_ENGINE_POOL, WORKER_ENGINE_OVERFLOW = 2, 2
# `canopy serve` without --workers: one per core, but not so many that each gets a tiny pool
COMFORTABLE_PER_PROCESS = 10


class BudgetTooSmall(ValueError):
    pass


@dataclass(frozen=True)
class PoolPlan:
    processes: int
    engine_pool_size: int
    engine_max_overflow: int
    hot_pool_size: int
    listeners: int
    budget: int

    @property
    def per_process(self) -> int:
        return (
            self.engine_pool_size + self.engine_max_overflow + self.hot_pool_size + self.listeners
        )

    @property
    def total(self) -> int:
        return self.processes * self.per_process

    @property
    def over_budget(self) -> bool:
        return self.total > self.budget

    def describe(self) -> str:
        return (
            f"PostgreSQL connections: {self.processes} process(es) x {self.per_process} "
            f"(pool {self.engine_pool_size}+{self.engine_max_overflow}, hot "
            f"{self.hot_pool_size}, listener {self.listeners}) = {self.total} of "
            f"CANOPY_DB_MAX_CONNECTIONS={self.budget}"
        )


def plan_api(settings: Settings, processes: int | None = None) -> PoolPlan:
    """The pools of one API process, when ``processes`` of them share the budget. Sizes set
    explicitly (``CANOPY_DB_POOL_SIZE``, ``CANOPY_DB_MAX_OVERFLOW``, ``CANOPY_HOT_POOL_SIZE``)
    win; the rest come from the budget. Raises :class:`BudgetTooSmall` when a process would
    get fewer than :data:`MIN_PER_PROCESS`."""
    processes = processes or settings.processes
    budget = settings.db_max_connections
    share = budget // processes
    explicit = (settings.db_pool_size, settings.db_max_overflow, settings.hot_pool_size)
    if share < MIN_PER_PROCESS and None in explicit:
        raise BudgetTooSmall(
            f"CANOPY_DB_MAX_CONNECTIONS={budget} gives each of {processes} processes {share} "
            f"connection(s); each needs at least {MIN_PER_PROCESS}: raise the budget (and "
            "PostgreSQL's max_connections) or run fewer workers"
        )
    full = DEFAULT_ENGINE_POOL + DEFAULT_ENGINE_OVERFLOW + DEFAULT_HOT_POOL + LISTENERS
    if share >= full:
        pool, overflow, hot = DEFAULT_ENGINE_POOL, DEFAULT_ENGINE_OVERFLOW, DEFAULT_HOT_POOL
    else:
        # the same proportions as the defaults, scaled down to the share
        rest = share - LISTENERS
        hot = max(1, round(rest * DEFAULT_HOT_POOL / (full - LISTENERS)))
        engine = rest - hot
        pool = max(1, round(engine * DEFAULT_ENGINE_POOL / (full - LISTENERS - DEFAULT_HOT_POOL)))
        overflow = max(0, engine - pool)
    return PoolPlan(
        processes=processes,
        engine_pool_size=settings.db_pool_size if settings.db_pool_size is not None else pool,
        engine_max_overflow=(
            settings.db_max_overflow if settings.db_max_overflow is not None else overflow
        ),
        hot_pool_size=settings.hot_pool_size if settings.hot_pool_size is not None else hot,
        listeners=LISTENERS,
        budget=budget,
    )


def plan_worker(settings: Settings) -> PoolPlan:
    """``canopy worker``: a small engine pool, no hot pool, no listener."""
    return PoolPlan(
        processes=1,
        engine_pool_size=min(WORKER_ENGINE_POOL, settings.db_max_connections),
        engine_max_overflow=WORKER_ENGINE_OVERFLOW,
        hot_pool_size=0,
        listeners=0,
        budget=settings.db_max_connections,
    )


def default_workers(settings: Settings, cores: int) -> int:
    """``canopy serve``'s default process count: one per core, while each keeps a useful pool."""
    return max(1, min(cores, math.floor(settings.db_max_connections / COMFORTABLE_PER_PROCESS)))
