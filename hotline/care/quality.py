"""Follow-up calls (回访), complaints (投诉), referrals (转介) and quality reviews.

- Completing a work order schedules a follow-up, due within ``followup_hours``. With
  telephony configured the call is placed at once through the outbox (purpose ``follow_up``,
  to the elder); the answered call joins the 12349 queue and the operator records the
  result. Without telephony it is an operator task (``GET /api/v1/follow-ups?status=due``).
  A follow-up still open at its due time turns ``overdue`` and the supervisors are told.
- A score of 2 or less opens a quality review against the provider; so does an upheld complaint.
- A complaint has a handler and a deadline (``complaint_days``); at the deadline an open
  complaint is escalated to the supervisors, once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.notify.outbox import enqueue
from hotline.care import timers
from hotline.care.lifecycle import COMPLAINT, FOLLOW_UP, REFERRAL
from hotline.care.orders import CareSettings, Effects, WorkOrders, alert, audit, lock_order
from hotline.clock import Clock, SystemClock
from hotline.core import care as cw
from hotline.errors import NotFoundError, ValidationError
from hotline.storage.models import (
    Complaint,
    Elder,
    FollowUp,
    Provider,
    QualityReview,
    Referral,
    ServiceRequest,
    new_id,
)

FOLLOWUP_TIMER = "followup.due"
COMPLAINT_TIMER = "complaint.deadline"
LOW_SCORE = 2


class Quality:
    def __init__(
        self,
        sm: async_sessionmaker[AsyncSession],
        orders: WorkOrders,
        *,
        settings: CareSettings | None = None,
        clock: Clock | None = None,
        voice: bool = False,
    ) -> None:
        self._sm = sm
        self.orders = orders
        self.settings = settings or CareSettings()
        self._clock = clock or SystemClock()
        self.voice = voice  # telephony places follow-up calls
        orders.on_complete.append(self.after_completion)

    def now(self) -> datetime:
        return self._clock.now()

    # -- follow-ups ------------------------------------------------------------------------

    async def schedule_follow_up(
        self,
        session: AsyncSession,
        fx: Effects,
        *,
        elder: Elder,
        now: datetime,
        service_request: ServiceRequest | None = None,
        consultation_id: str | None = None,
    ) -> FollowUp:
        fu = FollowUp(
            id=new_id("fu"),
            elder_id=elder.id,
            service_request_id=service_request.id if service_request else None,
            consultation_id=consultation_id,
            provider_id=service_request.provider_id if service_request else None,
            status=FOLLOW_UP.initial,
            due_at=now + timedelta(hours=self.settings.followup_hours),
            created_at=now,
        )
        session.add(fu)
        await session.flush()
        await timers.schedule(session, FOLLOWUP_TIMER, fu.id, fu.due_at)
        if self.voice and elder.phones:
            fu.call_key = f"followup:{fu.id}"
            fx.queued += int(
                await enqueue(
                    session,
                    key=fu.call_key,
                    channel="voice",
                    target=str(elder.phones[0]),
                    event_type="follow_up.call",
                    payload={"purpose": "follow_up", "follow_up_id": fu.id, "elder_id": elder.id},
                    now=now,
                    elder_id=elder.id,
                )
            )
        return fu

    async def after_completion(self, session: AsyncSession, order: ServiceRequest, now: datetime, fx: Effects) -> None:
        elder = await session.get(Elder, order.elder_id)
        assert elder is not None
        await self.schedule_follow_up(session, fx, elder=elder, now=now, service_request=order)

    async def on_follow_up_due(self, session: AsyncSession, timer: Any, now: datetime) -> timers.After | None:
        fu = await session.get(FollowUp, timer.subject_id, with_for_update=True)
        if fu is None or not FOLLOW_UP.fire_if_possible(fu, "overdue"):
            return None
        fx = Effects(
            messages=[
                alert(
                    "follow_up_overdue",
                    f"回访 {fu.id} 已超过 {self.settings.followup_hours:g} 小时未完成",
                    now,
                    follow_up_id=fu.id,
                    elder_id=fu.elder_id,
                )
            ]
        )
        return lambda: self.orders.announce(fx)

    async def record(
        self, follow_up_id: str, actor: str, *, reached: bool, score: int | None, comment: str | None
    ) -> tuple[cw.FollowUp, cw.QualityReview | None]:
        if reached and score is None:
            raise ValidationError("a follow-up that reached the elder needs a score", field="score")
        fx = Effects()
        async with self._sm() as session, session.begin():
            fu = await session.get(FollowUp, follow_up_id, with_for_update=True)
            if fu is None:
                raise NotFoundError(f"follow-up {follow_up_id} not found")
            now = self.now()
            review = None
            fu.reached, fu.comment = reached, comment
            if reached:
                FOLLOW_UP.fire(fu, "record")
                fu.score, fu.done_by, fu.done_at = score, actor, now
                await timers.cancel(session, FOLLOWUP_TIMER, fu.id)
                if score is not None and score <= LOW_SCORE and fu.provider_id is not None:
                    review = await open_review(
                        session,
                        fx,
                        fu.provider_id,
                        now=now,
                        source="follow_up",
                        ref_id=fu.id,
                        reason=f"回访评分 {score} 分：{comment or '无说明'}",
                        follow_up_id=fu.id,
                    )
            audit(session, actor, "follow_up.record", "follow_up", fu.id, now=now, reached=reached, score=score)
            out = cw.FollowUp.model_validate(fu), cw.QualityReview.model_validate(review) if review else None
        await self.orders.announce(fx)
        return out

    # -- complaints ------------------------------------------------------------------------

    async def complain(self, actor: str, **fields: Any) -> cw.Complaint:
        async with self._sm() as session, session.begin():
            now = self.now()
            if fields.get("service_request_id"):
                order = await session.get(ServiceRequest, fields["service_request_id"])
                if order is None:
                    raise ValidationError("no such service request", field="service_request_id")
                if fields.get("elder_id") is None:
                    fields["elder_id"] = order.elder_id
                if fields.get("provider_id") is None:
                    fields["provider_id"] = order.provider_id
            if fields.get("elder_id") is not None and await session.get(Elder, fields["elder_id"]) is None:
                raise ValidationError(f"elder {fields['elder_id']} does not exist", field="elder_id")
            if fields.get("provider_id") is not None and await session.get(Provider, fields["provider_id"]) is None:
                raise ValidationError(f"provider {fields['provider_id']} does not exist", field="provider_id")
            c = Complaint(
                id=new_id("cpl"),
                **fields,
                status=COMPLAINT.initial,
                deadline_at=now + timedelta(days=self.settings.complaint_days),
                created_by=actor,
                created_at=now,
                updated_at=now,
            )
            session.add(c)
            await session.flush()
            await timers.schedule(session, COMPLAINT_TIMER, c.id, c.deadline_at)
            audit(session, actor, "complaint.create", "complaint", c.id, now=now)
            return cw.Complaint.model_validate(c)

    async def update_complaint(
        self,
        complaint_id: str,
        actor: str,
        *,
        status: str | None,
        handler: str | None,
        finding: str | None,
        resolution: str | None,
    ) -> cw.Complaint:
        fx = Effects()
        async with self._sm() as session, session.begin():
            c = await session.get(Complaint, complaint_id, with_for_update=True)
            if c is None:
                raise NotFoundError(f"complaint {complaint_id} not found")
            now = self.now()
            if handler is not None:
                c.handler = handler
            if finding is not None:
                c.finding = finding
            if resolution is not None:
                c.resolution = resolution
            if status is not None and status != c.status:
                if status == "closed" and not (resolution or c.resolution):
                    raise ValidationError("closing a complaint needs its resolution", field="resolution")
                COMPLAINT.fire(c, status)
                if status in ("upheld", "rejected"):
                    c.decided_at, c.decision = now, status
                if status == "closed":
                    c.closed_at = now
                    await timers.cancel(session, COMPLAINT_TIMER, c.id)
                if status == "upheld" and c.provider_id is not None:
                    await open_review(
                        session,
                        fx,
                        c.provider_id,
                        now=now,
                        source="complaint",
                        ref_id=c.id,
                        reason=f"投诉成立：{c.category}",
                        complaint_id=c.id,
                    )
            c.updated_at = now
            audit(session, actor, "complaint.update", "complaint", c.id, now=now, status=c.status)
            out = cw.Complaint.model_validate(c)
        await self.orders.announce(fx)
        return out

    async def on_complaint_deadline(self, session: AsyncSession, timer: Any, now: datetime) -> timers.After | None:
        c = await session.get(Complaint, timer.subject_id, with_for_update=True)
        if c is None or c.status == "closed" or c.escalated_at is not None:
            return None
        c.escalated_at, c.updated_at = now, now
        fx = Effects(
            messages=[
                alert(
                    "complaint_overdue",
                    f"投诉 {c.id} 已超过 {self.settings.complaint_days:g} 天办理时限，请督办",
                    now,
                    complaint_id=c.id,
                    elder_id=c.elder_id,
                )
            ]
        )
        return lambda: self.orders.announce(fx)

    # -- referrals --------------------------------------------------------------------------

    async def refer(
        self, actor: str, *, elder_id: str, agency: str, reason: str, service_request_id: str | None
    ) -> cw.Referral:
        fx = Effects()
        async with self._sm() as session, session.begin():
            now = self.now()
            if service_request_id is not None:
                if await session.get(ServiceRequest, service_request_id) is None:
                    raise ValidationError(
                        f"service request {service_request_id} does not exist", field="service_request_id"
                    )
                order = await lock_order(session, service_request_id)
                if order.elder_id != elder_id:
                    raise ValidationError("the service request is another elder's", field="service_request_id")
                await self.orders.refer(session, order, now, fx, reason=f"referred to {agency}")
            elif await session.get(Elder, elder_id) is None:
                raise ValidationError(f"elder {elder_id} does not exist", field="elder_id")
            r = Referral(
                id=new_id("ref"),
                elder_id=elder_id,
                service_request_id=service_request_id,
                agency=agency,
                reason=reason,
                status=REFERRAL.initial,
                created_by=actor,
                created_at=now,
                updated_at=now,
            )
            session.add(r)
            await session.flush()
            audit(session, actor, "referral.create", "referral", r.id, now=now, agency=agency)
            out = cw.Referral.model_validate(r)
        await self.orders.announce(fx)
        return out

    async def update_referral(
        self, referral_id: str, actor: str, *, status: str | None, outcome: str | None
    ) -> cw.Referral:
        async with self._sm() as session, session.begin():
            r = await session.get(Referral, referral_id, with_for_update=True)
            if r is None:
                raise NotFoundError(f"referral {referral_id} not found")
            now = self.now()
            if outcome is not None:
                r.outcome = outcome
            if status is not None and status != r.status:
                REFERRAL.fire(r, status)
                if status == "closed":
                    r.closed_at = now
            r.updated_at = now
            audit(session, actor, "referral.update", "referral", r.id, now=now, status=r.status)
            return cw.Referral.model_validate(r)


async def open_review(
    session: AsyncSession,
    fx: Effects,
    provider_id: str,
    *,
    now: datetime,
    source: str,
    ref_id: str,
    reason: str,
    **refs: str,
) -> QualityReview:
    """A quality review against the provider, and the supervisors told (the ratings count them)."""
    review = QualityReview(
        provider_id=provider_id, source=source, ref_id=ref_id, reason=reason, status="open", created_at=now
    )
    session.add(review)
    await session.flush()
    fx.messages.append(
        alert("quality_review", f"服务商 {provider_id} 已启动质量复核：{reason}", now, provider_id=provider_id, **refs)
    )
    return review
