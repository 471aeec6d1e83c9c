"""The seeded workload: a list of abstract steps made from a seed alone, so any prefix or subset
of it can be replayed (the shrinker does). A step names people and things by small numbers that
are resolved against the model's state when it runs ("the 3rd live user", "a ripe ball of hers").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# name → weight; the concurrent groups (devices, crowd, overlap) run several requests at once
WEIGHTS: dict[str, float] = {
    "register": 3,
    "befriend": 7,
    "unfriend": 1,
    "block": 1,
    "unblock": 1,
    "activity": 12,
    "replay": 4,
    "partner": 8,
    "partner_batch": 3,
    "steps": 6,
    "collect": 8,
    "take": 10,
    "water": 5,
    "grant": 1,
    "use_prop": 2,
    "buy_prop": 0.5,
    "plant": 3,
    "orders": 1,
    "erase": 0.4,
    "view": 4,
    "tick": 9,
    "worker": 2,
    "devices": 2,
    "crowd": 0.6,
    "overlap": 1,
    "storm": 1.5,
}


@dataclass(frozen=True)
class Step:
    name: str
    args: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.name}{self.args}"


def generate(seed: int, count: int) -> list[Step]:
    rng = random.Random(seed)
    names = list(WEIGHTS)
    weights = [WEIGHTS[n] for n in names]
    steps = [Step("register", (rng.randrange(1 << 16), rng.randrange(1 << 16))) for _ in range(4)]
    while len(steps) < count:
        name = rng.choices(names, weights)[0]
        steps.append(Step(name, tuple(rng.randrange(1 << 16) for _ in range(6))))
    return steps[:count]
