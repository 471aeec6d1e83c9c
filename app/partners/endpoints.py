"""Admin management of partners (/admin/v1/partners) and the partner's own view (/partner/v1/me)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from app.admin import audit
from app.admin.dependencies import AdminDep
from app.core.db import SessionDep
from app.core.deps import ClockDep, KeysDep, RegistryDep, SettingsDep
from app.core.idempotency import IdempotencyDep
from app.core.ids import parse_id
from app.partners import service
from app.partners.dependencies import PartnerDep
from app.partners.keys import forget_partner
from app.partners.schemas import (
    PartnerCreate,
    PartnerCreated,
    PartnerKeyRotated,
    PartnerList,
    PartnerPublic,
    PartnerSelf,
    PartnerUpdate,
)

admin_router = APIRouter(prefix="/admin/v1/partners", tags=["admin"], dependencies=[AdminDep])
partner_router = APIRouter(prefix="/partner/v1", tags=["partner"])


@admin_router.post("", status_code=201, response_model=PartnerCreated)
async def create_partner(
    payload: PartnerCreate,
    session: SessionDep,
    keys: KeysDep,
    settings: SettingsDep,
    clock: ClockDep,
    registry: RegistryDep,
    idem: IdempotencyDep,
) -> Response:
    """Create a partner. The API key and webhook secret are shown in this answer only (and in
    a replay of it with the same ``Idempotency-Key``, kept encrypted for that window).
    ``kinds`` limits the activity kinds it may report (absent: every kind trusting partners)."""
    now = clock.now()

    async def produce() -> PartnerCreated:
        created = await service.create_partner(
            session, keys, settings, payload, now, registry.at(now).rules
        )
        kinds = ", ".join(created.kinds) if created.kinds is not None else "every partner kind"
        await audit.record(
            session,
            action="partner.created",
            target=f"partner:{created.id}",
            summary=f"{created.name!r} with scopes {', '.join(sorted(created.scopes))}; "
            f"kinds: {kinds}",
            at=now,
        )
        return created

    return await idem.run(owner="admin", status_code=201, produce=produce)


@admin_router.patch("/{partner_id}", response_model=PartnerPublic)
async def update_partner(
    partner_id: str,
    payload: PartnerUpdate,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    registry: RegistryDep,
) -> PartnerPublic:
    """Change a partner's ``name``, ``scopes``, ``kinds`` or ``webhook_url`` (only what is sent).
    Every process holding its key sees the change within a second."""
    now = clock.now()
    updated, changed = await service.update_partner(
        session, settings, parse_id(partner_id, "partner"), payload, now, registry.at(now).rules
    )
    forget_partner(updated.id)  # here at once; other processes hear it when this commits
    if changed:
        await audit.record(
            session,
            action="partner.updated",
            target=f"partner:{updated.id}",
            summary=service.describe_update(updated, changed),
            at=now,
        )
    return updated


@admin_router.get("", response_model=PartnerList)
async def list_partners(session: SessionDep) -> PartnerList:
    return PartnerList(partners=await service.list_partners(session))


@admin_router.post("/{partner_id}/rotate-key", response_model=PartnerKeyRotated)
async def rotate_key(
    partner_id: str, session: SessionDep, clock: ClockDep, idem: IdempotencyDep
) -> Response:
    """Issue a new API key; the old one stops working at once. A retry with the same
    ``Idempotency-Key`` answers the same new key instead of rotating again."""
    partner = parse_id(partner_id, "partner")

    async def produce() -> PartnerKeyRotated:
        rotated = await service.rotate_key(session, partner, clock.now())
        forget_partner(rotated.id)  # here at once; other processes hear it when this commits
        await audit.record(
            session,
            action="partner.key_rotated",
            target=f"partner:{partner_id}",
            summary="new API key issued; the old one stopped working",
            at=clock.now(),
        )
        return rotated

    return await idem.run(owner="admin", status_code=200, produce=produce)


@partner_router.get("/me", response_model=PartnerSelf)
async def whoami(partner: PartnerDep) -> PartnerSelf:
    """Which partner this key belongs to and its scopes — handy for checking a key."""
    return PartnerSelf(id=partner.id, name=partner.name, scopes=partner.scopes, kinds=partner.kinds)
