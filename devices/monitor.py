"""The sweeper: one task that turns passed deadlines into presence changes and incidents.

Every ``sweep_s`` it pops, atomically and across instances, the devices whose heartbeat
deadline passed (-> ``device.offline``, damped against flapping), those offline longer than
the grace period (-> a maintenance incident), those of elders living alone that stopped
moving (-> an inactivity incident), and the commands that expired. No timer per device:
100,000 devices are three sorted sets.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from devices import rules
from devices.gateway import PRESENCE_DAMPING, DeviceGateway
from hotline.bus import EventBus
from hotline.tasks import raise_if_cancelling

log = logging.getLogger(__name__)


class PresenceMonitor:
    def __init__(
        self, gateway: DeviceGateway, bus: EventBus, *, sweep_s: float = 0.5, command_sweep_s: float = 2.0
    ) -> None:
        self._gw = gateway
        self._bus = bus
        self.sweep_s = sweep_s
        self.command_sweep_s = command_sweep_s
        self._next_command_sweep = 0.0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_s)
            try:
                await self.sweep()
            except (RedisError, OSError, SQLAlchemyError) as exc:
                raise_if_cancelling()
                log.warning("presence sweep failed (%s); retrying next cycle", exc)
            raise_if_cancelling()

    async def sweep(self) -> None:
        gw, presence = self._gw, self._gw.presence
        now = time.time()
        for device_id in await presence.expire(now, maint_after_s=gw.policy.offline_incident_after_s):
            await self._offline(device_id, now)
        for device_id in await presence.pop_due(presence.k_maint, now):
            await self._condition(
                device_id,
                rules.Change(
                    "offline", True, {"source": "presence", "offline_for_s": gw.policy.offline_incident_after_s}
                ),
            )
        for device_id in await presence.pop_due(presence.k_inactive, now):
            await self._condition(device_id, rules.Change("inactivity", True, {"source": "no movement"}))
        if now >= self._next_command_sweep:
            self._next_command_sweep = now + self.command_sweep_s
            for message in await gw.commands.expire_due(gw._clock.now()):
                await self._bus.publish(message)

    async def _offline(self, device_id: str, now: float) -> None:
        gw = self._gw
        info = await gw.directory.get(device_id)
        damping, started = (await gw.presence.damping(device_id)).on_offline(now, PRESENCE_DAMPING)
        await gw.presence.set_damping(device_id, damping)
        gw.metrics["went_offline"] += 1
        elder_id = info.elder.elder_id if info else None
        if started:
            await self._bus.publish({"type": "device.flapping", "device_id": device_id, "elder_id": elder_id})
        if not damping.suppressed:
            await self._bus.publish({"type": "device.offline", "device_id": device_id, "elder_id": elder_id})
        log.info("device offline device_id=%s suppressed=%s", device_id, damping.suppressed)

    async def _condition(self, device_id: str, change: rules.Change) -> None:
        info = await self._gw.directory.get(device_id)
        if info is None:
            return
        for message in await self._gw.conditions.apply(info, [change], self._gw._clock.now()):
            await self._bus.publish(message)
        self._gw._on_notifications()
