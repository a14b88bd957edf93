"""Elders, devices, commands and incidents under /api/v1. Every operation checks the caller's role."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiohttp import web
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from devices.commands import CommandService
from devices.credentials import hash_device_secret, new_device_secret
from devices.errors import ContractError, UnknownDeviceError, UnknownIncidentError
from hotline.api.common import audit, listing, running
from hotline.api.keys import HUB, SERVICES
from hotline.api.models import (
    CommandIn,
    DeviceIn,
    DeviceQuery,
    ElderIn,
    ElderPatch,
    ElderQuery,
    IncidentQuery,
    PageQuery,
)
from hotline.api.registry import Api, principal
from hotline.core import wire
from hotline.core.messages import ConsoleFeed
from hotline.errors import ConflictError, NotFoundError, ValidationError
from hotline.privacy import mask_name
from hotline.storage.models import (
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

log = logging.getLogger(__name__)
api = Api()


# -- elders ---------------------------------------------------------------------------


@api.get("/api/v1/elders", response=wire.Page[wire.Elder], permission="elders.read", tag="elders")
async def list_elders(request: web.Request, query: ElderQuery) -> wire.Page[wire.Elder]:
    """Elders, oldest record first; a family account sees only its own elder."""
    who = principal(request)
    stmt = select(Elder).options(selectinload(Elder.contacts)).order_by(Elder.created_at, Elder.id)
    if not who.is_console:
        stmt = stmt.where(Elder.id == (who.elder_id or ""))
    if query.q:
        stmt = stmt.where(Elder.name.contains(query.q))
    return await listing(request, stmt, query, wire.Elder.model_validate)


@api.get("/api/v1/elders/{id}", response=wire.ElderDetail, permission="elders.read", tag="elders")
async def get_elder(request: web.Request) -> wire.ElderDetail:
    """One elder with contacts and devices. Every read is audited."""
    who = principal(request)
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
        return wire.ElderDetail.model_validate(elder)


def _contacts(body: ElderIn) -> list[EmergencyContact]:
    out = []
    for n, c in enumerate(body.contacts):
        if c.channel == "webhook" and c.webhook_url is None:
            raise ValidationError(
                f"contacts[{n}].webhook_url is required for a webhook contact", field=f"contacts[{n}].webhook_url"
            )
        out.append(
            EmergencyContact(
                name=c.name,
                relation=c.relation,
                phone=c.phone,
                channel=c.channel,
                webhook_url=c.webhook_url if c.channel == "webhook" else None,
                priority=c.priority or n + 1,
            )
        )
    return out


@api.post("/api/v1/elders", response=wire.Elder, status=201, permission="elders.write", tag="elders")
async def create_elder(request: web.Request, body: ElderIn) -> wire.Elder:
    """Register an elder with their emergency contacts."""
    who = principal(request)
    fields = body.model_dump(exclude={"contacts", "region", "eligibility"})
    eligibility = body.eligibility or wire.Eligibility.derived(body.care_level, body.economic_category)
    elder = Elder(
        **fields,
        region=body.region or request.app[SERVICES].settings.region,
        eligibility=eligibility.model_dump(mode="json"),
        contacts=_contacts(body),
    )
    async with request.app[SERVICES].sm() as session, session.begin():
        session.add(elder)
        await session.flush()
        audit(session, who, "elder.create", "elder", elder.id)
        out = wire.Elder.model_validate(elder)
    log.info("elder created elder_id=%s name=%s by=%s", elder.id, mask_name(elder.name), who.user_id)
    return out


@api.patch("/api/v1/elders/{id}", response=wire.Elder, permission="elders.write", tag="elders")
async def patch_elder(request: web.Request, body: ElderPatch) -> wire.Elder:
    """Change an elder's record: only the fields given. The eligibility is replaced as a whole."""
    who = principal(request)
    elder_id = request.match_info["id"]
    values = body.model_dump(include=body.model_fields_set, mode="json")
    if body.birth_date is not None:
        values["birth_date"] = body.birth_date
    async with request.app[SERVICES].sm() as session, session.begin():
        elder = await session.scalar(
            select(Elder).where(Elder.id == elder_id).options(selectinload(Elder.contacts)).with_for_update()
        )
        if elder is None:
            raise NotFoundError(f"elder {elder_id} not found")
        for name, value in values.items():
            setattr(elder, name, value)
        audit(session, who, "elder.update", "elder", elder_id, fields=sorted(body.model_fields_set))
        out = wire.Elder.model_validate(elder)
    log.info("elder updated elder_id=%s fields=%s by=%s", elder_id, ",".join(sorted(values)), who.user_id)
    return out


# -- devices --------------------------------------------------------------------------


