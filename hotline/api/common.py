"""What the handlers share: the audit trail, paged listings and the services they need."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from hotline.api.keys import SERVICES
from hotline.api.models import PageQuery
from hotline.auth import Principal
from hotline.core.wire import M, Page
from hotline.errors import HotlineError
from hotline.storage.models import AuditEntry

T = TypeVar("T")


def running(service: T | None, error: HotlineError) -> T:
    """``service`` if this instance runs it; otherwise ``error``, which names what is missing."""
    if service is None:
        raise error
    return service


def audit(
    session: AsyncSession, who: Principal, action: str, target_type: str, target_id: str | None, **detail: Any
) -> None:
    session.add(
        AuditEntry(actor=who.user_id, action=action, target_type=target_type, target_id=target_id, detail=detail)
    )


async def listing(request: web.Request, stmt: Select[Any], query: PageQuery, convert: Callable[[Any], M]) -> Page[M]:
    """One page of ``stmt``, each row through ``convert`` (a wire model's ``model_validate``),
    with the total of every match."""
    async with request.app[SERVICES].sm() as session:
        total = await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
        rows = (await session.scalars(stmt.limit(query.limit).offset(query.offset))).all()
        return Page(items=[convert(r) for r in rows], total=int(total or 0))
