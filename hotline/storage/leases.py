"""A role held by one instance at a time: a lease row in the database with a fencing token.

The holder renews the lease well before it expires; another instance takes it only once it
has expired, and taking it increments the token. The holder acts only while its own clock
says the lease is still valid (it stops a little early), and every write the role makes
checks, in the write's own transaction, that the token is still its own (:meth:`Lease.fence`):
a holder that was paused past its lease (a GC stall, a frozen VM) finds its writes refused
instead of overwriting its successor's.

It lives in the database rather than Redis so that the fence and the writes it guards
commit together; it works the same on SQLite (one writer at a time) and PostgreSQL (the
fence takes a share lock on the lease row, so a take-over waits for a write in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.errors import HotlineError
from hotline.storage.models import ServiceLease
from hotline.tasks import raise_if_cancelling

log = logging.getLogger(__name__)


class LeaseLostError(HotlineError):
    """A write of a role's holder was refused: another instance holds the role now."""


@dataclass(frozen=True, slots=True)
class LeaseState:
    holder: str
    token: int
    expires_at: float


class Lease:
    """The database operations of one named lease."""

    def __init__(self, sm: async_sessionmaker[AsyncSession], name: str) -> None:
        self.sm = sm
        self.name = name
        self._row_exists = False

    async def _ensure_row(self) -> None:
        if self._row_exists:
            return
        with contextlib.suppress(IntegrityError):  # another instance made it first
            async with self.sm() as session, session.begin():
                if await session.get(ServiceLease, self.name) is None:
                    session.add(ServiceLease(name=self.name, holder="", token=0, expires_at=0.0))
        self._row_exists = True

    async def acquire(self, me: str, ttl_s: float) -> int | None:
        """Take the lease if it has expired; the new token, or None if someone holds it."""
        await self._ensure_row()
        now = time.time()
        async with self.sm() as session, session.begin():
            # One conditional UPDATE: of two instances racing, the second finds the row
            # already renewed (PostgreSQL re-checks the WHERE after the first commits).
            result = await session.execute(
                update(ServiceLease)
                .where(ServiceLease.name == self.name, ServiceLease.expires_at < now)
                .values(
                    holder=me,
                    token=ServiceLease.token + 1,
                    expires_at=now + ttl_s,
                    acquired_at=datetime.now(UTC),
                )
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) != 1:
                return None
            token = await session.scalar(select(ServiceLease.token).where(ServiceLease.name == self.name))
            return int(token) if token is not None else None

    async def renew(self, me: str, token: int, ttl_s: float) -> bool:
        """Extend our lease; False when another instance has taken it since."""
        async with self.sm() as session, session.begin():
            result = await session.execute(
                update(ServiceLease)
                .where(ServiceLease.name == self.name, ServiceLease.holder == me, ServiceLease.token == token)
                .values(expires_at=time.time() + ttl_s)
                .execution_options(synchronize_session=False)
            )
            return getattr(result, "rowcount", 0) == 1

    async def release(self, me: str, token: int) -> None:
        """Let the lease go at once (a clean stop), so a standby need not wait for it to expire."""
        async with self.sm() as session, session.begin():
            await session.execute(
                update(ServiceLease)
                .where(ServiceLease.name == self.name, ServiceLease.holder == me, ServiceLease.token == token)
                .values(expires_at=0.0)
                .execution_options(synchronize_session=False)
            )

    async def current(self) -> LeaseState | None:
        async with self.sm() as session:
            row = await session.get(ServiceLease, self.name)
            return None if row is None else LeaseState(row.holder, row.token, row.expires_at)

    async def fence(self, session: AsyncSession, token: int) -> None:
        """Inside a write's transaction: raise :class:`LeaseLostError` unless ``token`` is
        still the lease's. On PostgreSQL the row stays share-locked until the write commits."""
        current = await session.scalar(
            select(ServiceLease.token).where(ServiceLease.name == self.name).with_for_update(read=True)
        )
        if current != token:
            raise LeaseLostError(f"the {self.name} lease has token {current}, not ours ({token})")


class Role:
    """Holds or waits for a :class:`Lease`, and says whether this instance may act now.

    ``failover_s`` bounds how long the role stays unheld after its holder dies: the lease
    lasts 60 % of it, the holder renews every fifth of it and stands down when a renewal has
    not landed in time; a standby tries every tenth of it.
    """

    def __init__(
        self,
        lease: Lease,
        me: str,
        *,
        failover_s: float = 5.0,
        on_gain: Callable[[int], None] | None = None,
        on_lose: Callable[[], None] | None = None,
    ) -> None:
        self.lease = lease
        self.me = me
        self.ttl_s = failover_s * 0.6
        self.renew_every = failover_s / 5
        self.try_every = failover_s / 10
        # Stand down this long before the lease's end on our clock: room for clock skew.
        self.margin_s = min(0.5, self.ttl_s / 4)
        self.on_gain = on_gain
        self.on_lose = on_lose
        self.token: int | None = None
        self._valid_until = 0.0  # monotonic
        self.gained = 0
        self.lost = 0
        self.holder: str | None = None  # the last holder we saw, for /readyz

    @property
    def active(self) -> bool:
        """True while this instance holds the role and its lease is valid on our clock."""
        return self.token is not None and time.monotonic() < self._valid_until

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                async with asyncio.timeout(max(self.try_every, self.ttl_s / 3)):
                    await self.step(started)
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                raise_if_cancelling()
                log.warning("%s lease not reached (%s)", self.lease.name, type(exc).__name__)
            if self.token is not None and not self.active:
                self._stand_down("its renewal did not land in time")
            await asyncio.sleep(self.renew_every if self.token is not None else self.try_every)

    async def step(self, started: float | None = None) -> None:
        """One renewal, or one attempt to take the lease."""
        started = time.monotonic() if started is None else started
        if self.token is not None:
            if await self.lease.renew(self.me, self.token, self.ttl_s):
                self._valid_until = started + self.ttl_s - self.margin_s
                self.holder = self.me
            else:
                self._stand_down("another instance took it")
            return
        token = await self.lease.acquire(self.me, self.ttl_s)
        if token is None:
            state = await self.lease.current()
            self.holder = state.holder if state is not None and state.expires_at > time.time() else None
            return
        self.token, self._valid_until, self.holder = token, started + self.ttl_s - self.margin_s, self.me
        self.gained += 1
        log.warning("%s role taken by %s (token %d)", self.lease.name, self.me, token)
        if self.on_gain is not None:
            self.on_gain(token)  # it starts its own work: the lease loop must not wait on it

    def _stand_down(self, why: str) -> None:
        log.warning("%s role given up by %s: %s", self.lease.name, self.me, why)
        self.token, self._valid_until, self.holder = None, 0.0, None
        self.lost += 1
        if self.on_lose is not None:
            self.on_lose()

    def lost_by_write(self) -> None:
        """A fenced write was refused: stand down now rather than at the next renewal."""
        if self.token is not None:
            self._stand_down("a write found a newer token")

    async def release(self, *, within_s: float = 2.0) -> None:
        token, self.token, self._valid_until = self.token, None, 0.0
        if token is None:
            return
        with contextlib.suppress(SQLAlchemyError, OSError, TimeoutError):
            async with asyncio.timeout(within_s):
                await self.lease.release(self.me, token)
