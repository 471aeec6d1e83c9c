"""``python -m tests.reliability.model --seed S --steps N``: a model run of any length
(``make soak-model SEED=… STEPS=…``). Uses CANOPY_TEST_DATABASE_URL / CANOPY_TEST_REDIS_URL
(else the embedded servers under .canopy-test/), on a fresh database dropped afterwards."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from app.config import Settings, normalize_database_url
from app.core import migrate
from app.core.embedded import EmbeddedServer, ensure_postgres, ensure_redis
from tests.conftest import ADMIN_TOKEN, ROOT, TestServers, _plain_dsn, drop_database, fresh_database
from tests.reliability.model.runner import check_seed


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.model")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=1, help="run this many seeds from --seed on")
    parser.add_argument(
        "--check-every", type=int, default=1, help="the full ledger check every N steps"
    )
    parser.add_argument(
        "--shrink-budget", type=int, default=60, help="replays the shrinker may use"
    )
    parser.add_argument("--progress", type=int, default=0, help="a line every N steps")
    parser.add_argument("--stats", action="store_true", help="print what each run exercised")
    args = parser.parse_args()

    started: list[EmbeddedServer] = []
    db_url = os.environ.get("CANOPY_TEST_DATABASE_URL")
    redis_url = os.environ.get("CANOPY_TEST_REDIS_URL")
    if not db_url:
        pg = ensure_postgres(ROOT / ".canopy-test")
        started.append(pg)
        db_url = pg.url
    if not redis_url:
        rd = ensure_redis(ROOT / ".canopy-test")
        started.append(rd)
        redis_url = rd.url
    base = TestServers(normalize_database_url(db_url), redis_url, _plain_dsn(db_url))
    run_url = fresh_database(base, prefix="canopy_model")
    failed = 0
    try:
        migrate.upgrade(run_url)
        servers = TestServers(run_url, redis_url, base.admin_dsn)
        with tempfile.TemporaryDirectory() as data:
            settings = Settings(
                database_url=run_url,
                redis_url=redis_url,
                data_dir=Path(data),
                admin_token=SecretStr(ADMIN_TOKEN),
                jwt_secret=SecretStr("model-jwt-secret-that-is-long-enough-0123456789"),
                # the clock moves about half a year per 1,000 steps: tokens issued at a user's
                # registration must outlive any run (10 years ran out at step 85,737 of seed 7,
                # a 401 for a user registered in 2027 with the clock in 2041)
                access_token_ttl=timedelta(days=365 * 1000),
                rules_refresh_seconds=0,
                argon2_time_cost=1,
                argon2_memory_kib=1024,
            )
            for seed in range(args.seed, args.seed + args.seeds):
                t0 = time.monotonic()
                outcome, failure = asyncio.run(
                    check_seed(
                        servers,
                        settings,
                        seed,
                        args.steps,
                        full_check_every=args.check_every,
                        shrink_budget=args.shrink_budget,
                        progress_every=args.progress,
                        announce=lambda text: print(text, flush=True),
                    )
                )
                took = time.monotonic() - t0
                if failure:
                    failed += 1
                    print(failure, flush=True)
                else:
                    print(
                        f"seed {seed}: {outcome.steps_run} steps ok in {outcome.seconds:.1f} s "
                        f"({took:.1f} s in all; full ledger check every {args.check_every})",
                        flush=True,
                    )
                    if args.stats and outcome.stats:
                        for name, count in sorted(outcome.stats.items()):
                            print(f"  {name}: {count}")
    finally:
        drop_database(base, run_url)
        for server in reversed(started):
            server.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
