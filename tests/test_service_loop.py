"""The service loop in one process: work orders from request to settlement, no-shows, far
check-ins, follow-ups and reviews, ratings that change the dispatch order, bad credit,
complaints, referrals, the care advisor and the reports (issue 13). The database and Redis
are real; time is an injected clock, and the durable timers fire when the test moves it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch import hooks
from dispatch.escalation import WATCHES
from dispatch.routing import GeoIndex, GeoSync, Router, RoutingPolicy
from hotline.care import ratings, reports
from hotline.care.entitlements import entitlements, install_defaults
from hotline.care.orders import CareSettings
from hotline.care.service import CareService
from hotline.core.care import ServiceRequestDetail
from hotline.core.lifecycle import TransitionError
from hotline.errors import ConflictError, ValidationError
from hotline.storage.models import (
    CareTimer,
    Elder,
    EmergencyContact,
    FollowUp,
    Offer,
    Provider,
    QualityReview,
    ServiceRequest,
    SettlementLine,
)
from tests.conftest import REDIS_URL
from tests.factories import elder as make_elder
from tests.test_dispatch import HOME, T0, ManualClock, north

MONTH = "2026-11"  # T0 is Monday 23 November 2026, 10:00 in Ningbo (UTC+8)


@dataclass
class World:
    sm: async_sessionmaker[AsyncSession]
    clock: ManualClock
    sync: GeoSync
    care: CareService
    published: list[dict[str, Any]]

    async def provider(self, name: str, metres: float, **over: Any) -> str:
        lat, lon = north(metres)
        fields: dict[str, Any] = {
            "name": name,
            "kind": "service_station",
            "services": ["bathing", "cleaning", "meals", "visit", "home_adaptation", "daily_care"],
            "lat": lat,
            "lon": lon,
            "service_radius_m": 20_000,
            "capacity": 5,
            "rating": 4.0,
            "availability": "available",
        }
        fields.update(over)
        async with self.sm() as s, s.begin():
            p = Provider(**fields)
            s.add(p)
        await self.sync.flush()
        return p.id

    async def elder(self, **over: Any) -> str:
        async with self.sm() as s, s.begin():
            e = make_elder(lat=HOME[0], lon=HOME[1], phones=["13800000001"], **over)
            e.contacts = [EmergencyContact(name="女儿", relation="daughter", phone="13900000002", channel="sms")]
            s.add(e)
        return e.id

    async def order(
        self, elder_id: str, service: str = "bathing", quantity: float = 2, **kw: Any
    ) -> ServiceRequestDetail:
        out = await self.care.orders.create(actor="op", elder_id=elder_id, service=service, quantity=quantity, **kw)
        await self.sync.flush()
        return out

    async def offer_of(self, order_id: str, status: str = "offered") -> Offer:
        async with self.sm() as s:
            offers = (
                await s.scalars(select(Offer).where(Offer.service_request_id == order_id, Offer.status == status))
            ).all()
        assert len(offers) == 1, offers
        return offers[0]

    async def accept(self, order_id: str) -> Offer:
        offer = await self.offer_of(order_id)
        await self.care.orders.respond(offer.id, offer.provider_id, "app", accept=True, reason=None)
        return offer

    async def tick(self, seconds: float) -> int:
        self.clock.t += timedelta(seconds=seconds)
        return await self.care.timers.run_due()

    async def ent(self, elder_id: str) -> Any:
        async with self.sm() as s:
            e = await s.get(Elder, elder_id)
            assert e is not None
            return await entitlements(s, e, MONTH)

    def alerts(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.published if m["type"] == "service.alert" and m["kind"] == kind]


@pytest.fixture
async def world(sm: async_sessionmaker[AsyncSession], ns: str) -> AsyncIterator[World]:
    redis = aioredis.from_url(REDIS_URL)
    clock = ManualClock(T0)
    geo = GeoIndex(redis, f"test-{ns}")
    sync = GeoSync(geo, sm)
    router = Router(geo, sm, policy=RoutingPolicy())
    hooks.install(sm, WATCHES, timers=lambda _snapshots: None, providers=sync.on_commit)
    await install_defaults(sm)
    published: list[dict[str, Any]] = []

    async def publish(message: dict[str, Any]) -> None:
        published.append(message)

    care = CareService.build(sm, router, settings=CareSettings(), publish=publish, clock=clock)
    yield World(sm, clock, sync, care, published)
    keys = [k async for k in redis.scan_iter(f"test-{ns}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_a_request_to_completion_deducts_the_hours_and_schedules_a_follow_up(world: World) -> None:
    near = await world.provider("阳明站", 800)
    await world.provider("远站", 5000)
    elder_id = await world.elder()  # 86 in November 2026: 3 free hours (basic service)
    order = await world.order(elder_id, "bathing", 2)
    assert (order.status, order.payer) == ("dispatched", "subsidy_hours")  # offered at once, paid by the hours
    offer = await world.accept(order.id)
    assert offer.provider_id == near
    detail = await world.care.orders.get(order.id)
    assert detail.status == "scheduled" and detail.scheduled_for is not None
    lat, lon = north(20)
    await world.care.orders.check_in(order.id, near, "app", lat=lat, lon=lon)
    world.clock.t += timedelta(hours=2)
    done = await world.care.orders.check_out(order.id, near, "app", lat=lat, lon=lon, quantity=2, remainder_payer=None)
    assert done.status == "completed" and not done.far_check_in
    assert [(x.payer, x.funder, x.hours, x.yuan) for x in done.settlement] == [
        ("subsidy_hours", "government", 2.0, 120.0)
    ]
    ent = await world.ent(elder_id)
    assert (ent.used.home_care_hours, ent.remaining.home_care_hours) == (2.0, 1.0)
    async with world.sm() as s:
        (fu,) = (await s.scalars(select(FollowUp).where(FollowUp.service_request_id == order.id))).all()
    assert fu.status == "due" and fu.due_at == world.clock.t + timedelta(hours=48)
    assert [e.kind for e in done.timeline][:3] == ["requested", "offer.sent", "offer.accepted"]
    with pytest.raises(TransitionError):  # settled once
        await world.care.orders.check_out(order.id, near, "app", lat=lat, lon=lon, quantity=2, remainder_payer=None)


async def test_an_overdraw_is_refused_and_a_split_bill_accepted(world: World) -> None:
    p = await world.provider("站", 500)
    elder_id = await world.elder()
    lat, lon = north(10)
    order = await world.order(elder_id, "cleaning", 5, payer="subsidy_hours")  # 5 hours against 3
    await world.accept(order.id)
    await world.care.orders.check_in(order.id, p, "app", lat=lat, lon=lon)
    with pytest.raises(ConflictError, match="overdraw"):
        await world.care.orders.check_out(order.id, p, "app", lat=lat, lon=lon, quantity=5, remainder_payer=None)
    assert (await world.care.orders.get(order.id)).status == "started"  # nothing moved, nothing spent
    assert (await world.ent(elder_id)).used.home_care_hours == 0
    done = await world.care.orders.check_out(
        order.id, p, "app", lat=lat, lon=lon, quantity=5, remainder_payer="self_pay"
    )
    assert sorted((x.payer, x.quantity, x.yuan) for x in done.settlement) == [
        ("self_pay", 2.0, 80.0),
        ("subsidy_hours", 3.0, 120.0),
    ]
    assert (await world.ent(elder_id)).remaining.home_care_hours == 0
    # With the hours spent, the next request defaults to self-pay.
    assert (await world.order(elder_id, "cleaning", 1)).payer == "self_pay"


async def test_a_far_check_in_is_flagged_and_a_no_show_is_offered_to_the_next(world: World) -> None:
    first = await world.provider("近站", 600)
    second = await world.provider("次近站", 2000)
    elder_id = await world.elder()
    later = T0 + timedelta(hours=1)
    order = await world.order(elder_id, "bathing", 1, scheduled_for=later)
    assert (await world.accept(order.id)).provider_id == first
    # Nobody checks in within 30 minutes of the time: a no-show.
    assert await world.tick(3600 + 29 * 60) == 0
    assert await world.tick(61) == 1
    moved = await world.care.orders.get(order.id)
    assert moved.status == "dispatched" and moved.no_shows == 1
    assert (await world.offer_of(order.id)).provider_id == second
    assert [o.status for o in moved.offers] == ["withdrawn", "offered"]
    assert world.alerts("no_show")[0]["service_request_id"] == order.id
    await world.accept(order.id)
    lat, lon = north(1500)  # 1.5 km from home
    started = await world.care.orders.check_in(order.id, second, "app", lat=lat, lon=lon)
    assert started.far_check_in and started.check_in is not None and started.check_in.distance_m == 1500
    assert world.alerts("far_check_in")[0]["provider_id"] == second


async def test_an_offer_that_runs_out_goes_to_the_next_and_a_timer_fires_once(world: World) -> None:
    first = await world.provider("近站", 600)
    second = await world.provider("次近站", 2000)
    elder_id = await world.elder()
    order = await world.order(elder_id, "meals", 1)
    assert (await world.offer_of(order.id)).provider_id == first
    world.clock.t += timedelta(seconds=601)
    async with world.sm() as s:
        timer = await s.scalar(
            select(CareTimer).where(CareTimer.subject_id == order.id, CareTimer.kind == "order.offer")
        )
    assert timer is not None
    # Two instances racing on the same wake-up: the fencing token lets one through.
    assert [
        await world.care.timers.fire(timer.id, timer.token),
        await world.care.timers.fire(timer.id, timer.token),
    ] == [
        True,
        False,
    ]
    assert (await world.offer_of(order.id)).provider_id == second
    assert (await world.offer_of(order.id, "expired")).provider_id == first


async def test_two_completions_racing_cannot_overdraw_the_month(world: World) -> None:
    p = await world.provider("站", 500, capacity=5)
    elder_id = await world.elder()  # 3 free hours
    lat, lon = north(10)
    orders = [await world.order(elder_id, "cleaning", 2, payer="subsidy_hours") for _ in range(2)]
    for o in orders:
        await world.accept(o.id)
        await world.care.orders.check_in(o.id, p, "app", lat=lat, lon=lon)
    results = await asyncio.gather(
        *(
            world.care.orders.check_out(o.id, p, "app", lat=lat, lon=lon, quantity=2, remainder_payer=None)
            for o in orders
        ),
        return_exceptions=True,
    )
    done = [r for r in results if isinstance(r, ServiceRequestDetail)]
    refused = [r for r in results if isinstance(r, ConflictError)]
    assert (len(done), len(refused)) == (1, 1), results  # 2 + 2 > 3: the second sees the first's lines
    ent = await world.ent(elder_id)
    assert (ent.used.home_care_hours, ent.remaining.home_care_hours) == (2.0, 1.0)


async def test_a_home_adaptation_waits_for_its_assessment(world: World) -> None:
    await world.provider("站", 500)
    elder_id = await world.elder()
    order = await world.order(elder_id, "home_adaptation", 1)
    assert order.status == "requested" and order.offers == []
    with pytest.raises(TransitionError, match="assessment"):
        await world.care.orders.dispatch(order.id, "op")
    assessed = await world.care.orders.assess(order.id, "assessor", approved=True, note="卫生间加扶手")
    assert assessed.status == "dispatched" and len(assessed.offers) == 1


async def test_a_bad_credit_provider_gets_no_subsidised_work_but_may_take_self_paid(world: World) -> None:
    bad = await world.provider("失信站", 300, bad_credit=True)
    good = await world.provider("守信站", 3000)
    elder_id = await world.elder()
    paid = await world.order(elder_id, "bathing", 1)
    assert paid.payer == "subsidy_hours"
    assert (await world.offer_of(paid.id)).provider_id == good
    reasons = {x["provider_id"]: x["reason"] for x in paid.decisions[0].excluded}
    assert reasons[bad] == "bad credit record: no government-paid work"
    own = await world.order(elder_id, "bathing", 1, payer="self_pay")
    assert (await world.offer_of(own.id)).provider_id == bad


async def _complete(world: World, order_id: str, provider_id: str, *, late_min: float = 0, quantity: float = 1) -> None:
    lat, lon = north(10)
    await world.accept(order_id)
    detail = await world.care.orders.get(order_id)
    assert detail.scheduled_for is not None
    world.clock.t = detail.scheduled_for + timedelta(minutes=late_min)
    await world.care.orders.check_in(order_id, provider_id, "app", lat=lat, lon=lon)
    await world.care.orders.check_out(
        order_id, provider_id, "app", lat=lat, lon=lon, quantity=quantity, remainder_payer="self_pay"
    )


async def _follow_up(world: World, order_id: str, score: int) -> Any:
    async with world.sm() as s:
        fu = await s.scalar(select(FollowUp).where(FollowUp.service_request_id == order_id))
    assert fu is not None
    return await world.care.quality.record(fu.id, "op", reached=True, score=score, comment="回访")


async def test_a_low_score_opens_a_review_and_ratings_change_the_dispatch_order(world: World) -> None:
    a = await world.provider("甲站", 1000)
    b = await world.provider("乙站", 1100)  # the same travel band as 甲: the rating decides
    elder_id = await world.elder()
    for score_a, score_b in ((1, 5), (2, 5), (1, 4)):
        for provider, score in ((a, score_a), (b, score_b)):
            order = await world.order(elder_id, "meals", 1, payer="self_pay")
            offer = await world.offer_of(order.id)
            if offer.provider_id != provider:  # the other one declines, so the one under test gets it
                await world.care.orders.respond(offer.id, offer.provider_id, "app", accept=False, reason="测试")
            assert (await world.offer_of(order.id)).provider_id == provider
            await _complete(world, order.id, provider, late_min=40 if provider == a else 0)
            fu, review = await _follow_up(world, order.id, score)
            assert fu.status == "done"
            assert (review is not None) == (score <= 2)
    async with world.sm() as s:
        reviews = (await s.scalars(select(QualityReview).where(QualityReview.provider_id == a))).all()
    assert len(reviews) == 3 and all(r.source == "follow_up" for r in reviews)  # scores 1, 2, 1
    period, n = await world.care.recompute_ratings()
    assert (period, n) == (MONTH, 2)
    await world.sync.flush()
    async with world.sm() as s:
        stars = {p.id: p.rating for p in (await s.scalars(select(Provider))).all()}
    assert stars[b] > 4.0 > stars[a]
    ranking = await world.care.router.rank("meals", *HOME, now=world.clock.t)
    assert [c["provider_id"] for c in ranking.candidates] == [b, a]  # nearer 甲 now goes second
    async with world.sm() as s:
        worst = await ratings.bottom(s, MONTH, 5.0)
    assert [p.id for _, p in worst] == [a]  # 5 % of two providers is still one


async def test_complaints_have_a_deadline_and_a_decision_and_referrals_end_an_order(world: World) -> None:
    p = await world.provider("站", 500)
    elder_id = await world.elder()
    order = await world.order(elder_id, "bathing", 1)
    c = await world.care.quality.complain(
        "op",
        elder_id=None,
        provider_id=None,
        service_request_id=order.id,
        category="服务态度",
        description="服务人员迟到且态度差",
        channel="phone",
        handler="督导王",
    )
    assert (c.elder_id, c.status, c.deadline_at) == (elder_id, "received", T0 + timedelta(days=7))
    cancelled = await world.care.orders.cancel(order.id, "op", reason="老人住院")
    assert cancelled.status == "cancelled" and [o.status for o in cancelled.offers] == ["withdrawn"]
    assert await world.tick(7 * 86400 - 1) == 0  # the cancelled order's offer timer is gone too
    assert await world.tick(2) == 1
    assert world.alerts("complaint_overdue")[0]["complaint_id"] == c.id
    await world.care.quality.update_complaint(
        c.id, "sup", status="investigating", handler=None, finding=None, resolution=None
    )
    with pytest.raises(ValidationError, match="resolution"):
        await world.care.quality.update_complaint(
            c.id, "sup", status="closed", handler=None, finding=None, resolution=None
        )
    with pytest.raises(TransitionError):
        await world.care.quality.update_complaint(
            c.id, "sup", status="closed", handler=None, finding=None, resolution="x"
        )
    up = await world.care.quality.update_complaint(
        c.id, "sup", status="upheld", handler=None, finding="属实", resolution=None
    )
    assert up.decision == "upheld"
    closed = await world.care.quality.update_complaint(
        c.id, "sup", status="closed", handler=None, finding=None, resolution="致歉并培训"
    )
    assert closed.status == "closed" and closed.decision == "upheld"
    async with world.sm() as s:
        cols, rows = await reports.complaints(s, MONTH)
    # Received on the 23rd, escalated at its deadline, upheld, closed 7 days and 1 second later.
    assert dict(zip(cols, rows[0], strict=True)) == {
        "category": "服务态度",
        "received": 1,
        "upheld": 1,
        "closed": 1,
        "escalated": 1,
        "mean_days_to_close": 7.0,
    }
    del p
    other = await world.order(elder_id, "bathing", 1)
    ref = await world.care.quality.refer(
        "op", elder_id=elder_id, agency="区法律援助中心", reason="遗产纠纷", service_request_id=other.id
    )
    assert ref.status == "open"
    assert (await world.care.orders.get(other.id)).status == "referred"
    assert (
        await world.care.quality.update_referral(ref.id, "op", status="accepted", outcome=None)
    ).status == "accepted"
    assert (
        await world.care.quality.update_referral(ref.id, "op", status="closed", outcome="已受理")
    ).status == "closed"


async def test_the_advisor_explains_its_list(world: World) -> None:
    near = await world.provider("近站", 700)
    far = await world.provider("远站", 4000)
    elder_id = await world.elder()
    out = await world.care.consult(elder_id, ["meals", "bathing"], "advisor")
    services = out.result["services"]
    # The entitlement pays for bathing (hours), not for meals: bathing first, whatever the order asked.
    assert [(s["service"], s["paid_by"]) for s in services] == [("bathing", "subsidy_hours"), ("meals", "self_pay")]
    assert "剩余免费服务 3 小时" in services[0]["why_paid"]
    assert [p["provider_id"] for p in services[0]["providers"]] == [near, far]
    assert any(r.startswith("travel") for r in services[0]["providers"][0]["reasons"])
    assert out.follow_up_id is not None


async def test_the_reports_match_totals_computed_by_hand(world: World) -> None:
    a = await world.provider("甲站", 500)
    b = await world.provider("乙站", 5000)
    elder_id = await world.elder()  # 3 hours
    o1 = await world.order(elder_id, "bathing", 2)  # subsidy 2 h = 120 yuan
    await _complete(world, o1.id, a, quantity=2)
    o2 = await world.order(elder_id, "cleaning", 1, payer="self_pay")  # 40 yuan self-pay
    assert (await world.offer_of(o2.id)).provider_id == a
    await world.care.orders.respond((await world.offer_of(o2.id)).id, a, "app", accept=False, reason="忙")
    await _complete(world, o2.id, b, late_min=20)
    await _follow_up(world, o1.id, 5)
    await _follow_up(world, o2.id, 2)
    async with world.sm() as s:
        cols, rows = await reports.settlement(s, MONTH)
        settle = {(r[0], r[2]): r[7] for r in rows}
        _, svc_rows = await reports.provider_services(s, MONTH)
        _, sat = await reports.satisfaction(s, MONTH)
        _, use = await reports.entitlement_use(s, MONTH)
        lines = (await s.scalars(select(SettlementLine))).all()
    assert cols[-1] == "yuan"
    assert settle == {(a, "subsidy_hours"): 120.0, (b, "self_pay"): 40.0}
    assert sum(x.yuan for x in lines) == 160.0
    assert {r[0]: (r[2], r[3], r[4]) for r in svc_rows} == {a: (1, 2.0, 1.0), b: (1, 1.0, 0.0)}  # b 20 min late
    assert {r[0]: (r[2], r[3], r[4]) for r in sat} == {a: (1, 5.0, 0), b: (1, 2.0, 1)}
    assert ["yuyao", "basic_service", "home_care_hours", 1, 3.0, 2.0] in use
    csv = reports.to_csv((cols, rows))
    assert csv.startswith("\ufeff".encode()) and "甲站".encode() in csv
    xlsx = reports.to_xlsx("settlement", (cols, rows))
    assert xlsx[:2] == b"PK"  # a zip: the xlsx container


async def test_a_service_outside_the_catalogue_or_a_wrong_payer_is_refused(world: World) -> None:
    elder_id = await world.elder()
    with pytest.raises(ValidationError, match="may be paid by"):
        await world.order(elder_id, "meals", 1, payer="subsidy_hours")  # meals are not home-care hours
    async with world.sm() as s:
        assert (await s.scalars(select(ServiceRequest))).all() == []  # nothing half-made
