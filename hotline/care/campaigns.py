"""Wellbeing campaigns (主动关怀/巡访): regular calls to the elders a filter selects.

A campaign's schedule is an RFC 5545 RRULE (python-dateutil), read in local time (UTC+8).
Each occurrence is a run; the run has one target row per elder, and each target moves
``pending -> calling -> (retry -> calling ...) -> done`` with one outcome: ``answered_ok``,
``answered_need``, ``no_answer`` or ``failed``.

- Calls are placed only within ``calling_hours``, at most ``max_concurrent_calls`` at once.
- ``ivr`` mode: the dialplan asks the elder to press 1 (all well) or 2 (needs something) and
  reports the key; no key is ``answered_need``. ``operator`` mode: the answered call joins the
  12349 queue and the operator records the outcome (``POST .../targets/{id}/outcome``).
- Every attempt unanswered: a ``visit`` work order for the community, and after
  ``unanswered_alert`` unanswered runs in a row the family is told.
- Durable and restart-safe: a run is unique per (campaign, occurrence); a target is claimed
  for a call by a conditional UPDATE, and the call's idempotency key is the target and the
  attempt, which telephony never dials twice. A restart mid-run resumes from the rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Any

from dateutil.rrule import rrulestr
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.notify.channels import CallPlacer as Dialer
from dispatch.notify.outbox import enqueue
from dispatch.ranking import LOCAL_TZ
from hotline.care.lifecycle import CAMPAIGN_RUN, CAMPAIGN_TARGET
from hotline.care.orders import CareSettings, Effects, WorkOrders, alert, audit
from hotline.care.rules import age_on
from hotline.clock import Clock, SystemClock
from hotline.core import wire
from hotline.core.care import CampaignTargetFilter
from hotline.errors import ConflictError, NotFoundError, ValidationError
from hotline.storage.db import log_failure
from hotline.storage.models import (
    CallRecord,
    Campaign,
    CampaignRun,
    CampaignTarget,
    Elder,
    EmergencyContact,
)
from hotline.tasks import raise_if_cancelling, wait_event

log = logging.getLogger(__name__)

UNANSWERED = ("no_answer", "failed")
LOST_CALL_S = 60.0  # a target claimed this long ago with no call record: the claimant died


def parse_hours(spec: str) -> list[tuple[time, time]]:
    """``09:00-11:30,14:00-17:30`` -> spans; raises ValueError naming the bad part."""
    spans = []
    for part in spec.split(","):
        try:
            a, b = part.strip().split("-")
            start, end = time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
        except ValueError:
            raise ValueError(f"{part.strip()!r} is not HH:MM-HH:MM") from None
        if end <= start:
            raise ValueError(f"{part.strip()!r} ends before it starts")
        spans.append((start, end))
    if not spans:
        raise ValueError("give at least one span")
    return spans


def in_hours(spec: str, when: datetime) -> bool:
    local = when.astimezone(LOCAL_TZ).time()
    return any(a <= local < b for a, b in parse_hours(spec))


def occurrences(rule: str, dtstart: datetime, *, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` occurrences after ``after``, in UTC (the rule is read in local time)."""
    r = rrulestr(rule, dtstart=dtstart.astimezone(LOCAL_TZ))
    out: list[datetime] = []
    t = after.astimezone(LOCAL_TZ)
    for _ in range(count):
        nxt = r.after(t)
        if nxt is None:
            break
        out.append(nxt.astimezone(after.tzinfo))
        t = nxt
    return out


def latest_due(rule: str, dtstart: datetime, now: datetime) -> datetime | None:
    r = rrulestr(rule, dtstart=dtstart.astimezone(LOCAL_TZ))
    last = r.before(now.astimezone(LOCAL_TZ), inc=True)
    return last.astimezone(now.tzinfo) if last is not None else None


def check_rrule(rule: str, dtstart: datetime) -> None:
    try:
        first = occurrences(rule, dtstart, after=dtstart - timedelta(seconds=1), count=1)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"rrule: {exc}", field="rrule") from exc
    if not first:
        raise ValidationError("rrule: the rule has no occurrence", field="rrule")


