"""Escalation: running a policy's steps on durable timers.

Theory of operation
-------------------
Each track of an incident's (snapshotted) policy has one row in ``escalation_timers``: the
next step to run, when, and a fencing ``token``. Firing a timer is one transaction that

1. locks the incident row (always first, so the API and the timers lock in one order);
2. claims the timer with ``UPDATE ... SET token = token + 1 WHERE token = :seen AND
   state = 'pending' AND due_at <= now``: a duplicate, stale or early wake-up matches no
   row and does nothing;
3. runs the steps from the pointer up to the next ``wait`` (which sets the new due time)
   or the end of the track; every side effect is a row (timeline, offer, outbox message)
   in the same transaction.

So a step's effects commit exactly when the pointer moves past it: a crash before the
commit loses nothing (the timer is still due), a crash after it repeats nothing.

Wake-ups: the after-commit hook puts ``timer|token|incident`` into a Redis sorted set
scored by due time, and every instance pops what is due (ZREM decides who tries first;
the token decides who wins). A database sweep every ``sweep_s`` fires anything due for
longer than ``sweep_grace_s``, which covers wake-ups Redis lost. Time comes from an
injected :class:`~hotline.clock.Clock`, so tests move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from dispatch import hooks
from dispatch.errors import DispatchConflictError, IncidentNotFoundError
from dispatch.interpreter import Cursor, Facts, Skip, Stop, Wait, advance
from dispatch.lifecycle import INCIDENT, OFFER, TIMER
from dispatch.notify.links import FamilyLinks
from dispatch.notify.outbox import enqueue, enqueue_family_alerts
from dispatch.policy import matches, parse_tracks, snapshot
from dispatch.ranking import ProviderInfo, Ranking
from dispatch.routing import Router, place_offer, store_decision
from dispatch.timeline import add_timeline
from hotline.clock import Clock, SystemClock
from hotline.core import vocab, wire
from hotline.metrics import latency_histogram
from hotline.storage.db import log_failure
from hotline.storage.models import (
    Elder,
    EscalationPolicy,
    EscalationTimer,
    Incident,
    Offer,
    Provider,
)
from hotline.tasks import raise_if_cancelling, wait_event

log = logging.getLogger(__name__)

# Urgent incident types: dispatched for emergency rescue by default, and merged when they concern
# one elder at about the same time (dispatch/incidents.py).
URGENT_TYPES = frozenset(str(t) for t in vocab.URGENT_TYPES)
MAX_STEPS_PER_FIRE = 200  # a guard: parse_tracks already forbids loops without a wait


@dataclass(frozen=True)
class EmergencyAction:
    """What the ``emergency`` step does in this deployment."""

    number: str | None  # called through telephony when set (telephony must be configured)
    webhook_url: str | None  # posted to otherwise, and the fallback when the call cannot be placed
    call_deadline_s: float = 120.0  # the call is retried (AMI down, busy) until then, then it falls back


@dataclass
class Effects:
    """What a transaction wants announced once it has committed."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    notifications: int = 0


@dataclass
class Run:
    """One transaction's view of an incident while steps run in it."""

    session: AsyncSession
    incident: Incident
    elder: Elder
    now: datetime
    fx: Effects
    fresh: bool = False  # the incident is being opened in this transaction: it has no offers yet


def timer_snapshot(t: EscalationTimer) -> tuple[str, int, float, str, str]:
    return (t.id, t.token, t.due_at.timestamp(), t.state, t.incident_id)


#: The rows whose commits Redis follows (installed by the app with :func:`dispatch.hooks.install`).
WATCHES: hooks.Watches = {EscalationTimer: ("timers", timer_snapshot), Provider: ("providers", ProviderInfo.of)}


