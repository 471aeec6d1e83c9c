"""Run a benchmark: ``python -m bench [auth] [energy] [social]`` (default: all)."""

from __future__ import annotations

import sys

from bench import auth, energy, social

BENCHES = {"auth": auth.main, "energy": energy.main, "social": social.main}

if __name__ == "__main__":
    names = sys.argv[1:] or list(BENCHES)
    for name in names:
        if name not in BENCHES:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {', '.join(BENCHES)}")
        BENCHES[name]()
