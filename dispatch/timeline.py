"""The incident timeline: one way to write an entry, for every package that writes one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hotline.storage.models import IncidentEvent


def add_timeline(
    session: AsyncSession, incident_id: str, *, kind: str, actor: str, now: datetime, data: dict[str, Any]
) -> None:
    """Add an entry to ``incident_id``'s timeline, in the caller's transaction."""
    session.add(IncidentEvent(incident_id=incident_id, at=now, kind=kind, actor=actor, data=data))
