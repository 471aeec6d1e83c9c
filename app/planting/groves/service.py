"""Joint planting (groves, Ant Forest's 合种): 2 to ``groves.max_members`` friends pool energy
for one catalog item.

- Creating a grove takes one unit of the item's budget at once, exactly as a planting would
  (``sold_out`` / ``not_available`` otherwise), and holds it while the grove is open: an item
  cannot sell out under an open grove, so the grove that fills always plants. The unit goes
  back when the last member leaves (the grove is ``disbanded``).
- Members invite their friends (by handle); an invited friend joins. Nobody else can see the
  grove (404).
- A contribution moves energy from the member's balance into what the member holds in groves
  (the ledger's ``grove`` side, ref ``grove:<id>``): not burned yet. A contribution larger than
  what the grove still needs is **capped at what remains** (the reply says how much was taken).
  The contribution that reaches the target plants the tree in the same transaction: a planting
  of the item under the grove's owner, each member's holding burned, the certificate naming
  every member and share. A grove needs two members to plant: while it has one, the
  contribution that would complete it is refused (``grove_needs_members``).
- Leaving before planting gives the member's holding back; after planting nothing is left to
  take.
- The grove's row is locked first by every change, so racing contributions run one after the
  other: one of them completes the grove, the others find it planted (``grove_closed``) and
  pay nothing.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, NotFound, Unauthorized
from app.game.feed.service import NewItem, add_items
from app.game.friends.repository import FriendsRepository
from app.ledger.transfers import InsufficientEnergy
from app.planting.catalog import check_redeemable
from app.planting.certificates import CertificateData
from app.planting.errors import SoldOut
from app.planting.groves.repository import GroveRepository
from app.planting.groves.schemas import (
    ContributionOut,
    GroveMemberOut,
    GroveOut,
    GrovePlanting,
    LeftOut,
)
from app.rules.registry import ActiveRules

# feed item types
GROVE_INVITE = "grove_invite"
GROVE_JOINED = "grove_joined"
GROVE_PLANTED = "grove_planted"


class GroveClosed(Conflict):
    code, title = "grove_closed", "This grove is not open any more"


class GroveFull(Conflict):
    code, title = "grove_full", "This grove has all the members it can have"


class TooManyGroves(Conflict):
    code, title = "too_many_groves", "You are in as many open groves as the rules allow"


class GroveNeedsMembers(Conflict):
    code, title = "grove_needs_members", "A grove needs two members to plant"


class AlreadyMember(Conflict):
    code, title = "already_member", "They are a member of this grove already"


class NoSuchGrove(NotFound):
    title = "Not found"

    def __init__(self) -> None:
        super().__init__("No such grove")


def grove_ref(grove_id: uuid.UUID) -> str:
    return f"grove:{grove_id}"


async def create(
    session: AsyncSession,
    me: uuid.UUID,
    item_id: uuid.UUID,
    name: str,
    rules: ActiveRules,
    now: datetime,
) -> GroveOut:
    """A new open grove with me as its only member, holding one unit of the item's budget."""
    repo = GroveRepository(session)
    if not await repo.lock_user(me):
        raise Unauthorized("This login has ended; sign in again")
    limit = rules.rules.groves.max_open_per_user
    if await repo.open_groves_of(me) >= limit:
        raise TooManyGroves(f"At most {limit} open groves at a time")
    item = await repo.take_budget_unit(item_id, now)
    if item is None:
        found = await repo.item(item_id)
        if found is None:
            raise NotFound("No such catalog item")
        check_redeemable(dict(found), 1)
        raise SoldOut(f"No {found['name']} left this season")  # taken meanwhile
    grove_id = uuid.uuid4()
    await repo.insert_grove(
        {
            "id": grove_id,
            "name": name,
            "owner": me,
            "item": item_id,
            "target": int(item["cost_g"]),
            "version": rules.version,
            "now": now,
        }
    )
    return await _out(repo, grove_id)


async def invite(
    session: AsyncSession, me: uuid.UUID, grove_id: uuid.UUID, handle: str, now: datetime
) -> GroveOut:
    """Invite a friend of mine (by handle) into my open grove."""
    repo = GroveRepository(session)
    grove = await repo.lock(grove_id)
    if grove is None or await repo.membership(grove_id, me) is None:
        raise NoSuchGrove()
    if grove["status"] != "open":
        raise GroveClosed(f"This grove is {grove['status']}")
    friends = FriendsRepository(session)
    other = await friends.user_by_handle(handle)
    # unknown, not my friend, blocked: all the same from outside
    if other is None or other == me or await friends.friend_profile(me, other) is None:
        raise NotFound("No such friend")
    if await repo.membership(grove_id, other) is not None:
        raise AlreadyMember()
    if await repo.invite(grove_id, other, me, now):
        await add_items(
            session,
            [NewItem(other, GROVE_INVITE, now, actor_id=me, ref=grove_ref(grove_id))],
        )
    return await _out(repo, grove_id)