def matches(f: CampaignTargetFilter, elder: Elder, month: str) -> bool:
    if f.living_situation and elder.living_situation not in f.living_situation:
        return False
    if f.min_age is not None and age_on(elder.birth_date, month) < f.min_age:
        return False
    if f.region is not None and elder.region != f.region:
        return False
    if f.categories:
        mine = set((elder.eligibility or {}).get("categories", []))
        if not mine & set(f.categories):
            return False
    return True


class Campaigns:
    """Runs campaigns. Owned by the app: ``run()`` is cancelled on shutdown."""

    def __init__(
        self,
        sm: async_sessionmaker[AsyncSession],
        orders: WorkOrders,
        *,
        dialer: Dialer | None = None,
        settings: CareSettings | None = None,
        clock: Clock | None = None,
        tick_s: float = 2.0,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self._sm = sm
        self.orders = orders
        self.dialer = dialer
        self.settings = settings or CareSettings()
        self._clock = clock or SystemClock()
        self._tick_s = tick_s
        self._on_queued = on_queued
        self._wake = asyncio.Event()
        self._calls: set[asyncio.Task[Any]] = set()

    def now(self) -> datetime:
        return self._clock.now()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.step()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    raise_if_cancelling()
                    log_failure(log, "campaign step", exc)
                self._wake.clear()
                await wait_event(self._wake, self._tick_s)
        finally:
            for t in self._calls:
                t.cancel()

    async def step(self) -> None:
        """One pass: start due runs, place calls, read outcomes, finish runs."""
        now = self.now()
        await self._start_runs(now)
        async with self._sm() as session:
            runs = (await session.scalars(select(CampaignRun).where(CampaignRun.status == "running"))).all()
            campaigns = {c.id: c for c in (await session.scalars(select(Campaign))).all()}
        for run in runs:
            campaign = campaigns[run.campaign_id]
            await self._settle_calls(run, campaign, now)
            await self._place_calls(run, campaign, now)
            await self._finish(run, now)

    # -- runs -------------------------------------------------------------------------------

    async def _start_runs(self, now: datetime) -> None:
        async with self._sm() as session:
            campaigns = (await session.scalars(select(Campaign).where(Campaign.active.is_(True)))).all()
        for c in campaigns:
            due = latest_due(c.rrule, c.dtstart, now)
            if due is None:
                continue
            async with self._sm() as session:
                seen = await session.scalar(
                    select(CampaignRun.id).where(CampaignRun.campaign_id == c.id, CampaignRun.scheduled_for >= due)
                )
            if seen is None:
                await self.start_run(c.id, due, now)

    async def start_run(self, campaign_id: str, scheduled_for: datetime, now: datetime) -> int | None:
        """Create the run and its targets; None when another instance already did."""
        try:
            async with self._sm() as session, session.begin():
                c = await session.get(Campaign, campaign_id)
                if c is None:
                    raise NotFoundError(f"campaign {campaign_id} not found")
                run = CampaignRun(
                    campaign_id=c.id, scheduled_for=scheduled_for, status=CAMPAIGN_RUN.initial, started_at=now
                )
                session.add(run)
                await session.flush()
                f = CampaignTargetFilter.model_validate(c.target)
                month = now.astimezone(LOCAL_TZ).strftime("%Y-%m")
                n = 0
                for elder in (await session.scalars(select(Elder).order_by(Elder.id))).all():
                    if matches(f, elder, month):
                        session.add(
                            CampaignTarget(
                                run_id=run.id,
                                campaign_id=c.id,
                                elder_id=elder.id,
                                state=CAMPAIGN_TARGET.initial,
                                attempts=0,
                                next_attempt_at=now,
                                family_notified=False,
                                updated_at=now,
                            )
                        )
                        n += 1
                log.info("campaign run started campaign=%s run=%s targets=%d", c.id, run.id, n)
                return run.id
        except IntegrityError:
            return None  # the unique (campaign, occurrence) says another instance started it

    # -- calls ------------------------------------------------------------------------------

    async def _place_calls(self, run: CampaignRun, c: Campaign, now: datetime) -> None:
        if self.dialer is None or not in_hours(c.calling_hours, now):
            return
        async with self._sm() as session:
            calling = await session.scalar(
                select(func.count())
                .select_from(CampaignTarget)
                .where(CampaignTarget.run_id == run.id, CampaignTarget.state == "calling")
            )
            free = max(0, c.max_concurrent_calls - int(calling or 0))
            due = (
                await session.scalars(
                    select(CampaignTarget)
                    .where(
                        CampaignTarget.run_id == run.id,
                        CampaignTarget.state.in_(("pending", "retry")),
                        CampaignTarget.next_attempt_at <= now,
                    )
                    .order_by(CampaignTarget.id)
                    .limit(free)
                )
            ).all()
        for t in due:
            attempt = t.attempts + 1
            key = f"campaign:{t.id}:{attempt}"
            async with self._sm() as session, session.begin():
                # The claim: only one instance moves this target from its state to calling.
                claimed = await session.execute(
                    update(CampaignTarget)
                    .where(
                        CampaignTarget.id == t.id,
                        CampaignTarget.state == t.state,
                        CampaignTarget.attempts == t.attempts,
                    )
                    .values(
                        state=CAMPAIGN_TARGET.next_state(t.state, "call"),
                        attempts=attempt,
                        call_key=key,
                        updated_at=now,
                    )
                )
                if claimed.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                elder = await session.get(Elder, t.elder_id)
            if elder is None or not elder.phones:
                await self._record(t.id, "failed", "system", "no phone number", now)
                continue
            self._dial(key, str(elder.phones[0]), elder.id, c.mode)

    def _dial(self, key: str, number: str, elder_id: str, mode: str) -> None:
        assert self.dialer is not None
        dialer = self.dialer

        async def place() -> None:
            try:
                await dialer.call_out(
                    number=number,
                    purpose="wellbeing",
                    requested_by="campaign",
                    idempotency_key=key,
                    elder_id=elder_id,
                    dialplan="wellbeing" if mode == "ivr" else None,
                )
            except Exception:
                raise_if_cancelling()
                log.exception("campaign call %s not placed; the next step looks again", key)

        task = asyncio.get_running_loop().create_task(place(), name=f"campaign.call[{key}]")
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _settle_calls(self, run: CampaignRun, c: Campaign, now: datetime) -> None:
        async with self._sm() as session:
            rows = (
                await session.execute(
                    select(CampaignTarget, CallRecord)
                    .outerjoin(CallRecord, CallRecord.idempotency_key == CampaignTarget.call_key)
                    .where(CampaignTarget.run_id == run.id, CampaignTarget.state == "calling")
                )
            ).all()
        for t, call in rows:
            if call is None:
                if self.dialer is not None and (now - t.updated_at).total_seconds() > LOST_CALL_S:
                    # Claimed but never placed (the instance died): the same key dials at most once.
                    elder = await self._elder(t.elder_id)
                    if elder is not None and elder.phones:
                        self._dial(str(t.call_key), str(elder.phones[0]), elder.id, c.mode)
                continue
            if call.state != "ended":
                continue
            if call.outcome == "answered":
                if c.mode == "operator":
                    continue  # the operator who took it records the outcome
                if call.digits is None and call.ended_at and (now - call.ended_at).total_seconds() < 3:
                    continue  # the UserEvent's key may still be on its way
                outcome = "answered_ok" if call.digits == "1" else "answered_need"
                await self._record(t.id, outcome, "ivr", f"key {call.digits or 'none'}", now)
            elif t.attempts < c.attempts:
                await self._retry(t.id, now + timedelta(minutes=c.retry_after_min), now)
            else:
                outcome = "failed" if call.outcome == "failed" else "no_answer"
                await self._record(t.id, outcome, "system", f"{t.attempts} attempts: {call.outcome}", now)

    async def _elder(self, elder_id: str) -> Elder | None:
        async with self._sm() as session:
            return await session.get(Elder, elder_id)

    async def _retry(self, target_id: int, when: datetime, now: datetime) -> None:
        async with self._sm() as session, session.begin():
            t = await session.get(CampaignTarget, target_id, with_for_update=True)
            if t is not None and CAMPAIGN_TARGET.fire_if_possible(t, "retry"):
                t.next_attempt_at, t.updated_at = when, now

    async def record(self, target_id: int, outcome: str, actor: str, note: str | None) -> CampaignTarget:
        """An operator's outcome for a target (operator mode, or without telephony)."""
        return await self._record(target_id, outcome, actor, note, self.now(), explicit=True)

    async def _record(
        self, target_id: int, outcome: str, actor: str, note: str | None, now: datetime, *, explicit: bool = False
    ) -> CampaignTarget:
        fx = Effects()
        async with self._sm() as session, session.begin():
            t = await session.get(CampaignTarget, target_id, with_for_update=True)
            if t is None:
                raise NotFoundError(f"campaign target {target_id} not found")
            if not CAMPAIGN_TARGET.can(t.state, "finish"):
                if explicit:
                    raise ConflictError(f"campaign target {target_id} already has its outcome ({t.outcome})")
                return t
            CAMPAIGN_TARGET.fire(t, "finish")
            t.outcome, t.recorded_by, t.note, t.updated_at = outcome, actor, note, now
            if outcome in UNANSWERED:
                await self._unanswered(session, t, now, fx)
            elif outcome == "answered_need":
                fx.messages.append(
                    alert(
                        "wellbeing_need",
                        f"关怀回访：老人 {t.elder_id} 表示需要帮助，请开具工单",
                        now,
                        elder_id=t.elder_id,
                    )
                )
            audit(session, actor, "campaign.outcome", "campaign_target", str(t.id), now=now, outcome=outcome)
        await self.orders.announce(fx)
        if fx.queued and self._on_queued is not None:
            self._on_queued()
        return t

    async def _unanswered(self, session: AsyncSession, t: CampaignTarget, now: datetime, fx: Effects) -> None:
        """Nobody answered: the community visits, and after N runs in a row the family is told."""
        order = await self.orders.open(
            session,
            fx,
            elder_id=t.elder_id,
            service="visit",
            quantity=1,
            actor="campaign",
            now=now,
            note=f"关怀电话 {t.attempts} 次未接通，请上门巡访",
            campaign_target_id=t.id,
        )
        t.visit_request_id = order.id
        recent = (
            await session.scalars(
                select(CampaignTarget.outcome)
                .where(
                    CampaignTarget.campaign_id == t.campaign_id,
                    CampaignTarget.elder_id == t.elder_id,
                    CampaignTarget.state == "done",
                )
                .order_by(CampaignTarget.id.desc())
                .limit(self.settings.unanswered_alert)
            )
        ).all()
        if len(recent) >= self.settings.unanswered_alert and all(o in UNANSWERED for o in recent):
            contacts = (
                await session.scalars(
                    select(EmergencyContact)
                    .where(EmergencyContact.elder_id == t.elder_id)
                    .order_by(EmergencyContact.priority)
                )
            ).all()
            for contact in contacts:
                if contact.channel == "none":
                    continue
                fx.queued += int(
                    await enqueue(
                        session,
                        key=f"wellbeing:{t.id}:{contact.id}",
                        channel=contact.channel,
                        target=contact.webhook_url
                        if contact.channel == "webhook" and contact.webhook_url
                        else contact.phone,
                        event_type="wellbeing.unanswered",
                        payload={
                            "type": "wellbeing.unanswered",
                            "timestamp": wire.iso(now),
                            "data": {
                                "elder_id": t.elder_id,
                                "runs_unanswered": len(recent),
                                "visit_request_id": order.id,
                                "message": f"12349 关怀电话连续 {len(recent)} 次无人接听，"
                                "社区将上门探访，请尽快联系老人。",
                            },
                        },
                        now=now,
                        elder_id=t.elder_id,
                        contact_id=contact.id,
                    )
                )
            t.family_notified = True

    async def _finish(self, run: CampaignRun, now: datetime) -> None:
        async with self._sm() as session, session.begin():
            open_ = await session.scalar(
                select(func.count())
                .select_from(CampaignTarget)
                .where(CampaignTarget.run_id == run.id, CampaignTarget.state != "done")
            )
            if not open_:
                await session.execute(
                    update(CampaignRun)
                    .where(CampaignRun.id == run.id, CampaignRun.status == CAMPAIGN_RUN.initial)
                    .values(status=CAMPAIGN_RUN.next_state(CAMPAIGN_RUN.initial, "finish"), finished_at=now)
                )
