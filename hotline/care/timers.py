"""Durable timers for the service loop: no-shows, offer time-outs, overdue follow-ups,
complaint deadlines and the rating schedule.

One row per (kind, subject) in ``care_timers``. Firing is one transaction: claim the row with
``UPDATE ... SET token = token + 1 WHERE token = :seen AND state = 'pending' AND due_at <= now``
(a second instance, or a repeated sweep, matches nothing), then run the kind's handler in
the same transaction, so its effects commit exactly when the timer is spent. A handler
that fails leaves the timer due again after a back-off. The database is the only source of
wake-ups: these timers are minutes to days long, so a one-second sweep is precise enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.care.lifecycle import CARE_TIMER
from hotline.clock import Clock, SystemClock
from hotline.errors import NotFoundError
from hotline.storage.db import log_failure
from hotline.storage.models import CareTimer
from hotline.tasks import raise_if_cancelling, wait_event

log = logging.getLogger(__name__)

#: What to announce once the firing transaction has committed (console messages, the outbox).
After = Callable[[], Awaitable[None]]
#: A handler runs inside the firing transaction; it may schedule the same timer again.
Handler = Callable[[AsyncSession, CareTimer, datetime], Awaitable[After | None]]
#: Locks the timer's subject row. It runs before the claim, so a timer and the API lock in one
#: order (subject, then timer), as the escalation timers do with their incident.
Lock = Callable[[AsyncSession, str], Awaitable[object]]
MAX_BACKOFF_S = 600.0


async def schedule(
    session: AsyncSession, kind: str, subject: str, due: datetime, data: dict[str, Any] | None = None
) -> CareTimer:
    """Arm (or re-arm) the timer of ``kind`` for ``subject`` at ``due``, in the caller's transaction."""
    timer = await session.scalar(select(CareTimer).where(CareTimer.kind == kind, CareTimer.subject_id == subject))
    if timer is None:
        timer = CareTimer(
            kind=kind, subject_id=subject, due_at=due, token=1, state=CARE_TIMER.initial, failures=0, data=data or {}
        )
        session.add(timer)
        return timer
    CARE_TIMER.fire(timer, "schedule")
    timer.due_at, timer.token, timer.failures, timer.updated_at = due, timer.token + 1, 0, due
    if data is not None:
        timer.data = data
    return timer


async def cancel(session: AsyncSession, kind: str, subject: str) -> None:
    timer = await session.scalar(select(CareTimer).where(CareTimer.kind == kind, CareTimer.subject_id == subject))
    if timer is not None and CARE_TIMER.fire_if_possible(timer, "cancel"):
        timer.token += 1


class CareTimers:
    """Fires due timers. Owned by the app: ``run()`` is cancelled on shutdown."""

    def __init__(
        self, sm: async_sessionmaker[AsyncSession], *, clock: Clock | None = None, sweep_s: float = 1.0
    ) -> None:
        self._sm = sm
        self._clock = clock or SystemClock()
        self._sweep_s = sweep_s
        self._handlers: dict[str, tuple[Handler, Lock | None]] = {}
        self._wake = asyncio.Event()
        self.fired = 0
        self.failed = 0

    def on(self, kind: str, handler: Handler, *, lock: Lock | None = None) -> None:
        self._handlers[kind] = (handler, lock)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise_if_cancelling()
                log_failure(log, "care timer sweep", exc)
            self._wake.clear()
            await wait_event(self._wake, self._sweep_s)

    async def run_due(self) -> int:
        """Fire every due timer once; returns how many fired. Tests call it after moving the clock."""
        now = self._clock.now()
        async with self._sm() as session:
            rows = (
                await session.execute(
                    select(CareTimer.id, CareTimer.token)
                    .where(CareTimer.state == "pending", CareTimer.due_at <= now)
                    .order_by(CareTimer.due_at)
                    .limit(200)
                )
            ).all()
        fired = 0
        for timer_id, token in rows:
            fired += await self.fire(timer_id, token)
        return fired

    async def fire(self, timer_id: int, token: int) -> bool:
        now = self._clock.now()
        after: After | None = None
        try:
            async with self._sm() as session, session.begin():
                row = (
                    await session.execute(select(CareTimer.kind, CareTimer.subject_id).where(CareTimer.id == timer_id))
                ).first()
                if row is None or row[0] not in self._handlers:
                    log.error("no handler for care timer %s; it stays due", timer_id)
                    return False
                handler, lock = self._handlers[row[0]]
                if lock is not None:
                    # A subject that is gone: the claim below spends the timer, the handler finds nothing.
                    with contextlib.suppress(NotFoundError):
                        await lock(session, row[1])
                claimed = await session.execute(
                    update(CareTimer)
                    .where(
                        CareTimer.id == timer_id,
                        CareTimer.token == token,
                        CareTimer.state == "pending",
                        CareTimer.due_at <= now,
                    )
                    .values(token=token + 1)
                )
                if claimed.rowcount != 1:  # type: ignore[attr-defined]
                    return False
                timer = await session.get(CareTimer, timer_id, populate_existing=True)
                assert timer is not None
                CARE_TIMER.fire(timer, "fire")
                timer.updated_at = now
                after = await handler(session, timer, now)
        except asyncio.CancelledError:
            raise
        except Exception:
            raise_if_cancelling()
            self.failed += 1
            log.exception("care timer %s failed; it is due again after a back-off", timer_id)
            await self._back_off(timer_id, now)
            return False
        self.fired += 1
        if after is not None:
            await after()
        return True

    async def _back_off(self, timer_id: int, now: datetime) -> None:
        async with self._sm() as session, session.begin():
            timer = await session.get(CareTimer, timer_id)
            if timer is None or timer.state != "pending":
                return
            timer.failures += 1
            timer.due_at = now + timedelta(seconds=min(MAX_BACKOFF_S, 2.0**timer.failures))
            timer.token += 1