async def join(
    session: AsyncSession, me: uuid.UUID, grove_id: uuid.UUID, rules: ActiveRules, now: datetime
) -> GroveOut:
    """Join a grove I was invited to (joining one I am in answers it as it is)."""
    repo = GroveRepository(session)
    grove = await repo.lock(grove_id)
    if grove is None:
        raise NoSuchGrove()
    if await repo.membership(grove_id, me) is not None:
        return await _out(repo, grove_id)
    if not await repo.invited(grove_id, me):
        raise NoSuchGrove()
    if grove["status"] != "open":
        raise GroveClosed(f"This grove is {grove['status']}")
    groves = rules.rules.groves
    if grove["members"] >= groves.max_members:
        raise GroveFull(f"A grove has at most {groves.max_members} members")
    await repo.lock_user(me)
    if await repo.open_groves_of(me) >= groves.max_open_per_user:
        raise TooManyGroves(f"At most {groves.max_open_per_user} open groves at a time")
    await repo.add_member(grove_id, me, now)
    await repo.set_members(grove_id, +1, now)
    await add_items(
        session,
        [
            NewItem(member, GROVE_JOINED, now, actor_id=me, ref=grove_ref(grove_id))
            for member in await repo.member_ids(grove_id)
            if member != me
        ],
    )
    return await _out(repo, grove_id)


async def contribute(
    session: AsyncSession,
    me: uuid.UUID,
    grove_id: uuid.UUID,
    amount_g: int,
    rules: ActiveRules,
    now: datetime,
) -> ContributionOut:
    """Put energy into the grove (capped at what it still needs); the contribution that
    reaches the target plants the tree at once."""
    repo = GroveRepository(session)
    grove = await repo.lock(grove_id)
    if grove is None or await repo.membership(grove_id, me) is None:
        raise NoSuchGrove()
    if grove["status"] != "open":
        raise GroveClosed(f"This grove is {grove['status']}")
    needed = int(grove["target_g"]) - int(grove["raised_g"])
    taken = min(amount_g, needed)
    completes = taken == needed
    if completes and grove["members"] < 2:
        raise GroveNeedsMembers("Invite a friend: a grove plants with two members or more")
    moved = await repo.contribute(
        grove_id=grove_id, me=me, amount_g=taken, version=rules.version, now=now
    )
    if moved is None:
        raise InsufficientEnergy(f"This needs {taken} g of energy")
    balance_g, _raised = moved
    if completes:
        planting = await repo.plant(
            grove_id=grove_id, planting_id=uuid.uuid4(), version=rules.version, now=now
        )
        await add_items(
            session,
            [
                NewItem(
                    member,
                    GROVE_PLANTED,
                    now,
                    actor_id=me,
                    amount_g=int(grove["target_g"]),
                    ref=grove_ref(grove_id),
                    data={
                        "planting_id": str(planting["id"]),
                        "certificate_number": planting["certificate_number"],
                    },
                )
                for member in await repo.member_ids(grove_id)
            ],
        )
    return ContributionOut(
        contributed_g=taken, balance_g=balance_g, grove=await _out(repo, grove_id)
    )


async def leave(
    session: AsyncSession, me: uuid.UUID, grove_id: uuid.UUID, rules: ActiveRules, now: datetime
) -> LeftOut:
    """Leave an open grove: what I put in comes back. The last member out disbands it and
    gives its budget unit back to the item."""
    repo = GroveRepository(session)
    grove = await repo.lock(grove_id)
    membership = None if grove is None else await repo.membership(grove_id, me)
    if grove is None or membership is None:
        raise NoSuchGrove()
    if grove["status"] != "open":
        raise GroveClosed(f"This grove is {grove['status']}: nothing to take back")
    held = int(membership["contributed_g"])
    balance_g = await _leave(repo, grove, me, held, rules.version, now)
    if balance_g is None:
        balance_g = await _balance(session, me)
    return LeftOut(refunded_g=held, balance_g=balance_g)


async def _leave(
    repo: GroveRepository,
    grove: RowMapping,
    me: uuid.UUID,
    held: int,
    version: int,
    now: datetime,
) -> int | None:
    """Take a member out of a locked, open grove, refunding what they hold; returns their new
    balance when a refund was booked."""
    grove_id = grove["id"]
    balance_g = None
    if held > 0:
        balance_g = await repo.refund(
            grove_id=grove_id, me=me, amount_g=held, version=version, now=now
        )
    await repo.remove_member(grove_id, me)
    await repo.set_members(grove_id, -1, now)
    if grove["members"] <= 1:
        await repo.disband(grove_id, now)
        await repo.return_budget_unit(grove["item_id"], now)
    elif grove["owner_id"] == me:
        await repo.hand_over(grove_id, now)
    return balance_g


