"""Commands to devices: sent once, tracked to a result or to expiry, visible in the API.

The row is written before the command is published, so a result can never arrive for a
command we do not know. The MQTT 5 message expiry interval makes the broker drop a command
that an offline device did not fetch in time; the device also checks ``expires_at``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices import contract
from devices.errors import BrokerUnavailableError, ContractError, UnknownDeviceError, UnknownIncidentError
from devices.mqtt_link import MqttLink
from hotline.core import wire
from hotline.storage.models import AuditEntry, Device, DeviceCommand, Incident

log = logging.getLogger(__name__)

TERMINAL = ("done", "failed", "unsupported", "expired")


def command_view(c: DeviceCommand) -> dict[str, Any]:
    return wire.dump(wire.Command, c)


class CommandService:
    def __init__(
        self,
        sm: async_sessionmaker[AsyncSession],
        link: MqttLink,
        *,
        prefix: str,
        callback_number: str,
        on_interval_change: Callable[[str], None] = lambda _d: None,
    ) -> None:
        self._sm = sm
        self._link = link
        self._prefix = prefix
        self.callback_number = callback_number
        self._on_interval_change = on_interval_change

    async def send(
        self,
        device_id: str,
        type_: str,
        params: dict[str, Any],
        *,
        ttl_s: int,
        actor: str,
        now: datetime,
        incident_id: str | None = None,
    ) -> dict[str, Any]:
        if type_ == "call_back" and "number" not in params:
            params = {**params, "number": self.callback_number}
        expires = now + timedelta(seconds=ttl_s)
        command = DeviceCommand(
            device_id=device_id,
            type=type_,
            params=params,
            status="sent",
            created_by=actor,
            incident_id=incident_id,
            created_at=now,
            expires_at=expires,
        )
        async with self._sm() as session, session.begin():
            if await session.get(Device, device_id) is None:
                raise UnknownDeviceError(f"device {device_id} is not registered")
            if incident_id is not None and await session.get(Incident, incident_id) is None:
                raise UnknownIncidentError(f"incident {incident_id} does not exist")
            session.add(command)
            await session.flush()
            payload = contract.build_command(command.id, type_, params, expires)  # validates; raises ContractError
            session.add(
                AuditEntry(
                    at=now,
                    actor=actor,
                    action="device.command",
                    target_type="device",
                    target_id=device_id,
                    detail={"command_id": command.id, "type": type_},
                )
            )
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.MessageExpiryInterval = ttl_s
        view = command_view(command)
        try:
            self._link.publish(contract.topics(self._prefix, device_id)["commands"], payload, qos=1, properties=props)
        except BrokerUnavailableError as exc:
            await self._finish(command.id, "failed", str(exc), None, now)
            view.update(status="failed", detail=str(exc))  # as _finish stored it
        log.info("command sent command_id=%s device_id=%s type=%s", command.id, device_id, type_)
        return view

    async def on_result(self, device_id: str, result: contract.CommandResult, now: datetime) -> dict[str, Any]:
        """Record a device's answer. Raises :class:`ContractError` for a command it was never sent."""
        async with self._sm() as session:
            command = await session.get(DeviceCommand, result.command_id)
        if command is None or command.device_id != device_id:
            raise ContractError(f"unknown command {result.command_id}")
        extra = None
        if result.location is not None:
            extra = {"location": {"lat": result.location.lat, "lon": result.location.lon}}
        if command.status in TERMINAL:
            # Late (after expiry) or repeated: keep the first outcome, but note what came.
            log.info("late command result command_id=%s status=%s was=%s", command.id, result.status, command.status)
            return {
                "type": "device.command",
                "device_id": device_id,
                "command_id": command.id,
                "status": command.status,
                "late_result": result.status,
            }
        await self._finish(command.id, result.status, result.detail, extra, now)
        if result.status == "done" and command.type == "set_heartbeat_interval":
            async with self._sm() as session, session.begin():
                await session.execute(
                    update(Device)
                    .where(Device.device_id == device_id)
                    .values(heartbeat_interval_s=int(command.params["seconds"]))
                )
            self._on_interval_change(device_id)
        return {
            "type": "device.command",
            "device_id": device_id,
            "command_id": command.id,
            "command": command.type,
            "status": result.status,
            "detail": result.detail,
            "result": extra,
        }

    async def _finish(
        self, command_id: str, status: str, detail: str | None, result: dict[str, Any] | None, now: datetime
    ) -> bool:
        async with self._sm() as session, session.begin():
            done = await session.execute(
                update(DeviceCommand)
                .where(DeviceCommand.id == command_id, DeviceCommand.status == "sent")
                .values(status=status, detail=(detail or None) and detail[:500], result=result, finished_at=now)
            )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    async def expire_due(self, now: datetime) -> list[dict[str, Any]]:
        async with self._sm() as session:
            due = (
                await session.scalars(
                    select(DeviceCommand)
                    .where(DeviceCommand.status == "sent", DeviceCommand.expires_at < now)
                    .limit(500)
                )
            ).all()
        out = []
        for c in due:
            if await self._finish(c.id, "expired", "no result before expires_at", None, now):
                out.append(
                    {
                        "type": "device.command",
                        "device_id": c.device_id,
                        "command_id": c.id,
                        "command": c.type,
                        "status": "expired",
                    }
                )
        return out
