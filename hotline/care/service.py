"""The service loop, assembled: work orders, quality, campaigns and their timers, and the
few operations that span them (a consultation, a ratings run)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.notify.channels import CallPlacer as Dialer
from dispatch.ranking import LOCAL_TZ
from dispatch.routing import Router
from hotline.care import ratings
from hotline.care.advisor import advise
from hotline.care.campaigns import Campaigns
from hotline.care.orders import (
    NO_SHOW_TIMER,
    OFFER_TIMER,
    CareSettings,
    Effects,
    Publish,
    WorkOrders,
    audit,
    lock_order,
    lock_row,
)
from hotline.care.quality import COMPLAINT_TIMER, FOLLOWUP_TIMER, Quality
from hotline.care.timers import After, CareTimers, schedule
from hotline.clock import Clock, SystemClock
from hotline.core.care import Consultation
from hotline.errors import NotFoundError
from hotline.storage.models import CareTimer, Complaint, Elder, FollowUp, new_id
from hotline.storage.models import Consultation as ConsultationRow

RATINGS_TIMER = "ratings.recompute"
RATINGS_AT_HOUR = 2  # local time: a quiet hour


def next_ratings_run(now: datetime) -> datetime:
    local = now.astimezone(LOCAL_TZ)
    run = local.replace(hour=RATINGS_AT_HOUR, minute=0, second=0, microsecond=0)
    if run <= local:
        run += timedelta(days=1)
    return run


@dataclass
class CareService:
    sm: async_sessionmaker[AsyncSession]
    orders: WorkOrders
    quality: Quality
    campaigns: Campaigns
    timers: CareTimers
    router: Router
    clock: Clock

    @classmethod
    def build(
        cls,
        sm: async_sessionmaker[AsyncSession],
        router: Router,
        *,
        settings: CareSettings,
        publish: Publish | None = None,
        on_queued: Callable[[], None] | None = None,
        dialer: Dialer | None = None,
        clock: Clock | None = None,
        sweep_s: float = 1.0,
        campaign_tick_s: float = 2.0,
    ) -> CareService:
        clock = clock or SystemClock()
        wake = on_queued
        orders = WorkOrders(sm, router, settings=settings, clock=clock, publish=publish, on_queued=wake)
        quality = Quality(sm, orders, settings=settings, clock=clock, voice=dialer is not None)
        campaigns = Campaigns(
            sm, orders, dialer=dialer, settings=settings, clock=clock, tick_s=campaign_tick_s, on_queued=wake
        )
        t = CareTimers(sm, clock=clock, sweep_s=sweep_s)
        t.on(OFFER_TIMER, orders.on_offer_timer, lock=lock_order)
        t.on(NO_SHOW_TIMER, orders.on_no_show_timer, lock=lock_order)
        t.on(FOLLOWUP_TIMER, quality.on_follow_up_due, lock=lock_row(FollowUp))
        t.on(COMPLAINT_TIMER, quality.on_complaint_deadline, lock=lock_row(Complaint))
        service = cls(sm, orders, quality, campaigns, t, router, clock)
        t.on(RATINGS_TIMER, service._ratings_due)
        return service

    async def start(self) -> None:
        """Arm the daily ratings run unless it is armed (instances starting together: one wins)."""
        async with self.sm() as session:
            try:
                async with session.begin():
                    armed = await session.scalar(
                        select(CareTimer.id).where(CareTimer.kind == RATINGS_TIMER, CareTimer.state == "pending")
                    )
                    if armed is None:
                        await schedule(session, RATINGS_TIMER, "all", next_ratings_run(self.clock.now()))
            except IntegrityError:
                pass  # another instance armed it first

    async def _ratings_due(self, session: AsyncSession, timer: CareTimer, now: datetime) -> After | None:
        await ratings.recompute(session, now)
        await schedule(session, RATINGS_TIMER, "all", next_ratings_run(now))
        return None

    async def recompute_ratings(self) -> tuple[str, int]:
        async with self.sm() as session, session.begin():
            return await ratings.recompute(session, self.clock.now())

    async def consult(self, elder_id: str, needs: list[str], advisor: str) -> Consultation:
        fx = Effects()
        async with self.sm() as session, session.begin():
            elder = await session.get(Elder, elder_id)
            if elder is None:
                raise NotFoundError(f"elder {elder_id} not found")
            now = self.clock.now()
            advised = await advise(session, self.orders, self.router, elder, needs=needs, now=now)
            row = ConsultationRow(
                id=new_id("cns"),
                elder_id=elder.id,
                needs=list(needs),
                result={
                    "services": [a.model_dump(mode="json") for a in advised],
                    "method": "entitlement-paid services first, then the needs in the order stated; "
                    "providers in the router's documented order (dispatch/ranking.py)",
                },
                advisor=advisor,
                created_at=now,
            )
            session.add(row)
            await session.flush()
            fu = await self.quality.schedule_follow_up(session, fx, elder=elder, now=now, consultation_id=row.id)
            row.follow_up_id = fu.id
            audit(session, advisor, "consultation.create", "consultation", row.id, now=now, needs=list(needs))
            out = Consultation.model_validate(row)
        await self.orders.announce(fx)
        return out