async def leave_all_open(session: AsyncSession, me: uuid.UUID, version: int, now: datetime) -> int:
    """Take a person out of every open grove they are in (erasure), refunding each
    contribution to their balance; returns the grams given back."""
    repo = GroveRepository(session)
    refunded = 0
    for grove_id in await repo.open_grove_ids_of(me):
        grove = await repo.lock(grove_id)
        membership = await repo.membership(grove_id, me)
        if grove is None or membership is None or grove["status"] != "open":
            continue  # planted or left in the meantime
        held = int(membership["contributed_g"])
        await _leave(repo, grove, me, held, version, now)
        refunded += held
    return refunded


async def _balance(session: AsyncSession, me: uuid.UUID) -> int:
    value = (
        await session.execute(text("SELECT balance_g FROM users WHERE id = :u"), {"u": me})
    ).scalar()
    return int(value or 0)


async def get(session: AsyncSession, me: uuid.UUID, grove_id: uuid.UUID) -> GroveOut:
    """A grove I am in or invited to; anyone else's is 404."""
    repo = GroveRepository(session)
    if await repo.membership(grove_id, me) is None and not await repo.invited(grove_id, me):
        raise NoSuchGrove()
    return await _out(repo, grove_id)


async def list_mine(session: AsyncSession, me: uuid.UUID) -> list[GroveOut]:
    repo = GroveRepository(session)
    rows = await repo.groves_of(me)
    members = await _members(repo, [r["id"] for r in rows])
    return [_grove_out(r, members[r["id"]], invited=not r["member"]) for r in rows]


async def _members(
    repo: GroveRepository, grove_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[RowMapping]]:
    found: dict[uuid.UUID, list[RowMapping]] = defaultdict(list)
    for m in await repo.members(grove_ids) if grove_ids else []:
        found[m["grove_id"]].append(m)
    return found


async def _out(repo: GroveRepository, grove_id: uuid.UUID, *, invited: bool = False) -> GroveOut:
    row = await repo.grove(grove_id)
    if row is None:
        raise NoSuchGrove()
    members = await _members(repo, [grove_id])
    return _grove_out(row, members[grove_id], invited=invited)


def _grove_out(row: RowMapping, members: list[RowMapping], *, invited: bool) -> GroveOut:
    planting = None
    if row["planting_id"] is not None:
        planting = GrovePlanting(
            id=row["planting_id"],
            status=row["planting_status"],
            certificate_number=row["certificate_number"],
        )
    return GroveOut(
        id=row["id"],
        name=row["name"],
        item_id=row["item_id"],
        item_name=row["item_name"],
        target_g=row["target_g"],
        raised_g=row["raised_g"],
        members=[
            GroveMemberOut(
                user_id=m["user_id"],
                handle=m["handle"],
                display_name=m["display_name"] or m["handle"],
                contributed_g=m["contributed_g"],
            )
            for m in members
        ],
        status=row["status"],
        owner_id=row["owner_id"],
        invited=invited,
        planting=planting,
        created_at=row["created_at"],
        planted_at=row["planted_at"],
    )


async def certificate(session: AsyncSession, me: uuid.UUID, grove_id: uuid.UUID) -> CertificateData:
    """The certificate of a planted grove I belong to (every member named with their share)."""
    repo = GroveRepository(session)
    if await repo.membership(grove_id, me) is None:
        raise NoSuchGrove()
    row = await repo.grove(grove_id)
    if row is None or row["planting_id"] is None:
        raise NotFound("This grove has not planted yet")
    members = (await _members(repo, [grove_id]))[grove_id]
    return certificate_data(row, members)


async def certificate_of_planting(
    session: AsyncSession, planting_id: uuid.UUID
) -> CertificateData | None:
    """The grove certificate of a planting a grove made, else None (a planting of one user)."""
    repo = GroveRepository(session)
    grove_id = await repo.grove_of_planting(planting_id)
    if grove_id is None:
        return None
    row = await repo.grove(grove_id)
    assert row is not None
    return certificate_data(row, (await _members(repo, [grove_id]))[grove_id])


def certificate_data(row: RowMapping, members: list[RowMapping]) -> CertificateData:
    shares = tuple(
        (m["display_name"] or m["handle"] or "A Canopy member", int(m["contributed_g"]))
        for m in members
        if m["contributed_g"] > 0
    )
    return CertificateData(
        number=row["certificate_number"],
        holder=row["name"],
        kind=row["item_kind"],
        item=row["item_name"],
        species=row["item_species"],
        unit=row["item_unit"],
        quantity=1,
        region=row["item_region"],
        partner=row["partner_name"],
        cost_g=int(row["target_g"]),
        issued=row["planted_at"],
        status=row["planting_status"],
        planted_on=row["planted_on"],
        lat=row["location_lat"],
        lon=row["location_lon"],
        shares=shares,
    )
