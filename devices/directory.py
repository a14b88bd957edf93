"""What the gateway needs to know about a device, cached: kind, elder, thresholds.

Telemetry arrives far more often than registrations change, so device facts are kept in
memory for ``ttl_s`` (longer than any heartbeat interval, or every heartbeat would be a
miss) and loaded from the database on a miss. This instance's own API changes invalidate
the entry at once; another instance's are seen within ``ttl_s``. Unknown ids are cached too
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
    def __init__(self, sm: async_sessionmaker[AsyncSession], *, ttl_s: float = 600, unknown_ttl_s: float = 10) -> None:
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
                    select(Device, Elder)
                    .join(Elder, Device.elder_id == Elder.id)
                    .where(Device.device_id == device_id, Device.retired_at.is_(None))
                )
            ).first()
        info = None if row is None else to_info(row[0], row[1])
        self._cache[device_id] = (now + (self._ttl if info else self._unknown_ttl), info)
        return info

    async def preload(self, *, chunk: int = 20_000) -> int:
        """Load every registered device at start-up in a few queries, so a restart with a large
        fleet does not turn the first heartbeat of each device into its own query."""
        now = time.monotonic()
        loaded = 0
        last = ""
        while True:
            async with self._sm() as session:
                rows = (
                    await session.execute(
                        select(Device, Elder)
                        .join(Elder, Device.elder_id == Elder.id)
                        .where(Device.device_id > last, Device.retired_at.is_(None))
                        .order_by(Device.device_id)
                        .limit(chunk)
                    )
                ).all()
            for device, elder in rows:
                self._cache[device.device_id] = (now + self._ttl, to_info(device, elder))
            loaded += len(rows)
            if len(rows) < chunk:
                return loaded
            last = rows[-1][0].device_id

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
