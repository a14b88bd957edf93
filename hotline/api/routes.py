"""Resource handlers under /api/v1. Every handler checks the caller's role first."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.sql import Select

from devices.commands import CommandService, command_view
from devices.contract import COMMAND_TYPES, DEVICE_ID_RE
from devices.credentials import hash_device_secret, new_device_secret
from devices.errors import ContractError, UnknownDeviceError, UnknownIncidentError
from dispatch.escalation import pending_summary
from hotline.api import validation as v
from hotline.api.jsonutil import json_response
from hotline.api.keys import HUB, PRINCIPAL, SERVICES
from hotline.auth import Principal, require
from hotline.errors import ConflictError, NotFoundError, ValidationError
from hotline.jsonlimits import JsonLimitError, loads_bounded
from hotline.privacy import mask_name
from hotline.storage.models import (
    CARE_LEVELS,
    CONTACT_CHANNELS,
    DEVICE_KINDS,
    ECONOMIC_CATEGORIES,
    LIVING_SITUATIONS,
    AuditEntry,
    Device,
    DeviceCommand,
    DeviceCondition,
    Elder,
    EmergencyContact,
    EscalationTimer,
    Incident,
    Notification,
    Offer,
)
from hotline.views import (
    device_view,
    elder_view,
    incident_view,
    iso,
    notification_view,
    offer_view,
    timeline_view,
)

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
BODY_MAX_DEPTH = 32
MAX_BODY_BYTES = 1024**2  # aiohttp answers 413 past it (client_max_size)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


async def body(request: web.Request) -> Any:
    """The request's JSON, bounded in size and depth (a bad one is 400 or 413, never a 500)."""
    raw = await request.read()
    try:
        return loads_bounded(raw, max_bytes=MAX_BODY_BYTES, max_depth=BODY_MAX_DEPTH)
    except JsonLimitError as exc:
        if exc.too_large:
            raise
        raise ValidationError(f"request body is not valid JSON: {exc.reason}") from exc


def audit(
    session: AsyncSession, who: Principal, action: str, target_type: str, target_id: str | None, **detail: Any
) -> None:
    session.add(
        AuditEntry(actor=who.user_id, action=action, target_type=target_type, target_id=target_id, detail=detail)
    )


async def listing(request: web.Request, stmt: Select[Any], view: Callable[[Any], dict[str, Any]]) -> web.Response:
    """One page of ``stmt`` as ``{"items": [...], "total": N}``, honouring limit and offset."""
    limit, offset = v.paging(request.query)
    async with request.app[SERVICES].sm() as session:
        total = await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
        rows = (await session.scalars(stmt.limit(limit).offset(offset))).all()
        return json_response({"items": [view(r) for r in rows], "total": int(total or 0)})


CONTACT_FIELDS = ("channel", "webhook_url", "name", "relation", "phone", "priority")
ELDER_FIELDS = (
    "phones",
    "name",
    "gender",
    "birth_date",
    "address",
    "district",
    "lat",
    "lon",
    "medical_notes",
    "care_level",
    "economic_category",
    "living_situation",
    "home_radius_m",
    "hr_low",
    "hr_high",
    "inactivity_hours",
    "contacts",
)
DEVICE_FIELDS = ("device_id", "elder_id", "sim_number", "kind", "vendor", "model", "heartbeat_interval_s")


# -- elders ---------------------------------------------------------------------------


@routes.get("/api/v1/elders")
async def list_elders(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, "elders.read")
    stmt = select(Elder).options(selectinload(Elder.contacts)).order_by(Elder.created_at, Elder.id)
    if not who.is_console:
        stmt = stmt.where(Elder.id == (who.elder_id or ""))
    if q := request.query.get("q"):
        stmt = stmt.where(Elder.name.contains(q))
    return await listing(request, stmt, elder_view)


@routes.get("/api/v1/elders/{id}")
async def get_elder(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, "elders.read")
    elder_id = request.match_info["id"]
    if not who.can_see_elder(elder_id):
        raise NotFoundError(f"elder {elder_id} not found")
    async with request.app[SERVICES].sm() as session, session.begin():
        elder = await session.scalar(
            select(Elder).where(Elder.id == elder_id).options(selectinload(Elder.contacts), selectinload(Elder.devices))
        )
        if elder is None:
            raise NotFoundError(f"elder {elder_id} not found")
        # Reading a profile is itself audited: elders' data must be traceable.
        audit(session, who, "elder.read", "elder", elder_id)
        out = elder_view(elder)
        out["devices"] = [device_view(d) for d in elder.devices]
    return json_response(out)


