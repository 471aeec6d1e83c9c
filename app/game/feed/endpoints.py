"""/v1/feed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.accounts.dependencies import CurrentUser
from app.core.db import SessionDep
from app.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, split_page
from app.game.feed import service
from app.game.schemas import Actor, FeedItemOut, FeedPage

router = APIRouter(prefix="/v1/feed", tags=["feed"])


@router.get("", response_model=FeedPage)
async def get_feed(
    user: CurrentUser,
    session: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> FeedPage:
    """What happened to you, newest first: collections from you, waterings, friend requests,
    your trees."""
    rows = await service.read(session, user.id, decode_cursor(cursor), limit)
    page, next_cursor = split_page(rows, limit, lambda r: r.id)
    return FeedPage(
        items=[
            FeedItemOut(
                id=str(r.id),
                type=r.type,
                actor=Actor(id=r.actor_id, handle=r.actor_handle) if r.actor_id else None,
                amount_g=r.amount_g,
                ref=r.ref,
                data=r.data,
                at=r.at,
            )
            for r in page
        ],
        next_cursor=next_cursor,
    )
