"""``python -m bench [SCENARIO ...] [--quick] [--label NAME]`` runs the benchmark;
``python -m bench chart BEFORE.json AFTER.json`` draws docs/performance-chart.png;
``python -m bench soak [--minutes N]`` runs the S6 soak (bench/soak.py).

Scenarios: S1 S1me S2 S3 S4 S5 FL (default: all, in that order). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import time
import traceback

from bench import context, load, report
from bench.report import ORDER, Result


def _parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"any of {' '.join(ORDER)} (default: all)"
    )
    ap.add_argument("--quick", action="store_true", help="short windows: all in under 3 minutes")
    ap.add_argument("--label", default="latest", help="results go to bench/results/LABEL.json")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers (API and bare app)")
    ap.add_argument(
        "--seconds", type=float, help="measured window (and paced pass) in seconds, overriding"
    )
    ap.add_argument("--no-wrk", action="store_true", help="use the asyncio client, not wrk")
    ap.add_argument("--no-install-wrk", action="store_true", help="do not try apt-get install wrk")
    args = ap.parse_args(argv)
    wanted = {s.lower(): s for s in ORDER}
    chosen = []
    for s in args.scenarios:
        if s.lower() not in wanted:
            ap.error(f"unknown scenario {s!r}; choose from {' '.join(ORDER)}")
        chosen.append(wanted[s.lower()])
    args.scenarios = [s for s in ORDER if s in chosen] or list(ORDER)
    return args


def _servers() -> tuple[str, str, list[object]]:
    """PostgreSQL and Redis: CANOPY_BENCH_DATABASE_URL / CANOPY_BENCH_REDIS_URL, else the app's
    embedded ones under .canopy-bench."""
    db = os.environ.get("CANOPY_BENCH_DATABASE_URL")
    redis = os.environ.get("CANOPY_BENCH_REDIS_URL")
    started: list[object] = []
    if not db or not redis:
        from bench import fixtures

        pg, rd = fixtures.embedded_servers(context.ROOT)
        if not db:
            db, _ = pg.url, started.append(pg)
        if not redis:
            redis, _ = rd.url, started.append(rd)
    assert db and redis
    return db, redis, started


async def _run(args: argparse.Namespace) -> int:
    timing = context.QUICK if args.quick else context.FULL
    if args.seconds:
        timing = context.Timing(
            timing.warm, args.seconds, args.seconds, timing.storm_rounds, timing.pool
        )
    wrk = None if args.no_wrk else load.find_wrk(install=not args.no_install_wrk)
    if wrk is None:
        load.warn_no_wrk("--no-wrk" if args.no_wrk else "wrk not found and not installable")
    db, redis, started = _servers()
    print(
        f"# canopy bench: {' '.join(args.scenarios)}  ({'quick' if args.quick else 'full'}: "
        f"warm-up {timing.warm:g} s, measured {timing.measure:g} s, paced {timing.paced:g} s; "
        f"{args.workers} workers; load generator {'wrk' if wrk else 'asyncio'}; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    ctx = context.Context(
        timing=timing, workers=args.workers, wrk=wrk, admin_url=db, redis_url=redis
    )
    results: list[Result] = []
    failed: dict[str, str] = {}
    began = time.perf_counter()
    load_before = os.getloadavg()[0]
    try:
        await ctx.start()
        from bench.scenarios import SCENARIOS

        for name in args.scenarios:
            print(f"## {name}", flush=True)
            t = time.perf_counter()
            try:
                results.append(await SCENARIOS[name](ctx))
            except Exception as exc:  # one broken scenario does not lose the others
                traceback.print_exc()
                failed[name] = f"{type(exc).__name__}: {exc}"[:500]
                print(f"  !! {name} failed: {failed[name]}", flush=True)
            print(f"  ({name} took {time.perf_counter() - t:.0f} s)", flush=True)
    finally:
        await ctx.stop()
        for server in reversed(started):
            server.stop()  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - began
    print()
    print(
        f"# results (app at {report.app_commit()}, checkout {report.commit()}, "
        f"{'quick' if args.quick else 'full'} run, "
        f"{elapsed:.0f} s, load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} "
        "after)"
    )
    if results:
        print(report.table(results))
    for r in results:
        for note in r.notes:
            print(f"  {r.name}: {note}")
    for name, why in failed.items():
        print(f"  {name}: did not run to the end: {why}")
    path = report.write(
        results,
        args.label,
        {
            "quick": args.quick,
            "workers": args.workers,
            "load_generator": "wrk" if wrk else "asyncio",
            "timing": dataclasses.asdict(timing),
            "seconds": round(elapsed, 1),
            "load_average": {"before": load_before, "after": os.getloadavg()[0]},
            "failed": failed,
        },
    )
    print(f"  (written to {path.relative_to(context.ROOT)})")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["chart"]:
        from bench import chart

        return chart.main(argv[1:])
    if argv[:1] == ["soak"]:
        from bench import soak

        job = soak.main(argv[1:])
    else:
        job = _run(_parse(argv))
    try:
        import uvloop
    except ImportError:
        return asyncio.run(job)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(job)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