def _contacts(raw: Any) -> list[EmergencyContact]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > 10:
        raise ValidationError("contacts must be a list of at most 10 contacts", field="contacts")
    out = []
    for n, item in enumerate(raw):
        c = v.obj(item, CONTACT_FIELDS, where="contacts[]")
        channel = v.choice(c, "channel", CONTACT_CHANNELS, default="sms")
        url = v.http_url(c.get("webhook_url"), f"contacts[{n}].webhook_url") if channel == "webhook" else None
        out.append(
            EmergencyContact(
                name=v.req_string(c, "name", max_len=64),
                relation=v.req_string(c, "relation", max_len=32),
                phone=v.phone(c.get("phone"), f"contacts[{n}].phone"),
                channel=channel,
                webhook_url=url,
                priority=v.integer(c, "priority", 1, 99, default=n + 1),
            )
        )
    return out


@routes.post("/api/v1/elders")
async def create_elder(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, "elders.write")
    b = v.obj(await body(request), ELDER_FIELDS)
    phones = b.get("phones", [])
    if not isinstance(phones, list) or len(phones) > 5:
        raise ValidationError("phones must be a list of at most 5 numbers", field="phones")
    elder = Elder(
        name=v.req_string(b, "name", max_len=64),
        gender=v.choice(b, "gender", ("F", "M")),
        birth_date=v.birth_date(b, "birth_date"),
        address=v.req_string(b, "address"),
        district=v.string(b, "district", max_len=64, required=False),
        lat=v.number(b, "lat", -90, 90),
        lon=v.number(b, "lon", -180, 180),
        phones=[v.phone(p, "phones") for p in phones],
        medical_notes=v.string(b, "medical_notes", max_len=4000, required=False) or "",
        care_level=v.choice(b, "care_level", CARE_LEVELS),
        economic_category=v.choice(b, "economic_category", ECONOMIC_CATEGORIES, default="none"),
        living_situation=v.choice(b, "living_situation", LIVING_SITUATIONS),
        home_radius_m=v.integer(b, "home_radius_m", 50, 50_000, default=500),
        hr_low=v.integer(b, "hr_low", 20, 120) if "hr_low" in b else None,
        hr_high=v.integer(b, "hr_high", 60, 250) if "hr_high" in b else None,
        inactivity_hours=v.number(b, "inactivity_hours", 0.0001, 168) if "inactivity_hours" in b else None,
        contacts=_contacts(b.get("contacts")),
    )
    async with request.app[SERVICES].sm() as session, session.begin():
        session.add(elder)
        await session.flush()
        audit(session, who, "elder.create", "elder", elder.id)
        out = elder_view(elder)
    log.info("elder created elder_id=%s name=%s by=%s", elder.id, mask_name(elder.name), who.user_id)
    return json_response(out, status=201)


# -- devices --------------------------------------------------------------------------


@routes.get("/api/v1/devices")
async def list_devices(request: web.Request) -> web.Response:
    require(principal(request), "devices.read")
    stmt = select(Device).order_by(Device.created_at, Device.device_id)
    if elder_id := request.query.get("elder_id"):
        stmt = stmt.where(Device.elder_id == elder_id)
    return await listing(request, stmt, device_view)


@routes.post("/api/v1/devices")
async def create_device(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, "devices.write")
    b = v.obj(await body(request), DEVICE_FIELDS)
    device_id = v.req_string(b, "device_id", max_len=64, pattern=DEVICE_ID_RE)
    elder_id = v.req_string(b, "elder_id", max_len=40)
    sim = b.get("sim_number")
    secret = new_device_secret()
    device = Device(
        device_id=device_id,
        kind=v.choice(b, "kind", DEVICE_KINDS),
        elder_id=elder_id,
        sim_number=v.phone(sim, "sim_number") if sim is not None else None,
        vendor=v.string(b, "vendor", max_len=64, required=False),
        model=v.string(b, "model", max_len=64, required=False),
        credential_hash=hash_device_secret(secret),
        heartbeat_interval_s=v.integer(b, "heartbeat_interval_s", 1, 86_400) if "heartbeat_interval_s" in b else None,
    )
    async with request.app[SERVICES].sm() as session:
        try:
            async with session.begin():
                if await session.get(Elder, elder_id) is None:
                    raise ValidationError(f"elder {elder_id} does not exist", field="elder_id")
                if await session.get(Device, device_id) is not None:
                    raise ConflictError(f"device {device_id} is already registered")
                session.add(device)
                audit(session, who, "device.create", "device", device_id, elder_id=elder_id)
        except IntegrityError as exc:
            raise ConflictError(f"device {device_id} is already registered") from exc
    if (gateway := request.app[SERVICES].gateway) is not None:
        gateway.directory.invalidate(device_id)  # it may have spoken before it was registered
    out = device_view(device)
    # Returned once: only the hash is kept.
    out["credentials"] = {"username": device_id, "password": secret}
    return json_response(out, status=201)