@api.get("/api/v1/devices", response=wire.Page[wire.Device], permission="devices.read", tag="devices")
async def list_devices(request: web.Request, query: DeviceQuery) -> wire.Page[wire.Device]:
    """Registered devices, optionally one elder's."""
    stmt = select(Device).order_by(Device.created_at, Device.device_id)
    if query.elder_id:
        stmt = stmt.where(Device.elder_id == query.elder_id)
    return await listing(request, stmt, query, wire.Device.model_validate)


@api.post(
    "/api/v1/devices",
    response=wire.RegisteredDevice,
    status=201,
    permission="devices.write",
    errors=(409,),
    tag="devices",
)
async def create_device(request: web.Request, body: DeviceIn) -> wire.RegisteredDevice:
    """Register a device. Its MQTT password is in the answer, once: only a hash is kept."""
    who = principal(request)
    secret = new_device_secret()
    device = Device(**body.model_dump(), credential_hash=hash_device_secret(secret))
    async with request.app[SERVICES].sm() as session:
        try:
            async with session.begin():
                if await session.get(Elder, body.elder_id) is None:
                    raise ValidationError(f"elder {body.elder_id} does not exist", field="elder_id")
                if await session.get(Device, body.device_id) is not None:
                    raise ConflictError(f"device {body.device_id} is already registered")
                session.add(device)
                audit(session, who, "device.create", "device", body.device_id, elder_id=body.elder_id)
        except IntegrityError as exc:
            raise ConflictError(f"device {body.device_id} is already registered") from exc
    _credentials_changed(request, body.device_id)  # it may have spoken before it was registered
    return wire.RegisteredDevice.model_validate(
        {
            **wire.Device.model_validate(device).model_dump(),
            "credentials": {"username": body.device_id, "password": secret},
        }
    )


def _credentials_changed(request: web.Request, device_id: str) -> None:
    svc = request.app[SERVICES]
    if svc.gateway is not None:
        svc.gateway.directory.invalidate(device_id)
    if svc.broker_auth is not None:
        svc.broker_auth.wake()  # the broker's password file, now rather than at the next look


@api.post(
    "/api/v1/devices/{id}/credentials",
    response=wire.RegisteredDevice,
    status=201,
    permission="devices.write",
    errors=(404, 409),
    tag="devices",
)
async def rotate_device_credentials(request: web.Request) -> wire.RegisteredDevice:
    """Give a device a new MQTT password (in the answer, once); the old one is refused by the
    broker within HOTLINE_BROKER_AUTH_SYNC_S."""
    who = principal(request)
    device_id = request.match_info["id"]
    secret = new_device_secret()
    async with request.app[SERVICES].sm() as session, session.begin():
        device = await session.get(Device, device_id)
        if device is None:
            raise NotFoundError(f"device {device_id} not found")
        if device.retired_at is not None:
            raise ConflictError(f"device {device_id} is retired")
        device.credential_hash = hash_device_secret(secret)
        device.credentials_changed_at = datetime.now(UTC)
        audit(session, who, "device.rotate_credentials", "device", device_id)
        out = wire.Device.model_validate(device).model_dump()
    _credentials_changed(request, device_id)
    log.info("device credentials rotated device_id=%s by=%s", device_id, who.user_id)
    return wire.RegisteredDevice.model_validate({**out, "credentials": {"username": device_id, "password": secret}})


@api.delete("/api/v1/devices/{id}", response=wire.Device, permission="devices.write", errors=(404,), tag="devices")
async def retire_device(request: web.Request) -> wire.Device:
    """Retire a device: its history stays, its credential is refused by the broker within
    HOTLINE_BROKER_AUTH_SYNC_S and its messages by the gateway at once. Retiring twice is a no-op."""
    who = principal(request)
    device_id = request.match_info["id"]
    async with request.app[SERVICES].sm() as session, session.begin():
        device = await session.get(Device, device_id)
        if device is None:
            raise NotFoundError(f"device {device_id} not found")
        if device.retired_at is None:
            device.retired_at = device.credentials_changed_at = datetime.now(UTC)
            audit(session, who, "device.retire", "device", device_id)
        out = wire.Device.model_validate(device)
    _credentials_changed(request, device_id)
    log.info("device retired device_id=%s by=%s", device_id, who.user_id)
    return out


