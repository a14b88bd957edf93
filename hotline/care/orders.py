"""Work orders (工单): from the request to the settlement, one locked transaction per move.

The lifecycle is :data:`hotline.care.lifecycle.SERVICE_REQUEST`. Dispatch reuses the router
and the ``offers`` table: an offer for a work order carries ``service_request_id``. A
provider with a bad credit record is never offered government-paid work (subsidy hours or
yuan); it may still take self-paid work. An unanswered offer times out on a durable timer
and goes to the next candidate, and so does a no-show (no check-in within
``no_show_minutes`` of the scheduled time).

Settlement happens at check-out, in the check-out's transaction and under the elder's row
lock: hours come off the month's free hours and yuan off the month's subsidy, one ledger
line per payer (and per funder of a subsidy). An order that would overdraw is refused with
409 unless the remainder is explicitly ``self_pay``; the bill is then split.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.lifecycle import OFFER
from dispatch.ranking import haversine_m
from dispatch.routing import Router, place_offer, store_decision
from hotline.care import timers
from hotline.care.entitlements import balance, entitlements, month_of
from hotline.care.lifecycle import SERVICE_REQUEST
from hotline.clock import Clock, SystemClock
from hotline.core import wire
from hotline.core.care import ServiceRequest as ServiceRequestWire
from hotline.core.care import ServiceRequestDetail, TimelineEntry
from hotline.core.care import SettlementLine as SettlementWire
from hotline.core.lifecycle import TransitionError
from hotline.core.vocab import Payer
from hotline.errors import ConflictError, NotFoundError, ValidationError
from hotline.privacy import mask_name
from hotline.storage.models import (
    AuditEntry,
    Elder,
    Offer,
    RoutingDecision,
    Service,
    ServiceRequest,
    ServiceRequestEvent,
    SettlementLine,
    new_id,
)

log = logging.getLogger(__name__)

GOVERNMENT_PAID = frozenset({Payer.SUBSIDY_HOURS.value, Payer.SUBSIDY_YUAN.value})
OFFER_TIMER = "order.offer"
NO_SHOW_TIMER = "order.no_show"


@dataclass(frozen=True)
class CareSettings:
    checkin_radius_m: float = 300.0
    no_show_minutes: float = 30.0
    offer_timeout_s: float = 600.0
    retry_offer_s: float = 600.0  # nobody could take it: try again after this long
    lead_hours: float = 24.0  # a scheduled order is offered this long before its time
    followup_hours: float = 48.0
    complaint_days: float = 7.0
    review_bottom_pct: float = 5.0
    unanswered_alert: int = 3
    region: str = "yuyao"


@dataclass
class Effects:
    """What a transaction wants announced once it has committed."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    queued: int = 0  # outbox rows: the outbox is woken


Publish = Callable[[dict[str, Any]], Awaitable[None]]
OnComplete = Callable[[AsyncSession, ServiceRequest, datetime, Effects], Awaitable[None]]


