"""Calls on the 12349 line: records, service-level statistics, click-to-call, call -> incident."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from aiohttp import web
from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from dispatch.incidents import Incidents
from hotline.api.care_routes import care
from hotline.api.common import audit, listing, running
from hotline.api.keys import SERVICES
from hotline.api.models import (
    AgentList,
    CallIn,
    CallIncidentIn,
    CallOpened,
    CallQuery,
    CallStats,
    PauseIn,
    PeriodQuery,
)
from hotline.api.registry import Api, Reply, principal
from hotline.care.orders import Effects
from hotline.core import wire
from hotline.errors import ForbiddenError, NotFoundError, ValidationError
from hotline.storage.models import CallRecord, Device, Elder, EmergencyContact, User
from hotline.telephony.errors import TelephonyError
from hotline.telephony.service import TelephonyService

log = logging.getLogger(__name__)
api = Api()

# (threshold in seconds, share of offered calls): the telecare industry's targets, and an older one.
TARGETS = ((60, 0.975, "telecare"), (180, 0.99, "telecare"), (60, 0.985, "older standard"))


def _period(query: PeriodQuery) -> tuple[datetime, datetime]:
    since, until = query.period()
    if since >= until:
        raise ValidationError("since must be before until", field="since")
    if until - since > timedelta(days=366):
        raise ValidationError("the period may be at most 366 days", field="since")
    return since, until


@api.get("/api/v1/calls", response=wire.Page[wire.CallRecord], permission="calls.read", tag="calls")
async def list_calls(request: web.Request, query: CallQuery) -> wire.Page[wire.CallRecord]:
    """Call records, newest first, filtered by period, direction, outcome, elder, operator, state,
    Linkedid (the console finds the record of the call that pops) or incident."""
    stmt = select(CallRecord).order_by(CallRecord.started_at.desc(), CallRecord.id.desc())
    if query.since is not None or query.until is not None:
        since, until = _period(query)
        stmt = stmt.where(CallRecord.started_at >= since, CallRecord.started_at < until)
    for key in ("direction", "outcome", "elder_id", "operator_id", "state", "linkedid", "incident_id"):
        if value := getattr(query, key):
            stmt = stmt.where(getattr(CallRecord, key).in_(value.split(",")))
    return await listing(request, stmt, query, wire.CallRecord.model_validate)


@api.get("/api/v1/calls/{id}", response=wire.CallRecord, permission="calls.read", tag="calls")
async def get_call(request: web.Request) -> wire.CallRecord:
    """One call record, with every queue member it rang."""
    async with request.app[SERVICES].sm() as session:
        call = await session.get(CallRecord, request.match_info["id"])
    if call is None:
        raise NotFoundError(f"call {request.match_info['id']} not found")
    return wire.CallRecord.model_validate(call)


@api.get("/api/v1/stats/calls", response=CallStats, permission="calls.stats", tag="calls")
async def call_stats(request: web.Request, query: PeriodQuery) -> CallStats:
    """Service level of the inbound queue over a period (calls that entered the queue in it)."""
    since, until = _period(query)
    c = CallRecord
    in_period = and_(c.direction == "inbound", c.started_at >= since, c.started_at < until)
    # A call cut by a PBX restart was never offered a fair chance: out of the service level.
    finished = and_(c.outcome.is_not(None), c.outcome != "pbx_shutdown")
    answered = c.outcome == "answered"
    totals = select(
        func.count(case((finished, 1))),
        # Ended or answered while AMI was away: the wait is unknown, so it is no evidence either way.
        func.count(case((and_(finished, c.hold_s.is_(None)), 1))),
        func.count(case((c.outcome == "pbx_shutdown", 1))),
        func.count(case((answered, 1))),
        func.count(case((c.outcome == "abandoned", 1))),
        func.count(case((c.outcome == "timeout", 1))),
        func.count(case((c.outcome.is_(None), 1))),
        *(func.count(case((and_(answered, c.hold_s <= t), 1))) for t in (20, 60, 180)),
        func.avg(case((finished, c.hold_s))),
        func.max(case((finished, c.hold_s))),
    ).where(in_period)
    per_operator = (
        select(c.operator_id, c.member, func.count(), func.coalesce(func.sum(c.talk_s), 0.0), func.avg(c.talk_s))
        .where(in_period, answered)
        .group_by(c.operator_id, c.member)
        .order_by(func.count().desc())
    )
    async with request.app[SERVICES].sm() as session:
        offered, unmeasured, cut, n_answered, abandoned, timeouts, live, w20, w60, w180, avg_wait, max_wait = (
            await session.execute(totals)
        ).one()
        operators = (await session.execute(per_operator)).all()
        ids = [r[0] for r in operators if r[0]]
        names = dict((await session.execute(select(User.id, User.name).where(User.id.in_(ids)))).all()) if ids else {}

    measured = offered - unmeasured

    def share(n: int) -> float | None:
        return round(n / measured, 4) if measured else None

    within = {"20": share(w20), "60": share(w60), "180": share(w180)}
    return CallStats.model_validate(
        {
            "since": since.isoformat(),
            "until": until.isoformat(),
            "offered": offered,
            "answered": n_answered,
            "abandoned": abandoned,
            "timeout": timeouts,
            "other": offered - n_answered - abandoned - timeouts,
            "in_progress": live,
            "pbx_shutdown": cut,
            "unmeasured": unmeasured,
            "answered_within": within,
            "abandon_rate": share(abandoned),
            "avg_wait_s": round(float(avg_wait), 3) if avg_wait is not None else None,
            "max_wait_s": round(float(max_wait), 3) if max_wait is not None else None,
            "targets": [
                {
                    "within_s": t,
                    "target": goal,
                    "standard": name,
                    "actual": within[str(t)],
                    "met": within[str(t)] is not None and (within[str(t)] or 0) >= goal,
                }
                for t, goal, name in TARGETS
            ],
            "operators": [
                {
                    "operator_id": op_id,
                    "name": names.get(op_id),
                    "member": member,
                    "answered": n,
                    "talk_s": round(float(talk), 3),
                    "avg_talk_s": round(float(avg_talk), 3) if avg_talk is not None else None,
                }
                for op_id, member, n, talk, avg_talk in operators
            ],
        }
    )


def _telephony(request: web.Request) -> TelephonyService:
    error = TelephonyError("telephony is not configured on this instance (set HOTLINE_AMI_URL)")
    return running(request.app[SERVICES].telephony, error)


@api.post(
    "/api/v1/calls", response=wire.CallRecord, status=202, permission="calls.write", errors=(409, 503), tag="calls"
)
async def place_call(request: web.Request, body: CallIn) -> wire.CallRecord:
    """Call out: to a number, an elder, one of their contacts, or a device's SIM.

    The answer is the call record as it stands when Asterisk took the Originate; the rest
    follows on the WebSocket feed. 503 when this instance has no telephony.
    """
    who = principal(request)
    purpose = body.purpose
    elder_id = body.elder_id
    device_id: str | None = None
    async with request.app[SERVICES].sm() as session:
        if body.number is not None:
            number = body.number
        elif body.device_id is not None:
            device = await session.get(Device, body.device_id)
            if device is None or not device.sim_number:
                raise ValidationError("device_id must name a registered device with a SIM number", field="device_id")
            number, device_id, elder_id = device.sim_number, device.device_id, device.elder_id
        elif body.contact_id is not None:
            contact = await session.get(EmergencyContact, body.contact_id)
            if contact is None:
                raise ValidationError("contact_id does not exist", field="contact_id")
            number, elder_id = contact.phone, contact.elder_id
        elif elder_id is not None:
            elder = await session.get(Elder, elder_id)
            if elder is None or not elder.phones:
                raise ValidationError("elder_id must name an elder with a phone number", field="elder_id")
            number = str(elder.phones[0])
        else:
            raise ValidationError("give one of number, elder_id, contact_id or device_id", field="number")
    extension = who.extension if purpose == "click_to_call" else None
    if purpose == "click_to_call" and not extension:
        raise ValidationError("click_to_call needs a user with an extension (hotline user add --extension)")
    record = await _telephony(request).call_out(
        number=number,
        purpose=purpose,
        requested_by=who.user_id,
        idempotency_key=body.idempotency_key,
        elder_id=elder_id,
        incident_id=body.incident_id,
        device_id=device_id,
        operator_extension=extension,
    )
    return wire.CallRecord.model_validate(record)


@api.post(
    "/api/v1/calls/{id}/incident",
    response=CallOpened,
    status=201,
    also={200: CallOpened},
    permission="calls.write",
    errors=(409,),
    tag="calls",
)
async def incident_from_call(request: web.Request, body: CallIncidentIn) -> Reply:
    """Open an incident, or for ``type: service_request`` a work order, from a call; the call is
    linked to it.

    200 when it joined an open incident of the same elder.
    """
    who = principal(request)
    type_ = body.type
    severity = body.severity or ("critical" if type_ == "emergency" else "medium")
    if type_ == "service_request" and body.service is None:
        raise ValidationError("a service request needs a catalogue service", field="service")
    note = body.note
    svc = request.app[SERVICES]
    if type_ == "service_request":
        return Reply(await _work_order_from_call(request, body), 201)
    async with svc.sm() as session, session.begin():
        call, elder = await _call_and_elder(session, request.match_info["id"], body.elder_id)
        incidents = svc.dispatch.incidents if svc.dispatch is not None else Incidents()
        incident, created = await incidents.open(
            session,
            elder=elder,
            type_=type_,
            source="call",
            actor=who.user_id,
            now=datetime.now(UTC),
            severity=severity,
            detail={"call_id": call.id, "note": note},
            notify_family=type_ in ("emergency", "health"),
        )
        call.incident_id = incident.id
        call.elder_id = call.elder_id or elder.id
        audit(session, who, "incident.create_from_call", "incident", incident.id, call_id=call.id)
        out = wire.Incident.model_validate(incident)
    if svc.bus is not None:
        for message in created.messages():
            await svc.bus.publish(message)
    if svc.outbox is not None:
        svc.outbox.wake()
    return Reply(CallOpened(out), 200 if created.merged else 201)


async def _call_and_elder(session: AsyncSession, call_id: str, elder_id: str | None) -> tuple[CallRecord, Elder]:
    call = await session.get(CallRecord, call_id, with_for_update=True)
    if call is None:
        raise NotFoundError(f"call {call_id} not found")
    if call.incident_id is not None or call.service_request_id is not None:
        linked = call.incident_id or call.service_request_id
        raise ValidationError(f"call is already linked to {linked}", field="id")
    elder_id = elder_id or call.elder_id
    if elder_id is None:
        raise ValidationError("the caller is unknown: give elder_id", field="elder_id")
    elder = await session.scalar(select(Elder).where(Elder.id == elder_id).options(selectinload(Elder.contacts)))
    if elder is None:
        raise ValidationError(f"elder {elder_id} does not exist", field="elder_id")
    return call, elder


async def _work_order_from_call(request: web.Request, body: CallIncidentIn) -> CallOpened:
    """The one record of a service request from a call: a work order linked both ways."""
    who = principal(request)
    orders = care(request).orders
    fx = Effects()
    async with request.app[SERVICES].sm() as session, session.begin():
        call, elder = await _call_and_elder(session, request.match_info["id"], body.elder_id)
        assert body.service is not None
        order = await orders.open(
            session,
            fx,
            elder_id=elder.id,
            service=body.service,
            quantity=1.0,
            actor=who.user_id,
            now=datetime.now(UTC),
            note=body.note or "",
            call_id=call.id,
        )
        call.service_request_id = order.id
        call.elder_id = call.elder_id or elder.id
        audit(session, who, "service_request.create_from_call", "service_request", order.id, call_id=call.id)
        out = await orders.detail(session, order)
    await orders.announce(fx)
    return CallOpened(out)


# -- agents -------------------------------------------------------------------------------


@api.get("/api/v1/agents", response=AgentList, permission="agents.read", errors=(503,), tag="calls")
async def list_agents(request: web.Request) -> AgentList:
    """Members of the 12349 queue: free, ringing, on a call, paused (with the reason and for
    how long) or offline, as Asterisk last said."""
    return AgentList(items=await _telephony(request).list_agents())


async def _pause(request: web.Request, *, paused: bool, reason: str | None) -> wire.AgentState:
    who = principal(request)
    extension = request.match_info["extension"]
    if who.role == "operator" and who.extension != extension:
        raise ForbiddenError("an operator may pause only their own extension")
    state = await _telephony(request).pause(extension, paused=paused, reason=reason)
    async with request.app[SERVICES].sm() as session, session.begin():
        audit(session, who, "agent.pause" if paused else "agent.unpause", "agent", extension, reason=reason)
    return state


@api.post(
    "/api/v1/agents/{extension}/pause",
    response=wire.AgentState,
    permission="agents.pause",
    errors=(503,),
    tag="calls",
)
async def pause_agent(request: web.Request, body: PauseIn | None) -> wire.AgentState:
    """Pause a queue member (QueuePause): the queue stops ringing them. Operators pause only themselves."""
    return await _pause(request, paused=True, reason=body.reason if body else None)


@api.post(
    "/api/v1/agents/{extension}/unpause",
    response=wire.AgentState,
    permission="agents.pause",
    errors=(503,),
    tag="calls",
)
async def unpause_agent(request: web.Request) -> wire.AgentState:
    """End a queue member's pause."""
    return await _pause(request, paused=False, reason=None)
