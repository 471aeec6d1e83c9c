"""All SQL of friendship: requests, the symmetric friendship rows, blocks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.users import UserRef


@dataclass(frozen=True)
class RequestRow:
    id: uuid.UUID
    from_id: uuid.UUID
    from_handle: str | None
    to_id: uuid.UUID
    to_handle: str | None
    status: str
    created_at: datetime


_REQUEST_SELECT = (
    "SELECT r.id, r.from_user_id, fu.handle, r.to_user_id, tu.handle, r.status, r.created_at "
    "FROM friend_requests r JOIN users fu ON fu.id = r.from_user_id "
    "JOIN users tu ON tu.id = r.to_user_id "
)


def friend_of(me: str, other: str) -> str:
    """The body of a CTE for hot statements: ``other``'s profile (``id, handle, display_name,
    timezone, region``) when they are my friend, else no row — not a friend, blocked (blocking
    ends the friendship) or nobody, all alike (the read of
    :meth:`FriendsRepository.friend_profile`)."""
    return f"""
        SELECT u.id, u.handle, u.display_name, u.timezone, u.region FROM friendships f
        JOIN users u ON u.id = f.friend_id
        WHERE f.user_id = {me} AND f.friend_id = {other} AND u.erased_at IS NULL
    """  # noqa: S608 (constant fragments)


class FriendsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def user_by_handle(self, handle: str) -> uuid.UUID | None:
        row = await self.session.execute(
            text("SELECT id FROM users WHERE handle = :h AND erased_at IS NULL"), {"h": handle}
        )
        return row.scalar()

    async def friend_profile(self, me: uuid.UUID, other: uuid.UUID) -> UserRef | None:
        """``other``'s profile if they are my friend (one indexed read), else None."""
        row = await self.session.execute(
            text(
                "SELECT u.id, u.timezone, u.region FROM friendships f "
                "JOIN users u ON u.id = f.friend_id "
                "WHERE f.user_id = :me AND f.friend_id = :other AND u.erased_at IS NULL"
            ),
            {"me": me, "other": other},
        )
        found = row.first()
        return UserRef(found[0], found[1], found[2]) if found else None

    async def names(self, user_id: uuid.UUID) -> tuple[str | None, str | None]:
        row = await self.session.execute(
            text("SELECT handle, display_name FROM users WHERE id = :u"), {"u": user_id}
        )
        found = row.first()
        return (found[0], found[1]) if found else (None, None)

    async def live_user(self, user_id: uuid.UUID) -> bool:
        row = await self.session.execute(
            text("SELECT 1 FROM users WHERE id = :u AND erased_at IS NULL"), {"u": user_id}
        )
        return row.scalar() is not None

    async def blocked_either_way(self, a: uuid.UUID, b: uuid.UUID) -> bool:
        row = await self.session.execute(
            text(
                "SELECT 1 FROM blocks WHERE (user_id = :a AND blocked_id = :b) "
                "OR (user_id = :b AND blocked_id = :a) LIMIT 1"
            ),
            {"a": a, "b": b},
        )
        return row.scalar() is not None

    async def are_friends(self, a: uuid.UUID, b: uuid.UUID) -> bool:
        row = await self.session.execute(
            text("SELECT 1 FROM friendships WHERE user_id = :a AND friend_id = :b"),
            {"a": a, "b": b},
        )
        return row.scalar() is not None

    async def lock_pair(self, a: uuid.UUID, b: uuid.UUID) -> None:
        """Serialise every change between two people (requests crossing, block vs accept)."""
        low, high = sorted([str(a), str(b)])
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"{low}:{high}"}
        )

    async def pending(self, from_id: uuid.UUID, to_id: uuid.UUID) -> uuid.UUID | None:
        row = await self.session.execute(
            text(
                "SELECT id FROM friend_requests WHERE from_user_id = :f AND to_user_id = :t "
                "AND status = 'pending'"
            ),
            {"f": from_id, "t": to_id},
        )
        return row.scalar()

    async def create_request(
        self, from_id: uuid.UUID, to_id: uuid.UUID, status: str, now: datetime
    ) -> uuid.UUID:
        request_id = uuid.uuid4()
        await self.session.execute(
            text(
                "INSERT INTO friend_requests (id, from_user_id, to_user_id, status, created_at, "
                "responded_at) VALUES (:id, :f, :t, :s, :now, :responded)"
            ),
            {
                "id": request_id,
                "f": from_id,
                "t": to_id,
                "s": status,
                "now": now,
                "responded": None if status == "pending" else now,
            },
        )
        return request_id

    async def get_request(self, request_id: uuid.UUID) -> RequestRow | None:
        row = await self.session.execute(
            text(_REQUEST_SELECT + "WHERE r.id = :id"), {"id": request_id}
        )
        found = row.first()
        return RequestRow(*found) if found else None

    async def list_requests(self, user_id: uuid.UUID, incoming: bool) -> list[RequestRow]:
        side = "r.to_user_id" if incoming else "r.from_user_id"
        rows = await self.session.execute(
            text(
                _REQUEST_SELECT
                + f"WHERE {side} = :u AND r.status = 'pending' ORDER BY r.created_at DESC LIMIT 500"
            ),
            {"u": user_id},
        )
        return [RequestRow(*r) for r in rows]

    async def set_status(self, request_id: uuid.UUID, status: str, now: datetime) -> None:
        await self.session.execute(
            text("UPDATE friend_requests SET status = :s, responded_at = :now WHERE id = :id"),
            {"s": status, "now": now, "id": request_id},
        )

    async def cancel_between(self, a: uuid.UUID, b: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            text(
                "UPDATE friend_requests SET status = 'cancelled', responded_at = :now "
                "WHERE status = 'pending' AND ((from_user_id = :a AND to_user_id = :b) "
                "OR (from_user_id = :b AND to_user_id = :a))"
            ),
            {"a": a, "b": b, "now": now},
        )

    async def befriend(self, a: uuid.UUID, b: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            text(
                "INSERT INTO friendships (user_id, friend_id, created_at) "
                "VALUES (:a, :b, :now), (:b, :a, :now) ON CONFLICT DO NOTHING"
            ),
            {"a": a, "b": b, "now": now},
        )

    async def unfriend(self, a: uuid.UUID, b: uuid.UUID) -> int:
        result = await self.session.execute(
            text(
                "DELETE FROM friendships WHERE (user_id = :a AND friend_id = :b) "
                "OR (user_id = :b AND friend_id = :a)"
            ),
            {"a": a, "b": b},
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def block(self, user_id: uuid.UUID, blocked_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            text(
                "INSERT INTO blocks (user_id, blocked_id, created_at) VALUES (:u, :b, :now) "
                "ON CONFLICT DO NOTHING"
            ),
            {"u": user_id, "b": blocked_id, "now": now},
        )

    async def unblock(self, user_id: uuid.UUID, blocked_id: uuid.UUID) -> int:
        result = await self.session.execute(
            text("DELETE FROM blocks WHERE user_id = :u AND blocked_id = :b"),
            {"u": user_id, "b": blocked_id},
        )
        return int(getattr(result, "rowcount", 0) or 0)