async def lock_order(session: AsyncSession, order_id: str) -> ServiceRequest:
    """Lock the order's row first (the same no-op UPDATE as incidents), then load it."""
    result = await session.execute(
        update(ServiceRequest).where(ServiceRequest.id == order_id).values(updated_at=ServiceRequest.updated_at)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFoundError(f"service request {order_id} not found")
    order = await session.get(ServiceRequest, order_id, populate_existing=True)
    assert order is not None
    return order


def lock_row(model: Any) -> Callable[[AsyncSession, str], Awaitable[object]]:
    """A lock of one row of ``model`` by id (SELECT ... FOR UPDATE), for a timer's subject."""

    async def lock(session: AsyncSession, row_id: str) -> object:
        row = await session.get(model, row_id, with_for_update=True)
        if row is None:
            raise NotFoundError(f"{model.__tablename__} {row_id} not found")
        return row

    return lock


async def lock_elder(session: AsyncSession, elder_id: str) -> Elder:
    """Serialise everything that spends an elder's month: balances are read under this lock."""
    await session.execute(update(Elder).where(Elder.id == elder_id).values(name=Elder.name))
    elder = await session.get(Elder, elder_id, populate_existing=True)
    if elder is None:
        raise ValidationError(f"elder {elder_id} does not exist", field="elder_id")
    return elder


def audit(
    session: AsyncSession, actor: str, action: str, target_type: str, target_id: str, *, now: datetime, **detail: Any
) -> None:
    """One row of the audit log, in the caller's transaction: every write of the service loop has one."""
    session.add(
        AuditEntry(at=now, actor=actor, action=action, target_type=target_type, target_id=target_id, detail=detail)
    )


def timeline(session: AsyncSession, order_id: str, kind: str, actor: str, now: datetime, **data: Any) -> None:
    session.add(ServiceRequestEvent(service_request_id=order_id, at=now, kind=kind, actor=actor, data=data))


def order_message(order: ServiceRequest, type_: str = "service_request.updated") -> dict[str, Any]:
    return {"type": type_, "elder_id": order.elder_id, "service_request": wire.dump(ServiceRequestWire, order)}


def alert(kind: str, message: str, now: datetime, **refs: Any) -> dict[str, Any]:
    """A console alert of the service loop (``service.alert``) for dispatchers and supervisors."""
    return {
        "type": "service.alert",
        "audience": ["dispatcher", "supervisor", "admin"],
        "kind": kind,
        "message": message,
        "at": wire.iso(now),
        **refs,
    }


class WorkOrders:
    def __init__(
        self,
        sm: async_sessionmaker[AsyncSession],
        router: Router,
        *,
        settings: CareSettings | None = None,
        clock: Clock | None = None,
        publish: Publish | None = None,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self._sm = sm
        self.router = router
        self.settings = settings or CareSettings()
        self._clock = clock or SystemClock()
        self._publish = publish
        self._on_queued = on_queued
        self.on_complete: list[OnComplete] = []

    def now(self) -> datetime:
        return self._clock.now()

    async def announce(self, fx: Effects) -> None:
        if fx.queued and self._on_queued is not None:
            self._on_queued()
        if self._publish is not None:
            for m in fx.messages:
                await self._publish(m)

    # -- creating ----------------------------------------------------------------------------

    async def open(
        self,
        session: AsyncSession,
        fx: Effects,
        *,
        elder_id: str,
        service: str,
        quantity: float,
        actor: str,
        now: datetime,
        scheduled_for: datetime | None = None,
        payer: str | None = None,
        remainder_payer: str | None = None,
        note: str = "",
        call_id: str | None = None,
        campaign_target_id: int | None = None,
    ) -> ServiceRequest:
        """Open a work order in the caller's transaction, and offer it when it may be offered now."""
        elder = await lock_elder(session, elder_id)
        entry = await session.get(Service, service)
        if entry is None or not entry.active:
            raise ValidationError(f"service {service} is not in the catalogue", field="service")
        if payer is not None and payer not in entry.payers:
            raise ValidationError(f"{service} may be paid by {', '.join(entry.payers)}, not {payer}", field="payer")
        if payer is None:
            payer, why = await self.default_payer(session, elder, entry, quantity, now)
        else:
            why = "chosen by the operator"
        order = ServiceRequest(
            id=new_id("wo"),
            elder_id=elder.id,
            service=service,
            quantity=quantity,
            unit=entry.unit,
            scheduled_for=scheduled_for,
            payer=payer,
            remainder_payer=remainder_payer,
            status=SERVICE_REQUEST.initial,
            call_id=call_id,
            campaign_target_id=campaign_target_id,
            note=note,
            far_check_in=False,
            no_shows=0,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
        session.add(order)
        await session.flush()
        timeline(session, order.id, "requested", actor, now, payer=payer, why=why, call_id=call_id)
        audit(
            session,
            actor,
            "service_request.create",
            "service_request",
            order.id,
            now=now,
            service=service,
            elder_id=elder.id,
        )
        fx.messages.append(order_message(order, "service_request.created"))
        if entry.needs_assessment:
            timeline(session, order.id, "assessment.needed", "system", now)
            fx.messages.append(
                alert("assessment", f"工单 {order.id} 需要上门评估后派单", now, service_request_id=order.id)
            )
        else:
            await self._offer_or_wait(session, order, elder, now, fx)
        log.info(
            "work order opened id=%s service=%s elder=%s payer=%s", order.id, service, mask_name(elder.name), payer
        )
        return order

    async def default_payer(
        self, session: AsyncSession, elder: Elder, entry: Service, quantity: float, now: datetime
    ) -> tuple[str, str]:
        """The entitlement that covers the whole order, hours before yuan (hours are tied to
        home care and lapse at the month's end); otherwise self-pay (or the first payer the
        service allows, for free services)."""
        month = month_of(now)
        ent = await entitlements(session, elder, month)
        if "subsidy_hours" in entry.payers and entry.unit == "hour" and ent.remaining.home_care_hours >= quantity:
            return "subsidy_hours", f"{month} 剩余免费服务 {ent.remaining.home_care_hours:g} 小时"
        cost = quantity * entry.price_yuan
        if "subsidy_yuan" in entry.payers and cost > 0 and ent.remaining.subsidy_yuan >= cost:
            return "subsidy_yuan", f"{month} 剩余服务补贴 {ent.remaining.subsidy_yuan:g} 元"
        if "self_pay" in entry.payers:
            return "self_pay", "没有足以支付的补贴，自费"
        return str(entry.payers[0]), f"{entry.code} 由 {entry.payers[0]} 承担"

    # -- offering ----------------------------------------------------------------------------

    async def _offer_or_wait(
        self, session: AsyncSession, order: ServiceRequest, elder: Elder, now: datetime, fx: Effects
    ) -> None:
        start = now
        if order.scheduled_for is not None:
            start = max(now, order.scheduled_for - timedelta(hours=self.settings.lead_hours))
        if start > now:
            await timers.schedule(session, OFFER_TIMER, order.id, start)
            timeline(session, order.id, "offer.planned", "system", now, at=wire.iso(start))
            return
        await self.offer_next(session, order, elder, now, fx)

    async def offer_next(
        self,
        session: AsyncSession,
        order: ServiceRequest,
        elder: Elder,
        now: datetime,
        fx: Effects,
        *,
        actor: str = "system",
    ) -> Offer | None:
        """Close what is outstanding, rank afresh (never anyone who declined or was offered it
        before), and offer the order to the best candidate. Nobody left: the dispatchers are
        told, and the search runs again after ``retry_offer_s``."""
        outstanding = (
            await session.scalars(select(Offer).where(Offer.service_request_id == order.id, Offer.status == "offered"))
        ).all()
        for o in outstanding:
            OFFER.fire(o, "expire" if o.expires_at <= now else "withdraw")
            o.responded_at, o.updated_at = now, now
            fx.messages.append(self.offer_message(o, order, "offer.closed"))
        tried = list(
            (await session.scalars(select(Offer.provider_id).where(Offer.service_request_id == order.id))).all()
        )
        subsidised = order.payer in GOVERNMENT_PAID
        # Working hours are those of the visit: a station closed tonight may take tomorrow's bath.
        when = max(now, order.scheduled_for) if order.scheduled_for is not None else now
        ranking = await self.router.rank(
            order.service, elder.lat, elder.lon, now=when, exclude=tried, session=session, subsidised=subsidised
        )
        chosen = ranking.best
        decision = await store_decision(session, ranking, chosen, now=now, service_request_id=order.id)
        if chosen is None:
            timeline(session, order.id, "routing.no_candidate", "system", now, decision_id=decision.id)
            fx.messages.append(
                alert(
                    "no_provider", f"工单 {order.id}（{order.service}）暂无可派服务商", now, service_request_id=order.id
                )
            )
            await timers.schedule(session, OFFER_TIMER, order.id, now + timedelta(seconds=self.settings.retry_offer_s))
            return None
        offer = await place_offer(
            session, chosen, decision, now=now, timeout_s=self.settings.offer_timeout_s, service_request_id=order.id
        )
        SERVICE_REQUEST.fire(order, "offer")
        order.updated_at = now
        await timers.schedule(session, OFFER_TIMER, order.id, offer.expires_at)
        timeline(
            session,
            order.id,
            "offer.sent",
            actor,
            now,
            offer_id=offer.id,
            provider_id=offer.provider_id,
            rank=offer.rank,
        )
        fx.messages.append(self.offer_message(offer, order, "offer.created", elder=elder))
        fx.messages.append(order_message(order))
        return offer

    @staticmethod
    def offer_message(o: Offer, order: ServiceRequest, type_: str, *, elder: Elder | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"type": type_, "to_provider": o.provider_id, "offer": wire.dump(wire.Offer, o)}
        if elder is not None:
            # The address, the service and the time: not the medical file.
            out["service_request"] = {
                "id": order.id,
                "service": order.service,
                "quantity": order.quantity,
                "unit": order.unit,
                "scheduled_for": wire.iso(order.scheduled_for),
                "address": elder.address,
                "location": {"lat": elder.lat, "lon": elder.lon},
            }
        return out

    async def on_offer_timer(self, session: AsyncSession, timer: Any, now: datetime) -> timers.After | None:
        """An offer ran out (or a planned or retried search is due): offer the next candidate."""
        order = await lock_order(session, timer.subject_id)
        if not SERVICE_REQUEST.can(order.status, "offer") or (
            order.status == "requested" and await self._needs_assessment(session, order)
        ):
            return None
        fx = Effects()
        elder = await session.get(Elder, order.elder_id)
        assert elder is not None
        await self.offer_next(session, order, elder, now, fx)
        return lambda: self.announce(fx)

    async def on_no_show_timer(self, session: AsyncSession, timer: Any, now: datetime) -> timers.After | None:
        """Nobody checked in within the grace after the scheduled time: a no-show (carer
        non-arrival). The dispatchers are alerted and the order goes to the next provider."""
        order = await lock_order(session, timer.subject_id)
        if order.status not in ("accepted", "scheduled"):
            return None
        fx = Effects()
        missed = order.provider_id
        SERVICE_REQUEST.fire(order, "no_show")
        order.no_shows += 1
        order.provider_id = None
        order.updated_at = now
        taken = await session.scalar(
            select(Offer).where(Offer.service_request_id == order.id, Offer.status == "accepted")
        )
        if taken is not None:
            OFFER.fire(taken, "withdraw")
            taken.reason, taken.updated_at = "no-show", now
            fx.messages.append(self.offer_message(taken, order, "offer.closed"))
        timeline(session, order.id, "no_show", "system", now, provider_id=missed)
        fx.messages.append(
            alert(
                "no_show",
                f"工单 {order.id} 服务商未按时签到（爽约），已改派",
                now,
                service_request_id=order.id,
                provider_id=missed,
            )
        )
        elder = await session.get(Elder, order.elder_id)
        assert elder is not None
        await self.offer_next(session, order, elder, now, fx)
        return lambda: self.announce(fx)

    async def _needs_assessment(self, session: AsyncSession, order: ServiceRequest) -> bool:
        entry = await session.get(Service, order.service)
        return bool(entry and entry.needs_assessment)

    # -- moves ------------------------------------------------------------------------------

    async def transition(
        self,
        order_id: str,
        actor: str,
        action: str,
        move: Callable[[AsyncSession, ServiceRequest, datetime, Effects], Awaitable[None]],
    ) -> ServiceRequestDetail:
        fx = Effects()
        async with self._sm() as session, session.begin():
            order = await lock_order(session, order_id)
            now = self.now()
            before = order.status
            await move(session, order, now, fx)
            order.updated_at = now
            audit(
                session,
                actor,
                f"service_request.{action}",
                "service_request",
                order.id,
                now=now,
                before=before,
                after=order.status,
            )
            fx.messages.append(order_message(order))
            out = await self.detail(session, order)
        await self.announce(fx)
        return out

    async def assess(self, order_id: str, actor: str, *, approved: bool, note: str | None) -> ServiceRequestDetail:
        async def move(session: AsyncSession, order: ServiceRequest, now: datetime, fx: Effects) -> None:
            if approved:
                SERVICE_REQUEST.fire(order, "assess")
                order.assessment = {"approved": True, "note": note, "by": actor, "at": wire.iso(now)}
                timeline(session, order.id, "assessed", actor, now, note=note)
                elder = await session.get(Elder, order.elder_id)
                assert elder is not None
                await self._offer_or_wait(session, order, elder, now, fx)
            else:
                SERVICE_REQUEST.fire(order, "cancel")
                order.assessment = {"approved": False, "note": note, "by": actor, "at": wire.iso(now)}
                await self._close(session, order, now, fx, reason=f"assessment: {note or 'not approved'}")

        return await self.transition(order_id, actor, "assess", move)

    async def dispatch(self, order_id: str, actor: str) -> ServiceRequestDetail:
        """A dispatcher asks for the next candidate now (after a no-candidate alert, say)."""

        async def move(session: AsyncSession, order: ServiceRequest, now: datetime, fx: Effects) -> None:
            guard = await self._needs_assessment(session, order)
            SERVICE_REQUEST.next_state(order.status, "offer", subject=order.id)
            if (why := SERVICE_REQUEST.guards["offer"](order, guard)) is not None:
                raise TransitionError("service request", order.status, "offer", subject=order.id, why=why)
            elder = await session.get(Elder, order.elder_id)
            assert elder is not None
            if await self.offer_next(session, order, elder, now, fx, actor=actor) is None:
                raise ConflictError("no provider can take this work order now; see its routing decisions")

        return await self.transition(order_id, actor, "dispatch", move)

    async def respond(
        self, offer_id: str, provider_id: str, actor: str, *, accept: bool, reason: str | None
    ) -> tuple[Offer, ServiceRequestDetail]:
        order_id = await self._offer_order(offer_id, provider_id)
        box: dict[str, Offer] = {}

        async def move(session: AsyncSession, order: ServiceRequest, now: datetime, fx: Effects) -> None:
            offer = await session.get(Offer, offer_id, populate_existing=True)
            assert offer is not None
            if accept:
                OFFER.fire(offer, "accept", now)
                SERVICE_REQUEST.fire(order, "accept")
                order.provider_id = provider_id
                await timers.cancel(session, OFFER_TIMER, order.id)
                when = order.scheduled_for or now + timedelta(minutes=offer.eta_min or 30)
                order.scheduled_for = when
                SERVICE_REQUEST.fire(order, "schedule")
                await timers.schedule(
                    session, NO_SHOW_TIMER, order.id, when + timedelta(minutes=self.settings.no_show_minutes)
                )
                timeline(session, order.id, "offer.accepted", actor, now, offer_id=offer.id, provider_id=provider_id)
                timeline(session, order.id, "scheduled", actor, now, scheduled_for=wire.iso(when))
            else:
                OFFER.fire(offer, "decline", now)
                offer.reason = reason
                timeline(session, order.id, "offer.declined", actor, now, offer_id=offer.id, reason=reason)
                elder = await session.get(Elder, order.elder_id)
                assert elder is not None
                offer.responded_at, offer.updated_at = now, now
                await self.offer_next(session, order, elder, now, fx)
            offer.responded_at, offer.updated_at = now, now
            fx.messages.append(self.offer_message(offer, order, "offer.updated"))
            box["offer"] = offer

        out = await self.transition(order_id, actor, "accept" if accept else "decline", move)
        return box["offer"], out

    async def reschedule(
        self, order_id: str, actor: str, *, scheduled_for: datetime, provider_id: str | None
    ) -> ServiceRequestDetail:
        async def move(session: AsyncSession, order: ServiceRequest, now: datetime, fx: Effects) -> None:
            if provider_id is not None and order.provider_id != provider_id:
                raise NotFoundError(f"service request {order.id} not found")
            SERVICE_REQUEST.fire(order, "schedule")
            order.scheduled_for = scheduled_for
            await timers.schedule(
                session, NO_SHOW_TIMER, order.id, scheduled_for + timedelta(minutes=self.settings.no_show_minutes)
            )
            timeline(session, order.id, "scheduled", actor, now, scheduled_for=wire.iso(scheduled_for))

        return await self.transition(order_id, actor, "schedule", move)

    async def check_in(
        self, order_id: str, provider_id: str, actor: str, *, lat: float, lon: float
    ) -> ServiceRequestDetail:
        async def move(session: AsyncSession, order: ServiceRequest, now: datetime, fx: Effects) -> None:
            self._mine(order, provider_id)
            SERVICE_REQUEST.fire(order, "check_in")
            elder = await session.get(Elder, order.elder_id)
            assert elder is not None
            distance = haversine_m(lat, lon, elder.lat, elder.lon)
            far = distance > self.settings.checkin_radius_m
            order.check_in = {"at": wire.iso(now), "lat": lat, "lon": lon, "distance_m": round(distance), "far": far}
            order.far_check_in = far
            await timers.cancel(session, NO_SHOW_TIMER, order.id)
            timeline(session, order.id, "checked_in", actor, now, distance_m=round(distance), far=far)
            if far:
                fx.messages.append(
                    alert(
                        "far_check_in",
                        f"工单 {order.id} 签到位置距老人住址 {distance:.0f} 米"
                        f"（超过 {self.settings.checkin_radius_m:g} 米）",
                        now,
                        service_request_id=order.id,
                        provider_id=provider_id,
                    )
                )

        return await self.transition(order_id, actor, "check_in", move)

    async def check_out(
        self,
        order_id: str,
        provider_id: str,
        actor: str,
        *,
        lat: float,
        lon: float,
        quantity: float,
        remainder_payer: str | None,
    ) -> ServiceRequestDetail:
        async def move(session: AsyncSession, order: ServiceRequest, now: datetime, fx: Effects) -> None:
            self._mine(order, provider_id)
            SERVICE_REQUEST.next_state(order.status, "check_out", subject=order.id)
            if remainder_payer is not None:
                order.remainder_payer = remainder_payer
            await self._settle(session, order, quantity, now)
            SERVICE_REQUEST.fire(order, "check_out")
            elder = await session.get(Elder, order.elder_id)
            assert elder is not None
            distance = haversine_m(lat, lon, elder.lat, elder.lon)
            far = distance > self.settings.checkin_radius_m
            order.check_out = {
                "at": wire.iso(now),
                "lat": lat,
                "lon": lon,
                "distance_m": round(distance),
                "far": far,
                "quantity": quantity,
            }
            taken = await session.scalar(
                select(Offer).where(Offer.service_request_id == order.id, Offer.status == "accepted")
            )
            if taken is not None:
                OFFER.fire(taken, "done")
                taken.updated_at = now
                fx.messages.append(self.offer_message(taken, order, "offer.closed"))
            order.closed_at = now
            timeline(session, order.id, "completed", actor, now, quantity=quantity)
            for hook in self.on_complete:
                await hook(session, order, now, fx)

        return await self.transition(order_id, actor, "check_out", move)

    async def _settle(self, session: AsyncSession, order: ServiceRequest, quantity: float, now: datetime) -> None:
        """Write the ledger lines; 409 when the entitlement cannot cover it and nobody pays the rest."""
        elder = await lock_elder(session, order.elder_id)
        entry = await session.get(Service, order.service)
        assert entry is not None
        assert order.provider_id is not None
        month = month_of(now)
        price = entry.price_yuan
        payer = order.payer or "self_pay"
        lines: list[SettlementLine] = []

        def line(
            payer: str, *, funder: str = "", rule: str | None = None, hours: float = 0, qty: float, yuan: float
        ) -> None:
            lines.append(
                SettlementLine(
                    service_request_id=order.id,
                    elder_id=elder.id,
                    provider_id=order.provider_id,
                    month=month,
                    payer=payer,
                    funder=funder,
                    rule=rule,
                    hours=round(hours, 4),
                    quantity=round(qty, 4),
                    yuan=round(yuan, 2),
                    at=now,
                )
            )

        if payer in GOVERNMENT_PAID:
            ent, result = await balance(session, elder, month)
            if payer == "subsidy_hours":
                covered = min(quantity, ent.remaining.home_care_hours)
                short, unit_text = quantity - covered, f"{ent.remaining.home_care_hours:g} 小时"
                grants = [g for g in result.grants if g.benefit == "home_care_hours"]
            else:
                covered_yuan = min(quantity * price, ent.remaining.subsidy_yuan)
                covered = covered_yuan / price if price else 0.0
                short, unit_text = quantity - covered, f"{ent.remaining.subsidy_yuan:g} 元"
                grants = [g for g in result.grants if g.benefit == "subsidy_yuan"]
            if short > 1e-9 and order.remainder_payer != "self_pay":
                raise ConflictError(
                    f"the order would overdraw {month}'s {payer}: {unit_text} left for {quantity:g} {order.unit}; "
                    "check out with remainder_payer self_pay to split the bill"
                )
            total = sum(g.amount for g in grants) or 1.0
            if covered > 1e-9:
                for g in grants:  # one line per funder, in the grants' shares
                    share = g.amount / total
                    hours = covered * share if payer == "subsidy_hours" else 0.0
                    line(
                        payer,
                        funder=g.payer,
                        rule=g.rule,
                        hours=hours,
                        qty=covered * share,
                        yuan=covered * share * price,
                    )
            if short > 1e-9:
                line("self_pay", qty=short, yuan=short * price)
        else:
            line(payer, qty=quantity, yuan=quantity * price)
        session.add_all(lines)
        order.settled_month = month

    async def cancel(self, order_id: str, actor: str, *, reason: str) -> ServiceRequestDetail:
        async def move(session: AsyncSession, order: ServiceRequest, now: datetime, fx: Effects) -> None:
            SERVICE_REQUEST.fire(order, "cancel")
            await self._close(session, order, now, fx, reason=reason)

        return await self.transition(order_id, actor, "cancel", move)

    async def refer(
        self, session: AsyncSession, order: ServiceRequest, now: datetime, fx: Effects, *, reason: str
    ) -> None:
        SERVICE_REQUEST.fire(order, "refer")
        await self._close(session, order, now, fx, reason=reason)

    async def _close(
        self, session: AsyncSession, order: ServiceRequest, now: datetime, fx: Effects, *, reason: str
    ) -> None:
        for o in (
            await session.scalars(
                select(Offer).where(Offer.service_request_id == order.id, Offer.status.in_(("offered", "accepted")))
            )
        ).all():
            OFFER.fire(o, "withdraw")
            o.responded_at, o.updated_at = o.responded_at or now, now
            fx.messages.append(self.offer_message(o, order, "offer.closed"))
        await timers.cancel(session, OFFER_TIMER, order.id)
        await timers.cancel(session, NO_SHOW_TIMER, order.id)
        order.closed_at, order.closed_reason = now, reason
        timeline(session, order.id, order.status, "system", now, reason=reason)

    @staticmethod
    def _mine(order: ServiceRequest, provider_id: str) -> None:
        if order.provider_id != provider_id:
            raise NotFoundError(f"service request {order.id} not found")

    async def _offer_order(self, offer_id: str, provider_id: str) -> str:
        async with self._sm() as session:
            row = (
                await session.execute(select(Offer.service_request_id, Offer.provider_id).where(Offer.id == offer_id))
            ).first()
        if row is None or row[1] != provider_id or row[0] is None:
            raise NotFoundError(f"offer {offer_id} not found")
        return str(row[0])

    # -- reading ----------------------------------------------------------------------------

    async def detail(self, session: AsyncSession, order: ServiceRequest) -> ServiceRequestDetail:
        events = (
            await session.scalars(
                select(ServiceRequestEvent)
                .where(ServiceRequestEvent.service_request_id == order.id)
                .order_by(ServiceRequestEvent.id)
            )
        ).all()
        offers = (
            await session.scalars(
                select(Offer).where(Offer.service_request_id == order.id).order_by(Offer.offered_at, Offer.id)
            )
        ).all()
        lines = (
            await session.scalars(
                select(SettlementLine).where(SettlementLine.service_request_id == order.id).order_by(SettlementLine.id)
            )
        ).all()
        decisions = (
            await session.scalars(
                select(RoutingDecision)
                .where(RoutingDecision.service_request_id == order.id)
                .order_by(RoutingDecision.id)
            )
        ).all()
        base = ServiceRequestWire.model_validate(order).model_dump()
        elder = await session.get(Elder, order.elder_id)
        assert elder is not None
        return ServiceRequestDetail.model_validate(
            {
                **base,
                "site": {"address": elder.address, "lat": elder.lat, "lon": elder.lon},
                "timeline": [TimelineEntry.model_validate(e) for e in events],
                "offers": [wire.Offer.model_validate(o) for o in offers],
                "settlement": [SettlementWire.model_validate(x) for x in lines],
                "decisions": [wire.RoutingDecision.model_validate(d) for d in decisions],
            }
        )

    async def get(self, order_id: str) -> ServiceRequestDetail:
        async with self._sm() as session:
            order = await session.get(ServiceRequest, order_id)
            if order is None:
                raise NotFoundError(f"service request {order_id} not found")
            return await self.detail(session, order)

    async def create(self, *, actor: str, **kwargs: Any) -> ServiceRequestDetail:
        fx = Effects()
        async with self._sm() as session, session.begin():
            order = await self.open(session, fx, actor=actor, now=self.now(), **kwargs)
            out = await self.detail(session, order)
        await self.announce(fx)
        return out
