"""``python -m bench chart BEFORE.json [AFTER.json] [-o PNG]``: throughput ratio and p99 per
scenario, before beside after (default output: docs/performance-chart.png). With one file, that
run alone."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from bench.report import ORDER, ROOT, TARGETS

DEFAULT_OUT = ROOT / "docs" / "performance-chart.png"
P99_TARGETS_MS = {"S2": 250.0, "S3": 50.0}  # the paced p99 targets (bench/report.py)


def _load(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    doc.setdefault("label", path.stem)
    return doc


def _title(doc: dict[str, Any]) -> str:
    sha = doc.get("app_commit") or doc.get("commit", "?")
    return f"{doc['label']} (app {sha}, {str(doc.get('date', ''))[:10]})"


def render(before: dict[str, Any], after: dict[str, Any] | None, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(before, "#9aa5b1")] if after is None else [(before, "#9aa5b1"), (after, "#2f855a")]
    names = [s for s in ORDER if any(s in doc["scenarios"] for doc, _ in runs)]

    def value(doc: dict[str, Any], name: str, key: str) -> float:
        s = doc["scenarios"].get(name)
        v = s.get(key) if s else None
        return float(v) if v is not None else math.nan

    x = range(len(names))
    width = 0.76 / len(runs)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), constrained_layout=True)
    for ax, key, label in (
        (top, "ratio", "throughput ratio (API / limit, same run)"),
        (bottom, "p99_ms", "p99 latency, ms (paced pass; S4: the storm) - log scale"),
    ):
        for k, (doc, color) in enumerate(runs):
            shift = (k - (len(runs) - 1) / 2) * width
            bars = ax.bar(
                [i + shift for i in x],
                [value(doc, n, key) for n in names],
                width,
                label=_title(doc),
                color=color,
            )
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
        targets = {n: TARGETS[n][0] for n in names} if key == "ratio" else P99_TARGETS_MS
        for i, n in enumerate(names):
            if n in targets:
                ax.hlines(targets[n], i - 0.45, i + 0.45, colors="#c53030", linestyles="dashed")
        if key != "ratio":
            ax.set_yscale("log")
    bottom.plot([], [], color="#c53030", linestyle="dashed", label="target")
    handles, labels = bottom.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8)
    fig.suptitle("Canopy hot paths against their limits on the same machine")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench chart", description=__doc__)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path, nargs="?")
    ap.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    path = render(_load(args.before), _load(args.after) if args.after else None, args.out)
    print(f"wrote {path}")
    return 0