async def lock_incident(session: AsyncSession, incident_id: str) -> Incident:
    """Lock the incident row as the transaction's first statement and load it.

    A no-op UPDATE takes PostgreSQL's row lock and SQLite's write lock alike; taken first, it
    also spares SQLite a stale read snapshot that could not be upgraded to a write.
    """
    result = await session.execute(
        update(Incident).where(Incident.id == incident_id).values(updated_at=Incident.updated_at)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise IncidentNotFoundError(f"incident {incident_id} not found")
    incident = await session.get(Incident, incident_id, populate_existing=True)
    assert incident is not None
    return incident


def default_service(type_: str) -> str | None:
    return "emergency_rescue" if type_ in URGENT_TYPES else None


@dataclass(frozen=True)
class PolicyRow:
    name: str
    version: int
    active: bool
    types: list[Any]
    severities: list[Any]
    tracks: list[Any]


class PolicyBook:
    """The latest version of each policy, read at most every ``ttl_s``.

    Opening an incident must be quick, and policies change rarely: a new version reaches this
    instance at once (the API invalidates it) and the others within ``ttl_s``.
    """

    def __init__(self, ttl_s: float = 2.0) -> None:
        self.ttl_s = ttl_s
        self._rows: list[PolicyRow] | None = None
        self._loaded = 0.0

    def invalidate(self) -> None:
        self._rows = None

    async def choose(self, session: AsyncSession, type_: str, severity: str) -> PolicyRow | None:
        """The latest active version of the highest-priority policy that matches."""
        if self._rows is None or time.monotonic() - self._loaded > self.ttl_s:
            rows = (
                await session.scalars(
                    select(EscalationPolicy).order_by(
                        EscalationPolicy.priority.desc(), EscalationPolicy.name, EscalationPolicy.version.desc()
                    )
                )
            ).all()
            latest: list[PolicyRow] = []
            seen: set[str] = set()
            for p in rows:
                if p.name not in seen:  # only the latest version of each name counts
                    seen.add(p.name)
                    latest.append(PolicyRow(p.name, p.version, p.active, p.types, p.severities, p.tracks))
            self._rows, self._loaded = latest, time.monotonic()
        return next(
            (p for p in self._rows if p.active and matches(p.types, p.severities, type_, severity)),
            None,
        )


class Escalator:
    """Runs policy steps inside the caller's transaction. No I/O but the database and routing."""

    def __init__(
        self,
        router: Router,
        *,
        emergency: EmergencyAction,
        links: FamilyLinks | None = None,
        voice_enabled: bool = False,
    ) -> None:
        self.router = router
        self.emergency = emergency
        self.links = links
        self.voice_enabled = voice_enabled
        self.policies = PolicyBook()
        self.first_offer_latency = latency_histogram(
            "hotline_alarm_first_offer_seconds", "From an incident opening to its first offer to a provider"
        )

    # -- starting --------------------------------------------------------------------

    async def start(self, run: Run) -> None:
        """Snapshot the matching policy into the incident and run every track up to its first wait."""
        incident = run.incident
        policy = await self.policies.choose(run.session, incident.type, incident.severity)
        if policy is None:
            self._timeline(run, "escalation.none", {"reason": "no policy matches"})
            return
        tracks = parse_tracks(policy.tracks)
        incident.policy = snapshot(policy.name, policy.version, tracks)
        self._timeline(run, "escalation.started", {"policy": policy.name, "version": policy.version})
        for track in tracks:
            timer = EscalationTimer(
                incident_id=incident.id,
                track=track["name"],
                step=0,
                due_at=run.now,
                token=1,
                state=TIMER.initial,
                repeats={},
                runs=0,
            )
            run.session.add(timer)
            await self.run_track(run, timer, due=run.now)

    # -- running ----------------------------------------------------------------------

    async def run_track(self, run: Run, timer: EscalationTimer, *, due: datetime) -> None:
        """Run ``timer``'s track from its pointer until a wait or the end, asking the pure
        interpreter what comes next after every step (a step may change the facts)."""
        incident, now = run.incident, run.now
        tracks = (incident.policy or {}).get("tracks", [])
        track = next((t for t in tracks if t["name"] == timer.track), None)
        cursor = Cursor(step=timer.step, repeats=dict(timer.repeats or {}), runs=timer.runs)
        for _ in range(MAX_STEPS_PER_FIRE):
            intent = advance(track, cursor, Facts.of(incident), now)
            cursor = intent.cursor
            timer.step, timer.runs = cursor.step, cursor.runs
            if cursor.repeats != timer.repeats:
                timer.repeats = dict(cursor.repeats)
            if isinstance(intent, Stop):
                TIMER.fire(timer, intent.event)
                break
            if isinstance(intent, Wait):
                timer.due_at = intent.until
                break
            record = {"track": timer.track, "step": intent.index, "do": intent.step["do"], "run": intent.run}
            if isinstance(intent, Skip):
                self._timeline(run, "escalation.skipped", {**record, "unless": intent.unless})
                continue
            detail = await self._act(run, dict(intent.step), f"esc:{incident.id}:{timer.track}:{intent.run}")
            self._timeline(
                run, "escalation.step", {**record, **detail, "due_at": wire.iso(due), "fired_at": wire.iso(now)}
            )
            due = now
        timer.updated_at = now

    async def _act(self, run: Run, step: dict[str, Any], key: str) -> dict[str, Any]:
        do = step["do"]
        if do == "notify":
            return await self._notify(run, step, key)
        if do == "offer":
            offer, ranking = await self.offer(
                run, timeout_s=step["timeout_s"], service=step.get("service"), actor="escalation"
            )
            return {"offer_id": offer.id if offer else None, "candidates": len(ranking.candidates) if ranking else 0}
        if do == "call":
            return {"number": step["number"], "queued": await self._voice(run, step["number"], key, "escalation")}
        if do == "webhook":
            return {"url": step["url"], "queued": await self._webhook(run, step["url"], key, step.get("message"))}
        if do == "emergency":
            if self.emergency.number and self.voice_enabled:
                # An emergency step must reach someone: the call is retried until its deadline,
                # then the webhook (when configured) and the supervisors take over; and the
                # supervisors are told at once in any case.
                number, deadline = self.emergency.number, run.now + timedelta(seconds=self.emergency.call_deadline_s)
                fallback = []
                if self.emergency.webhook_url:
                    fallback.append(
                        {
                            "channel": "webhook",
                            "target": self.emergency.webhook_url,
                            "event_type": "incident.escalation",
                            "payload": self._webhook_payload(run, "emergency"),
                        }
                    )
                fallback.append(
                    {
                        "channel": "console",
                        "target": "role:supervisor",
                        "event_type": "escalation.alert",
                        "payload": self._console_payload(
                            run,
                            f"紧急呼叫 {number} 在 {self.emergency.call_deadline_s:.0f} 秒内未能接通"
                            + ("，已转紧急 webhook" if self.emergency.webhook_url else "，请立即人工处置"),
                        ),
                    }
                )
                await self._voice(run, number, key, "emergency", deadline=deadline, fallback=fallback)
                await self._console(run, "role:supervisor", f"{key}:alert", f"紧急处置：正在拨打 {number}")
                return {"action": "call", "number": number, "deadline": wire.iso(deadline)}
            if self.emergency.webhook_url:
                await self._webhook(run, self.emergency.webhook_url, key, "emergency")
                return {"action": "webhook", "url": self.emergency.webhook_url}
            await self._console(run, "role:supervisor", key, "没有配置紧急处置方式（120 电话或 webhook），请人工处置")
            return {"action": "none", "detail": "no emergency number with telephony, and no emergency webhook"}
        raise ValueError(do)

    async def _notify(self, run: Run, step: dict[str, Any], key: str) -> dict[str, Any]:
        to: str = step["to"]
        if to == "family":
            # The first alert keeps one key per contact, so a retried or merged start cannot send it
            # twice; a reminder (a step with a message) is keyed by its run.
            message = step.get("message")
            n = await enqueue_family_alerts(
                run.session,
                incident=wire.dump(wire.Incident, run.incident),
                elder=run.elder,
                now=run.now,
                tag="created" if message is None else f"reminder:{key}",
                event_type="incident.created" if message is None else "incident.reminder",
                message=message,
                links=self.links,
            )
            run.fx.notifications += n
            return {"to": "family", "queued": n}
        await self._console(run, to, key, step.get("message"))
        return {"to": to, "queued": 1}

    async def _queue(
        self, run: Run, *, key: str, channel: str, target: str, event_type: str, payload: dict[str, Any]
    ) -> bool:
        queued = await enqueue(
            run.session,
            key=key,
            channel=channel,
            target=target,
            event_type=event_type,
            payload=payload,
            now=run.now,
            elder_id=run.incident.elder_id,
            incident_id=run.incident.id,
        )
        run.fx.notifications += int(queued)
        return queued

    @staticmethod
    def _console_payload(run: Run, message: str | None) -> dict[str, Any]:
        i = run.incident
        return {
            "type": "escalation.alert",
            "incident_id": i.id,
            "elder_id": i.elder_id,
            "incident_type": i.type,
            "severity": i.severity,
            "status": i.status,
            "message": message or f"警情 {i.type} 需要处理（状态 {i.status}）",
            "at": wire.iso(run.now),
        }

    async def _console(self, run: Run, to: str, key: str, message: str | None) -> None:
        payload = self._console_payload(run, message)
        await self._queue(run, key=key, channel="console", target=to, event_type="escalation.alert", payload=payload)

    async def _voice(
        self,
        run: Run,
        number: str,
        key: str,
        purpose: str,
        *,
        deadline: datetime | None = None,
        fallback: list[dict[str, Any]] | None = None,
    ) -> bool:
        payload: dict[str, Any] = {
            "purpose": purpose,
            "incident_id": run.incident.id,
            "elder_id": run.incident.elder_id,
        }
        if deadline is not None:
            payload["deadline"] = wire.iso(deadline)
        if fallback:
            payload["fallback"] = fallback
        return await self._queue(
            run, key=key, channel="voice", target=number, event_type=f"incident.{purpose}", payload=payload
        )

    async def _webhook(self, run: Run, url: str, key: str, message: str | None) -> bool:
        payload = self._webhook_payload(run, message)
        return await self._queue(
            run, key=key, channel="webhook", target=url, event_type="incident.escalation", payload=payload
        )

    @staticmethod
    def _webhook_payload(run: Run, message: str | None) -> dict[str, Any]:
        i, elder = run.incident, run.elder
        return {
            "type": "incident.escalation",
            "timestamp": wire.iso(run.now),
            "data": {
                "incident_id": i.id,
                "incident_type": i.type,
                "severity": i.severity,
                "status": i.status,
                "message": message,
                "elder": {"id": elder.id, "name": elder.name, "address": elder.address},
                "location": i.location or {"lat": elder.lat, "lon": elder.lon},
            },
        }

    # -- offers ----------------------------------------------------------------------

    async def offer(
        self,
        run: Run,
        *,
        timeout_s: int,
        actor: str,
        service: str | None = None,
        provider_id: str | None = None,
    ) -> tuple[Offer | None, Ranking | None]:
        """Expire what is outstanding, rank afresh, store the ranking and offer to the best
        (or to ``provider_id``, an operator's choice, when it passes the same filters)."""
        session, incident, now = run.session, run.incident, run.now
        if not INCIDENT.can(incident.status, "offer"):
            # A policy track without `until: accepted` can reach an offer step after acceptance.
            self._timeline(run, "routing.skipped", {"reason": f"the incident is {incident.status}"})
            return None, None
        service = service or incident.service or default_service(incident.type)
        if service is None:
            self._timeline(run, "routing.skipped", {"reason": "the incident has no service"})
            return None, None
        tried: Sequence[str] = ()
        declined: Sequence[str] = ()
        first = run.fresh
        if not run.fresh:
            outstanding = (
                await session.scalars(select(Offer).where(Offer.incident_id == incident.id, Offer.status == "offered"))
            ).all()
            for o in outstanding:
                OFFER.fire(o, "expire" if o.expires_at <= now else "withdraw")
                o.responded_at, o.updated_at = now, now
                run.fx.messages.append(offer_message(o, incident, "offer.closed"))
            past = (
                await session.execute(select(Offer.provider_id, Offer.status).where(Offer.incident_id == incident.id))
            ).all()
            first = not past
            tried = [p for p, _ in past]
            declined = [p for p, status in past if status == "declined"]
        loc = incident.location or {}
        lat, lon = float(loc.get("lat", run.elder.lat)), float(loc.get("lon", run.elder.lon))
        # An operator's choice may go back to anyone who did not decline; the policy tries everyone
        # once, then, in a second round, those who let their offer run out.
        ranking = await self.router.rank(
            service, lat, lon, now=now, exclude=declined if provider_id else tried, session=session
        )
        round_ = 1
        if ranking.best is None and provider_id is None and len(set(declined)) < len(set(tried)):
            ranking = await self.router.rank(service, lat, lon, now=now, exclude=declined, session=session)
            round_ = 2
        chosen = ranking.best
        if provider_id is not None:
            chosen = next((c for c in ranking.candidates if c["provider_id"] == provider_id), None)
            if chosen is None:
                why = next(
                    (x["reason"] for x in ranking.excluded if x["provider_id"] == provider_id), "not a candidate"
                )
                raise DispatchConflictError(f"provider {provider_id} cannot take this incident: {why}")
        decision = await store_decision(session, ranking, chosen, now=now, incident_id=incident.id)
        if chosen is None:
            self._timeline(run, "routing.no_candidate", {"decision_id": decision.id, "service": service})
            await self._console(run, "role:supervisor", f"route:{incident.id}:none", "没有可派单的服务商，请人工处置")
            return None, ranking
        if not chosen["within_reach"]:
            minutes = self.router.policy.reach_min
            self._timeline(
                run,
                "routing.out_of_reach",
                {"decision_id": decision.id, "eta_min": chosen["eta_min"], "reach_min": minutes},
            )
            await self._console(
                run,
                "role:supervisor",
                f"route:{incident.id}:reach",
                f"{minutes:g}分钟服务圈内没有服务商，最近的需要约 {chosen['eta_min']:.0f} 分钟",
            )
        offer = await place_offer(session, chosen, decision, now=now, timeout_s=timeout_s, incident_id=incident.id)
        if first:
            self.first_offer_latency.observe(max(0.0, (now - incident.created_at).total_seconds()))
        INCIDENT.fire(incident, "offer")
        incident.service = service
        incident.updated_at = now
        self._timeline(
            run,
            "offer.sent",
            {
                "offer_id": offer.id,
                "provider_id": offer.provider_id,
                "rank": offer.rank,
                "eta_min": offer.eta_min,
                "decision_id": decision.id,
                "round": round_,
                "by": actor,
            },
        )
        run.fx.messages.append(offer_message(offer, incident, "offer.created", elder=run.elder))
        run.fx.messages.append(incident_message(incident))
        return offer, ranking

    # -- helpers ---------------------------------------------------------------------

    @staticmethod
    def _timeline(run: Run, kind: str, data: dict[str, Any]) -> None:
        add_timeline(run.session, run.incident.id, kind=kind, actor="system", now=run.now, data=data)


def offer_message(o: Offer, incident: Incident, type_: str, *, elder: Elder | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type_, "to_provider": o.provider_id, "offer": wire.dump(wire.Offer, o)}
    if elder is not None:
        # What a provider needs to go: the address and the kind of help, not the medical file.
        out["incident"] = {
            "id": incident.id,
            "type": incident.type,
            "severity": incident.severity,
            "service": incident.service,
            "address": elder.address,
            "location": incident.location or {"lat": elder.lat, "lon": elder.lon},
        }
    return out


def incident_message(incident: Incident) -> dict[str, Any]:
    return {"type": "incident.updated", "elder_id": incident.elder_id, "incident": wire.dump(wire.Incident, incident)}


class EscalationEngine:
    """Fires due timers. Owned by the app: ``run()`` is cancelled on shutdown."""

    def __init__(
        self,
        sm: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis | None,
        escalator: Escalator,
        *,
        prefix: str,
        clock: Clock | None = None,
        sweep_s: float = 1.0,
        sweep_grace_s: float = 0.5,
        concurrency: int = 8,
        publish: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        on_notifications: Callable[[], None] | None = None,
    ) -> None:
        self._sm = sm
        self._redis = redis
        self.escalator = escalator
        self.key = f"{prefix}:timers"
        self._clock = clock or SystemClock()
        self._sweep_s = sweep_s
        self._grace = timedelta(seconds=sweep_grace_s)
        self._limit = asyncio.Semaphore(concurrency)
        self._publish = publish
        self._on_notifications = on_notifications
        self._to_schedule: dict[str, tuple[str, int, float, str, str]] = {}
        self._wake = asyncio.Event()
        self._next_sweep = 0.0
        self.fired = 0
        self.stale = 0
        self.errors = 0

    # The after-commit sink: runs synchronously in the committing coroutine, so it only queues.
    def on_commit(self, snapshots: list[tuple[str, int, float, str, str]]) -> None:
        for snap in snapshots:
            self._to_schedule[snap[0]] = snap
        self._wake.set()

    async def _schedule(self) -> None:
        if not self._to_schedule:
            return
        batch, self._to_schedule = self._to_schedule, {}
        live = [s for s in batch.values() if s[3] == "pending"]
        if self._redis is None or not live:
            return
        try:
            await self._redis.zadd(self.key, {f"{tid}|{token}|{inc}": due for tid, token, due, _state, inc in live})
        except (RedisError, OSError) as exc:
            raise_if_cancelling()
            # The sweep finds these in the database; nothing is lost, only later.
            log.warning("could not schedule %d timer wake-ups in redis (%s); the sweep will fire them", len(live), exc)

    async def run(self) -> None:
        while True:
            try:
                await self._schedule()
                await self.run_due()
                delay = await self._idle_delay()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise_if_cancelling()
                log_failure(log, "escalation cycle", exc)
                delay = 1.0
            self._wake.clear()
            if self._to_schedule:
                continue
            await wait_event(self._wake, delay)

    async def _idle_delay(self) -> float:
        """Sleep until the earliest wake-up or the next sweep, whichever is sooner (at most 1 s)."""
        delay = min(1.0, max(0.0, self._next_sweep - time.monotonic()))
        if self._redis is None:
            return delay
        try:
            head = await self._redis.zrange(self.key, 0, 0, withscores=True)
        except (RedisError, OSError):
            raise_if_cancelling()
            return delay
        if head:
            delay = min(delay, max(0.0, float(head[0][1]) - self._clock.now().timestamp()))
        return max(0.01, delay)

    async def run_due(self, *, sweep: bool | None = None) -> int:
        """Fire everything due now; returns how many steps' timers fired. Tests call this after moving the clock."""
        now = self._clock.now()
        wakeups: list[tuple[str, int, str]] = []
        if self._redis is not None:
            try:
                members: list[Any] = list(
                    await self._redis.zrangebyscore(self.key, "-inf", now.timestamp(), start=0, num=200)
                )
                for m in members:
                    member = m.decode() if isinstance(m, bytes) else str(m)
                    if await self._redis.zrem(self.key, member):  # another instance may have taken it
                        tid, token, inc = member.split("|")
                        wakeups.append((tid, int(token), inc))
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                log.warning("redis wake-ups unavailable (%s); relying on the sweep", exc)
        if sweep or (sweep is None and time.monotonic() >= self._next_sweep):
            self._next_sweep = time.monotonic() + self._sweep_s
            async with self._sm() as session:
                rows = (
                    await session.execute(
                        select(EscalationTimer.id, EscalationTimer.token, EscalationTimer.incident_id)
                        .where(EscalationTimer.state == "pending", EscalationTimer.due_at <= now - self._grace)
                        .order_by(EscalationTimer.due_at)
                        .limit(500)
                    )
                ).all()
            wakeups += [(r[0], r[1], r[2]) for r in rows]
        if not wakeups:
            return 0
        results = await asyncio.gather(*(self._fire_limited(*w) for w in dict.fromkeys(wakeups)))
        return sum(results)

    async def _fire_limited(self, timer_id: str, token: int, incident_id: str) -> bool:
        async with self._limit:
            try:
                return await self.fire(timer_id, token, incident_id)
            except Exception as exc:
                raise_if_cancelling()
                # Lock timeouts and a database away included: the timer is still due, so the sweep retries it.
                self.errors += 1
                log_failure(log, f"timer {timer_id}", exc)
            return False

    async def fire(self, timer_id: str, token: int, incident_id: str) -> bool:
        """Run a timer's due steps if ``token`` is still current. Safe to call any number of times."""
        fx = Effects()
        async with self._sm() as session, session.begin():
            now = self._clock.now()
            try:
                incident = await lock_incident(session, incident_id)
            except IncidentNotFoundError:
                return False
            claimed = await session.execute(
                update(EscalationTimer)
                .where(
                    EscalationTimer.id == timer_id,
                    EscalationTimer.token == token,
                    EscalationTimer.state == "pending",
                    EscalationTimer.due_at <= now,
                )
                .values(token=token + 1)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                self.stale += 1
                return False
            timer = await session.get(EscalationTimer, timer_id, populate_existing=True)
            elder = await session.scalar(
                select(Elder).where(Elder.id == incident.elder_id).options(selectinload(Elder.contacts))
            )
            assert timer is not None
            assert elder is not None
            await self.escalator.run_track(Run(session, incident, elder, now, fx), timer, due=timer.due_at)
        self.fired += 1
        await self.announce(fx)
        return True

    async def announce(self, fx: Effects) -> None:
        if fx.notifications and self._on_notifications is not None:
            self._on_notifications()
        if self._publish is not None:
            for message in fx.messages:
                await self._publish(message)


async def poke(
    session: AsyncSession, incident_id: str, now: datetime, *, tracks_with: str = "offer", after_s: float = 0.0
) -> int:
    """Make the tracks that contain a ``tracks_with`` step due ``after_s`` from now: at once after a
    decline (the track moves on), or after an operator's own offer has had its time (the track
    must not supersede the operator's choice the moment it is made)."""
    incident = await session.get(Incident, incident_id)
    if incident is None or not incident.policy:
        return 0
    names = {t["name"] for t in incident.policy["tracks"] if any(s["do"] == tracks_with for s in t["steps"])}
    timers = (
        await session.scalars(
            select(EscalationTimer).where(
                EscalationTimer.incident_id == incident_id,
                EscalationTimer.state == "pending",
                EscalationTimer.track.in_(names),
            )
        )
    ).all()
    for t in timers:
        t.due_at, t.token, t.updated_at = now + timedelta(seconds=after_s), t.token + 1, now
    return len(timers)


async def settle(session: AsyncSession, incident: Incident, now: datetime) -> None:
    """End the timers an incident's new state has made moot, now rather than at their next wake-up."""
    timers = (
        await session.scalars(
            select(EscalationTimer).where(
                EscalationTimer.incident_id == incident.id, EscalationTimer.state == "pending"
            )
        )
    ).all()
    if not timers:
        return
    tracks = {t["name"]: t for t in (incident.policy or {}).get("tracks", [])}
    facts = Facts.of(incident)
    for t in timers:
        until = tracks.get(t.track, {}).get("until")
        if not facts.open:
            TIMER.fire(t, "cancel")
        elif until and facts.holds(until):
            TIMER.fire(t, "finish")
        else:
            continue
        t.token, t.updated_at = t.token + 1, now
