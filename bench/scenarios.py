"""The scenarios. Each sets up its data, measures the API (closed loop: warm-up, measured window
with the server's CPU; then the paced open-loop pass), measures its limit right after on the same
machine, checks correctness, and returns a ``Result``."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bench import fixtures, load, reference
from bench.context import (
    CONNECTIONS,
    COPY_CONNECTIONS,
    DAY,
    PACE,
    PGBENCH_CLIENTS,
    STORM_CLIENTS,
    STORM_FRIENDS,
    Context,
    Proc,
    free_port,
)
from bench.report import Result

Factory = Callable[[str, int], load.Source]


def say(text: str) -> None:
    print(f"  {text}", flush=True)


def rate_line(name: str, rate: float, unit: str, lat: dict[str, float] | None = None) -> None:
    text = f"{name:<46} {rate:>10,.1f} {unit}"
    if lat:
        text += f"   p50 {lat['p50']:7.2f} ms   p99 {lat['p99']:7.2f} ms"
    say(text)


async def window(
    ctx: Context,
    source: load.Source,
    connections: int,
    name: str,
    unit_scale: float = 1.0,
    unit: str = "req/s",
) -> load.Load:
    """The measured closed-loop window, with the server's CPU."""
    assert ctx.loader is not None
    measured = await ctx.loader.closed(source, connections, ctx.timing.measure, ctx.cpu())
    rate_line(
        f"{name} ({measured.tool}, {connections} conns)",
        measured.rate * unit_scale,
        unit,
        measured.latencies_ms,
    )
    say(
        f"    server CPU {measured.server_cpu_s / max(measured.requests, 1) * 1000:.2f} ms/req "
        f"({measured.server_cpu_s / measured.seconds:.2f} cores); load generator "
        f"{measured.loadgen_cpu_s / measured.seconds:.2f} cores"
    )
    if measured.wrapped:
        say("    !! the window outran its distinct requests (repeats did less work)")
    return measured


async def warm_up(ctx: Context, source: load.Source, connections: int) -> load.Load:
    assert ctx.loader is not None
    warm = await ctx.loader.closed(source, connections, ctx.timing.warm)
    await ctx.analyze()  # statistics that know what the warm-up wrote (as in production)
    return warm


async def closed(
    ctx: Context,
    factory: Factory,
    connections: int,
    name: str,
    unit_scale: float = 1.0,
    unit: str = "req/s",
) -> tuple[load.Load, load.Load, int]:
    """Warm-up, then the measured window. Returns (warm-up, measured, next request number)."""
    warm = await warm_up(ctx, factory("warm", 0), connections)
    start = warm.consumed
    measured = await window(ctx, factory("measure", start), connections, name, unit_scale, unit)
    return warm, measured, start + measured.consumed


async def paced_pass(
    ctx: Context,
    source: load.Source,
    rate: float,
    connections: int,
    name: str,
    unit_scale: float = 1.0,
    unit: str = "req/s",
) -> load.Paced:
    p = await load.paced(ctx.port, source, rate, ctx.timing.paced, max(64, 2 * connections))
    rate_line(
        f"{name} paced at {PACE:.0%} ({rate:,.1f} req/s)",
        p.achieved * unit_scale,
        unit,
        p.latencies_ms,
    )
    say(
        f"    (the paced client used {p.client_cores:.2f} cores; peak {p.peak_in_flight} in flight)"
    )
    if p.client_bound:
        say(
            f"    !! the load generator fell behind its schedule (p99 lag "
            f"{p.send_lag_ms_p99:.1f} ms): this p99 is partly the client's"
        )
    if p.backlog and p.sustained:
        say(
            f"    !! all {p.connections} connections were busy at some moment: the server fell "
            "behind the schedule and a backlog built up (counted in these latencies)"
        )
    if not p.sustained:
        say(
            f"    !! only {p.achieved:,.1f} of {p.rate:,.1f} req/s: server and client together "
            "could not keep this rate on this machine, latencies grew with the backlog"
        )
    if p.samples:
        say(f"    !! e.g. {p.samples[0]}")
    return p


