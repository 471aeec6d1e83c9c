"""The limits: what this machine does with the least work each operation needs, in the same run.

PostgreSQL side: the reference tables (``bench/reference/schema.sql``, a copy of the shared perf
workload) in a scratch database of their own, driven by ``pgbench`` with the reference scripts,
and S2's ``COPY``. HTTP side: the bare Starlette app (``bench/bare.py``).
"""

from __future__ import annotations

import asyncio
import glob
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.load import quantiles_ms

HERE = Path(__file__).resolve().parent / "reference"
USERS = 2000  # psql -v n=
BALLS = 8000  # psql -v nballs=


def pg_tool(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if not found:
        raise RuntimeError(f"{name} not found (install the PostgreSQL client tools)")
    return found


@dataclass
class Pgbench:
    tps: float
    transactions: int
    seconds: float
    latencies_ms: dict[str, float]
    failed: int

    def describe(self) -> dict[str, Any]:
        return {
            "tps": round(self.tps, 2),
            "transactions": self.transactions,
            "seconds": round(self.seconds, 3),
            "latency_ms": {k: round(v, 3) for k, v in self.latencies_ms.items()},
            "failed": self.failed,
        }


class Reference:
    """The reference database (``dsn``: a plain ``postgresql://`` URL)."""

    def __init__(self, dsn: str, host: str, port: int, user: str, password: str | None, db: str):
        self.dsn = dsn
        self.conn_args = ["-h", host, "-p", str(port), "-U", user]
        self.db = db
        self.env = {**os.environ}
        if password:
            self.env["PGPASSWORD"] = password
        self.tmp = Path(tempfile.mkdtemp(prefix="canopy-bench-pgbench-"))

    def load(self) -> None:
        out = subprocess.run(
            [
                pg_tool("psql"),
                *self.conn_args,
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                f"n={USERS}",
                "-v",
                f"nballs={BALLS}",
                "-f",
                str(HERE / "schema.sql"),
                self.db,
            ],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"loading the reference schema failed:\n{out.stderr}")

    def pgbench(
        self,
        script: str,
        clients: int,
        *,
        seconds: float | None = None,
        transactions: int | None = None,
    ) -> Pgbench:
        """``pgbench -n -M prepared`` on one of the reference scripts; per-transaction latencies
        from its log."""
        logs = self.tmp / "log"
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir()
        run = ["-T", str(max(1, round(seconds)))] if seconds else ["-t", str(transactions)]
        cmd = [
            pg_tool("pgbench"),
            *self.conn_args,
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            str(min(clients, os.cpu_count() or 2)),
            *run,
            "-D",
            f"nusers={USERS}",
            "-D",
            f"nballs={BALLS}",
            "-l",
            f"--log-prefix={logs / 'pgbench'}",
            "-f",
            str(HERE / script),
            self.db,
        ]
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"pgbench {script} failed:\n{out.stdout}\n{out.stderr}")
        tps_m = re.search(r"tps = ([\d.]+)", out.stdout)
        done_m = re.search(r"number of transactions actually processed: (\d+)", out.stdout)
        if tps_m is None or done_m is None:
            raise RuntimeError(f"cannot read pgbench's output:\n{out.stdout}")
        tps, done = float(tps_m.group(1)), int(done_m.group(1))
        failed_m = re.search(r"number of failed transactions: (\d+)", out.stdout)
        latencies = [
            int(line.split()[2]) / 1e6
            for log in logs.glob("pgbench*")
            for line in log.read_text().splitlines()
            if line.strip()
        ]
        return Pgbench(
            tps=tps,
            transactions=done,
            seconds=done / tps if tps else 0.0,
            latencies_ms=quantiles_ms(latencies),
            failed=int(failed_m.group(1)) if failed_m else 0,
        )

    async def reset_storm(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(
                "UPDATE perf_s_ball SET taken_g = 0, remaining_g = amount_g WHERE user_id = 0"
            )
        finally:
            await conn.close()

    async def storm_state(self) -> dict[str, int]:
        conn = await asyncpg.connect(self.dsn)
        try:
            row = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE taken_g > cap_g OR remaining_g < 0) AS over, "
                "sum(taken_g) AS taken FROM perf_s_ball WHERE user_id = 0"
            )
            stock = await conn.fetchval("SELECT min(remaining) FROM perf_s_stock")
        finally:
            await conn.close()
        return {"over": int(row["over"]), "taken": int(row["taken"]), "stock": int(stock)}

    async def copy(
        self, seconds: float, connections: int = 8, rows: int = 100
    ) -> tuple[int, float]:
        """S2's limit: ``copy_records_to_table`` of ``rows`` activity rows per COPY into
        ``perf_s_activity``, ``connections`` connections back to back. Returns (rows, seconds)."""
        pool = await asyncpg.create_pool(self.dsn, min_size=connections, max_size=connections)
        assert pool is not None
        seq = itertools.count()
        tag = f"{time.time_ns():x}"
        columns = (
            "id",
            "user_id",
            "kind",
            "occurred_at",
            "quantity",
            "attributes",
            "status",
            "energy_g",
            "ball_id",
            "rules_version",
            "created_at",
        )
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            async with pool.acquire() as conn:
                while time.perf_counter() < deadline:
                    n = next(seq)
                    now = datetime.now(UTC)
                    records = [
                        (
                            f"{tag}-{n}-{k}",
                            f"user-{(n * rows + k) % USERS}",
                            "metro" if k % 10 < 6 else "etc_toll",
                            now,
                            None,
                            None,
                            "minted",
                            52,
                            f"ball-{tag}-{n}-{k}",
                            "1",
                            now,
                        )
                        for k in range(rows)
                    ]
                    await conn.copy_records_to_table(
                        "perf_s_activity", records=records, columns=columns
                    )
                    done += rows

        begin = time.perf_counter()
        try:
            await asyncio.gather(*(worker() for _ in range(connections)))
        finally:
            await pool.close()
        return done, time.perf_counter() - begin

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def bare_command(port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "bench.bare", str(port), str(workers)]
