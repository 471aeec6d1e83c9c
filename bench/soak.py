"""S6, the soak: ``python -m bench soak [--minutes 30] [--rate 120] [--storm-every 5]``.

A mixed load at a **fixed arrival rate** (open loop: each request has a scheduled start and its
latency counts from there, so a slow server cannot slow the clients down and hide it) against
``canopy serve --workers 2`` *with* its in-process background worker, for ``--minutes``; every
``--storm-every`` minutes a 07:00 storm on top (a cohort of users collecting within
``--storm-spread`` seconds, and their friends taking). Measured: error rate (5xx and socket
errors; business refusals such as a watering over its daily limit are 4xx and counted apart),
p50/p99 per 10-second window and overall, the server's resident memory (the ``canopy serve``
process tree) every 5 seconds; the ledger check at the end. Targets: errors < 0.1 %, p99 ≤
100 ms, RSS growth after warm-up < 10 %, ledger ok. Results: ``bench/results/<label>.json``
and a PNG (``--chart``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from sqlalchemy.engine import make_url

from bench import context, fixtures, load, report

WINDOW = 10.0  # seconds per reported window
RSS_EVERY = 5.0
KEEP_ALIVE = 3.0  # seconds an idle client connection is reused (uvicorn's timeout is 5 s)
USERS = 400
FRIENDS_EACH = 6  # ring: user i befriends i+1 .. i+6
STORM_USERS = 150
# a storm's 300 requests arrive over this many seconds: 100 requests/s on top of the steady
# rate, nearly doubling it (--storm-spread 0 sends them all at the same instant)
STORM_SPREAD_S = 3.0
STORM_WATCH_S = 3.0  # after a storm's last arrival, how long its waits are still sampled
WAIT_SAMPLE_S = 0.02
LAG_TICK_S = 0.01
ERROR_TARGET = 0.001
P99_TARGET_MS = 100.0
VACUUM_EVERY_S = 60.0  # autovacuum's own naptime is 60 s
RSS_GROWTH_TARGET = 0.10

# the mix, in shares of the arrival rate (what a day of the app looks like, roughly)
MIX: dict[str, int] = {
    "friends_list": 22,
    "forest": 12,
    "collect": 14,
    "take": 12,
    "steps": 10,
    "activity": 10,
    "partner_batch": 4,
    "water": 5,
    "plant": 6,
    "board": 5,
}


@dataclass
class Done:
    at: float  # scheduled start, seconds since the run began
    op: str
    status: int  # 0: socket error
    ms: float
    storm: bool = False


@dataclass
class Run:
    base_port: int
    users: list[fixtures.User]
    item: str
    partner: dict[str, str]
    rng: random.Random = field(default_factory=lambda: random.Random(6))
    done: list[Done] = field(default_factory=list)
    steps: dict[str, int] = field(default_factory=dict)
    idle: list[tuple[load.Conn, float]] = field(default_factory=list)
    socket_errors: Counter[str] = field(default_factory=Counter)
    began: float = 0.0
    dsn: str = ""  # the soak's database: what its backends wait on during storms is sampled
    storm_waits: Counter[str] = field(default_factory=Counter)
    storm_samples: int = 0

    # --- connections: a pool of keep-alive connections, opened as the load needs them ------------

    async def call(self, raw: bytes) -> int:
        conn = None
        while self.idle:
            candidate, used = self.idle.pop()
            transport = candidate.protocol.transport
            # uvicorn closes a keep-alive connection idle for 5 s: never reuse one near that
            if time.perf_counter() - used < KEEP_ALIVE and not (
                transport is None or transport.is_closing()
            ):
                conn = candidate
                break
            candidate.close()
        conn = conn or await load.Conn.open(self.base_port)
        try:
            status, _ = await conn.call(raw)
        except Exception:
            conn.close()
            raise
        self.idle.append((conn, time.perf_counter()))
        return status

    # --- the operations ---------------------------------------------------------------------------

    def friend_of(self, i: int) -> fixtures.User:
        return self.users[(i + self.rng.randint(1, FRIENDS_EACH)) % len(self.users)]

    def request(self, op: str) -> bytes:
        i = self.rng.randrange(len(self.users))
        u = self.users[i]
        now = datetime.now(UTC)
        if op == "friends_list":
            return load.raw_request("GET", fixtures.FRIENDS, u.token)
        if op == "forest":
            return load.raw_request("GET", "/v1/forest", u.token)
        if op == "board":
            return load.raw_request("GET", "/v1/leaderboards/friends?period=day", u.token)
        if op == "collect":
            return load.raw_request(
                "POST", "/v1/forest/collect", u.token, fixtures.COLLECT_ALL_BODY
            )
        if op == "take":
            return load.raw_request(
                "POST", fixtures.friend_collect_path(self.friend_of(i).id), u.token, b"{}"
            )
        if op == "water":
            body = json.dumps({"amount_g": 10}).encode()
            return load.raw_request(
                "POST", f"/v1/friends/{self.friend_of(i).id}/water", u.token, body
            )
        if op == "steps":
            # the user's local day (the rules' zone, Asia/Shanghai: UTC+8), a growing total
            day = (now + timedelta(hours=8)).date().isoformat()
            self.steps[u.id] = self.steps.get(u.id, 0) + self.rng.randint(200, 2000)
            body = json.dumps({"steps": self.steps[u.id], "source": "soak"}).encode()
            return load.raw_request("PUT", f"/v1/steps/{day}", u.token, body)
        if op == "activity":
            event = {
                "id": uuid.uuid4().hex,
                "kind": fixtures.FREE_KIND,
                "occurred_at": (now - timedelta(minutes=20)).isoformat(timespec="seconds"),
            }
            return load.raw_request("POST", "/v1/activities", u.token, json.dumps(event).encode())
        if op == "partner_batch":
            return self.ripe_batch([self.rng.choice(self.users).id for _ in range(10)])
        if op == "plant":
            return load.raw_request(
                "POST",
                fixtures.PLANTINGS,
                u.token,
                fixtures.planting_body(self.item),
                {fixtures.IDEMPOTENCY_HEADER: uuid.uuid4().hex},
            )
        raise ValueError(op)

    def ripe_batch(self, user_ids: list[str]) -> bytes:
        """A partner's batch of events dated 25 h ago: balls ripe at once, to collect and take."""
        at = (datetime.now(UTC) - timedelta(hours=25)).isoformat(timespec="seconds")
        events = [
            {"id": uuid.uuid4().hex, "user_id": uid, "kind": fixtures.FREE_KIND, "occurred_at": at}
            for uid in user_ids
        ]
        body = json.dumps({"activities": events}).encode()
        return load.raw_request(
            "POST",
            fixtures.PARTNER_BATCH,
            None,
            body,
            {"Authorization": self.partner["Authorization"]},
        )

    async def one(self, op: str, raw: bytes, scheduled: float, storm: bool = False) -> None:
        try:
            status = await self.call(raw)
        except Exception as exc:
            self.socket_errors[f"{type(exc).__name__}: {exc}"[:80]] += 1
            status = 0
        ms = (time.perf_counter() - scheduled) * 1000
        self.done.append(Done(scheduled - self.began, op, status, ms, storm))

    # --- the load ---------------------------------------------------------------------------------

    async def steady(self, rate: float, until: float, tasks: set[asyncio.Task[None]]) -> None:
        ops = list(MIX)
        weights = [MIX[o] for o in ops]
        k = 0
        while True:
            scheduled = self.began + k / rate
            if scheduled >= until:
                return
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            op = self.rng.choices(ops, weights)[0]
            task = asyncio.create_task(self.one(op, self.request(op), scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            k += 1

    async def storms(
        self, every: float, spread: float, until: float, tasks: set[asyncio.Task[None]]
    ) -> list[float]:
        """At each storm time: a cohort's balls were made ripe just before (not measured); then
        every one of them collects and a friend of each takes, the 300 requests arriving evenly
        over ``spread`` seconds (their alarms go off within seconds of 07:00; 0: all at once)."""
        at: list[float] = []
        n = 0
        while True:
            when = self.began + every * (n + 1)
            if when + spread >= until - 5:
                return at
            cohort = [
                self.users[(n * STORM_USERS + j) % len(self.users)] for j in range(STORM_USERS)
            ]
            ready = when - 5 - time.perf_counter()
            if ready > 0:
                await asyncio.sleep(ready)
            for chunk in range(0, len(cohort), 50):
                await self.call(self.ripe_batch([u.id for u in cohort[chunk : chunk + 50]]))
            at.append(when - self.began)
            if self.dsn:
                watch = asyncio.create_task(self.watch_waits(when + spread + STORM_WATCH_S))
                tasks.add(watch)
                watch.add_done_callback(tasks.discard)
            storm: list[tuple[str, bytes]] = []
            for j, u in enumerate(cohort):
                friend = self.users[(n * STORM_USERS + j - 1) % len(self.users)]
                storm.append(
                    ("collect", load.raw_request("POST", "/v1/forest/collect", u.token, b"{}"))
                )
                storm.append(
                    (
                        "take",
                        load.raw_request(
                            "POST", fixtures.friend_collect_path(u.id), friend.token, b"{}"
                        ),
                    )
                )
            gap = spread / len(storm)
            for k, (op, raw) in enumerate(storm):
                scheduled = when + k * gap
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self.one(op, raw, scheduled, storm=True))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            n += 1

    async def watch_waits(self, until: float) -> None:
        """The storm's profile from PostgreSQL's side: every WAIT_SAMPLE_S, what each active
        backend of the soak's database is doing (a lock wait, I/O, on the CPU, idle in a
        transaction), summed over the storms: ``storm_waits`` / ``storm_samples`` is the average
        number of backends in each state."""
        conn = await asyncpg.connect(self.dsn)
        try:
            while time.perf_counter() < until:
                rows = await conn.fetch(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS what "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state NOT IN ('idle') "
                    "AND backend_type = 'client backend'"
                )
                self.storm_samples += 1
                self.storm_waits.update(r["what"] for r in rows)
                await asyncio.sleep(WAIT_SAMPLE_S)
        finally:
            await conn.close()


async def watch_client_lag(began: float, until: float, out: list[tuple[float, float]]) -> None:
    """How late the load generator's own event loop runs: every LAG_TICK_S it sleeps that long
    and records the overshoot (s since start, ms late). A late loop starts requests late and
    reads answers late, and both count as the server's latency: this tells them apart."""
    while time.perf_counter() < until:
        asked = time.perf_counter()
        await asyncio.sleep(LAG_TICK_S)
        late = (time.perf_counter() - asked - LAG_TICK_S) * 1000
        out.append((asked - began, late))


def rss_of_tree(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


async def sample_rss(pid: int, began: float, until: float, out: list[tuple[float, int]]) -> None:
    while time.perf_counter() < until:
        out.append((time.perf_counter() - began, rss_of_tree(pid)))
        await asyncio.sleep(RSS_EVERY)


def quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(
    done: list[Done],
    rss: list[tuple[float, int]],
    seconds: float,
    storms: list[float],
    lag: list[tuple[float, float]] | None = None,
) -> dict[str, Any]:
    lag = lag or []
    windows = []
    for w in range(int(seconds // WINDOW) + 1):
        inside = [d for d in done if w * WINDOW <= d.at < (w + 1) * WINDOW]
        if not inside:
            continue
        lat = [d.ms for d in inside]
        windows.append(
            {
                "t": w * WINDOW,
                "requests": len(inside),
                "errors": sum(1 for d in inside if d.status == 0 or d.status >= 500),
                "p50_ms": round(quantile(lat, 0.5), 1),
                "p99_ms": round(quantile(lat, 0.99), 1),
                # the load generator's own event loop: the most it ran late in the window
                "client_lag_max_ms": round(
                    max((ms for t, ms in lag if w * WINDOW <= t < (w + 1) * WINDOW), default=0), 1
                ),
            }
        )
    errors = [d for d in done if d.status == 0 or d.status >= 500]
    refused = Counter(f"{d.op} {d.status}" for d in done if 400 <= d.status < 500)
    all_ms = [d.ms for d in done]
    steady_ms = [d.ms for d in done if not d.storm]
    storm_ms = [d.ms for d in done if d.storm]
    # warm-up: the first fifth of the run (at least a minute when the run allows it)
    warm = min(max(60.0, seconds / 5), seconds / 2)
    after = [r for t, r in rss if t >= warm]
    growth = None
    if len(after) >= 2:
        head = sum(after[:3]) / len(after[:3])
        tail = sum(after[-3:]) / len(after[-3:])
        growth = tail / head - 1
    return {
        "requests": len(done),
        "errors": len(errors),
        "error_rate": len(errors) / max(1, len(done)),
        "error_kinds": dict(Counter(f"{d.op} {d.status}" for d in errors)),
        "refused_4xx": dict(refused),
        "p50_ms": round(quantile(all_ms, 0.5), 1),
        "p99_ms": round(quantile(all_ms, 0.99), 1),
        "p99_steady_ms": round(quantile(steady_ms, 0.99), 1),
        "p99_storm_ms": round(quantile(storm_ms, 0.99), 1),
        "p99_by_op_ms": {
            op: round(quantile([d.ms for d in done if d.op == op and not d.storm], 0.99), 1)
            for op in sorted({d.op for d in done})
        },
        "storms_at_s": storms,
        "client_lag_p99_ms": round(quantile([ms for _, ms in lag], 0.99), 1),
        "client_lag_max_ms": round(max((ms for _, ms in lag), default=0), 1),
        "warm_up_s": warm,
        "rss_mb": [(round(t, 1), round(r / 2**20, 1)) for t, r in rss],
        "rss_growth_after_warm_up": None if growth is None else round(growth, 4),
        "windows": windows,
    }


def chart(result: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["summary"]
    fig, (lat_ax, mem_ax) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    minutes = [w["t"] / 60 for w in s["windows"]]
    lat_ax.plot(minutes, [w["p50_ms"] for w in s["windows"]], label="p50", color="#2f855a")
    lat_ax.plot(minutes, [w["p99_ms"] for w in s["windows"]], label="p99", color="#c05621")
    lat_ax.axhline(P99_TARGET_MS, color="#c05621", linestyle=":", label="p99 target")
    lat_ax.set_yscale("log")
    lat_ax.set_ylabel("latency per 10 s window (ms)")
    errs = [(m, w["errors"]) for m, w in zip(minutes, s["windows"], strict=True) if w["errors"]]
    if errs:
        lat_ax.scatter(
            *zip(*errs, strict=True), color="red", marker="x", label="windows with errors"
        )
    mem_ax.plot([t / 60 for t, _ in s["rss_mb"]], [m for _, m in s["rss_mb"]], color="#2b6cb0")
    mem_ax.axvline(s["warm_up_s"] / 60, color="grey", linestyle=":", label="end of warm-up")
    mem_ax.set_ylabel("RSS of canopy serve (MB)")
    mem_ax.set_xlabel("minutes")
    for ax in (lat_ax, mem_ax):
        for i, t in enumerate(s["storms_at_s"]):
            ax.axvline(t / 60, color="#805ad5", alpha=0.3, label="07:00 storm" if i == 0 else None)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    lat_ax.set_title(
        f"S6 soak: {result['minutes']:g} min at {result['rate']:g} req/s, "
        f"{result['workers']} workers (app {result['app_commit']})"
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="length of the run (default 30)")
    ap.add_argument("--rate", type=float, default=120.0, help="arrivals per second (default 120)")
    ap.add_argument(
        "--storm-every", type=float, default=5.0, help="minutes between 07:00 storms (default 5)"
    )
    ap.add_argument(
        "--storm-spread",
        type=float,
        default=STORM_SPREAD_S,
        help=f"seconds a storm's requests arrive over (default {STORM_SPREAD_S:g}; 0: at once)",
    )
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers (default 2)")
    ap.add_argument("--label", default="soak", help="results go to bench/results/LABEL.json")
    ap.add_argument("--chart", type=Path, help="the PNG (default: bench/results/LABEL.png)")
    return ap.parse_args(argv)


async def stand_in_for_autovacuum(
    dsn: str, until: float, every: float, log: list[tuple[float, float]]
) -> None:
    """``VACUUM (ANALYZE)`` the soak's database every ``every`` seconds, as autovacuum would in
    production. Only run when the server has autovacuum off (the CI machine's does): without it
    the tables grow from empty under the planner's default estimates, bloat with the updates of
    balls and users, and the run measures that instead of Canopy. ``log``: (start, seconds)."""
    began = time.perf_counter()
    while time.perf_counter() + every < until:
        await asyncio.sleep(every)
        conn = await asyncpg.connect(dsn)
        try:
            start = time.perf_counter()
            await conn.execute("VACUUM (ANALYZE)")
            log.append((round(start - began, 1), round(time.perf_counter() - start, 2)))
        finally:
            await conn.close()


async def autovacuum_is_on(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval("SELECT current_setting('autovacuum') = 'on'"))
    finally:
        await conn.close()


async def run(args: argparse.Namespace, db: str, redis_url: str) -> int:
    tag = uuid.uuid4().hex[:6]
    tmp = Path(tempfile.mkdtemp(prefix="canopy-soak-"))
    admin_token, jwt = "soak-admin-" + uuid.uuid4().hex, "soak-jwt-" + uuid.uuid4().hex
    name = f"canopy_bench_soak_{tag}"
    admin = await asyncpg.connect(context.plain(db))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = make_url(context.plain(db)).set(database=name).render_as_string(hide_password=False)
    fixtures.rules_with_limits_lifted(context.ROOT / "rules" / "default.toml", tmp / "rules.toml")
    env = {
        **os.environ,
        **fixtures.server_env(
            database_url=dsn,
            redis_url=redis_url,
            admin_token=admin_token,
            jwt_secret=jwt,
            rules=tmp / "rules.toml",
            data=tmp / "data",
        ),
    }
    port = context.free_port()
    # with the in-process worker: minting steps, expiring balls and cutting orders run too
    command = [c for c in fixtures.serve_command(port, args.workers) if c != "--no-worker"]
    server = await asyncio.to_thread(context.Proc, command, env, port, fixtures.READY_PATH)
    api = fixtures.Api(server.base, admin_token)
    print(
        f"# canopy soak (S6): {args.minutes:g} min at {args.rate:g} req/s, storm every "
        f"{args.storm_every:g} min over {args.storm_spread:g} s, {args.workers} workers; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    try:
        users = await api.register(USERS, f"s{tag}_")
        await fixtures.befriend(
            dsn,
            [
                (users[i].id, users[(i + k) % USERS].id)
                for i in range(USERS)
                for k in range(1, FRIENDS_EACH + 1)
            ],
        )
        item = await api.catalog_item(cost_g=10, budget=10_000_000)
        two_days = datetime.now(UTC) - timedelta(days=2)
        await api.mint(
            [(u.id, fixtures.FREE_KIND, None, two_days) for u in users for _ in range(3)]
        )
        run_ = Run(port, users, item, await api.partner_headers(), dsn=dsn)
        print(
            f"  setup: {USERS} users, {USERS * FRIENDS_EACH} friendships; load starts", flush=True
        )
        seconds = args.minutes * 60
        run_.began = time.perf_counter()
        until = run_.began + seconds
        tasks: set[asyncio.Task[None]] = set()
        rss: list[tuple[float, int]] = []
        sampler = asyncio.create_task(sample_rss(server.pid, run_.began, until, rss))
        lag: list[tuple[float, float]] = []
        lagger = asyncio.create_task(watch_client_lag(run_.began, until, lag))
        storms = asyncio.create_task(
            run_.storms(args.storm_every * 60, args.storm_spread, until, tasks)
        )
        progress = asyncio.create_task(_progress(run_, until))
        vacuums: list[tuple[float, float]] = []
        autovacuum = await autovacuum_is_on(dsn)
        vacuum = (
            None
            if autovacuum
            else asyncio.create_task(stand_in_for_autovacuum(dsn, until, VACUUM_EVERY_S, vacuums))
        )
        if vacuum is not None:
            print(
                f"  the server runs with autovacuum off: VACUUM (ANALYZE) every "
                f"{VACUUM_EVERY_S:g} s stands in for it",
                flush=True,
            )
        await run_.steady(args.rate, until, tasks)
        storm_times = await storms
        if tasks:
            await asyncio.wait(tasks, timeout=60)
        await sampler
        await lagger
        progress.cancel()
        if vacuum is not None:
            vacuum.cancel()
        ledger = await api.ledger_check()
        ok = bool(ledger.get("ok"))
        summary = summarize(run_.done, rss, seconds, storm_times, lag)
        summary["socket_errors"] = dict(run_.socket_errors)
        summary["storm_backends"] = {
            what: round(n / max(1, run_.storm_samples), 2)
            for what, n in run_.storm_waits.most_common()
        }
        summary["autovacuum"] = "on" if autovacuum else f"off; stand-in runs: {vacuums}"
    finally:
        await api.close()
        server.stop()
        admin = await asyncpg.connect(context.plain(db))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        shutil.rmtree(tmp, ignore_errors=True)
    met = {
        "error_rate": summary["error_rate"] < ERROR_TARGET,
        "p99": summary["p99_ms"] <= P99_TARGET_MS,
        "rss_flat": summary["rss_growth_after_warm_up"] is not None
        and summary["rss_growth_after_warm_up"] < RSS_GROWTH_TARGET,
        "ledger": ok,
    }
    result = {
        "scenario": "S6",
        "label": args.label,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "app_commit": report.app_commit(),
        "minutes": args.minutes,
        "rate": args.rate,
        "storm_every_minutes": args.storm_every,
        "storm_spread_s": args.storm_spread,
        "workers": args.workers,
        "cores": os.cpu_count(),
        "load_average_after": os.getloadavg()[0],
        "ledger": ledger,
        "met": met,
        "summary": summary,
    }
    results = context.ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    path = results / f"{args.label}.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    png = chart(result, args.chart or results / f"{args.label}.png")
    print()
    print(
        f"# S6 soak: {summary['requests']} requests in {args.minutes:g} min, "
        f"{len(storm_times)} storms"
    )
    rows = [
        ("error rate", f"{summary['error_rate'] * 100:.3f} %", "< 0.1 %", met["error_rate"]),
        ("p99 (all)", f"{summary['p99_ms']:.1f} ms", "<= 100 ms", met["p99"]),
        (
            "p99 steady / storm",
            f"{summary['p99_steady_ms']:.1f} / {summary['p99_storm_ms']:.1f} ms",
            "",
            None,
        ),
        (
            "RSS growth after warm-up",
            "n/a"
            if summary["rss_growth_after_warm_up"] is None
            else f"{summary['rss_growth_after_warm_up'] * 100:.1f} %",
            "< 10 %",
            met["rss_flat"],
        ),
        ("ledger check", "ok" if ok else "FAILED", "ok", ok),
    ]
    for what, value, target, good in rows:
        mark = "" if good is None else ("met" if good else "MISSED")
        print(f"  {what:<26} {value:>18}  {target:<10} {mark}")
    if summary["error_kinds"]:
        print(f"  errors: {summary['error_kinds']}")
        print(f"  socket errors: {summary['socket_errors']}")
    print(f"  steady p99 by operation (ms): {summary['p99_by_op_ms']}")
    print(f"  during storms, PostgreSQL backends by state (average): {summary['storm_backends']}")
    print(
        f"  the load generator's event loop ran late by up to {summary['client_lag_max_ms']} ms "
        f"(p99 {summary['client_lag_p99_ms']} ms; per window in the JSON)"
    )
    print(f"  4xx refusals (business rules, not errors): {summary['refused_4xx']}")
    print(f"  (written to {path.relative_to(context.ROOT)} and {png})")
    return 0 if all(met.values()) else 1


async def _progress(run_: Run, until: float) -> None:
    while time.perf_counter() < until:
        await asyncio.sleep(60)
        recent = [d for d in run_.done if d.at >= time.perf_counter() - run_.began - 60]
        bad = sum(1 for d in recent if d.status == 0 or d.status >= 500)
        print(
            f"  {(time.perf_counter() - run_.began) / 60:4.1f} min: {len(recent)} requests in "
            f"the last minute, {bad} errors, p99 {quantile([d.ms for d in recent], 0.99):.0f} ms",
            flush=True,
        )


async def main(argv: list[str]) -> int:
    from bench.__main__ import _servers

    args = parse(argv)
    db, redis_url, started = _servers()
    try:
        return await run(args, db, redis_url)
    finally:
        for server in reversed(started):
            server.stop()  # type: ignore[attr-defined]