@routes.get("/api/v1/devices/{id}")
async def get_device(request: web.Request) -> web.Response:
    require(principal(request), "devices.read")
    device_id = request.match_info["id"]
    svc = request.app[SERVICES]
    async with svc.sm() as session:
        device = await session.get(Device, device_id)
        if device is None:
            raise NotFoundError(f"device {device_id} not found")
        conditions = (
            await session.scalars(select(DeviceCondition).where(DeviceCondition.device_id == device_id))
        ).all()
    out = device_view(device)
    out["heartbeat_interval_s"] = device.heartbeat_interval_s
    out["conditions"] = [
        {
            "condition": c.condition,
            "active": c.active,
            "episodes": c.episodes,
            "opened_at": iso(c.opened_at),
            "cleared_at": iso(c.cleared_at),
            "incident_id": c.incident_id,
        }
        for c in conditions
    ]
    out["presence"] = None
    if svc.gateway is not None:
        try:
            out["presence"] = await svc.gateway.presence.state(device_id)
        except (RedisError, OSError):
            out["presence"] = {"state": "unavailable"}
    return json_response(out)


def _commands(request: web.Request) -> CommandService:
    commands = request.app[SERVICES].commands
    if commands is None:
        raise ConflictError("the device gateway is not running")
    return commands


@routes.post("/api/v1/devices/{id}/commands")
async def send_command(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, "commands.write")
    b = v.obj(await body(request), ("type", "params", "ttl_s", "incident_id"))
    params = b.get("params", {})
    if not isinstance(params, dict):
        raise ValidationError("params must be an object", field="params")
    try:
        out = await _commands(request).send(
            request.match_info["id"],
            v.choice(b, "type", COMMAND_TYPES),
            params,
            ttl_s=v.integer(b, "ttl_s", 5, 86_400, default=300),
            actor=who.user_id,
            now=datetime.now(UTC),
            incident_id=v.string(b, "incident_id", max_len=40, required=False),
        )
    except ContractError as exc:
        raise ValidationError(exc.reason, field="params") from exc
    except UnknownDeviceError as exc:
        raise NotFoundError(str(exc)) from exc
    except UnknownIncidentError as exc:
        raise ValidationError(str(exc), field="incident_id") from exc
    return json_response(out, status=201)


@routes.get("/api/v1/devices/{id}/commands")
async def list_commands(request: web.Request) -> web.Response:
    require(principal(request), "devices.read")
    stmt = (
        select(DeviceCommand)
        .where(DeviceCommand.device_id == request.match_info["id"])
        .order_by(DeviceCommand.created_at.desc(), DeviceCommand.id.desc())
    )
    return await listing(request, stmt, command_view)


@routes.get("/api/v1/commands/{id}")
async def get_command(request: web.Request) -> web.Response:
    require(principal(request), "devices.read")
    async with request.app[SERVICES].sm() as session:
        command = await session.get(DeviceCommand, request.match_info["id"])
    if command is None:
        raise NotFoundError(f"command {request.match_info['id']} not found")
    return json_response(command_view(command))


# -- incidents ------------------------------------------------------------------------


@routes.get("/api/v1/incidents")
async def list_incidents(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, "incidents.read")
    stmt = select(Incident).order_by(Incident.created_at.desc(), Incident.id.desc())
    if not who.is_console:
        stmt = stmt.where(Incident.elder_id == (who.elder_id or ""))
    if status := request.query.get("status"):
        stmt = stmt.where(Incident.status.in_(status.split(",")))
    if elder_id := request.query.get("elder_id"):
        stmt = stmt.where(Incident.elder_id == elder_id)
    return await listing(request, stmt, incident_view)


@routes.get("/api/v1/incidents/{id}")
async def get_incident(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, "incidents.read")
    incident_id = request.match_info["id"]
    async with request.app[SERVICES].sm() as session:
        incident = await session.scalar(
            select(Incident).where(Incident.id == incident_id).options(selectinload(Incident.timeline))
        )
        if incident is None or not who.can_see_elder(incident.elder_id):
            raise NotFoundError(f"incident {incident_id} not found")
        notes = (
            await session.scalars(
                select(Notification).where(Notification.incident_id == incident_id).order_by(Notification.created_at)
            )
        ).all()
        offers = (
            await session.scalars(select(Offer).where(Offer.incident_id == incident_id).order_by(Offer.offered_at))
        ).all()
        timers = (
            await session.scalars(
                select(EscalationTimer)
                .where(EscalationTimer.incident_id == incident_id)
                .order_by(EscalationTimer.track)
            )
        ).all()
        out = incident_view(incident)
        out["timeline"] = [timeline_view(e) for e in incident.timeline]
        out["notifications"] = [notification_view(n) for n in notes]
        out["offers"] = [offer_view(o) for o in offers]
        if who.is_console:  # families see what happens, not the escalation machinery
            out["escalation"] = pending_summary(timers)
    return json_response(out)


# -- websocket ------------------------------------------------------------------------


@routes.get("/api/v1/ws")
async def websocket(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    require(who, "ws.connect")
    bus = request.app[SERVICES].bus
    return await request.app[HUB].handle(request, who, replay=bus.since if bus is not None else None)