async def limit_pgbench(ctx: Context, script: str, clients: int) -> reference.Pgbench:
    assert ctx.ref is not None
    await asyncio.to_thread(ctx.ref.pgbench, script, clients, seconds=ctx.timing.warm)
    pg = await asyncio.to_thread(ctx.ref.pgbench, script, clients, seconds=ctx.timing.measure)
    rate_line(f"limit: pgbench -M prepared -c {clients} {script}", pg.tps, "tx/s", pg.latencies_ms)
    if pg.failed:
        say(f"    !! {pg.failed} pgbench transactions failed")
    return pg


async def ledger(ctx: Context, checks: dict[str, bool], notes: list[str]) -> None:
    ok, body = await ctx.ledger_ok()
    checks["ledger check ok"] = ok
    if not ok:
        broken = [k for k, v in body.get("checks", {}).items() if not v.get("ok")]
        notes.append(f"ledger check broken: {', '.join(broken)}")
    say(f"    ledger check: {'ok' if ok else 'BROKEN ' + str(body.get('checks'))}")


def status_errors(*passes: load.Load | load.Paced) -> tuple[int, int]:
    """(all errors, 5xx) over several passes."""
    return (
        sum(p.errors for p in passes),
        sum(p.status["5xx"] for p in passes),
    )


# --- S1 / S1me ------------------------------------------------------------------------------------


async def bare_limit(ctx: Context) -> dict[str, Any]:
    """The bare Starlette app's ``GET /healthz`` rate (measured once per run)."""
    if ctx.bare_limit is None:
        port = free_port()
        bare = await asyncio.to_thread(
            Proc,
            reference.bare_command(port, ctx.workers),
            dict(os.environ),
            port,
            fixtures.HEALTHZ,
        )
        try:
            loader = load.Loader(port, ctx.wrk, ctx.tmp)
            src = load.static("GET", fixtures.HEALTHZ)
            conns = CONNECTIONS["S1"]
            await loader.closed(src, conns, ctx.timing.warm)
            cpu = load.Cpu(bare.pid)
            measured = await loader.closed(src, conns, ctx.timing.measure, cpu)
        finally:
            bare.stop()
        rate_line(
            f"limit: bare Starlette GET /healthz ({ctx.workers} workers)",
            measured.rate,
            "req/s",
            measured.latencies_ms,
        )
        ctx.bare_limit = {"rate": measured.rate, "load": load.describe(measured)}
    return ctx.bare_limit


async def _read_scenario(ctx: Context, name: str, what: str, source: load.Source) -> Result:
    conns = CONNECTIONS[name]
    warm, measured, _ = await closed(ctx, lambda _p, _s: source, conns, what)
    p = await paced_pass(ctx, source, measured.rate * PACE, conns, what)
    bare = await bare_limit(ctx)
    errors, fives = status_errors(warm, measured, p)
    checks: dict[str, bool] = {"no errors": errors == 0}
    notes: list[str] = []
    await ledger(ctx, checks, notes)
    return Result(
        name=name,
        what=what,
        api_rate=measured.rate,
        api_unit="req/s",
        limit_rate=bare["rate"],
        limit_unit="req/s",
        p50_ms=p.latencies_ms["p50"],
        p99_ms=p.latencies_ms["p99"],
        cpu_ms=measured.server_cpu_s / max(measured.requests, 1) * 1000,
        errors=errors,
        checks=checks,
        notes=notes,
        details={
            "api": load.describe(measured),
            "paced": load.describe_paced(p),
            "limit": bare["load"],
            "5xx": fives,
        },
    )


async def s1(ctx: Context) -> Result:
    return await _read_scenario(ctx, "S1", "GET /healthz", load.static("GET", fixtures.HEALTHZ))


async def s1me(ctx: Context) -> Result:
    assert ctx.api is not None
    (user,) = await ctx.api.register(1, f"me{ctx.tag}_")
    return await _read_scenario(
        ctx, "S1me", "GET /v1/me", load.static("GET", fixtures.ME, user.token)
    )


