"""Incidents: opening one from an alarm, with its timeline, audit entry and family alerts.

Everything here runs inside the caller's transaction, so an incident, its first timeline
entry and its outbox rows are committed together or not at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.notify.outbox import enqueue_family_alerts
from hotline.privacy import mask_name
from hotline.storage.models import AuditEntry, Elder, Incident, IncidentEvent
from hotline.views import elder_summary, incident_view

log = logging.getLogger(__name__)

SEVERITY = {"sos": "critical", "fall": "critical"}


@dataclass(frozen=True, slots=True)
class IncidentCreated:
    """What the console feed says about a new incident (built inside the transaction)."""

    incident: dict[str, Any]
    elder: dict[str, Any]
    notifications: int

    def message(self) -> dict[str, Any]:
        return {
            "type": "incident.created",
            "elder_id": self.elder["id"],
            "incident": self.incident,
            "elder": self.elder,
        }


async def add_timeline(
    session: AsyncSession, incident_id: str, *, kind: str, actor: str, now: datetime, data: dict[str, Any]
) -> None:
    session.add(IncidentEvent(incident_id=incident_id, at=now, kind=kind, actor=actor, data=data))


async def open_incident(
    session: AsyncSession,
    *,
    elder: Elder,
    type_: str,
    source: str,
    actor: str,
    now: datetime,
    device_id: str | None = None,
    location: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
    severity: str | None = None,
    notify_family: bool = True,
) -> tuple[Incident, IncidentCreated]:
    """Create an open incident for ``elder`` and queue the family alerts. ``elder.contacts`` must be loaded."""
    incident = Incident(
        elder_id=elder.id,
        device_id=device_id,
        type=type_,
        severity=severity or SEVERITY.get(type_, "high"),
        status="open",
        source=source,
        location=location,
        created_at=now,
        updated_at=now,
    )
    session.add(incident)
    await session.flush()
    session.add(IncidentEvent(incident_id=incident.id, at=now, kind="opened", actor=actor, data=detail or {}))
    session.add(
        AuditEntry(
            at=now,
            actor=actor,
            action="incident.open",
            target_type="incident",
            target_id=incident.id,
            detail={"type": type_, "source": source, "elder_id": elder.id},
        )
    )
    view = incident_view(incident)
    summary = elder_summary(elder)
    queued = await enqueue_family_alerts(session, incident=view, elder=elder, now=now) if notify_family else 0
    if queued:
        session.add(
            IncidentEvent(
                incident_id=incident.id,
                at=now,
                kind="family_notified",
                actor="system",
                data={"notifications": queued},
            )
        )
    log.info(
        "incident opened incident_id=%s type=%s elder=%s source=%s notifications=%d",
        incident.id,
        type_,
        mask_name(elder.name),
        source,
        queued,
    )
    return incident, IncidentCreated(incident=view, elder=summary, notifications=queued)
