"""Friend requests, friendships and blocks.

Every change between two people takes a transaction-scoped advisory lock on the pair, so two
requests crossing each other, or a block racing an accept, resolve one after the other."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.core.users import UserRef
from app.game.feed.service import FRIEND_ACCEPTED, FRIEND_REQUEST, NewItem, add_items
from app.game.friends.repository import FriendsRepository, RequestRow
from app.game.friends.schemas import FriendRequestOut, PersonRef


class AlreadyFriends(Conflict):
    code, title = "already_friends", "You are already friends"


class Blocked(Forbidden):
    code, title = "blocked", "Friend requests between you are not possible"


class SelfRequest(Unprocessable):
    code, title = "self_request", "You cannot befriend yourself"


class NotAFriend(NotFound):
    """Not a friend, blocked, or no such user: all look the same from outside."""

    title = "Not found"


def request_out(row: RequestRow) -> FriendRequestOut:
    return FriendRequestOut(
        id=row.id,
        status=row.status,
        created_at=row.created_at,
        from_=PersonRef(id=row.from_id, handle=row.from_handle),
        to=PersonRef(id=row.to_id, handle=row.to_handle),
    )


async def send_request(
    session: AsyncSession, me: uuid.UUID, handle: str, now: datetime
) -> tuple[FriendRequestOut, bool]:
    """Ask ``handle`` to be friends. If they already asked me, both are accepted at once.
    Returns the request and whether it is new (a repeated ask returns the pending one)."""
    repo = FriendsRepository(session)
    other = await repo.user_by_handle(handle)
    if other is None:
        raise NotFound("No user with this handle")
    if other == me:
        raise SelfRequest()
    await repo.lock_pair(me, other)
    if await repo.blocked_either_way(me, other):
        raise Blocked()
    if await repo.are_friends(me, other):
        raise AlreadyFriends()
    theirs = await repo.pending(other, me)
    if theirs is not None:
        await repo.set_status(theirs, "accepted", now)
        await repo.befriend(me, other, now)
        request_id = await repo.create_request(me, other, "accepted", now)
        await add_items(session, [NewItem(other, FRIEND_ACCEPTED, now, actor_id=me)])
        return request_out(await _get(repo, request_id)), True
    mine = await repo.pending(me, other)
    if mine is not None:
        return request_out(await _get(repo, mine)), False
    request_id = await repo.create_request(me, other, "pending", now)
    await add_items(
        session,
        [NewItem(other, FRIEND_REQUEST, now, actor_id=me, ref=f"friend_request:{request_id}")],
    )
    return request_out(await _get(repo, request_id)), True


async def _get(repo: FriendsRepository, request_id: uuid.UUID) -> RequestRow:
    row = await repo.get_request(request_id)
    assert row is not None
    return row


async def respond(
    session: AsyncSession, me: uuid.UUID, request_id: uuid.UUID, accept: bool, now: datetime
) -> FriendRequestOut:
    """Accept or decline a request addressed to me (anything else is 404)."""
    repo = FriendsRepository(session)
    row = await repo.get_request(request_id)
    if row is None or row.to_id != me:
        raise NotFound("No such friend request")
    await repo.lock_pair(me, row.from_id)
    row = await _get(repo, request_id)  # re-read under the pair lock
    if row.status != "pending":
        if (row.status == "accepted") == accept and row.status in ("accepted", "declined"):
            return request_out(row)  # answering the same way twice is harmless
        raise Conflict(f"This request is already {row.status}")
    if accept:
        if await repo.blocked_either_way(me, row.from_id):
            raise Blocked()
        await repo.set_status(request_id, "accepted", now)
        await repo.befriend(me, row.from_id, now)
        await add_items(session, [NewItem(row.from_id, FRIEND_ACCEPTED, now, actor_id=me)])
    else:
        await repo.set_status(request_id, "declined", now)
    return request_out(await _get(repo, request_id))


async def list_requests(
    session: AsyncSession, me: uuid.UUID, incoming: bool
) -> list[FriendRequestOut]:
    return [request_out(r) for r in await FriendsRepository(session).list_requests(me, incoming)]


async def remove_friend(session: AsyncSession, me: uuid.UUID, other: uuid.UUID) -> None:
    repo = FriendsRepository(session)
    await repo.lock_pair(me, other)
    if await repo.unfriend(me, other) == 0:
        raise NotAFriend()


async def block(session: AsyncSession, me: uuid.UUID, other: uuid.UUID, now: datetime) -> None:
    """End any friendship, cancel pending requests both ways, and stop new ones."""
    repo = FriendsRepository(session)
    if other == me:
        raise SelfRequest("You cannot block yourself")
    if not await repo.live_user(other):
        raise NotFound("No such user")
    await repo.lock_pair(me, other)
    await repo.unfriend(me, other)
    await repo.cancel_between(me, other, now)
    await repo.block(me, other, now)


async def unblock(session: AsyncSession, me: uuid.UUID, other: uuid.UUID) -> None:
    if await FriendsRepository(session).unblock(me, other) == 0:
        raise NotFound("You have not blocked this user")


async def friend_profile(session: AsyncSession, me: uuid.UUID, other: uuid.UUID) -> UserRef:
    """My friend's time zone and region, or 404 unless ``other`` is my friend (blocking removes
    the friendship, so blocked people are covered)."""
    profile = await FriendsRepository(session).friend_profile(me, other)
    if profile is None:
        raise NotAFriend()
    return profile
