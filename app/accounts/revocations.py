"""Which logins have ended, known to every process without a query per request.

Access tokens are verified locally (signature and expiry); what a token cannot say by itself is
whether its login was revoked since (refresh-token reuse, erasure, sign-out). Each process keeps
the set of logins revoked within the access-token lifetime — older revocations cannot matter,
every token of theirs has expired — and learns of new ones at once:

- a trigger on ``auth_sessions`` sends ``NOTIFY canopy_revoked`` with the login's id; PostgreSQL
  delivers it only when the revoking transaction commits, to every process that ``LISTEN``\\s;
- a poll every ``poll_seconds`` (default 1 s) reloads the set, so a lost listener connection or a
  pooler that drops notifications delays a revocation by at most that long;
- a revocation made in this process is added at once (:func:`note_revoked`), so the very next
  request here is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import weakref
from collections.abc import Iterable
from datetime import timedelta

import asyncpg

from app.core.clock import Clock

logger = logging.getLogger("canopy.revocations")

CHANNEL = "canopy_revoked"
# a notified or locally noted revocation is kept this long even if a poll (whose snapshot may
# predate the revoking commit) does not list it yet
_GRACE_SECONDS = 5.0

_LOAD = "SELECT id FROM auth_sessions WHERE revoked_at IS NOT NULL AND revoked_at > $1::timestamptz"

_live: weakref.WeakSet[Revocations] = weakref.WeakSet()


def note_revoked(session_ids: Iterable[uuid.UUID]) -> None:
    """Tell this process's revocation sets at once (the trigger tells the others on commit)."""
    ids = list(session_ids)
    for revocations in list(_live):
        revocations.add(ids)


class Revocations:
    def __init__(
        self, dsn: str, clock: Clock, token_ttl: timedelta, *, poll_seconds: float = 1.0
    ) -> None:
        self._dsn = dsn
        self._clock = clock
        self._ttl = token_ttl
        self._poll = poll_seconds
        self._revoked: frozenset[uuid.UUID] = frozenset()
        self._recent: dict[uuid.UUID, float] = {}
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        _live.add(self)

    def is_revoked(self, session_id: uuid.UUID) -> bool:
        return session_id in self._revoked or session_id in self._recent

    def add(self, session_ids: Iterable[uuid.UUID]) -> None:
        now = time.monotonic()
        for sid in session_ids:
            self._recent[sid] = now

    async def start(self) -> None:
        await self._listen()
        await self.reload()
        if self._poll > 0:
            self._task = asyncio.create_task(self._run(), name="canopy-revocations")

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
        cutoff = self._clock.now() - self._ttl - timedelta(minutes=1)
        listener = self._listener
        if listener is not None and not listener.is_closed():
            # the poll runs on the listening connection: one connection per process in all
            rows = await listener.fetch(_LOAD, cutoff)
        else:
            conn = await asyncpg.connect(self._dsn, server_settings={"timezone": "UTC"})
            try:
                rows = await conn.fetch(_LOAD, cutoff)
            finally:
                await conn.close()
        self._revoked = frozenset(r["id"] for r in rows)
        horizon = time.monotonic() - _GRACE_SECONDS
        self._recent = {sid: t for sid, t in self._recent.items() if t > horizon}

    async def _listen(self) -> None:
        try:
            self._listener = await asyncpg.connect(
                self._dsn, server_settings={"application_name": "canopy-revocations"}
            )
            await self._listener.add_listener(CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError) as exc:  # the poll still covers it
            logger.warning("revocation listener unavailable: %s", exc)
            self._listener = None

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self.add([uuid.UUID(payload)])

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._poll)
            try:
                if self._listener is None or self._listener.is_closed():
                    await self._listen()
                await self.reload()
            except Exception:  # keep polling; the set we have stays in force
                logger.warning("revocation poll failed", exc_info=True)
