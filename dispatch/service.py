"""Incident and offer transitions, for the API: one locked transaction each.

The state machine::

    open -> acknowledged -> dispatched -> accepted -> en_route -> on_scene -> resolved
      \\____________\\_____________\\___________\\__________\\___________\\-> resolved | cancelled

Acknowledging is also recorded on its own (``acknowledged_at``), because an automatic
offer may have moved the status to ``dispatched`` before an operator picks the alarm up.
Every transition writes the timeline and the audit log, ends the escalation tracks it
makes moot, and is announced on the console feed after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from dispatch.errors import DispatchConflictError, NotYoursError
from dispatch.escalation import (
    Effects,
    EscalationEngine,
    Escalator,
    Run,
    incident_message,
    lock_incident,
    offer_message,
    poke,
    settle,
)
from dispatch.incidents import IncidentCreated, Incidents
from dispatch.interpreter import ACCEPTED
from dispatch.lifecycle import INCIDENT, LIVE_OFFER_STATUSES, OFFER
from dispatch.timeline import add_timeline
from hotline.clock import Clock, SystemClock
from hotline.core import wire
from hotline.core.lifecycle import TransitionError
from hotline.storage.models import (
    OPEN_STATUSES,
    AuditEntry,
    Elder,
    EmergencyContact,
    Incident,
    Offer,
    Provider,
)

log = logging.getLogger(__name__)


class DispatchService:
    def __init__(
        self,
        sm: async_sessionmaker[AsyncSession],
        incidents: Incidents,
        engine: EscalationEngine,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._sm = sm
        self.incidents = incidents
        self.engine = engine
        self._clock = clock or SystemClock()

    @property
    def escalator(self) -> Escalator:
        assert self.incidents.escalator is not None
        return self.incidents.escalator

    def now(self) -> datetime:
        return self._clock.now()

    # -- operators ---------------------------------------------------------------------

    async def create(self, *, elder_id: str, actor: str, **kwargs: Any) -> tuple[dict[str, Any], bool]:
        """An operator-created incident; returns its view and whether it merged into an open one."""
        async with self._sm() as session, session.begin():
            elder = await session.scalar(
                select(Elder).where(Elder.id == elder_id).options(selectinload(Elder.contacts))
            )
            if elder is None:
                raise DispatchConflictError(f"elder {elder_id} does not exist")
            # open() writes the audit entry (incident.open, or incident.merge) with this actor.
            _, created = await self.incidents.open(session, elder=elder, actor=actor, now=self.now(), **kwargs)
        await self._announce_created(created)
        return created.incident, created.merged

    async def _announce_created(self, created: IncidentCreated) -> None:
        fx = Effects(messages=created.messages(), notifications=created.notifications)
        await self.engine.announce(fx)

    async def acknowledge(self, incident_id: str, actor: str) -> dict[str, Any]:
        async def move(session: AsyncSession, incident: Incident, now: datetime, fx: Effects) -> None:
            self._require_open(incident, "acknowledge")
            if incident.acknowledged_at is not None:
                return  # a second operator's click changes nothing
            incident.acknowledged_at, incident.acknowledged_by = now, actor
            INCIDENT.fire(incident, "acknowledge")
            add_timeline(session, incident.id, now=now, kind="acknowledged", actor=actor, data={})

        return await self._transition(incident_id, actor, "incident.acknowledge", move)

    async def dispatch(
        self, incident_id: str, actor: str, *, provider_id: str | None, service: str | None, timeout_s: int
    ) -> dict[str, Any]:
        async def move(session: AsyncSession, incident: Incident, now: datetime, fx: Effects) -> None:
            if not INCIDENT.can(incident.status, "offer"):
                raise TransitionError("incident", incident.status, "dispatch", subject=incident.id)
            elder = await self._elder(session, incident)
            offer, _ranking = await self.escalator.offer(
                Run(session, incident, elder, now, fx),
                timeout_s=timeout_s,
                service=service,
                provider_id=provider_id,
                actor=actor,
            )
            if offer is None:
                raise DispatchConflictError("no provider can take this incident now; see the routing decision")
            if incident.acknowledged_at is None:
                incident.acknowledged_at, incident.acknowledged_by = now, actor
            # The operator's offer restarts the provider track's clock from now: the track offers
            # again only if this offer runs out (it used to fire at once and withdraw the choice).
            await poke(session, incident.id, now, after_s=timeout_s)

        return await self._transition(incident_id, actor, "incident.dispatch", move)

    async def close(self, incident_id: str, actor: str, *, status: str, note: str | None) -> dict[str, Any]:
        async def move(session: AsyncSession, incident: Incident, now: datetime, fx: Effects) -> None:
            self._require_open(incident, "resolve" if status == "resolved" else "cancel")
            await self._finish(
                Run(session, incident, await self._elder(session, incident), now, fx),
                status=status,
                actor=actor,
                note=note,
            )

        return await self._transition(incident_id, actor, f"incident.{status}", move)

    async def family_confirm(
        self, incident_id: str, actor: str, *, contact_id: int | None = None, elder_id: str | None = None
    ) -> dict[str, Any]:
        """A relative says "I'm on my way". ``elder_id``: the family account's elder, checked here."""

        async def move(session: AsyncSession, incident: Incident, now: datetime, fx: Effects) -> None:
            if elder_id is not None and incident.elder_id != elder_id:
                raise NotYoursError(f"incident {incident.id} not found")
            who = actor
            if contact_id is not None:
                contact = await session.get(EmergencyContact, contact_id)
                if contact is None or contact.elder_id != incident.elder_id:
                    raise NotYoursError("the link does not belong to this incident")
                who = f"contact:{contact.id}"
            self._require_open(incident, "confirm")
            if incident.family_confirmed_at is None:
                incident.family_confirmed_at, incident.family_confirmed_by = now, who
            add_timeline(
                session, incident.id, now=now, kind="family.on_the_way", actor=who, data={"contact_id": contact_id}
            )

        return await self._transition(incident_id, actor, "incident.family_confirm", move)

    # -- providers ----------------------------------------------------------------------

    async def respond(
        self, offer_id: str, provider_id: str, actor: str, *, accept: bool, reason: str | None
    ) -> dict[str, Any]:
        incident_id = await self._offer_incident(offer_id, provider_id)

        async def move(session: AsyncSession, incident: Incident, now: datetime, fx: Effects) -> None:
            offer = await self._offer(session, offer_id, provider_id)
            if accept:
                OFFER.fire(offer, "accept", now)
                INCIDENT.fire(incident, "accept")
                # Locked (after the incident, as everywhere): two acceptances must not both take the last slot.
                provider = await session.get(Provider, provider_id, with_for_update=True)
                assert provider is not None
                if provider.current_load >= provider.capacity:
                    raise DispatchConflictError(
                        f"provider is at capacity ({provider.current_load}/{provider.capacity})"
                    )
                provider.current_load += 1
                provider.updated_at = now
                incident.provider_id = provider_id
                others = (
                    await session.scalars(
                        select(Offer).where(
                            Offer.incident_id == incident.id, Offer.status == "offered", Offer.id != offer.id
                        )
                    )
                ).all()
                for o in others:
                    OFFER.fire(o, "withdraw")
                    o.responded_at, o.updated_at = now, now
                    fx.messages.append(offer_message(o, incident, "offer.closed"))
            else:
                OFFER.fire(offer, "decline", now)
                offer.reason = reason
                # The next candidate is offered now, not when the timeout would have run out.
                await poke(session, incident.id, now)
            offer.responded_at, offer.updated_at = now, now
            add_timeline(
                session,
                incident.id,
                now=now,
                kind="offer.accepted" if accept else "offer.declined",
                actor=actor,
                data={"offer_id": offer.id, "provider_id": provider_id, "reason": reason},
            )
            fx.messages.append(offer_message(offer, incident, "offer.updated"))

        return await self._transition(incident_id, actor, "offer.accept" if accept else "offer.decline", move, offer_id)

    async def progress(
        self, offer_id: str, provider_id: str, actor: str, *, step: str, location: dict[str, float] | None
    ) -> dict[str, Any]:
        incident_id = await self._offer_incident(offer_id, provider_id)

        async def move(session: AsyncSession, incident: Incident, now: datetime, fx: Effects) -> None:
            offer = await self._offer(session, offer_id, provider_id)
            self._require_open(incident, step)
            OFFER.fire(offer, step)
            offer.updated_at = now
            if location is not None:
                offer.location = {**location, "at": now.isoformat()}
            add_timeline(
                session,
                incident.id,
                now=now,
                kind=f"provider.{step}",
                actor=actor,
                data={"offer_id": offer.id, "location": location},
            )
            if step == "done":
                run = Run(session, incident, await self._elder(session, incident), now, fx)
                await self._finish(run, status="resolved", actor=actor, note="provider done")
            else:
                INCIDENT.fire(incident, step)
            fx.messages.append(offer_message(offer, incident, "offer.updated"))

        return await self._transition(incident_id, actor, f"offer.{step}", move, offer_id)

    # -- plumbing -----------------------------------------------------------------------

    async def _transition(
        self,
        incident_id: str,
        actor: str,
        action: str,
        move: Callable[[AsyncSession, Incident, datetime, Effects], Awaitable[None]],
        offer_id: str | None = None,
    ) -> dict[str, Any]:
        fx = Effects()
        async with self._sm() as session, session.begin():
            incident = await lock_incident(session, incident_id)
            now = self.now()
            before = incident.status
            await move(session, incident, now, fx)
            incident.updated_at = now
            await settle(session, incident, now)
            self._audit(session, actor, action, incident.id, before=before, after=incident.status, offer_id=offer_id)
            fx.messages.append(incident_message(incident))
            out = await self.detail(session, incident)
        await self.engine.announce(fx)
        log.info("transition %s incident_id=%s %s -> %s by=%s", action, incident_id, before, out["status"], actor)
        return out

    @staticmethod
    async def _finish(run: Run, *, status: str, actor: str, note: str | None) -> None:
        # Checked first, so nothing below runs for an incident that is already closed.
        event = "resolve" if status == "resolved" else "cancel"
        INCIDENT.next_state(run.incident.status, event, subject=run.incident.id)
        """Resolve or cancel: free the provider's slot and withdraw what is still on offer."""
        session, incident, now, fx = run.session, run.incident, run.now, run.fx
        if incident.provider_id is not None and incident.status in ACCEPTED:
            provider = await session.get(Provider, incident.provider_id, with_for_update=True)
            if provider is not None and provider.current_load > 0:
                provider.current_load -= 1
                provider.updated_at = now
        open_offers = (
            await session.scalars(
                select(Offer).where(Offer.incident_id == incident.id, Offer.status.in_(LIVE_OFFER_STATUSES))
            )
        ).all()
        for o in open_offers:
            # An offer still open, or a job cut short by a cancellation, is withdrawn; a finished job is done.
            OFFER.fire(o, "done" if o.status != "offered" and status == "resolved" else "withdraw")
            o.responded_at = o.responded_at or now
            o.updated_at = now
            fx.messages.append(offer_message(o, incident, "offer.closed"))
        INCIDENT.fire(incident, event)
        incident.closed_at = now
        add_timeline(session, incident.id, now=now, kind=status, actor=actor, data={"note": note})

    @staticmethod
    def _require_open(incident: Incident, what: str) -> None:
        if incident.status not in OPEN_STATUSES:
            raise TransitionError("incident", incident.status, what, subject=incident.id)

    def _audit(self, session: AsyncSession, actor: str, action: str, incident_id: str, **detail: Any) -> None:
        session.add(
            AuditEntry(
                at=self.now(), actor=actor, action=action, target_type="incident", target_id=incident_id, detail=detail
            )
        )

    async def _elder(self, session: AsyncSession, incident: Incident) -> Elder:
        elder = await session.scalar(
            select(Elder).where(Elder.id == incident.elder_id).options(selectinload(Elder.contacts))
        )
        assert elder is not None
        return elder

    async def _offer_incident(self, offer_id: str, provider_id: str) -> str:
        async with self._sm() as session:
            row = (
                await session.execute(select(Offer.incident_id, Offer.provider_id).where(Offer.id == offer_id))
            ).first()
        if row is None or row[1] != provider_id:
            raise NotYoursError(f"offer {offer_id} not found")
        return str(row[0])

    @staticmethod
    async def _offer(session: AsyncSession, offer_id: str, provider_id: str) -> Offer:
        offer = await session.get(Offer, offer_id, populate_existing=True)
        if offer is None or offer.provider_id != provider_id:
            raise NotYoursError(f"offer {offer_id} not found")
        return offer

    async def detail(self, session: AsyncSession, incident: Incident) -> dict[str, Any]:
        out = wire.dump(wire.Incident, incident)
        offers = (
            await session.scalars(
                select(Offer).where(Offer.incident_id == incident.id).order_by(Offer.offered_at, Offer.id)
            )
        ).all()
        out["offers"] = [wire.dump(wire.Offer, o) for o in offers]
        return out
