"""The care advisor (养老顾问): an even-handed list of services and providers for stated needs.

The order depends only on the elder's needs, their entitlements and the documented ranking
(:mod:`dispatch.ranking`): services the month's entitlement pays for come first, then the
rest in the order the needs were stated; within a service, providers in the router's order,
each with the ranking's own reasons. Nothing else (no commission, no sponsor) is an input.
Every consultation is stored with the list as given, and a follow-up is scheduled.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.routing import Router
from hotline.care.orders import GOVERNMENT_PAID, WorkOrders
from hotline.core.care import AdvisedProvider, AdvisedService
from hotline.errors import ValidationError
from hotline.storage.models import Elder, Service

MAX_PROVIDERS = 3


async def advise(
    session: AsyncSession, orders: WorkOrders, router: Router, elder: Elder, *, needs: list[str], now: datetime
) -> list[AdvisedService]:
    out: list[tuple[tuple[int, int], AdvisedService]] = []
    for index, need in enumerate(dict.fromkeys(needs)):
        entry = await session.get(Service, need)
        if entry is None or not entry.active:
            raise ValidationError(f"{need} is not a service in the catalogue", field="needs")
        # One unit of the service: what would pay for it now.
        payer, why = await orders.default_payer(session, elder, entry, 1.0, now)
        ranking = await router.rank(
            entry.code, elder.lat, elder.lon, now=now, session=session, subsidised=payer in GOVERNMENT_PAID
        )
        providers = [
            AdvisedProvider(
                provider_id=c["provider_id"], name=c["name"], rank=c["rank"], eta_min=c["eta_min"], reasons=c["reasons"]
            )
            for c in ranking.candidates[:MAX_PROVIDERS]
        ]
        advised = AdvisedService(
            service=entry.code,
            name_zh=entry.name_zh,
            need=need,
            paid_by=payer,
            why_paid=why,
            unit=entry.unit,
            price_yuan=entry.price_yuan,
            providers=providers,
        )
        out.append(((0 if payer in GOVERNMENT_PAID else 1, index), advised))
    return [a for _, a in sorted(out, key=lambda x: x[0])]