@api.get("/api/v1/devices/{id}", response=wire.DeviceDetail, permission="devices.read", tag="devices")
async def get_device(request: web.Request) -> wire.DeviceDetail:
    """One device with its conditions and its presence."""
    device_id = request.match_info["id"]
    svc = request.app[SERVICES]
    async with svc.sm() as session:
        device = await session.get(Device, device_id)
        if device is None:
            raise NotFoundError(f"device {device_id} not found")
        conditions = (
            await session.scalars(select(DeviceCondition).where(DeviceCondition.device_id == device_id))
        ).all()
    presence = None
    if svc.gateway is not None:
        try:
            presence = await svc.gateway.presence.state(device_id)
        except (RedisError, OSError):
            presence = {"state": "unavailable"}
    return wire.DeviceDetail.model_validate(
        {
            **wire.Device.model_validate(device).model_dump(),
            "heartbeat_interval_s": device.heartbeat_interval_s,
            "conditions": [wire.DeviceConditionState.model_validate(c) for c in conditions],
            "presence": presence,
        }
    )


def _commands(request: web.Request) -> CommandService:
    return running(request.app[SERVICES].commands, ConflictError("the device gateway is not running"))


@api.post(
    "/api/v1/devices/{id}/commands",
    response=wire.Command,
    status=201,
    permission="commands.write",
    errors=(409, 503),
    tag="devices",
)
async def send_command(request: web.Request, body: CommandIn) -> wire.Command:
    """Send a command down to a device; its result arrives on the WebSocket feed."""
    who = principal(request)
    try:
        out = await _commands(request).send(
            request.match_info["id"],
            body.type,
            body.params,
            ttl_s=body.ttl_s,
            actor=who.user_id,
            now=datetime.now(UTC),
            incident_id=body.incident_id,
        )
    except ContractError as exc:
        raise ValidationError(exc.reason, field="params") from exc
    except UnknownDeviceError as exc:
        raise NotFoundError(str(exc)) from exc
    except UnknownIncidentError as exc:
        raise ValidationError(str(exc), field="incident_id") from exc
    return wire.Command.model_validate(out)


@api.get("/api/v1/devices/{id}/commands", response=wire.Page[wire.Command], permission="devices.read", tag="devices")
async def list_commands(request: web.Request, query: PageQuery) -> wire.Page[wire.Command]:
    """A device's commands, newest first."""
    stmt = (
        select(DeviceCommand)
        .where(DeviceCommand.device_id == request.match_info["id"])
        .order_by(DeviceCommand.created_at.desc(), DeviceCommand.id.desc())
    )
    return await listing(request, stmt, query, wire.Command.model_validate)


@api.get("/api/v1/commands/{id}", response=wire.Command, permission="devices.read", tag="devices")
async def get_command(request: web.Request) -> wire.Command:
    """One command and its result."""
    async with request.app[SERVICES].sm() as session:
        command = await session.get(DeviceCommand, request.match_info["id"])
    if command is None:
        raise NotFoundError(f"command {request.match_info['id']} not found")
    return wire.Command.model_validate(command)


# -- incidents ------------------------------------------------------------------------


@api.get("/api/v1/incidents", response=wire.Page[wire.Incident], permission="incidents.read", tag="incidents")
async def list_incidents(request: web.Request, query: IncidentQuery) -> wire.Page[wire.Incident]:
    """Incidents, newest first; a family account sees only its own elder's."""
    who = principal(request)
    stmt = select(Incident).order_by(Incident.created_at.desc(), Incident.id.desc())
    if not who.is_console:
        stmt = stmt.where(Incident.elder_id == (who.elder_id or ""))
    if query.status:
        stmt = stmt.where(Incident.status.in_(query.status.split(",")))
    if query.elder_id:
        stmt = stmt.where(Incident.elder_id == query.elder_id)
    return await listing(request, stmt, query, wire.Incident.model_validate)


@api.get("/api/v1/incidents/{id}", response=wire.StaffIncidentDetail, permission="incidents.read", tag="incidents")
async def get_incident(request: web.Request) -> wire.IncidentDetail:
    """One incident with its timeline, notifications and offers; console staff also see the
    escalation steps still to come."""
    who = principal(request)
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
        detail = {
            **wire.Incident.model_validate(incident).model_dump(),
            "timeline": incident.timeline,
            "notifications": notes,
            "offers": offers,
        }
        if not who.is_console:  # families see what happens, not the escalation machinery
            return wire.IncidentDetail.model_validate(detail)
        return wire.StaffIncidentDetail.model_validate({**detail, "escalation": timers})


# -- websocket ------------------------------------------------------------------------


@api.get("/api/v1/ws", response=ConsoleFeed, status=101, permission="ws.connect", tag="feed")
async def websocket(request: web.Request) -> web.StreamResponse:
    """The console feed (WebSocket).

    Each text frame is one ConsoleFeed message, told apart by its type. Reconnect with
    ?since=SEQ to be sent what was missed; ?token= stands in for the header in browsers.
    """
    who = principal(request)
    bus = request.app[SERVICES].bus
    return await request.app[HUB].handle(request, who, replay=bus.since if bus is not None else None)
