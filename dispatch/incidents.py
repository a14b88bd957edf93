"""Incidents: opening one from any signal, or merging the signal into the elder's open one.

Everything here runs inside the caller's transaction, so an incident, its first timeline
entry, its escalation timers, its first offer and its outbox rows are committed together
or not at all.

Merging: a 12349 call, an SOS and a fall about the same elder within ``merge_window`` are
one emergency, not three. A mergeable signal joins the elder's newest open mergeable
incident (tagged with its source on the timeline and in ``signals``) instead of opening
another; the elder's row is locked first, so two instances cannot both open one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.escalation import URGENT_TYPES, Effects, Escalator, Run, default_service
from dispatch.lifecycle import INCIDENT
from dispatch.notify.outbox import enqueue_family_alerts
from dispatch.timeline import add_timeline
from hotline.core import wire
from hotline.core.vocab import IncidentType, Severity
from hotline.privacy import mask_name
from hotline.storage.models import OPEN_STATUSES, SEVERITIES, AuditEntry, Elder, Incident, new_id

log = logging.getLogger(__name__)

SEVERITY = {"sos": "critical", "fall": "critical"}
# Signals that are the same emergency when they concern one elder at about the same time.
MERGEABLE = URGENT_TYPES


@dataclass(frozen=True, slots=True)
class IncidentCreated:
    """What the console feed says about a new (or merged-into) incident, built inside the transaction."""

    incident: dict[str, Any]
    elder: dict[str, Any]
    notifications: int
    merged: bool = False
    effects: Effects = field(default_factory=Effects)

    def message(self) -> dict[str, Any]:
        return {
            "type": "incident.merged" if self.merged else "incident.created",
            "elder_id": self.elder["id"],
            "incident": self.incident,
            "elder": self.elder,
        }

    def messages(self) -> list[dict[str, Any]]:
        return [self.message(), *self.effects.messages]


class Incidents:
    """Opens incidents. Without an escalator (unit tests of other packages) the family is
    alerted directly, as ``notify_family`` says; with one, the matching policy decides."""

    def __init__(self, escalator: Escalator | None = None, *, merge_window: timedelta = timedelta(minutes=10)) -> None:
        self.escalator = escalator
        self.merge_window = merge_window

    async def open(
        self,
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
        service: str | None = None,
        notify_family: bool = True,
    ) -> tuple[Incident, IncidentCreated]:
        """Open an incident for ``elder`` (or merge into the open one). ``elder.contacts`` must be loaded."""
        severity = severity or SEVERITY.get(type_, "high")
        signal = {"source": source, "type": type_, "at": now.isoformat(), "actor": actor, **(detail or {})}
        if type_ in MERGEABLE and self.merge_window > timedelta(0):
            # Serialise signals per elder: the no-op UPDATE is PostgreSQL's row lock and SQLite's write lock.
            await session.execute(update(Elder).where(Elder.id == elder.id).values(name=Elder.name))
            existing = await session.scalar(
                select(Incident)
                .where(
                    Incident.elder_id == elder.id,
                    Incident.status.in_(OPEN_STATUSES),
                    Incident.type.in_(MERGEABLE),
                    Incident.created_at >= now - self.merge_window,
                )
                .order_by(Incident.created_at.desc())
                .limit(1)
            )
            if existing is not None:
                return await self._merge(session, existing, elder, signal, severity=severity, now=now)
        incident = Incident(
            id=new_id("inc"),
            elder_id=elder.id,
            device_id=device_id,
            type=type_,
            severity=severity,
            status=INCIDENT.initial,
            source=source,
            location=location,
            signals=[signal],
            service=service or default_service(type_),
            created_at=now,
            updated_at=now,
        )
        session.add(incident)
        # Rows that reference it have no ORM relationship, so the unit of work cannot order them after it.
        await session.flush()
        add_timeline(session, incident.id, kind="opened", actor=actor, now=now, data=detail or {})
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
        fx = Effects()
        if self.escalator is not None:
            await self.escalator.start(Run(session, incident, elder, now, fx, fresh=True))
        elif notify_family:
            fx.notifications = await enqueue_family_alerts(
                session, incident=wire.dump(wire.Incident, incident), elder=elder, now=now
            )
            if fx.notifications:
                add_timeline(
                    session,
                    incident.id,
                    kind="family_notified",
                    actor="system",
                    now=now,
                    data={"notifications": fx.notifications},
                )
        log.info(
            "incident opened incident_id=%s type=%s elder=%s source=%s notifications=%d",
            incident.id,
            type_,
            mask_name(elder.name),
            source,
            fx.notifications,
        )
        return incident, IncidentCreated(
            incident=wire.dump(wire.Incident, incident),
            elder=wire.dump(wire.ElderSummary, elder),
            notifications=fx.notifications,
            effects=fx,
        )

    @staticmethod
    async def escalate_open_alarm(
        session: AsyncSession, *, elder_id: str, kind: str, actor: str, now: datetime, data: dict[str, Any]
    ) -> Incident | None:
        """Raise the elder's newest open alarm to critical (a wearable taken off during it);
        None when there is no open alarm."""
        alarm = await session.scalar(
            select(Incident)
            .where(
                Incident.elder_id == elder_id,
                Incident.status.in_(OPEN_STATUSES),
                Incident.type.in_((IncidentType.SOS.value, IncidentType.FALL.value)),
            )
            .order_by(Incident.created_at.desc())
            .limit(1)
        )
        if alarm is None:
            return None
        alarm.severity = Severity.CRITICAL
        alarm.updated_at = now
        add_timeline(session, alarm.id, kind=kind, actor=actor, now=now, data=data)
        return alarm

    @staticmethod
    async def _merge(
        session: AsyncSession, incident: Incident, elder: Elder, signal: dict[str, Any], *, severity: str, now: datetime
    ) -> tuple[Incident, IncidentCreated]:
        incident.signals = [*incident.signals, signal]
        if SEVERITIES.index(severity) > SEVERITIES.index(incident.severity):
            incident.severity = severity
        incident.updated_at = now
        add_timeline(session, incident.id, kind="signal.merged", actor=signal["actor"], now=now, data=signal)
        session.add(
            AuditEntry(
                at=now,
                actor=signal["actor"],
                action="incident.merge",
                target_type="incident",
                target_id=incident.id,
                detail={"type": signal["type"], "source": signal["source"]},
            )
        )
        log.info(
            "signal merged incident_id=%s type=%s source=%s elder=%s",
            incident.id,
            signal["type"],
            signal["source"],
            mask_name(elder.name),
        )
        return incident, IncidentCreated(
            incident=wire.dump(wire.Incident, incident),
            elder=wire.dump(wire.ElderSummary, elder),
            notifications=0,
            merged=True,
        )


async def open_incident(session: AsyncSession, **kwargs: Any) -> tuple[Incident, IncidentCreated]:
    """Open with no escalation and no merging: for tools and tests that need a bare incident."""
    return await Incidents(merge_window=timedelta(0)).open(session, **kwargs)