# --- S2 -------------------------------------------------------------------------------------------


S2_WARM_USERS = 100  # the warm-up's users; the measured passes get users of their own


async def s2(ctx: Context) -> Result:
    assert ctx.api is not None and ctx.ref is not None
    _, key = await ctx.api.partner()
    stamps = fixtures.batch_stamps(datetime.now(UTC))

    def source(ids: list[str], tag: str, start: int) -> load.Source:
        config = {
            "path": fixtures.PARTNER_BATCH,
            "key": key,
            "tag": tag,
            "base": str(start),
            "slots_per_batch": str(fixtures.SLOTS_PER_BATCH),
            "capped_per_slot": str(fixtures.CAPPED_PER_SLOT),
            "free_per_slot": str(fixtures.FREE_PER_SLOT),
            "free_kind": fixtures.FREE_KIND,
            "days": str(fixtures.DAYS),
            "stamps": "\t".join(stamps),
        }
        return load.Source(
            "batch",
            config,
            lambda i: load.raw_request(
                "POST", fixtures.PARTNER_BATCH, key, fixtures.batch_body(i, ids, tag, stamps)
            ),
            files={"users": "\n".join(ids) + "\n"},
            offset=start,
        )

    def capacity(ids: list[str]) -> int:
        """Batches before a (user, day, kind) slot repeats."""
        slots = len(ids) * fixtures.DAYS * len(fixtures.CAPPED_KINDS)
        return slots // fixtures.SLOTS_PER_BATCH

    say(
        "S2: 100-event partner batches, 10 (user, day, kind) slots each: 6 events of a kind capped "
        "at 5 a day + 4 etc_toll (90 minted, 10 capped while slots are fresh)"
    )
    conns = CONNECTIONS["S2"]
    warm_ids = [u.id for u in await ctx.pool(S2_WARM_USERS)]
    await ctx.analyze()
    warm = await warm_up(ctx, source(warm_ids, f"w{ctx.tag}", 0), conns)
    t = ctx.timing
    # enough users that the measured window and the paced pass never repeat a slot
    needed = int(warm.rate * (t.measure + PACE * t.paced) * 1.5) + 50
    per_user = fixtures.DAYS * len(fixtures.CAPPED_KINDS)  # slots a user offers
    count = max(t.pool - S2_WARM_USERS, -(-needed * fixtures.SLOTS_PER_BATCH // per_user))
    ids = [u.id for u in await ctx.pool(S2_WARM_USERS + count)][S2_WARM_USERS:]
    say(f"    (warm-up {warm.rate:,.1f} batches/s; {len(ids)} users for {capacity(ids)} batches)")
    await ctx.analyze()
    tag = f"m{ctx.tag}"
    measured = await window(
        ctx, source(ids, tag, 0), conns, "POST /partner/v1/activities/batch", 100, "events/s"
    )
    start = measured.consumed
    p = await paced_pass(
        ctx,
        source(ids, tag, start),
        measured.rate * PACE,
        conns,
        "POST /partner/v1/activities/batch",
        100,
        "events/s",
    )
    used = start + p.sent
    await ctx.ref.copy(ctx.timing.warm, COPY_CONNECTIONS)
    rows, seconds = await ctx.ref.copy(ctx.timing.measure, COPY_CONNECTIONS)
    rate_line(f"limit: asyncpg COPY 100 rows, {COPY_CONNECTIONS} conns", rows / seconds, "rows/s")

    errors, fives = status_errors(warm, measured, p)
    answered = measured.minted + measured.capped
    expected = 100 * measured.status["2xx"]
    checks = {
        "no errors": errors == 0,
        "every event minted or capped": answered == expected
        and p.minted + p.capped == 100 * p.status["2xx"],
    }
    notes = []
    if used > capacity(ids):
        notes.append(
            f"{used} batches outran the {capacity(ids)} fresh (user, day, kind) slots: later "
            "batches were capped more"
        )
    share = measured.capped / answered if answered else 0.0
    say(
        f"    events answered minted {measured.minted}, capped {measured.capped} ({share:.0%}); "
        f"{used} batches sent in all"
    )
    await ledger(ctx, checks, notes)
    return Result(
        name="S2",
        what="POST /partner/v1/activities/batch (100 events)",
        api_rate=measured.rate * 100,
        api_unit="events/s",
        limit_rate=rows / seconds,
        limit_unit="rows/s",
        p50_ms=p.latencies_ms["p50"],
        p99_ms=p.latencies_ms["p99"],
        cpu_ms=measured.server_cpu_s / max(measured.requests, 1) * 1000,
        errors=errors,
        checks=checks,
        notes=notes,
        details={
            "api": load.describe(measured),
            "paced": load.describe_paced(p),
            "limit": {"rows": rows, "seconds": seconds, "connections": COPY_CONNECTIONS},
            "capped_share": share,
            "batches_sent": used,
            "5xx": fives,
        },
    )


# --- S3 -------------------------------------------------------------------------------------------

RING = (1, 2, 3, 4)  # user i's friends: i +- these (a ring over the pool)
TAKERS = 4  # friends assigned to each ball: at most 4 takes, below the owner floor


class Triples:
    """(collector, owner, ball) triples for S3: fresh ripe balls minted through the partner API,
    each assigned to ``TAKERS`` of its owner's ring friends, shuffled; every call takes from a
    ball its collector never took from, so every call does a real take."""

    def __init__(self, ctx: Context, users: list[fixtures.User]) -> None:
        self.ctx = ctx
        self.users = users
        self.next_owner = 0
        self.rng = random.Random(7)

    async def take(self, count: int) -> list[tuple[str, str, str, bytes]]:
        assert self.ctx.api is not None
        n = len(self.users)
        balls_needed = math.ceil(count / TAKERS)
        owners = [(self.next_owner + k) % n for k in range(balls_needed)]
        self.next_owner = (self.next_owner + balls_needed) % n
        at = datetime.now(UTC) - 2 * DAY
        minted = await self.ctx.api.mint(
            [(self.users[o].id, fixtures.FREE_KIND, None, at) for o in owners]
        )
        out = []
        for o, (ball, _grams) in zip(owners, minted, strict=True):
            ring = [(o + d) % n for d in RING] + [(o - d) % n for d in RING]
            for c in self.rng.sample(ring, TAKERS):
                out.append(
                    (
                        "POST",
                        fixtures.friend_collect_path(self.users[o].id),
                        self.users[c].token,
                        fixtures.collect_one_body(ball),
                    )
                )
        self.rng.shuffle(out)
        return out[:count] if len(out) >= count else out


async def s3(ctx: Context) -> Result:
    assert ctx.api is not None
    users = await ctx.pool(ctx.timing.pool)
    n = len(users)
    pairs = [(users[i].id, users[(i + d) % n].id) for i in range(n) for d in RING]
    await fixtures.befriend(ctx.app_dsn, pairs)
    triples = Triples(ctx, users)
    say(f"S3: {n} users in a friendship ring ({2 * len(RING)} friends each); pgbench first")
    limit = await limit_pgbench(ctx, "s3-friend-collect.sql", PGBENCH_CLIENTS)

    conns = CONNECTIONS["S3"]
    t = ctx.timing
    began = time.perf_counter()
    warm_list = await triples.take(max(400, int(min(limit.tps, 4000) * 0.5 * t.warm)))
    await ctx.analyze()
    say(f"    ({len(warm_list)} warm-up triples minted in {time.perf_counter() - began:.1f} s)")
    warm = await warm_up(ctx, load.listed(warm_list, fixtures.COLLECTED), conns)
    # a cold warm-up reads low: size the window for the larger of twice its rate and 60 % of the
    # limit (beyond that the window may run out, which it reports)
    expected = max(2 * warm.rate, 0.6 * min(limit.tps, 5000))
    began = time.perf_counter()
    measure_list = await triples.take(int(expected * t.measure) + 500)
    say(
        f"    (warm-up {warm.rate:,.0f} req/s; {len(measure_list)} triples for the measured window "
        f"minted in {time.perf_counter() - began:.1f} s)"
    )
    measured = await window(
        ctx,
        load.listed(measure_list, fixtures.COLLECTED),
        conns,
        "POST /v1/friends/{id}/collect",
    )
    paced_list = await triples.take(int(measured.rate * PACE * t.paced * 1.1) + 100)
    p = await paced_pass(
        ctx,
        load.listed(paced_list, fixtures.COLLECTED),
        measured.rate * PACE,
        conns,
        "POST /v1/friends/{id}/collect",
    )

    errors, fives = status_errors(warm, measured, p)
    checks = {
        "no errors": errors == 0,
        "every call took": measured.marks == measured.status["2xx"] and p.marks == p.status["2xx"],
    }
    notes = []
    if measured.wrapped:
        notes.append("the measured window outran its triples (repeats took nothing)")
    await ledger(ctx, checks, notes)
    return Result(
        name="S3",
        what="POST /v1/friends/{id}/collect, one ball",
        api_rate=measured.rate,
        api_unit="req/s",
        limit_rate=limit.tps,
        limit_unit="tx/s",
        p50_ms=p.latencies_ms["p50"],
        p99_ms=p.latencies_ms["p99"],
        cpu_ms=measured.server_cpu_s / max(measured.requests, 1) * 1000,
        errors=errors,
        checks=checks,
        notes=notes,
        details={
            "api": load.describe(measured),
            "paced": load.describe_paced(p),
            "limit": limit.describe(),
            "5xx": fives,
        },
    )


# --- S4 -------------------------------------------------------------------------------------------

STORM_BALLS = 10
STORM_QUANTITY = 1.04  # cycling km: 52 g balls, like the reference's hot balls


async def s4(ctx: Context) -> Result:
    assert ctx.api is not None and ctx.ref is not None
    crowd = await ctx.crowd()
    rounds = ctx.timing.storm_rounds
    owners = await ctx.api.register(rounds, f"o{ctx.tag}_")
    await fixtures.befriend(ctx.app_dsn, [(o.id, f.id) for o in owners for f in crowd])
    at = datetime.now(UTC) - 2 * DAY
    await ctx.api.mint(
        [(o.id, "cycling", STORM_QUANTITY, at) for o in owners for _ in range(STORM_BALLS)]
    )
    await ctx.analyze()
    floor = fixtures.owner_floor(ctx.rules)
    say(
        f"S4: {len(crowd)} friends POST /v1/friends/{{owner}}/collect {{}} at once; owner has "
        f"{STORM_BALLS} ripe balls; {rounds} rounds, a fresh owner each"
    )
    latencies: list[float] = []
    makespans: list[float] = []
    errors = fives = 0
    checks = {"no errors": True, "no over-take": True, "answers add up": True}
    notes: list[str] = []
    cpu = ctx.cpu()
    cpu_used = 0.0
    per_round = []
    for r, owner in enumerate(owners, 1):
        requests = [
            load.raw_request(
                "POST", fixtures.friend_collect_path(owner.id), f.token, fixtures.COLLECT_ALL_BODY
            )
            for f in crowd
        ]
        warm = [load.raw_request("GET", fixtures.ME, f.token) for f in crowd]
        cpu.start()
        answers = await load.storm(ctx.port, requests, warm)
        cpu_used += cpu.used()
        lat = [a[2] for a in answers]
        latencies += lat
        makespans.append(max(lat))
        bad = [a for a in answers if not 200 <= a[0] < 300]
        errors += len(bad)
        fives += sum(1 for a in bad if a[0] >= 500)
        answered = sum(json.loads(a[1])["collected_g"] for a in answers if a[0] == 200)
        balls = await ctx.api.own_balls(owner)
        over = fixtures.over_taken(balls, floor)
        taken = sum(b["amount_g"] - b["remaining_g"] for b in balls)
        takers = sum(len(b.get("collections", [])) for b in balls)
        q = load.quantiles_ms(lat)
        per_round.append({"p50": q["p50"], "p99": q["p99"], "makespan_s": max(lat)})
        say(
            f"    round {r}: p50 {q['p50']:7.1f} ms  p99 {q['p99']:7.1f} ms  max "
            f"{max(lat) * 1000:7.1f} ms  {len(bad)} errors; {takers} takes, {taken} g taken of "
            f"{sum(b['amount_g'] for b in balls)} g (answers say {answered} g); "
            f"{'no over-take' if not over else 'OVER-TAKE on ' + ', '.join(over)}"
        )
        if bad:
            notes.append(f"storm answer e.g. {bad[0][0]} {bad[0][1][:200]!r}")
        checks["no errors"] &= not bad
        checks["no over-take"] &= not over
        checks["answers add up"] &= answered == taken
    q = load.quantiles_ms(latencies)
    api_rate = len(latencies) / sum(makespans)

    tx = 0
    seconds = 0.0
    limit_rounds = []
    for _ in range(rounds):
        await ctx.ref.reset_storm()
        pg = await asyncio.to_thread(
            ctx.ref.pgbench,
            "s4-storm.sql",
            STORM_CLIENTS,
            transactions=STORM_FRIENDS // STORM_CLIENTS,
        )
        state = await ctx.ref.storm_state()
        tx += pg.transactions
        seconds += pg.seconds
        limit_rounds.append({**pg.describe(), **state})
        checks["limit: no over-take"] = (
            checks.get("limit: no over-take", True) and not state["over"]
        )
    limit_rate = tx / seconds
    rate_line(f"POST /v1/friends/{{owner}}/collect storm x{rounds}", api_rate, "req/s", q)
    say(f"    p99/p50 {q['p99'] / q['p50']:.2f}")
    rate_line(
        f"limit: pgbench -c {STORM_CLIENTS} -t 8 s4-storm.sql x{rounds}",
        limit_rate,
        "tx/s",
        {
            "p50": limit_rounds[-1]["latency_ms"]["p50"],
            "p99": limit_rounds[-1]["latency_ms"]["p99"],
        },
    )
    await ledger(ctx, checks, notes)
    return Result(
        name="S4",
        what="07:00 storm: 256 x POST /v1/friends/{owner}/collect {}",
        api_rate=api_rate,
        api_unit="req/s",
        limit_rate=limit_rate,
        limit_unit="tx/s",
        p50_ms=q["p50"],
        p99_ms=q["p99"],
        cpu_ms=cpu_used / len(latencies) * 1000,
        errors=errors,
        checks=checks,
        notes=notes,
        details={"rounds": per_round, "limit_rounds": limit_rounds, "5xx": fives},
    )


# --- S5 -------------------------------------------------------------------------------------------

S5_USERS = 256
FUND_KM = 200  # one cycling event: 200 km x 50 g = 10,000 g a user


async def s5(ctx: Context) -> Result:
    assert ctx.api is not None and ctx.ref is not None
    users = await ctx.pool(min(S5_USERS, ctx.timing.pool))
    at = datetime.now(UTC) - 2 * DAY
    await ctx.api.mint([(u.id, "cycling", FUND_KM, at) for u in users])
    funded = await ctx.api.collect_own(users)
    budget = 10**9
    item = await ctx.api.catalog_item(cost_g=1, budget=budget)
    await ctx.analyze()
    say(f"S5: {len(users)} users ({funded:,} g collected between them), one catalog item at 1 g")
    tokens = [u.token for u in users]
    body = fixtures.planting_body(item)

    def factory(phase: str, start: int) -> load.Source:
        tag = f"{phase}{ctx.tag}{uuid.uuid4().hex[:6]}"
        return load.Source(
            "planting",
            {"path": fixtures.PLANTINGS, "tag": tag, "body": body.decode()},
            lambda i: load.raw_request(
                "POST",
                fixtures.PLANTINGS,
                tokens[i % len(tokens)],
                body,
                {fixtures.IDEMPOTENCY_HEADER: f"{tag}-{i}"},
            ),
            files={"tokens": "\n".join(tokens) + "\n"},
            offset=start,
        )

    conns = CONNECTIONS["S5"]
    warm, measured, _ = await closed(ctx, factory, conns, "POST /v1/plantings")
    p = await paced_pass(
        ctx, factory("paced", 0), measured.rate * PACE, conns, "POST /v1/plantings"
    )
    limit = await limit_pgbench(ctx, "s5-plant.sql", PGBENCH_CLIENTS)

    errors, fives = status_errors(warm, measured, p)
    remaining = await ctx.api.catalog_remaining(users[0], item)
    planted = warm.status["2xx"] + measured.status["2xx"] + p.status["2xx"]
    # wrk stops with up to one request per connection in flight: the server finishes those but
    # nobody counts their answers
    unseen = 2 * conns if measured.tool == "wrk" else 0
    taken = budget - remaining
    state = await ctx.ref.storm_state()
    checks = {
        "no errors": errors == 0,
        "stock never negative": remaining >= 0,
        "stock matches plantings": planted <= taken <= planted + unseen,
        "limit: stock never negative": state["stock"] >= 0,
    }
    say(
        f"    {planted} plantings answered 201 (+ up to {unseen} in flight when wrk stopped); "
        f"the item has {taken} units taken"
    )
    notes: list[str] = []
    await ledger(ctx, checks, notes)
    return Result(
        name="S5",
        what="POST /v1/plantings (1 g, Idempotency-Key)",
        api_rate=measured.rate,
        api_unit="req/s",
        limit_rate=limit.tps,
        limit_unit="tx/s",
        p50_ms=p.latencies_ms["p50"],
        p99_ms=p.latencies_ms["p99"],
        cpu_ms=measured.server_cpu_s / max(measured.requests, 1) * 1000,
        errors=errors,
        checks=checks,
        notes=notes,
        details={
            "api": load.describe(measured),
            "paced": load.describe_paced(p),
            "limit": limit.describe(),
            "5xx": fives,
        },
    )


# --- FL -------------------------------------------------------------------------------------------


async def fl(ctx: Context) -> Result:
    assert ctx.api is not None
    crowd = await ctx.crowd()
    (owner,) = await ctx.api.register(1, f"fl{ctx.tag}_")
    await fixtures.befriend(ctx.app_dsn, [(owner.id, f.id) for f in crowd])
    await ctx.analyze()
    r = await ctx.api.client.get(
        fixtures.FRIENDS, headers={"Authorization": f"Bearer {owner.token}"}
    )
    listed = len(r.json()["friends"])
    say(f"FL: GET /v1/friends for an owner with {listed} friends (3 ripe balls + 1 growing each)")
    conns = CONNECTIONS["FL"]
    source = load.static("GET", fixtures.FRIENDS, owner.token)
    warm, measured, _ = await closed(ctx, lambda _p, _s: source, conns, "GET /v1/friends")
    p = await paced_pass(ctx, source, measured.rate * PACE, conns, "GET /v1/friends")
    limit = await limit_pgbench(ctx, "fl-friends-list.sql", PGBENCH_CLIENTS)
    errors, fives = status_errors(warm, measured, p)
    checks = {"no errors": errors == 0, "all friends listed": listed == len(crowd)}
    notes: list[str] = []
    await ledger(ctx, checks, notes)
    return Result(
        name="FL",
        what="GET /v1/friends (256 friends)",
        api_rate=measured.rate,
        api_unit="req/s",
        limit_rate=limit.tps,
        limit_unit="queries/s",
        p50_ms=p.latencies_ms["p50"],
        p99_ms=p.latencies_ms["p99"],
        cpu_ms=measured.server_cpu_s / max(measured.requests, 1) * 1000,
        errors=errors,
        checks=checks,
        notes=notes,
        details={
            "api": load.describe(measured),
            "paced": load.describe_paced(p),
            "limit": limit.describe(),
            "5xx": fives,
        },
    )


SCENARIOS: dict[str, Callable[[Context], Awaitable[Result]]] = {
    "S1": s1,
    "S1me": s1me,
    "S2": s2,
    "S3": s3,
    "S4": s4,
    "S5": s5,
    "FL": fl,
}
