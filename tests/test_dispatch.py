"""Dispatch in one process: routing over real Redis GEO, escalation under an injected clock,
merging, policy versions and family links. The database and Redis are real; time is not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch import hooks
from dispatch.errors import SignatureError
from dispatch.escalation import WATCHES, EmergencyAction, EscalationEngine, Escalator
from dispatch.incidents import Incidents
from dispatch.notify.links import FamilyLinks
from dispatch.policy import install_defaults
from dispatch.routing import GeoIndex, GeoSync, Router, RoutingPolicy
from dispatch.service import DispatchService
from hotline.storage.models import (
    EmergencyContact,
    EscalationTimer,
    Incident,
    IncidentEvent,
    Notification,
    Offer,
    Provider,
    RoutingDecision,
)
from tests import factories
from tests.conftest import REDIS_URL
from tests.factories import elder as make_elder

# A Monday, 10:00 in Ningbo (UTC+8): inside everyone's working hours.
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
HOME = (30.0, 121.1)


class ManualClock:
    def __init__(self, start: datetime) -> None:
        self.t = start

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


def north(metres: float) -> tuple[float, float]:
    """A point ``metres`` due north of HOME."""
    return HOME[0] + metres / 111_195, HOME[1]


@dataclass
class World:
    sm: async_sessionmaker[AsyncSession]
    redis: aioredis.Redis
    clock: ManualClock
    geo: GeoIndex
    sync: GeoSync
    router: Router
    engine: EscalationEngine
    service: DispatchService
    published: list[dict[str, Any]]

    async def provider(self, name: str, metres: float, **over: Any) -> str:
        lat, lon = north(metres)
        fields: dict[str, Any] = {
            "name": name,
            "kind": "service_station",
            "services": ["emergency_rescue", "daily_care"],
            "lat": lat,
            "lon": lon,
            "service_radius_m": 20_000,
            "capacity": 2,
            "rating": 4.0,
            "availability": "available",
        }
        fields.update(over)
        async with self.sm() as s, s.begin():
            p = Provider(**fields)
            s.add(p)
        await self.sync.flush()  # what the sync task does after each commit
        return p.id

    async def elder(self, **over: Any) -> str:
        async with self.sm() as s, s.begin():
            e = make_elder(lat=HOME[0], lon=HOME[1], **over)
            e.contacts = [EmergencyContact(name="孙女", relation="granddaughter", phone="13800000009", channel="sms")]
            s.add(e)
        return e.id

    async def open(self, elder_id: str, type_: str = "sos", source: str = "device", **kw: Any) -> tuple[str, bool]:
        out, merged = await self.service.create(elder_id=elder_id, actor="test", type_=type_, source=source, **kw)
        await self.sync.flush()  # an offer changed the provider's turn
        return str(out["id"]), merged

    async def tick(self, seconds: float) -> int:
        self.clock.advance(seconds)
        await self.engine._schedule()
        return await self.engine.run_due(sweep=True)

    async def timeline(self, incident_id: str, kind: str | None = None) -> list[IncidentEvent]:
        async with self.sm() as s:
            stmt = select(IncidentEvent).where(IncidentEvent.incident_id == incident_id).order_by(IncidentEvent.id)
            if kind:
                stmt = stmt.where(IncidentEvent.kind == kind)
            return list((await s.scalars(stmt)).all())

    async def rows(self, model: Any, **where: Any) -> list[Any]:
        async with self.sm() as s:
            stmt = select(model).filter_by(**where)
            return list((await s.scalars(stmt)).all())


@pytest.fixture
async def world(sm: async_sessionmaker[AsyncSession], ns: str) -> AsyncIterator[World]:
    redis = aioredis.from_url(REDIS_URL)
    clock = ManualClock(T0)
    geo = GeoIndex(redis, f"test-{ns}")
    sync = GeoSync(geo, sm)
    router = Router(geo, sm, policy=RoutingPolicy())
    escalator = Escalator(
        router,
        emergency=EmergencyAction(number="120", webhook_url="http://127.0.0.1:9/emergency"),
        links=FamilyLinks(b"0123456789abcdef-test", "http://hotline.test"),
    )
    published: list[dict[str, Any]] = []

    async def publish(message: dict[str, Any]) -> None:
        published.append(message)

    engine = EscalationEngine(sm, redis, escalator, prefix=f"test-{ns}", clock=clock, publish=publish)
    hooks.install(sm, WATCHES, timers=engine.on_commit, providers=sync.on_commit)
    await install_defaults(sm)
    service = DispatchService(sm, Incidents(escalator, merge_window=timedelta(minutes=10)), engine, clock=clock)
    yield World(sm, redis, clock, geo, sync, router, engine, service, published)
    keys = [k async for k in redis.scan_iter(f"test-{ns}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


# -- routing ----------------------------------------------------------------------------


async def test_routing_skips_the_unavailable_the_full_and_those_without_the_service(world: World) -> None:
    offline = await world.provider("近但离线", 300, availability="offline")
    full = await world.provider("近但满员", 400, current_load=2, capacity=2)
    await world.provider("近但只送餐", 200, kind="meal_kitchen", services=["meals"])
    closed = await world.provider("近但已下班", 350, working_hours={"mon-sun": "20:00-06:00"})
    chosen = await world.provider("稍远可用", 1500)
    await world.provider("更远可用", 4000)
    ranking = await world.router.rank("emergency_rescue", *HOME, now=T0)
    assert ranking.source == "redis"
    assert ranking.best is not None and ranking.best["provider_id"] == chosen
    reasons = {x["provider_id"]: x["reason"] for x in ranking.excluded}
    assert reasons[offline] == "availability offline"
    assert reasons[full] == "at capacity (2/2)"
    assert reasons[closed] == "outside working hours"
    # The meal kitchen is not even a candidate: it is not in the emergency_rescue index.
    assert {c["name"] for c in ranking.candidates} == {"稍远可用", "更远可用"}
    assert ranking.reachable_in_time


async def test_well_rated_first_among_near_equals_then_equals_take_turns(world: World) -> None:
    low = await world.provider("评分3.5", 1000, rating=3.5)
    high = await world.provider("评分4.8", 1100, rating=4.8)  # 100 m further: the same travel band
    ranking = await world.router.rank("emergency_rescue", *HOME, now=T0)
    assert [c["provider_id"] for c in ranking.candidates] == [high, low]
    assert ranking.candidates[0]["key"]["eta_band"] == ranking.candidates[1]["key"]["eta_band"]
    # Two equals: the one offered work longest ago goes first, and an offer moves it back.
    async with world.sm() as s, s.begin():
        p = await s.get(Provider, low)
        assert p is not None
        p.rating = 4.8
    await world.sync.flush()
    first = (await world.router.rank("emergency_rescue", *HOME, now=T0)).candidates[0]["provider_id"]
    elder_id = await world.elder()
    await world.open(elder_id)
    second = (await world.router.rank("emergency_rescue", *HOME, now=T0)).candidates[0]["provider_id"]
    assert {first, second} == {low, high}
    assert first != second


async def test_a_rating_below_the_floor_and_a_far_provider(world: World) -> None:
    await world.provider("差评", 200, rating=1.5)
    far = await world.provider("十公里外", 10_000, kind="caregiver", services=["emergency_rescue"])
    ranking = await world.router.rank("emergency_rescue", *HOME, now=T0)
    assert ranking.excluded[0]["reason"] == "rating 1.5 below the floor of 2"
    assert ranking.best is not None and ranking.best["provider_id"] == far
    assert not ranking.reachable_in_time
    assert "nobody can reach the elder within 15 minutes" in ranking.best["reasons"]
    # Through an incident, the shortfall is on the timeline and the supervisors are told.
    incident_id, _ = await world.open(await world.elder())
    assert await world.timeline(incident_id, "routing.out_of_reach")
    alerts = await world.rows(Notification, incident_id=incident_id, channel="console")
    assert any("15分钟服务圈" in n.payload["message"] for n in alerts)


async def test_routing_falls_back_to_the_database_when_redis_is_down(world: World) -> None:
    near = await world.provider("近", 800)
    await world.provider("远", 2500)
    dead = Router(GeoIndex(aioredis.from_url("redis://127.0.0.1:1/0"), "x"), world.sm)
    ranking = await dead.rank("emergency_rescue", *HOME, now=T0)
    assert ranking.source == "database"
    assert ranking.best is not None and ranking.best["provider_id"] == near
    assert dead.fallbacks == 1


async def test_every_ranking_is_stored_with_its_reasons(world: World) -> None:
    best = await world.provider("最近", 500)
    await world.provider("离线", 100, availability="offline")
    incident_id, _ = await world.open(await world.elder())
    decisions = await world.rows(RoutingDecision, incident_id=incident_id)
    assert len(decisions) == 1
    d = decisions[0]
    assert d.chosen_provider_id == best and d.source == "redis" and d.estimator == "road-factor-v1"
    assert d.reachable_in_time
    top = d.candidates[0]
    assert top["rank"] == 0 and top["key"]["eta_band"] == 0
    assert any(r.startswith("travel ") and "road factor 1.4" in r for r in top["reasons"])
    assert [(x["name"], x["distance_m"], x["reason"]) for x in d.excluded] == [("离线", 100, "availability offline")]
    offers = await world.rows(Offer, incident_id=incident_id)
    assert [(o.provider_id, o.decision_id, o.status) for o in offers] == [(best, d.id, "offered")]


# -- escalation -------------------------------------------------------------------------


async def test_a_full_sos_escalation_step_by_step_under_an_injected_clock(world: World) -> None:
    first = await world.provider("一号站", 500)
    second = await world.provider("二号站", 1500)
    third = await world.provider("三号站", 2500)
    incident_id, merged = await world.open(await world.elder())
    assert not merged

    # t=0: the family at once, and the first offer to the best candidate, in the opening transaction.
    family = await world.rows(Notification, incident_id=incident_id, event_type="incident.created")
    assert [(n.channel, n.target) for n in family] == [("sms", "13800000009")]
    assert "confirm_url" in family[0].payload["data"]
    assert [(o.provider_id, o.status) for o in await world.rows(Offer, incident_id=incident_id)] == [(first, "offered")]
    assert any(m["type"] == "offer.created" and m["to_provider"] == first for m in world.published)

    async def supervisor_alerts() -> int:
        rows = await world.rows(Notification, incident_id=incident_id, channel="console", target="role:supervisor")
        return len(rows)

    # t=29: nothing is due yet.
    assert await world.tick(29) == 0
    assert await supervisor_alerts() == 0
    # t=30: nobody acknowledged, so the supervisors are alerted.
    assert await world.tick(1) == 1
    assert await supervisor_alerts() == 1
    # t=60: the alert repeats, and the first provider's 60 s ran out: the next one is offered.
    assert await world.tick(30) == 2
    assert await supervisor_alerts() == 2
    offers = {o.provider_id: o.status for o in await world.rows(Offer, incident_id=incident_id)}
    assert offers == {first: "expired", second: "offered"}
    # A decline moves on at once, without waiting for the timeout.
    second_offer = next(o for o in await world.rows(Offer, incident_id=incident_id) if o.provider_id == second)
    await world.service.respond(second_offer.id, second, "usr_p2", accept=False, reason="车辆外出")
    assert await world.tick(0) == 1
    offers = {o.provider_id: o.status for o in await world.rows(Offer, incident_id=incident_id)}
    assert offers == {first: "expired", second: "declined", third: "offered"}
    # An operator acknowledges at t=75: the supervisor alerts stop.
    await world.tick(15)
    await world.service.acknowledge(incident_id, "usr_op")
    await world.tick(44)  # t=119
    assert await supervisor_alerts() == 2
    # t=120: the third offer timed out and everyone was tried: a second round goes back to those who
    # let their offer run out (never to the one who declined), nearest first.
    await world.tick(1)
    assert await supervisor_alerts() == 2
    assert [o.status for o in await world.rows(Offer, incident_id=incident_id, provider_id=first)] == [
        "expired",
        "offered",
    ]
    # t=130: a station comes back on duty; the next round (t=180) offers it before anyone twice.
    await world.tick(10)
    fourth = await world.provider("四号站", 2800)
    await world.tick(50)
    assert (await world.rows(Offer, incident_id=incident_id, provider_id=fourth))[0].status == "offered"
    await world.tick(60)  # t=240: the fourth's offer runs out; the first is offered a third time
    # t=300: still no provider accepted: the emergency action runs and the supervisor is told.
    await world.tick(59)
    assert not await world.rows(Notification, incident_id=incident_id, channel="webhook")
    await world.tick(1)
    emergency = await world.rows(Notification, incident_id=incident_id, channel="webhook")
    assert [n.target for n in emergency] == ["http://127.0.0.1:9/emergency"]
    assert await supervisor_alerts() == 3
    steps = [e.data for e in await world.timeline(incident_id, "escalation.step")]
    assert next(s for s in steps if s["track"] == "emergency")["action"] == "webhook"

    # A fifth station joins; at t=360 it is offered before anyone gets a third try.
    fifth = await world.provider("五号站", 2000)
    await world.tick(60)
    offers_now = await world.rows(Offer, incident_id=incident_id, status="offered")
    assert [o.provider_id for o in offers_now] == [fifth]
    # It accepts: the tracks waiting on acceptance end at once, in the same transaction.
    out = await world.service.respond(offers_now[0].id, fifth, "usr_p5", accept=True, reason=None)
    assert out["status"] == "accepted"
    timers = {t.track: t.state for t in await world.rows(EscalationTimer, incident_id=incident_id)}
    assert timers == {"family": "done", "acknowledge": "done", "provider": "done", "emergency": "done"}
    # Each step fired at its due time (the injected clock is exact) and exactly once.
    for s in steps:
        assert s["fired_at"] == s["due_at"], s
    runs = [(s["track"], s["run"]) for s in steps]
    assert len(runs) == len(set(runs))


async def test_when_everyone_declined_the_supervisors_are_told_once(world: World) -> None:
    a = await world.provider("甲", 500)
    b = await world.provider("乙", 900)
    incident_id, _ = await world.open(await world.elder())
    for provider in (a, b):
        offer = (await world.rows(Offer, incident_id=incident_id, status="offered"))[0]
        assert offer.provider_id == provider
        await world.service.respond(offer.id, provider, "usr", accept=False, reason="忙")
        await world.tick(0)
    await world.tick(60)
    await world.tick(60)
    assert len(await world.timeline(incident_id, "routing.no_candidate")) == 3
    alerts = await world.rows(Notification, incident_id=incident_id, idempotency_key=f"route:{incident_id}:none")
    assert len(alerts) == 1
    assert not await world.rows(Offer, incident_id=incident_id, status="offered")


async def test_duplicate_stale_and_early_wakeups_do_nothing(world: World) -> None:
    await world.provider("站", 500)
    incident_id, _ = await world.open(await world.elder())
    timer = (await world.rows(EscalationTimer, incident_id=incident_id, track="acknowledge"))[0]
    # Early: not due for another 30 s.
    assert not await world.engine.fire(timer.id, timer.token, incident_id)
    world.clock.advance(30)
    assert await world.engine.fire(timer.id, timer.token, incident_id)
    # The same wake-up again (a duplicate from Redis, or the sweep racing it) is stale now.
    assert not await world.engine.fire(timer.id, timer.token, incident_id)
    alerts = await world.rows(Notification, incident_id=incident_id, target="role:supervisor")
    assert len(alerts) == 1
    assert world.engine.stale == 2


async def test_the_family_reminder_is_skipped_once_a_relative_confirms(world: World) -> None:
    elder_id = await world.elder()
    incident_id, _ = await world.open(elder_id)
    async with world.sm() as s:
        contact_id = (await s.scalars(select(EmergencyContact.id).where(EmergencyContact.elder_id == elder_id))).one()
    await world.service.family_confirm(incident_id, f"contact:{contact_id}", contact_id=contact_id)
    await world.tick(180)
    assert await world.timeline(incident_id, "escalation.skipped")
    assert not await world.rows(Notification, incident_id=incident_id, event_type="incident.reminder")
    incident = (await world.rows(Incident, id=incident_id))[0]
    assert incident.family_confirmed_by == f"contact:{contact_id}"


def test_family_links_verify_and_refuse_tampering() -> None:
    links = FamilyLinks(b"0123456789abcdef-test", "http://h")
    params = links.params("inc_1", 7, now=T0)
    assert links.verify(params, now=T0) == ("inc_1", 7)
    with pytest.raises(SignatureError, match="does not match"):
        links.verify({**params, "i": "inc_2"}, now=T0)
    with pytest.raises(SignatureError, match="expired"):
        links.verify(params, now=T0 + timedelta(days=2))
    with pytest.raises(SignatureError, match="incomplete"):
        links.verify({"i": "inc_1"}, now=T0)


# -- merging and policies ---------------------------------------------------------------


async def test_signals_for_one_elder_inside_the_window_join_the_open_incident(world: World) -> None:
    await world.provider("站", 500)
    elder_id = await world.elder()
    sos, _ = await world.open(elder_id, "sos", "device")
    world.clock.advance(120)
    fall, merged = await world.open(elder_id, "fall", "device")
    world.clock.advance(60)
    call, merged_call = await world.open(elder_id, "emergency", "call", severity="critical")
    assert merged and merged_call and sos == fall == call
    incident = (await world.rows(Incident, id=sos))[0]
    assert [(x["source"], x["type"]) for x in incident.signals] == [
        ("device", "sos"),
        ("device", "fall"),
        ("call", "emergency"),
    ]
    assert len(await world.timeline(sos, "signal.merged")) == 2
    # One incident means one escalation: one family alert, one offer.
    assert len(await world.rows(Notification, incident_id=sos, event_type="incident.created")) == 1
    assert len(await world.rows(Offer, incident_id=sos)) == 1
    # A service request is not the same emergency, and after the window a new SOS is a new incident.
    meals, merged_meals = await world.open(elder_id, "service_request", "operator", service="meals")
    assert not merged_meals and meals != sos
    world.clock.advance(601)
    later, merged_later = await world.open(elder_id, "sos", "device")
    assert not merged_later and later != sos


async def test_a_new_policy_version_never_changes_a_running_escalation(world: World) -> None:
    await world.provider("站", 500)
    running, _ = await world.open(await world.elder())
    async with world.sm() as s, s.begin():
        ack = [{"do": "wait", "seconds": 5}, {"do": "notify", "to": "role:admin"}]
        s.add(factories.policy([{"name": "acknowledge", "until": "acknowledged", "steps": ack}]))
    world.service.escalator.policies.invalidate()  # what POST /api/v1/policies does
    later, _ = await world.open(await world.elder(name="另一位"))
    await world.tick(30)
    old = (await world.rows(Incident, id=running))[0]
    new = (await world.rows(Incident, id=later))[0]
    assert old.policy is not None and new.policy is not None
    assert (old.policy["version"], new.policy["version"]) == (1, 2)
    assert [n.target for n in await world.rows(Notification, incident_id=running, channel="console")] == [
        "role:supervisor"
    ]
    assert [n.target for n in await world.rows(Notification, incident_id=later, channel="console")] == ["role:admin"]


async def test_resolving_frees_the_provider_and_cancels_the_timers(world: World) -> None:
    p = await world.provider("站", 500, capacity=1)
    incident_id, _ = await world.open(await world.elder())
    offer = (await world.rows(Offer, incident_id=incident_id))[0]
    await world.service.respond(offer.id, p, "usr_p", accept=True, reason=None)
    assert (await world.rows(Provider, id=p))[0].current_load == 1
    await world.service.progress(offer.id, p, "usr_p", step="en_route", location={"lat": 30.001, "lon": 121.1})
    await world.service.progress(offer.id, p, "usr_p", step="on_scene", location=None)
    out = await world.service.progress(offer.id, p, "usr_p", step="done", location=None)
    assert out["status"] == "resolved"
    assert (await world.rows(Provider, id=p))[0].current_load == 0
    states = {t.state for t in await world.rows(EscalationTimer, incident_id=incident_id)}
    assert states == {"cancelled", "done"}
    kinds = [e.kind for e in await world.timeline(incident_id)]
    for k in ("offer.accepted", "provider.en_route", "provider.on_scene", "provider.done", "resolved"):
        assert k in kinds
    assert await world.tick(1000) == 0  # nothing left to fire
