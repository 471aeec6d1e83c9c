"""Partner API keys verified once per process, then known without a query per request.

A key is looked up by its SHA-256 digest the first time a process sees it; what the lookup found
(partner id, name, scopes, kinds) is kept under that digest. A key stops working everywhere within a
second of being rotated, re-scoped, given other kinds or disabled:

- a trigger on ``partners`` sends ``NOTIFY canopy_partner_keys`` with the old digest when the
  changing transaction commits, and every process listening drops that digest at once;
- a poll every ``poll_seconds`` (the revocation poll's setting, default 1 s) re-reads the digests
  this process holds, so a lost listener connection delays a change by at most that long;
- a change made in this process drops the partner's keys here at once (:func:`forget_partner`).

A lookup that raced with a change (a notification arrived while it ran) is not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref
from dataclasses import dataclass

import asyncpg

from app.core.sql import Pg, Statement

logger = logging.getLogger("canopy.partner_keys")

CHANNEL = "canopy_partner_keys"


@dataclass(frozen=True, slots=True)
class PartnerKey:
    """The partner behind a verified API key."""

    id: uuid.UUID
    name: str
    scopes: list[str]
    # the activity kinds it may report; None: every kind whose rules sources trust partners
    kinds: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class _KeyRow:
    api_key_hash: str
    id: uuid.UUID
    name: str
    scopes: list[str]
    kinds: list[str] | None

    def key(self) -> PartnerKey:
        kinds = frozenset(self.kinds) if self.kinds is not None else None
        return PartnerKey(self.id, self.name, list(self.scopes), kinds)


BY_DIGEST = Statement(
    "SELECT api_key_hash, id, name, scopes, kinds FROM partners "
    "WHERE api_key_hash = CAST(:digest AS text) AND disabled_at IS NULL",
    row=_KeyRow,
)
STILL_VALID = Statement(
    "SELECT api_key_hash, id, name, scopes, kinds FROM partners "
    "WHERE api_key_hash = ANY(CAST(:digests AS text[])) AND disabled_at IS NULL",
    row=_KeyRow,
)

_live: weakref.WeakSet[PartnerKeys] = weakref.WeakSet()


def forget_partner(partner_id: uuid.UUID) -> None:
    """Drop a partner's verified keys in this process now (the trigger tells the others)."""
    for keys in list(_live):
        keys.forget(partner_id=partner_id)


class PartnerKeys:
    def __init__(self, dsn: str, pg: Pg, *, poll_seconds: float = 1.0) -> None:
        self._dsn = dsn
        self._pg = pg
        self._poll = poll_seconds
        self._known: dict[str, PartnerKey] = {}
        self._changes = 0  # bumped by every forget: a lookup that saw one in flight is not kept
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        _live.add(self)

    async def verify(self, digest: str) -> PartnerKey | None:
        """The partner whose current key has this digest, or None."""
        known = self._known.get(digest)
        if known is not None:
            return known
        changes = self._changes
        row = await self._pg.fetch_one(BY_DIGEST, digest=digest)
        if row is None:
            return None
        key = row.key()
        if changes == self._changes:
            self._known[digest] = key
        return key

    def forget(self, *, digest: str | None = None, partner_id: uuid.UUID | None = None) -> None:
        self._changes += 1
        self._known = {d: k for d, k in self._known.items() if d != digest and k.id != partner_id}

    async def start(self) -> None:
        await self._listen()
        if self._poll > 0:
            self._task = asyncio.create_task(self._run(), name="canopy-partner-keys")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
        _live.discard(self)

    async def reload(self) -> None:
        """Keep only the held digests that still name an enabled partner's current key."""
        held = list(self._known)
        if not held:
            return
        changes = self._changes
        rows = await self._pg.fetch(STILL_VALID, digests=held)
        if changes != self._changes:
            return  # a change arrived meanwhile: it has already dropped what it had to
        self._known = {r.api_key_hash: r.key() for r in rows}

    async def _listen(self) -> None:
        try:
            self._listener = await asyncpg.connect(
                self._dsn, server_settings={"application_name": "canopy-partner-keys"}
            )
            await self._listener.add_listener(CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError) as exc:  # the poll still covers it
            logger.warning("partner key listener unavailable: %s", exc)
            self._listener = None

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.forget(digest=payload)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._poll)
            try:
                if self._listener is None or self._listener.is_closed():
                    await self._listen()
                await self.reload()
            except Exception:  # keep polling; the keys we hold stay in force
                logger.warning("partner key poll failed", exc_info=True)
