"""Drives the real app (in-process ASGI, real PostgreSQL and Redis) through a workload, predicting
every answer with the reference model and checking the invariants after every step."""

from __future__ import annotations

import asyncio
import collections
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.energy.steps import mint_due_step_days
from app.ledger.entries import book_expired, check
from tests.reliability.model.reference import (
    EXPIRE_AFTER,
    KINDS,
    PROP_DURATION,
    RIPEN_AFTER,
    WALK_MAX_STEPS,
    WALK_RIPEN_AT,
    WATER_AMOUNTS,
    WATER_PER_FRIEND_DAY,
    Ball,
    Counter,
    Model,
    Planting,
    Sent,
    User,
    friends_cap,
    local_day,
    local_start,
    new_id,
    next_wall,
    one_take,
)
from tests.reliability.model.workload import Step

ADMIN_TOKEN_HEADER = "Authorization"
ZONES = ("Asia/Shanghai", "Europe/London", "America/New_York", "Pacific/Auckland", "UTC")
REGIONS: tuple[str | None, ...] = (None, None, "shenzhen", "wuhan")
CLIENT_KINDS = ("metro", "bus", "cycling", "metro", "cycling", "e_invoice", "teleport")
PARTNER_KINDS = (
    "offline_payment",
    "e_invoice",
    "metro",
    "bus",
    "utility_bill",
    "train_ticket",
    "etc_toll",
    "cycling",
    "teleport",
)
# when an event happened, relative to now
OFFSETS = (
    timedelta(minutes=-1),
    timedelta(minutes=-30),
    timedelta(hours=-3),
    timedelta(hours=-20),
    timedelta(days=-2),
    timedelta(days=-5),
    timedelta(days=-6, hours=-23),
    timedelta(days=-8),  # too old
    timedelta(minutes=3),  # a fast clock, still accepted
    timedelta(minutes=10),  # in the future
)
MAX_USERS = 56
PASSWORD = "correct horse battery"
TREE_COST = 300
BADGE_COST = 40
BADGE_BUDGET = 5


class StepFailed(AssertionError):
    pass


@dataclass
class Partner:
    id: str
    key: str
    kinds: frozenset[str] | None

    @property
    def source(self) -> str:
        return f"partner:{self.id}"


