"""``python -m bench chart BEFORE.json AFTER.json [-o PNG]``: throughput ratio and p99 per
scenario, before beside after (default output: docs/performance-chart.png)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from bench.report import ORDER, ROOT, TARGETS

DEFAULT_OUT = ROOT / "docs" / "performance-chart.png"


def _load(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    doc.setdefault("label", path.stem)
    return doc


def _title(doc: dict[str, Any]) -> str:
    return f"{doc['label']} ({doc.get('commit', '?')}, {str(doc.get('date', ''))[:10]})"


def render(before: dict[str, Any], after: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s for s in ORDER if s in before["scenarios"] or s in after["scenarios"]]

    def value(doc: dict[str, Any], name: str, key: str) -> float:
        s = doc["scenarios"].get(name)
        v = s.get(key) if s else None
        return float(v) if v is not None else math.nan

    x = range(len(names))
    width = 0.38
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), constrained_layout=True)
    for ax, key, label in (
        (top, "ratio", "throughput ratio (API / limit, same run)"),
        (bottom, "p99_ms", "p99 latency, ms (paced pass; S4: the storm) - log scale"),
    ):
        b = [value(before, n, key) for n in names]
        a = [value(after, n, key) for n in names]
        bars_b = ax.bar([i - width / 2 for i in x], b, width, label=_title(before), color="#9aa5b1")
        bars_a = ax.bar([i + width / 2 for i in x], a, width, label=_title(after), color="#2f855a")
        for bars in (bars_b, bars_a):
            ax.bar_label(
                bars,
                labels=[
                    "" if math.isnan(v) else (f"{v:.2f}" if key == "ratio" else f"{v:.0f}")
                    for v in bars.datavalues
                ],
                fontsize=8,
                padding=2,
            )
        ax.set_xticks(list(x), names)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
        if key == "ratio":
            for i, n in enumerate(names):
                target = TARGETS[n][0]
                ax.hlines(target, i - 0.45, i + 0.45, colors="#c53030", linestyles="dashed")
            ax.plot([], [], color="#c53030", linestyle="dashed", label="target ratio")
            ax.legend(fontsize=8, loc="upper right")
        else:
            ax.set_yscale("log")
    fig.suptitle("Canopy hot paths against their limits on the same machine")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench chart", description=__doc__)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    path = render(_load(args.before), _load(args.after), args.out)
    print(f"wrote {path}")
    return 0
