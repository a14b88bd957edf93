"""What the gateway needs to know about a device, cached: kind, elder, thresholds.

Telemetry arrives far more often than registrations change, so device facts are kept in
memory for ``ttl_s`` and loaded from the database on a miss. Unknown ids are cached too
(briefly), so a flood from an unregistered device does not become a flood of queries.
"""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices.rules import (
    DEFAULT_HR_HIGH,
    DEFAULT_HR_LOW,
    DEFAULT_INACTIVITY_HOURS,
    HEARTBEAT_INTERVAL_S,
    DeviceInfo,
    ElderProfile,
)
from hotline.storage.models import Device, Elder


class DeviceDirectory:
    def __init__(self, sm: async_sessionmaker[AsyncSession], *, ttl_s: float = 60, unknown_ttl_s: float = 10) -> None:
        self._sm = sm
        self._ttl = ttl_s
        self._unknown_ttl = unknown_ttl_s
        self._cache: dict[str, tuple[float, DeviceInfo | None]] = {}

    async def get(self, device_id: str) -> DeviceInfo | None:
        hit = self._cache.get(device_id)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self._sm() as session:
            row = (
                await session.execute(
                    select(Device, Elder).join(Elder, Device.elder_id == Elder.id).where(Device.device_id == device_id)
                )
            ).first()
        info = None if row is None else to_info(row[0], row[1])
        self._cache[device_id] = (now + (self._ttl if info else self._unknown_ttl), info)
        return info

    def invalidate(self, device_id: str | None = None) -> None:
        if device_id is None:
            self._cache.clear()
        else:
            self._cache.pop(device_id, None)

    def __len__(self) -> int:
        return len(self._cache)


def to_info(device: Device, elder: Elder) -> DeviceInfo:
    return DeviceInfo(
        device_id=device.device_id,
        kind=device.kind,
        heartbeat_interval_s=device.heartbeat_interval_s or HEARTBEAT_INTERVAL_S.get(device.kind, 300),
        elder=ElderProfile(
            elder_id=elder.id,
            lat=elder.lat,
            lon=elder.lon,
            home_radius_m=elder.home_radius_m,
            hr_low=elder.hr_low or DEFAULT_HR_LOW,
            hr_high=elder.hr_high or DEFAULT_HR_HIGH,
            lives_alone=elder.living_situation == "alone",
            inactivity_hours=elder.inactivity_hours or DEFAULT_INACTIVITY_HOURS,
        ),
    )
