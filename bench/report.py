"""Results: one row per scenario, the targets, the table, the JSON file."""

from __future__ import annotations

import json
import math
import os
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["S1", "S1me", "S2", "S3", "S4", "S5", "FL"]

# scenario -> (minimum ratio, extra conditions as text)
TARGETS: dict[str, tuple[float, str]] = {
    "S1": (0.80, ""),
    "S1me": (0.20, ""),
    "S2": (0.15, "paced p99 <= 250 ms, 0 errors"),
    "S3": (0.25, "paced p99 <= 50 ms"),
    "S4": (0.50, "p99/p50 <= 5"),
    "S5": (0.50, ""),
    "FL": (0.50, "p50 <= 20 ms"),
}


@dataclass
class Result:
    name: str
    what: str
    api_rate: float
    api_unit: str
    limit_rate: float
    limit_unit: str
    p50_ms: float  # paced pass (S4: the storm)
    p99_ms: float
    cpu_ms: float  # server CPU per request in the measured closed-loop window
    errors: int  # non-2xx answers and socket errors, every pass of the scenario
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.api_rate / self.limit_rate if self.limit_rate else math.nan

    def verdict(self) -> tuple[bool, str]:
        """(met, the target as text). Any failed correctness check misses the target."""
        least, extra = TARGETS[self.name]
        ok = self.ratio >= least
        if self.name == "S2":
            ok = ok and self.p99_ms <= 250 and self.errors == 0
        elif self.name == "S3":
            ok = ok and self.p99_ms <= 50
        elif self.name == "S4":
            ok = ok and self.p99_ms / self.p50_ms <= 5
        elif self.name == "FL":
            ok = ok and self.p50_ms <= 20
        ok = ok and all(self.checks.values())
        text = f">={least:.2f}" + (f", {extra}" if extra else "")
        return ok, text


def _rate(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}"


def table(results: list[Result]) -> str:
    head = (
        "scenario",
        "API",
        "limit",
        "ratio",
        "p50 ms",
        "p99 ms (paced)",
        "server CPU ms/req",
        "errors",
        "target",
        "met",
    )
    rows = []
    for r in results:
        met, target = r.verdict()
        failed = [k for k, v in r.checks.items() if not v]
        p99 = f"{r.p99_ms:.1f}"
        if r.name == "S4":
            p99 += f" (x{r.p99_ms / r.p50_ms:.1f})"
        rows.append(
            (
                r.name,
                _rate(r.api_rate, r.api_unit),
                _rate(r.limit_rate, r.limit_unit),
                f"{r.ratio:.2f}",
                f"{r.p50_ms:.1f}",
                p99,
                f"{r.cpu_ms:.2f}",
                str(r.errors),
                target,
                ("yes" if met else "NO") + (f" (failed: {', '.join(failed)})" if failed else ""),
            )
        )
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    return "\n".join([line, rule, *body])


APP_PATHS = ("app", "migrations", "rules", "pyproject.toml")


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def commit() -> str:
    """The checkout's HEAD, ``+dirty`` if the app's files have uncommitted changes."""
    try:
        dirty = _git("status", "--porcelain", "--", *APP_PATHS)
        return _git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def app_commit() -> str:
    """The last commit that changed the app (what was measured; bench commits do not count)."""
    try:
        return _git("log", "-1", "--format=%h", "--", *APP_PATHS) or "unknown"
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write(
    results: list[Result], label: str, meta: dict[str, Any], path: Path | None = None
) -> Path:
    path = path or ROOT / "bench" / "results" / f"{label}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "label": label,
        "commit": commit(),
        "app_commit": app_commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        **meta,
        "scenarios": {
            r.name: {
                **asdict(r),
                "ratio": r.ratio,
                "target": r.verdict()[1],
                "met": r.verdict()[0],
            }
            for r in results
        },
    }
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path
