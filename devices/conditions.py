"""Device conditions in the database: one incident and one family alert per episode.

Opening is a compare-and-set on ``device_conditions.active``: of any number of messages
and instances that see the same low battery at once, exactly one flips it and opens the
incident. Which conditions are active is held in memory, loaded in one query and refreshed
every ``refresh_s``, so the steady stream of "battery is fine" samples never touches the
database; another instance's change is seen within ``refresh_s``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from devices.rules import POLICIES, Change, Condition, DeviceInfo
from dispatch.incidents import Incidents
from dispatch.timeline import add_timeline
from hotline.storage.models import DeviceCondition, Elder

log = logging.getLogger(__name__)


class ConditionService:
    def __init__(
        self, sm: async_sessionmaker[AsyncSession], *, refresh_s: float = 30, incidents: Incidents | None = None
    ) -> None:
        self._sm = sm
        self._incidents = incidents or Incidents()
        self.refresh_s = refresh_s
        self._active: dict[str, set[str]] = {}
        self._loaded = False
        self.opened = 0
        self.cleared = 0

    async def refresh(self) -> None:
        """Reload every active condition (a small set: only devices with a problem now)."""
        async with self._sm() as session:
            rows = (
                await session.execute(
                    select(DeviceCondition.device_id, DeviceCondition.condition).where(DeviceCondition.active.is_(True))
                )
            ).all()
        active: dict[str, set[str]] = {}
        for device_id, condition in rows:
            active.setdefault(device_id, set()).add(condition)
        self._active = active
        self._loaded = True

    async def _known_active(self, device_id: str) -> frozenset[str]:
        if not self._loaded:
            await self.refresh()
        # Only devices with a problem have an entry: 100,000 healthy devices cost nothing.
        return frozenset(self._active.get(device_id, ()))

    async def apply(self, info: DeviceInfo, changes: list[Change], now: datetime) -> list[dict[str, Any]]:
        """Apply rule changes; returns the console messages to publish (after commit)."""
        if not changes:
            return []
        active = await self._known_active(info.device_id)
        messages: list[dict[str, Any]] = []
        for change in changes:
            if change.open and change.condition not in active:
                messages += await self._open(info, change.condition, change.detail, now)
                self._active.setdefault(info.device_id, set()).add(change.condition)
                active = active | {change.condition}
            elif not change.open and change.condition in active:
                messages += await self._clear(info, change.condition, change.detail, now)
                remaining = self._active.get(info.device_id, set()) - {change.condition}
                if remaining:
                    self._active[info.device_id] = remaining
                else:
                    self._active.pop(info.device_id, None)
                active = active - {change.condition}
        return messages

    async def _open(
        self, info: DeviceInfo, condition: Condition, detail: dict[str, Any], now: datetime
    ) -> list[dict[str, Any]]:
        policy = POLICIES[condition]
        severity = "medium" if condition == "offline" and info.elder.lives_alone else policy.severity
        await self._ensure_row(info.device_id, condition)
        async with self._sm() as session, session.begin():
            flipped = await session.execute(
                update(DeviceCondition)
                .where(
                    DeviceCondition.device_id == info.device_id,
                    DeviceCondition.condition == condition,
                    DeviceCondition.active.is_(False),
                )
                .values(
                    active=True, episodes=DeviceCondition.episodes + 1, opened_at=now, cleared_at=None, detail=detail
                )
            )
            if flipped.rowcount != 1:  # type: ignore[attr-defined]
                return []  # another message or instance opened this episode
            elder = await session.scalar(
                select(Elder).where(Elder.id == info.elder.elder_id).options(selectinload(Elder.contacts))
            )
            assert elder is not None
            incident, created = await self._incidents.open(
                session,
                elder=elder,
                type_=policy.incident_type,
                source="device",
                actor=f"device:{info.device_id}",
                now=now,
                device_id=info.device_id,
                detail={"condition": condition, **detail},
                severity=severity,
                notify_family=policy.notify_family,
            )
            await session.execute(
                update(DeviceCondition)
                .where(DeviceCondition.device_id == info.device_id, DeviceCondition.condition == condition)
                .values(incident_id=incident.id)
            )
        self.opened += 1
        log.info("condition opened device_id=%s condition=%s incident_id=%s", info.device_id, condition, incident.id)
        return [
            *created.messages(),
            {
                "type": "device.condition",
                "device_id": info.device_id,
                "elder_id": info.elder.elder_id,
                "condition": condition,
                "state": "opened",
                "incident_id": incident.id,
                "detail": detail,
            },
        ]

    async def _clear(
        self, info: DeviceInfo, condition: Condition, detail: dict[str, Any], now: datetime
    ) -> list[dict[str, Any]]:
        async with self._sm() as session, session.begin():
            row = await session.scalar(
                select(DeviceCondition).where(
                    DeviceCondition.device_id == info.device_id, DeviceCondition.condition == condition
                )
            )
            flipped = await session.execute(
                update(DeviceCondition)
                .where(
                    DeviceCondition.device_id == info.device_id,
                    DeviceCondition.condition == condition,
                    DeviceCondition.active.is_(True),
                )
                .values(active=False, cleared_at=now)
            )
            if flipped.rowcount != 1 or row is None:  # type: ignore[attr-defined]
                return []
            if row.incident_id:
                add_timeline(
                    session,
                    row.incident_id,
                    kind="condition_cleared",
                    actor=f"device:{info.device_id}",
                    now=now,
                    data={"condition": condition, **detail},
                )
        self.cleared += 1
        log.info("condition cleared device_id=%s condition=%s", info.device_id, condition)
        return [
            {
                "type": "device.condition",
                "device_id": info.device_id,
                "elder_id": info.elder.elder_id,
                "condition": condition,
                "state": "cleared",
                "incident_id": row.incident_id,
                "detail": detail,
            }
        ]

    async def _ensure_row(self, device_id: str, condition: str) -> None:
        async with self._sm() as session:
            exists = await session.scalar(
                select(DeviceCondition.id).where(
                    DeviceCondition.device_id == device_id, DeviceCondition.condition == condition
                )
            )
        if exists is not None:
            return
        try:
            async with self._sm() as session, session.begin():
                session.add(DeviceCondition(device_id=device_id, condition=condition, active=False, episodes=0))
        except IntegrityError:
            pass  # created concurrently; the unique constraint kept it single

    def forget(self, device_id: str) -> None:
        self._active.pop(device_id, None)