def _t(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Driver:
    def __init__(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        clock: FrozenClock,
        admin_token: str,
        full_check_every: int = 1,
        progress_every: int = 0,
    ) -> None:
        self.app = app
        self.client = client
        self.clock = clock
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        self.model = Model(now=clock.now())
        self.full_check_every = full_check_every
        self.progress_every = progress_every
        self.started = time.monotonic()
        self.last_entry = 0
        self.db_system: dict[str, int] = {}
        self.db_balls = 0  # energy in balls by the ledger's ball entries (the table: full checks)
        self.partners: list[Partner] = []
        self.items: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.handles = 0
        self.steps_run = 0
        self.orders: dict[str, str] = {}  # order id → status
        self.stats: collections.Counter[str] = collections.Counter()  # what the run exercised

    # --- plumbing ----------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        response = await self.client.request(method, path, json=json, headers=sent)
        if response.status_code >= 500:
            raise StepFailed(f"{method} {path} answered {response.status_code}: {response.text}")
        return response

    def expect(
        self, response: httpx.Response, status: int | set[int], code: str | None = None
    ) -> Any:
        statuses = {status} if isinstance(status, int) else status
        if response.status_code not in statuses:
            raise StepFailed(
                f"{response.request.method} {response.request.url.path}: expected {sorted(statuses)}"
                f"{' ' + code if code else ''}, got {response.status_code}: {response.text}"
            )
        if code is not None:
            body = response.json()
            if body.get("code") != code:
                raise StepFailed(f"expected code {code}, got {body}")
        return response.json() if response.content else None

    async def sql(self, query: str, **params: Any) -> list[Any]:
        async with self.app.state.engine.connect() as conn:
            return list((await conn.execute(text(query), params)).all())

    # --- setup -------------------------------------------------------------------------------------

    async def setup(self) -> None:
        self.version = self.app.state.rules_registry.at(self.clock.now()).version
        for name, kinds in (("Transit and payments", None), ("Metro operator", ["metro", "bus"])):
            body: dict[str, Any] = {"name": name, "scopes": ["activities"]}
            if kinds:
                body["kinds"] = kinds
            made = self.expect(
                await self.call("POST", "/admin/v1/partners", json=body, headers=self.admin), 201
            )
            granted = frozenset(kinds) if kinds else None
            self.partners.append(Partner(made["id"], made["api_key"], granted))
        ngo = self.expect(
            await self.call(
                "POST",
                "/admin/v1/partners",
                json={"name": "Greening NGO", "scopes": ["orders"]},
                headers=self.admin,
            ),
            201,
        )
        for key, body in (
            (
                "tree",
                {
                    "kind": "tree",
                    "name": "Saxaul",
                    "species": "Haloxylon",
                    "cost_g": TREE_COST,
                    "region": "Alxa",
                    "budget": 1_000_000,
                    "status": "available",
                },
            ),
            (
                "badge",
                {
                    "kind": "virtual",
                    "name": "Badge",
                    "cost_g": BADGE_COST,
                    "region": "Online",
                    "budget": BADGE_BUDGET,
                    "status": "available",
                },
            ),
        ):
            item = self.expect(
                await self.call(
                    "POST",
                    "/admin/v1/catalog",
                    json=body | {"partner_id": ngo["id"]},
                    headers=self.admin,
                ),
                201,
            )
            self.items[key] = item
            self.model.item_taken[item["id"]] = 0
        await self.settle_entries()

    # --- running -----------------------------------------------------------------------------------

    async def run(self, steps: Sequence[Step]) -> None:
        for index, step in enumerate(steps):
            try:
                self.model.now = self.clock.now()
                await getattr(self, f"do_{step.name}")(*step.args)
                self.stats[f"step {step.name}"] += 1
                self.model.now = self.clock.now()
                await self.check(
                    full=(index + 1) % self.full_check_every == 0 or index == len(steps) - 1
                )
            except StepFailed as exc:
                raise StepFailed(f"step {index} {step}: {exc}") from exc
            except AssertionError as exc:
                raise StepFailed(f"step {index} {step}: {exc!r}") from exc
            self.steps_run += 1
            if self.progress_every and self.steps_run % self.progress_every == 0:
                print(
                    f"  {self.steps_run} steps, {len(self.model.users)} users, "
                    f"{len(self.model.balls)} balls, clock {self.clock.now():%Y-%m-%d %H:%M}, "
                    f"minted {self.model.minted} g, {time.monotonic() - self.started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )

    def pick(self, seq: Sequence[Any], n: int) -> Any:
        return seq[n % len(seq)] if seq else None

    def live(self) -> list[User]:
        return self.model.live_users()

    # --- invariants -------------------------------------------------------------------------------

    async def settle_entries(self) -> dict[str, int]:
        rows = await self.sql(
            "SELECT id, account, user_id::text, ball_id::text, amount_g FROM ledger_entries "
            "WHERE id > :last ORDER BY id",
            last=self.last_entry,
        )
        moved: dict[str, int] = {}
        for entry_id, account, user_id, ball_id, amount in rows:
            self.last_entry = max(self.last_entry, entry_id)
            if account == "user":
                key = f"user:{user_id}"
            elif account == "ball":
                key = f"ball:{ball_id}"
                self.db_balls += amount
            else:
                key = account
                self.db_system[account] = self.db_system.get(account, 0) + amount
            moved[key] = moved.get(key, 0) + amount
        return {k: v for k, v in moved.items() if v}

    async def resolve_new_balls(self, moved: dict[str, int]) -> None:
        """Balls the model made without knowing their id (step days, watering) get it here,
        matched by owner, kind and amount among the balls the ledger says were just made."""
        m = self.model
        unknown = [k[5:] for k in moved if k.startswith("ball:") and k[5:] not in m.balls]
        if not unknown:
            return
        rows = await self.sql(
            "SELECT id::text, user_id::text, kind, amount_g FROM energy_balls "
            "WHERE id = ANY(CAST(:ids AS uuid[]))",
            ids=unknown,
        )
        for ball_id, owner, kind, amount in rows:
            match = next(
                (
                    b
                    for b in m.holding.values()
                    if b.id.startswith("?")
                    and b.owner == owner
                    and b.kind == kind
                    and b.amount == amount
                ),
                None,
            )
            if match is None:
                raise StepFailed(
                    f"a ball the model did not expect: {ball_id} {owner} {kind} {amount}"
                )
            del m.balls[match.id]
            grams = m.delta.pop(f"ball:{match.id}", 0)
            match.id = ball_id
            m.balls[ball_id] = match
            m.delta[f"ball:{ball_id}"] = m.delta.get(f"ball:{ball_id}", 0) + grams

    async def check(self, full: bool) -> None:
        m = self.model
        moved = await self.settle_entries()
        await self.resolve_new_balls(moved)
        expected = {k: v for k, v in m.delta.items() if v}
        m.delta = {}
        if moved != expected:
            diff = {
                k: (expected.get(k, 0), moved.get(k, 0))
                for k in set(moved) | set(expected)
                if expected.get(k, 0) != moved.get(k, 0)
            }
            raise StepFailed(f"the ledger moved otherwise than the model: (model, app) {diff}")
        # balances, every user
        rows = await self.sql("SELECT id::text, balance_g FROM users")
        balances = dict(rows)
        for user in m.users.values():
            if balances.get(user.id) != user.balance:
                raise StepFailed(
                    f"balance of {user.handle}: model {user.balance}, app {balances.get(user.id)}"
                )
        if len(balances) != len(m.users):
            raise StepFailed("users the model does not know")
        # the balls this step touched
        touched = [k[5:] for k in moved if k.startswith("ball:")]
        if touched:
            for (
                ball_id,
                owner,
                kind,
                amount,
                remaining,
                stolen,
                stealable,
                ripens,
                expires,
            ) in await self.sql(
                "SELECT id::text, user_id::text, kind, amount_g, remaining_g, stolen_g, stealable, "
                "ripens_at, expires_at FROM energy_balls WHERE id = ANY(CAST(:ids AS uuid[]))",
                ids=touched,
            ):
                b = m.balls[ball_id]
                got = (owner, kind, amount, remaining, stolen, stealable, ripens, expires)
                want = (
                    b.owner,
                    b.kind,
                    b.amount,
                    b.remaining,
                    b.stolen,
                    b.stealable,
                    b.ripens_at,
                    b.expires_at,
                )
                if got != want:
                    raise StepFailed(f"ball {ball_id}: model {want}, app {got}")
                if stolen > friends_cap(amount):
                    raise StepFailed(f"ball {ball_id} over-taken: {stolen} of {amount}")
        # system totals and conservation, from the app's own numbers
        [(in_balances,)] = await self.sql("SELECT coalesce(sum(balance_g), 0) FROM users")
        in_balls = self.db_balls
        if full:  # the table itself (every step, its touched rows are compared above)
            [(in_table,)] = await self.sql("SELECT coalesce(sum(remaining_g), 0) FROM energy_balls")
            if in_table != in_balls:
                raise StepFailed(
                    f"energy_balls hold {in_table} g, their ledger entries {in_balls} g"
                )
        minted = -self.db_system.get("system:minted", 0)
        burned = self.db_system.get("system:burned", 0)
        expired = self.db_system.get("system:expired", 0)
        if (minted, burned, expired) != (m.minted, m.burned, m.expired):
            raise StepFailed(
                f"system totals: model {(m.minted, m.burned, m.expired)}, app {(minted, burned, expired)}"
            )
        if minted != in_balances + in_balls + burned + expired:
            raise StepFailed(
                f"minted {minted} != balances {in_balances} + balls {in_balls} + burned {burned} + expired {expired}"
            )
        if in_balls != sum(b.remaining for b in m.holding.values()):
            raise StepFailed("energy in balls differs from the model")
        m.check_conservation()
        if full:
            async with self.app.state.sessionmaker() as session:
                report = await check(session)
            if not report["ok"]:
                raise StepFailed(f"ledger check: {report}")
            t = report["totals"]
            if (t["minted_g"], t["burned_g"], t["expired_g"]) != (m.minted, m.burned, m.expired):
                raise StepFailed(f"ledger check totals {t} vs model")
            [(negative,)] = await self.sql(
                "SELECT (SELECT count(*) FROM users WHERE balance_g < 0) + "
                "(SELECT count(*) FROM energy_balls WHERE remaining_g < 0)"
            )
            assert negative == 0

    # --- people ------------------------------------------------------------------------------------

    async def do_register(self, a: int, b: int, *_: int) -> None:
        if len(self.live()) >= MAX_USERS:
            return
        self.handles += 1
        handle = f"mod{self.handles}"
        tz, region = ZONES[a % len(ZONES)], REGIONS[b % len(REGIONS)]
        body: dict[str, Any] = {
            "handle": handle,
            "password": PASSWORD,
            "timezone": tz,
        }
        if region:
            body["region"] = region
        made = self.expect(await self.call("POST", "/v1/auth/register", json=body), 201)
        user = User(made["user"]["id"], handle, made["access_token"], tz, region)
        self.model.users[user.id] = user

    async def do_befriend(self, a: int, b: int, accept: int, *_: int) -> None:
        people = list(self.model.users.values())
        me = self.pick(self.live(), a)
        other = self.pick(people, b)
        if me is None or other is None:
            return
        await self.befriend(me, other, accept % 3)

    async def befriend(self, me: User, other: User, accept: int) -> None:
        m = self.model
        r = await self.call("POST", "/v1/friend-requests", me.token, json={"handle": other.handle})
        if other.erased:
            self.expect(r, 404)
            return
        if other.id == me.id:
            self.expect(r, 422, "self_request")
            return
        if (me.id, other.id) in m.blocks or (other.id, me.id) in m.blocks:
            self.expect(r, 403, "blocked")
            return
        if m.are_friends(me.id, other.id):
            self.expect(r, 409, "already_friends")
            return
        if (other.id, me.id) in m.pending:
            body = self.expect(r, 201)
            assert body["status"] == "accepted", body
            m.pending.discard((other.id, me.id))
            m.pending.discard((me.id, other.id))
            m.friends.add(frozenset((me.id, other.id)))
            return
        body = self.expect(r, {200, 201})
        assert body["status"] == "pending", body
        m.pending.add((me.id, other.id))
        if accept:
            how = "accept" if accept == 1 else "decline"
            r = await self.call("POST", f"/v1/friend-requests/{body['id']}/{how}", other.token)
            out = self.expect(r, 200)
            m.pending.discard((me.id, other.id))
            assert out["status"] == ("accepted" if accept == 1 else "declined"), out
            if accept == 1:
                m.friends.add(frozenset((me.id, other.id)))

    async def do_unfriend(self, a: int, b: int, *_: int) -> None:
        m = self.model
        me = self.pick(self.live(), a)
        if me is None:
            return
        other = self.pick(m.friends_of(me.id) or list(m.users), b)
        r = await self.call("DELETE", f"/v1/friends/{other}", me.token)
        if m.are_friends(me.id, other):
            self.expect(r, 204)
            m.friends.discard(frozenset((me.id, other)))
        else:
            self.expect(r, 404)

    async def do_block(self, a: int, b: int, *_: int) -> None:
        m = self.model
        me, other = self.pick(self.live(), a), self.pick(list(m.users.values()), b)
        if me is None or other is None:
            return
        r = await self.call("POST", f"/v1/blocks/{other.id}", me.token)
        if other.id == me.id:
            self.expect(r, 422)
        elif other.erased:
            self.expect(r, 404)
        else:
            self.expect(r, {200, 201, 204})
            m.friends.discard(frozenset((me.id, other.id)))
            m.pending.discard((me.id, other.id))
            m.pending.discard((other.id, me.id))
            m.blocks.add((me.id, other.id))

    async def do_unblock(self, a: int, b: int, *_: int) -> None:
        m = self.model
        me = self.pick(self.live(), a)
        if me is None:
            return
        mine = m.in_order(x for x, y in [(bb, ab) for ab, bb in m.blocks] if y == me.id)
        other = self.pick(mine or list(m.users), b)
        r = await self.call("DELETE", f"/v1/blocks/{other}", me.token)
        if (me.id, other) in m.blocks:
            self.expect(r, {200, 204})
            m.blocks.discard((me.id, other))
        else:
            self.expect(r, 404)

    async def do_erase(self, a: int, *_: int) -> None:
        m = self.model
        me = self.pick(self.live(), a)
        if me is None or len(self.live()) <= 4:
            return
        self.expect(await self.call("DELETE", "/v1/me", me.token, json={"password": PASSWORD}), 204)
        for ball in m.own_balls(me.id):
            if ball.remaining > 0 and not ball.booked_expired:
                m.expire_ball(ball)
        me.erased = True
        m.friends = {p for p in m.friends if me.id not in p}
        m.pending = {p for p in m.pending if me.id not in p}
        m.blocks = {p for p in m.blocks if me.id not in p}
        m.watered = {k: v for k, v in m.watered.items() if me.id not in k[:2]}
        me.props.clear()
        me.active_until.clear()
        self.expect(await self.call("GET", "/v1/me", me.token), 401)

    # --- activities --------------------------------------------------------------------------------

    def event(self, kind: str, offset: int, qty: int, ident: str | None = None) -> dict[str, Any]:
        when = self.clock.now() + OFFSETS[offset % len(OFFSETS)]
        body: dict[str, Any] = {
            "id": ident or new_id()[:20],
            "kind": kind,
            "occurred_at": _iso(when),
        }
        if qty % 9 == 0:
            body["quantity"] = 250  # more than a day may count: implausible for a per-km kind
        else:
            body["quantity"] = float(Decimal(1 + qty % 400) / 10)
        return body

    def verify_result(
        self, got: dict[str, Any], want: dict[str, Any], event: dict[str, Any]
    ) -> None:
        assert got["id"] == event["id"] and got["kind"] == event["kind"], (got, event)
        assert got["status"] == want["status"], (got, want, event)
        self.stats[f"activity {want['status']} {want.get('reason') or ''}".strip()] += 1
        assert got["energy_g"] == want["energy_g"], (got, want, event)
        if want["status"] == "rejected":
            assert got["reason"] == want["reason"], (got, want)
        if want["status"] == "duplicate":
            assert got["ball_id"] == want["ball_id"], (got, want)
        elif want.get("ball"):
            assert got["ball_id"], got
        elif want["status"] != "duplicate":
            assert got["ball_id"] is None, got

    def apply_result(
        self, user_id: str | None, source: str, got: dict[str, Any], want: dict[str, Any]
    ) -> None:
        m = self.model
        if want["status"] not in ("minted", "capped") or user_id is None:
            return
        ball_id = got["ball_id"]
        if want.get("ball"):
            ripens, expires = want["ball"]
            m.minted_ball(ball_id, user_id, got["kind"], want["energy_g"], ripens, expires)
        m.record_event(user_id, source, got["id"], want["energy_g"], ball_id)

    async def do_activity(self, a: int, k: int, off: int, qty: int, key: int, *_: int) -> None:
        me = self.pick(self.live(), a)
        if me is None:
            return
        event = self.event(CLIENT_KINDS[k % len(CLIENT_KINDS)], off, qty)
        headers = {"Idempotency-Key": f"k-{new_id()}"} if key % 3 == 0 else None
        r = await self.call("POST", "/v1/activities", me.token, json=event, headers=headers)
        want = self.model.activity(me.id, "client", "client", event)
        got = self.expect(r, 201 if want["status"] in ("minted", "capped") else 200)
        self.verify_result(got, want, event)
        self.apply_result(me.id, "client", got, want)
        self.model.sent.append(
            Sent(
                "/v1/activities",
                me.token,
                event,
                (headers or {}).get("Idempotency-Key"),
                r.status_code,
                got,
                me.id,
                "client",
            )
        )
        self.model.sent[-1].reply["_at"] = self.clock.now().isoformat()

    async def do_partner(self, p: int, a: int, k: int, off: int, qty: int, key: int) -> None:
        partner = self.pick(self.partners, p)
        people = list(self.model.users.values())
        me = self.pick(people, a)
        user_id = me.id if me and a % 17 else str(uuid.uuid4())
        event = self.event(PARTNER_KINDS[k % len(PARTNER_KINDS)], off, qty) | {"user_id": user_id}
        headers = {"Idempotency-Key": f"k-{new_id()}"} if key % 3 == 0 else None
        r = await self.call(
            "POST", "/partner/v1/activities", partner.key, json=event, headers=headers
        )
        want = self.model.activity(user_id, partner.source, "partner", event, partner.kinds)
        if want.get("reason") == "unknown_user":  # the single form: no such (live) user
            self.expect(r, 404, "not_found")
            return
        got = self.expect(r, 201 if want["status"] in ("minted", "capped") else 200)
        self.verify_result(got, want, event)
        self.apply_result(
            user_id if user_id in self.model.users else None, partner.source, got, want
        )
        self.model.sent.append(
            Sent(
                "/partner/v1/activities",
                partner.key,
                event,
                (headers or {}).get("Idempotency-Key"),
                r.status_code,
                got,
                user_id,
                partner.source,
            )
        )
        self.model.sent[-1].reply["_at"] = self.clock.now().isoformat()

    async def do_partner_batch(self, p: int, a: int, k: int, off: int, qty: int, n: int) -> None:
        partner = self.pick(self.partners, p)
        people = list(self.model.users.values())
        if not people:
            return
        events = []
        for i in range(1 + n % 12):
            me = self.pick(people, a + i * (k % 3))
            events.append(
                self.event(PARTNER_KINDS[(k + i * (off % 3)) % len(PARTNER_KINDS)], off, qty + i)
                | {"user_id": me.id}
            )
        if n % 5 == 0 and self.model.sent:  # a batch carrying an event sent before: a duplicate
            old = self.model.sent[-1]
            if old.source == partner.source:
                events.append(dict(old.body))
        r = await self.call(
            "POST", "/partner/v1/activities/batch", partner.key, json={"activities": events}
        )
        got = self.expect(r, 200)["results"]
        assert len(got) == len(events)
        for event, result in zip(events, got, strict=True):
            want = self.model.activity(
                event["user_id"], partner.source, "partner", event, partner.kinds
            )
            self.verify_result(result, want, event)
            self.apply_result(event["user_id"], partner.source, result, want)

    async def do_replay(self, s: int, mode: int, *_: int) -> None:
        m = self.model
        if not m.sent:
            return
        old = m.sent[-1 - s % min(len(m.sent), 20)]
        owner = m.users.get(old.user)
        if old.path == "/v1/activities" and (owner is None or owner.erased):
            return
        if old.path == "/partner/v1/activities" and (owner is None or owner.erased):
            r = await self.call("POST", old.path, old.token, json=old.body)
            self.expect(r, 404, "not_found")
            return
        recent = datetime.fromisoformat(old.reply["_at"]) > self.clock.now() - timedelta(hours=1)
        reply = {k: v for k, v in old.reply.items() if k != "_at"}
        if old.key and recent and mode % 3 == 1:
            # the same key and body: the first answer again, whatever happened since
            r = await self.call(
                "POST", old.path, old.token, json=old.body, headers={"Idempotency-Key": old.key}
            )
            assert r.status_code == old.status and r.json() == reply, (
                r.status_code,
                r.text,
                old.status,
                reply,
            )
            return
        if old.key and recent and mode % 3 == 2:
            other = dict(old.body) | {"id": new_id()[:20]}
            r = await self.call(
                "POST", old.path, old.token, json=other, headers={"Idempotency-Key": old.key}
            )
            self.expect(r, 422, "idempotency_key_reused")
            return
        # the same event id again, no key: a duplicate with the original energy
        r = await self.call("POST", old.path, old.token, json=old.body)
        partner = next((p for p in self.partners if p.source == old.source), None)
        want = m.activity(
            old.user,
            old.source,
            "partner" if partner else "client",
            old.body,
            partner.kinds if partner else None,
        )
        got = self.expect(r, 201 if want["status"] in ("minted", "capped") else 200)
        self.verify_result(got, want, old.body)
        self.apply_result(old.user, old.source, got, want)

    # --- steps -------------------------------------------------------------------------------------

    def mint_due(self, user: User) -> None:
        m = self.model
        for day in m.due_step_days(user):
            user.minted_days.add(day)
            grams = user.step_g[day] = m.step_energy(user, day)
            self.stats["step day minted"] += 1
            if grams > 0:
                ripens, expires = m.step_ball_times(user, day)
                m.minted_ball("?" + new_id(), user.id, "walking", grams, ripens, expires)

    async def do_steps(self, a: int, d: int, n: int, *_: int) -> None:
        m = self.model
        me = self.pick(self.live(), a)
        if me is None:
            return
        today = local_day(self.clock.now(), me.tz)
        day = today - timedelta(days=(d % 10) - 1)  # tomorrow .. 8 days ago
        steps = (n * 7) % 26000 if n % 23 else WALK_MAX_STEPS + 1 + n
        r = await self.call("PUT", f"/v1/steps/{day.isoformat()}", me.token, json={"steps": steps})
        verdict = m.steps_verdict(me, day, steps)
        if verdict == "not_begun" or verdict == "too_old":
            self.expect(r, 422, "date_out_of_range")
            return
        if verdict == "implausible":
            self.expect(r, 422, "implausible")
            return
        got = self.expect(r, 200)
        me.steps[day] = max(me.steps.get(day, 0), steps)  # kept, even once minted
        ended = day < today
        if ended:
            self.mint_due(me)
        assert got["steps"] == me.steps[day], (got, me.steps[day])
        assert got["status"] == ("minted" if ended else "recording"), got
        if ended:
            assert got["energy_g"] == me.step_g[day], (got, me.step_g[day])

    # --- collecting --------------------------------------------------------------------------------

    async def do_collect(self, a: int, which: int, *_: int) -> None:
        m = self.model
        me = self.pick(self.live(), a)
        if me is None:
            return
        now = self.clock.now()
        if which % 3 == 0:
            r = await self.call("POST", "/v1/forest/collect", me.token, json={})
            got = self.expect(r, 200)
            ripe = [b for b in m.own_balls(me.id) if b.ripe(now)]
            results = {x["ball_id"]: x for x in got["results"]}
            assert set(results) == {b.id for b in ripe}, (results, [b.id for b in ripe])
            for b in ripe:
                assert results[b.id] == {
                    "ball_id": b.id,
                    "collected_g": b.remaining,
                    "status": "collected",
                }
            total = 0
            for b in ripe:
                total += b.remaining
                m.credit_user(me.id, b.remaining)
                m.ball_change(b, -b.remaining)
        else:
            mine = m.own_balls(me.id)
            other = self.pick([u for u in m.by_owner if u != me.id], which)
            others = m.by_owner.get(other, []) if other else []
            ids: list[str] = []
            for i in range(1 + which % 4):
                pickable = mine if i % 3 != 2 else others
                b = self.pick(pickable, which // 4 + i * 7)
                if b is not None and b.id not in ids:
                    ids.append(b.id)
            if which % 5 == 0 or not ids:
                ids.append(str(uuid.uuid4()))
            want = []
            total = 0
            for ball_id in ids:
                b = m.balls.get(ball_id)
                if b is not None and b.owner == me.id and b.ripe(now):
                    want.append(
                        {"ball_id": ball_id, "collected_g": b.remaining, "status": "collected"}
                    )
                    total += b.remaining
                else:
                    want.append(
                        {"ball_id": ball_id, "collected_g": 0, "status": m.collect_status(b, me.id)}
                    )
            r = await self.call("POST", "/v1/forest/collect", me.token, json={"ball_ids": ids})
            got = self.expect(r, 200)
            assert got["results"] == want, (got["results"], want)
            for w in want:
                if w["status"] == "collected":
                    b = m.balls[w["ball_id"]]
                    m.credit_user(me.id, b.remaining)
                    m.ball_change(b, -b.remaining)
        assert got["collected_g"] == total and got["balance_g"] == me.balance, (
            got,
            total,
            me.balance,
        )

    def predict_take(self, me: User, owner: User, ids: list[str] | None) -> list[tuple[str, str]]:
        """(ball id, status) for each ball the take reports; 'collected' where one may be taken."""
        m, now = self.model, self.clock.now()
        if ids is None:
            balls = [b for b in m.own_balls(owner.id) if b.ripe(now)]
            return [
                (
                    b.id,
                    "collected"
                    if m.viewer_status(b, me.id) == "available"
                    else m.viewer_status(b, me.id),
                )
                for b in balls
            ]
        out = []
        for ball_id in ids:
            b = m.balls.get(ball_id)
            if b is None or b.owner != owner.id:
                out.append((ball_id, "not_found"))
            else:
                s = m.viewer_status(b, me.id)
                out.append((ball_id, "collected" if s == "available" else s))
        return out

    def apply_take(self, me: User, results: list[dict[str, Any]], expected: dict[str, str]) -> int:
        m, total = self.model, 0
        for x in results:
            if x["status"] != "collected":
                assert x["collected_g"] == 0, x
                continue
            b = m.balls[x["ball_id"]]
            grams = x["collected_g"]
            assert 1 <= grams <= m.possible(b), (x, m.possible(b), b)
            b.takes[me.id] = b.takes.get(me.id, 0) + 1
            self.stats["friend take"] += 1
            b.stolen += grams
            m.ball_change(b, -grams)
            m.credit_user(me.id, grams)
            total += grams
        return total

    async def do_take(self, a: int, f: int, which: int, *_: int) -> None:
        m = self.model
        me = self.pick(self.live(), a)
        if me is None:
            return
        friends = m.friends_of(me.id)
        owner = (
            m.users[self.pick(friends, f)]
            if friends and f % 7
            else self.pick(list(m.users.values()), f)
        )
        if owner is None:
            return
        ids = None
        if which % 3:
            balls = m.own_balls(owner.id)
            ids = [b.id for b in balls[-(1 + which % 4) :]]
            if which % 5 == 0 or not ids:
                ids.append(str(uuid.uuid4()))
        r = await self.call(
            "POST",
            f"/v1/friends/{owner.id}/collect",
            me.token,
            json={} if ids is None else {"ball_ids": ids},
        )
        if not m.are_friends(me.id, owner.id):
            self.expect(r, 404)
            return
        want = self.predict_take(me, owner, ids)
        got = self.expect(r, 200)
        assert [(x["ball_id"], x["status"]) for x in got["results"]] == want or (
            ids is None
            and sorted((x["ball_id"], x["status"]) for x in got["results"]) == sorted(want)
        ), (got["results"], want)
        total = self.apply_take(me, got["results"], dict(want))
        assert got["collected_g"] == total and got["balance_g"] == me.balance, (
            got,
            total,
            me.balance,
        )

    async def do_water(self, a: int, f: int, amt: int, *_: int) -> None:
        m = self.model
        me = self.pick(self.live(), a)
        if me is None:
            return
        friends = m.friends_of(me.id)
        owner = (
            m.users[self.pick(friends, f)]
            if friends and f % 7
            else self.pick(list(m.users.values()), f)
        )
        amount = WATER_AMOUNTS[amt % 4] if amt % 11 else 25
        r = await self.call(
            "POST", f"/v1/friends/{owner.id}/water", me.token, json={"amount_g": amount}
        )
        if not m.are_friends(me.id, owner.id):
            self.expect(r, 404)
            return
        if amount not in WATER_AMOUNTS:
            self.expect(r, 422)
            return
        key = (me.id, owner.id, local_day(self.clock.now(), me.tz))
        if m.watered.get(key, 0) >= WATER_PER_FRIEND_DAY:
            self.expect(r, 409, "daily_limit_reached")
            return
        if me.balance < amount:
            self.expect(r, 409, "insufficient_energy")
            return
        got = self.expect(r, 201)
        m.watered[key] = m.watered.get(key, 0) + 1
        self.stats["watering"] += 1
        m.credit_user(me.id, -amount)
        now = self.clock.now()
        m.new_ball(
            Ball(
                "?" + new_id(),
                owner.id,
                "watering",
                amount,
                amount,
                now,
                now + timedelta(hours=72),
                False,
            )
        )
        assert got == {"watered_g": amount, "balance_g": me.balance}, got

    # --- props ---------------------------------------------------------------------------------------

    async def do_grant(self, a: int, t: int, n: int, *_: int) -> None:
        me = self.pick(self.live(), a)
        if me is None:
            return
        prop = ("shield", "double_collect")[t % 2]
        count = 1 + n % 3
        r = await self.call(
            "POST",
            "/admin/v1/props/grant",
            json={"user_id": me.id, "type": prop, "count": count},
            headers=self.admin,
        )
        self.expect(r, {200, 201})
        me.props[prop] = me.props.get(prop, 0) + count

    async def do_use_prop(self, a: int, t: int, *_: int) -> None:
        me = self.pick(self.live(), a)
        if me is None:
            return
        prop = ("shield", "double_collect", "double_collect", "rocket")[t % 4]
        r = await self.call("POST", f"/v1/props/{prop}/use", me.token)
        if prop not in PROP_DURATION:
            self.expect(r, 404)
            return
        if me.props.get(prop, 0) <= 0:
            self.expect(r, 409, "no_prop_left")
            return
        got = self.expect(r, 200)
        me.props[prop] -= 1
        now = self.clock.now()
        start = max(me.active_until.get(prop, now), now)
        me.active_until[prop] = start + PROP_DURATION[prop]
        assert _t(got["active_until"]) == me.active_until[prop], (got, me.active_until[prop])

    async def do_buy_prop(self, a: int, *_: int) -> None:
        me = self.pick(self.live(), a)
        if me is None:
            return
        self.expect(await self.call("POST", "/v1/props/shield/buy", me.token), 409, "not_for_sale")

    # --- planting --------------------------------------------------------------------------------------

    async def do_plant(self, a: int, i: int, q: int, key: int, *_: int) -> None:
        m = self.model
        me = self.pick(self.live(), a)
        if me is None:
            return
        which = ("tree", "badge", "tree")[i % 3]
        item = self.items[which]
        quantity = 1 + q % 2
        headers = {"Idempotency-Key": f"p-{new_id()}"} if key % 2 else {}
        r = await self.call(
            "POST",
            "/v1/plantings",
            me.token,
            json={"item_id": item["id"], "quantity": quantity},
            headers=headers,
        )
        cost = item["cost_g"] * quantity
        if which == "badge" and m.item_taken[item["id"]] + quantity > BADGE_BUDGET:
            self.expect(r, 409, "sold_out")
            return
        if me.balance < cost:
            self.expect(r, 409, "insufficient_energy")
            return
        got = self.expect(r, 201)
        m.item_taken[item["id"]] += quantity
        self.stats[f"planting {which}"] += 1
        me.balance -= cost
        m.move(f"user:{me.id}", -cost)
        m.burned += cost
        m.move("system:burned", cost)
        status = "completed" if which == "badge" else "reserved"
        assert (
            got["status"] == status and got["cost_g"] == cost and got["balance_g"] == me.balance
        ), got
        m.plantings[got["id"]] = Planting(got["id"], me.id, cost, status)
        if headers:  # a retry with the same key: the same planting, nothing burned twice
            again = await self.call(
                "POST",
                "/v1/plantings",
                me.token,
                json={"item_id": item["id"], "quantity": quantity},
                headers=headers,
            )
            assert again.status_code == 201 and again.json()["id"] == got["id"], again.text

    async def do_orders(self, o: int, *_: int) -> None:
        m = self.model
        self.expect(await self.call("POST", "/admin/v1/orders/batch", headers=self.admin), 200)
        for planting_id, order_id in await self.sql(
            "SELECT id::text, order_id::text FROM plantings WHERE order_id IS NOT NULL"
        ):
            p = m.plantings.get(planting_id)
            if p is not None and p.order is None:
                p.order = order_id
                self.orders.setdefault(order_id, "open")
        for p in m.plantings.values():
            if p.status == "reserved":
                assert p.order is not None, ("a reserved planting was not cut", p)
        if not self.orders:
            return
        order_id = self.pick(list(self.orders), o)  # in the order they were cut
        r = await self.call(
            "POST",
            f"/admin/v1/orders/{order_id}/cancel",
            json={"reason": "model"},
            headers=self.admin,
        )
        self.expect(r, 200)
        if self.orders[order_id] != "cancelled":
            self.stats["order cancelled"] += 1
            self.orders[order_id] = "cancelled"
            for p in m.plantings.values():
                if p.order == order_id and p.status != "cancelled":
                    p.status = "cancelled"
                    m.users[p.user].balance += p.cost
                    m.move(f"user:{p.user}", p.cost)
                    m.burned -= p.cost
                    m.move("system:burned", -p.cost)

    # --- looking -----------------------------------------------------------------------------------------

    async def do_view(self, a: int, f: int, *_: int) -> None:
        m = self.model
        me = self.pick(self.live(), a)
        if me is None:
            return
        now = self.clock.now()
        if f % 2 == 0:
            got = self.expect(await self.call("GET", "/v1/forest", me.token), 200)
            self.mint_due(me)
            assert got["balance_g"] == me.balance, (got["balance_g"], me.balance)
            live = {
                b.id: b.remaining
                for b in m.own_balls(me.id)
                if b.live(now) and not b.id.startswith("?")
            }
            seen = {b["id"]: b["remaining_g"] for b in got["balls"]}
            # balls minted by this very request have no id in the model yet
            unresolved = [b for b in m.own_balls(me.id) if b.id.startswith("?")]
            assert len(seen) == len(live) + len(unresolved), (seen, live)
            for ball_id, remaining in live.items():
                assert seen.get(ball_id) == remaining, (ball_id, seen.get(ball_id), remaining)
            return
        friends = m.friends_of(me.id)
        owner = m.users[self.pick(friends, f)] if friends else None
        if owner is None:
            return
        got = self.expect(await self.call("GET", f"/v1/friends/{owner.id}/forest", me.token), 200)
        self.mint_due(owner)
        for ball in got["balls"]:
            b = m.balls.get(ball["id"])
            if b is None:
                continue  # minted by this request (a step day): checked once resolved
            status = m.viewer_status(b, me.id)
            assert ball["viewer_status"] == status, (ball, status)
            assert ball["collectible_g"] == (
                max(m.possible(b), 0) if status == "available" else 0
            ), (ball, b)

    # --- time --------------------------------------------------------------------------------------------

    async def do_tick(self, how: int, a: int, n: int, *_: int) -> None:
        m, now = self.model, self.clock.now()
        kind = how % 7
        target: datetime | None = None
        if kind == 0:
            target = now + timedelta(minutes=1 + n % 90)
        elif kind == 1:
            target = now + timedelta(hours=1 + n % 12)
        elif kind == 2:  # a ripening instant
            growing = sorted(
                b.ripens_at for b in m.holding.values() if b.ripens_at > now and b.live(now)
            )
            target = self.pick(growing, n)
        elif kind == 3:  # an expiry instant
            ripe = sorted(
                b.expires_at for b in m.holding.values() if b.expires_at > now and b.live(now)
            )
            target = self.pick(ripe, n)
        elif kind == 4:  # someone's local midnight
            user = self.pick(self.live(), a)
            if user is not None:
                target = local_start(local_day(now, user.tz) + timedelta(days=1), user.tz)
        elif kind == 5:  # someone's 07:00
            user = self.pick(self.live(), a)
            if user is not None:
                target = next_wall(now + timedelta(seconds=1), WALK_RIPEN_AT, user.tz)
        else:
            target = now + timedelta(hours=24)
        if target is not None and target > now and target - now < timedelta(days=4):
            self.clock.set(target)

    async def do_worker(self, *_: int) -> None:
        m, now = self.model, self.clock.now()
        async with self.app.state.sessionmaker() as session, session.begin():
            await book_expired(session, now)
            await mint_due_step_days(session, now, self.app.state.rules_registry)
        for b in list(m.holding.values()):
            if b.remaining > 0 and not b.booked_expired and b.expires_at <= now:
                m.expire_ball(b)
                self.stats["ball expired"] += 1
        for user in self.live():
            self.mint_due(user)

    # --- concurrent groups ----------------------------------------------------------------------------------

    async def do_devices(self, a: int, *_: int) -> None:
        """The same user collecting on two devices at once: each ripe ball paid once."""
        m = self.model
        me = self.pick(self.live(), a)
        if me is None:
            return
        now = self.clock.now()
        ripe = {b.id: b.remaining for b in m.own_balls(me.id) if b.ripe(now)}
        r1, r2 = await asyncio.gather(
            *(self.call("POST", "/v1/forest/collect", me.token, json={}) for _ in range(2))
        )
        got = [self.expect(r1, 200), self.expect(r2, 200)]
        paid: dict[str, int] = {}
        for body in got:
            for x in body["results"]:
                if x["status"] == "collected":
                    assert x["ball_id"] not in paid, ("paid twice", x)
                    paid[x["ball_id"]] = x["collected_g"]
                else:
                    assert x["status"] == "empty" and x["collected_g"] == 0, x
        assert paid == ripe, (paid, ripe)
        assert sum(b["collected_g"] for b in got) == sum(ripe.values())
        for ball_id, grams in paid.items():
            m.credit_user(me.id, grams)
            m.ball_change(m.balls[ball_id], -grams)
        assert max(b["balance_g"] for b in got) == me.balance

    async def do_crowd(self, a: int, n: int, *_: int) -> None:
        """Up to 50 friends on one ripe ball at once, its owner collecting at the same moment."""
        m = self.model
        now = self.clock.now()
        candidates = [
            b
            for b in m.holding.values()
            if b.ripe(now)
            and b.stealable
            and b.amount >= 20
            and not m.users[b.owner].card("shield", now)
        ]
        ball = self.pick(sorted(candidates, key=lambda b: b.seq), a)
        if ball is None:
            return
        owner = m.users[ball.owner]
        for other in self.live():  # make the crowd: everyone not yet a friend asks and is accepted
            if len(m.friends_of(owner.id)) >= 50:
                break
            if other.id != owner.id and not m.are_friends(owner.id, other.id):
                await self.befriend(other, owner, 1)
        crowd = [m.users[f] for f in m.friends_of(owner.id)][:50]
        before, stolen_before = ball.remaining, ball.stolen
        calls = [
            self.call(
                "POST", f"/v1/friends/{owner.id}/collect", f.token, json={"ball_ids": [ball.id]}
            )
            for f in crowd
        ]
        owner_collects = n % 2 == 0
        if owner_collects:
            calls.append(
                self.call("POST", "/v1/forest/collect", owner.token, json={"ball_ids": [ball.id]})
            )
        responses = await asyncio.gather(*calls)
        allowed = {f.id: (2 if f.card("double_collect", now) else 1) for f in crowd}
        takes = 0
        reasons: set[str] = set()
        for f, r in zip(crowd, responses, strict=False):
            [x] = self.expect(r, 200)["results"]
            if x["status"] == "collected":
                assert 1 <= x["collected_g"] <= one_take(ball.amount), x
                takes += x["collected_g"]
                ball.takes[f.id] = ball.takes.get(f.id, 0) + 1
                m.credit_user(f.id, x["collected_g"])
                self.stats["crowd take"] += 1
            else:
                assert x["collected_g"] == 0 and x["status"] in (
                    "insufficient",
                    "collected_by_you",
                ), x
                if x["status"] == "collected_by_you":
                    assert ball.takes.get(f.id, 0) >= allowed[f.id], (x, f.id)
                reasons.add(x["status"])
        owner_g = 0
        if owner_collects:
            [x] = self.expect(responses[-1], 200)["results"]
            assert x["status"] in ("collected", "empty"), x
            owner_g = x["collected_g"]
        assert stolen_before + takes <= friends_cap(ball.amount), ("over-taken", takes)
        if owner_g:
            assert owner_g + takes == before, (owner_g, takes, before)
        if "insufficient" in reasons:  # someone was refused: nothing was left for friends
            assert (
                owner_g or stolen_before + takes == friends_cap(ball.amount) or takes == before
            ), (reasons, takes, stolen_before, ball.amount)
        ball.stolen += takes
        m.ball_change(ball, -(takes + owner_g))
        if owner_g:
            m.credit_user(owner.id, owner_g)

    async def do_overlap(self, a: int, k: int, n: int, *_: int) -> None:
        """Two partners' overlapping batches for the same people and days, at once: caps hold
        whatever the order (only per-event kinds here, so any serial order mints as much)."""
        m = self.model
        people = [u for u in self.live() if u.region != "shenzhen"]
        if len(people) < 2 or len(self.partners) < 2:
            return
        group = [self.pick(people, a + i) for i in range(3)]
        when = _iso(self.clock.now() - timedelta(minutes=5 + n % 60))
        batches = []
        for p, partner in enumerate(self.partners[:2]):
            kinds = ("metro", "bus") if p else ("metro", "offline_payment", "bus")
            events = [
                {
                    "id": new_id()[:20],
                    "user_id": u.id,
                    "kind": kinds[(i + k) % len(kinds)],
                    "occurred_at": when,
                }
                for i, u in enumerate(group * 3)
            ]
            batches.append((partner, events))
        responses = await asyncio.gather(
            *(
                self.call(
                    "POST", "/partner/v1/activities/batch", partner.key, json={"activities": events}
                )
                for partner, events in batches
            )
        )
        sent: dict[tuple[str, str], int] = {}
        minted: dict[tuple[str, str], int] = {}
        for (partner, events), r in zip(batches, responses, strict=True):
            results = self.expect(r, 200)["results"]
            for event, x in zip(events, results, strict=True):
                key = (event["user_id"], event["kind"])
                sent[key] = sent.get(key, 0) + 1
                per_event = KINDS[event["kind"]].per_event_g
                if x["status"] == "minted":
                    assert x["energy_g"] == per_event and x["ball_id"], x
                    minted[key] = minted.get(key, 0) + 1
                    occurred = datetime.fromisoformat(event["occurred_at"])
                    ripens = occurred + RIPEN_AFTER
                    m.minted_ball(
                        x["ball_id"],
                        event["user_id"],
                        event["kind"],
                        x["energy_g"],
                        ripens,
                        max(ripens, self.clock.now()) + EXPIRE_AFTER,
                    )
                else:
                    assert (
                        x["status"] == "capped" and x["energy_g"] == 0 and x["ball_id"] is None
                    ), x
                m.record_event(
                    event["user_id"], partner.source, event["id"], x["energy_g"], x["ball_id"]
                )
        occurred = datetime.fromisoformat(when)
        for (user_id, kind), count in sent.items():
            user = m.users[user_id]
            counter = m.counters.setdefault(
                (user_id, kind, "day", local_day(occurred, user.tz)), Counter()
            )
            cap = KINDS[kind].day_cap_count
            room = count if cap is None else max(0, min(count, cap - counter.count))
            assert minted.get((user_id, kind), 0) == room, (
                user_id,
                kind,
                minted.get((user_id, kind), 0),
                room,
            )
            counter.count += room
            counter.grams += room * (KINDS[kind].per_event_g or 0)

    async def do_storm(self, a: int, f: int, kind: int, n: int, *_: int) -> None:
        """Money races: one giver waters one friend 4 to 6 times at once (the daily limit and the
        balance decide together), one user plants more trees at once than the balance pays for,
        or everyone with enough energy plants the badge whose budget is five."""
        m = self.model
        rich = [u for u in self.live() if u.balance >= BADGE_COST]
        if kind % 3 == 0:
            givers = [u for u in rich if m.friends_of(u.id)]
            me = self.pick(givers, a)
            if me is None:
                return
            owner = m.users[self.pick(m.friends_of(me.id), f)]
            amount = WATER_AMOUNTS[n % 4]
            tries = 4 + n % 3
            responses = await asyncio.gather(
                *(
                    self.call(
                        "POST", f"/v1/friends/{owner.id}/water", me.token, json={"amount_g": amount}
                    )
                    for _ in range(tries)
                )
            )
            key = (me.id, owner.id, local_day(self.clock.now(), me.tz))
            room = max(0, WATER_PER_FRIEND_DAY - m.watered.get(key, 0))
            fits = min(tries, room, me.balance // amount)
            ok = [r for r in responses if r.status_code == 201]
            assert len(ok) == fits, ([r.text for r in responses], room, me.balance, amount)
            for r in responses:
                if r.status_code != 201:
                    code = self.expect(r, 409)["code"]
                    assert code in ("daily_limit_reached", "insufficient_energy"), r.text
            now = self.clock.now()
            for _ in ok:
                m.watered[key] = m.watered.get(key, 0) + 1
                m.credit_user(me.id, -amount)
                m.new_ball(
                    Ball(
                        "?" + new_id(),
                        owner.id,
                        "watering",
                        amount,
                        amount,
                        now,
                        now + EXPIRE_AFTER,
                        False,
                    )
                )
                self.stats["storm watering"] += 1
            assert min(r.json()["balance_g"] for r in ok) == me.balance if ok else True
            return
        if kind % 3 == 1:
            me = self.pick([u for u in self.live() if u.balance >= TREE_COST], a)
            if me is None:
                return
            tries = 2 + n % 4
            wanted = [("tree", 1)] * tries
        else:
            wanted = [("badge", 1)] * len(rich)
            me = None
        item_calls = []
        payers = []
        for i, (which, quantity) in enumerate(wanted):
            payer = me if me is not None else rich[i]
            payers.append(payer)
            item_calls.append(
                self.call(
                    "POST",
                    "/v1/plantings",
                    payer.token,
                    json={"item_id": self.items[which]["id"], "quantity": quantity},
                )
            )
        if not item_calls:
            return
        responses = await asyncio.gather(*item_calls)
        item = self.items[wanted[0][0]]
        cost = item["cost_g"]
        ok = [(p, r) for p, r in zip(payers, responses, strict=True) if r.status_code == 201]
        if me is not None:
            assert len(ok) == min(len(wanted), me.balance // cost), [r.text for r in responses]
        else:
            left = BADGE_BUDGET - m.item_taken[item["id"]]
            assert len(ok) == min(len(wanted), max(0, left)), [r.text for r in responses]
        for r in responses:
            if r.status_code != 201:
                code = self.expect(r, 409)["code"]
                assert code == ("insufficient_energy" if me is not None else "sold_out"), r.text
        for payer, r in ok:
            body = r.json()
            m.item_taken[item["id"]] += 1
            payer.balance -= cost
            m.move(f"user:{payer.id}", -cost)
            m.burned += cost
            m.move("system:burned", cost)
            status = "completed" if item is self.items["badge"] else "reserved"
            assert body["status"] == status and body["cost_g"] == cost, body
            m.plantings[body["id"]] = Planting(body["id"], payer.id, cost, status)
            self.stats["storm planting"] += 1
        for payer in {p.id: p for p, _ in ok}.values():
            assert min(r.json()["balance_g"] for p, r in ok if p.id == payer.id) == payer.balance
