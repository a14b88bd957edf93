"""Dead letters: the messages the gateway refused or parked, kept for the operator.

A replay runs the exact stored bytes through the gateway's normal path again, so it is
idempotent by ``(device_id, event_id)`` like any retransmission. It can be asked for in two
ways:

* through the API, on the instance that answers (:meth:`DeviceGateway.replay`);
* through ``hotline deadletters replay ID``, which needs no broker or Redis: it marks the row
  (``replay_requested_at``), and whichever running gateway claims it first replays it and
  writes ``replay_result``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql import ColumnElement, Select

from devices.errors import DeviceError
from hotline.storage.models import DeadLetter


class UnknownDeadLetterError(DeviceError):
    """No dead letter has this id."""


class NotReplayableError(DeviceError):
    """The dead letter's exact bytes were not kept (the payload was over the size limit)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LetterFilter:
    device_id: str | None = None
    reason: str | None = None  # a substring of the reason
    disposition: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def query(f: LetterFilter) -> Select[Any]:
    stmt = select(DeadLetter).order_by(DeadLetter.received_at.desc(), DeadLetter.id.desc())
    if f.device_id is not None:
        stmt = stmt.where(DeadLetter.device_id == f.device_id)
    if f.reason is not None:
        stmt = stmt.where(DeadLetter.reason.contains(f.reason))
    if f.disposition is not None:
        stmt = stmt.where(DeadLetter.disposition == f.disposition)
    if f.since is not None:
        stmt = stmt.where(DeadLetter.received_at >= f.since)
    if f.until is not None:
        stmt = stmt.where(DeadLetter.received_at < f.until)
    return stmt


async def request_replay(sm: async_sessionmaker[AsyncSession], letter_id: int, now: datetime) -> None:
    """Ask the running gateways to replay a dead letter (``hotline deadletters replay``)."""
    async with sm() as session, session.begin():
        letter = await session.get(DeadLetter, letter_id, with_for_update=True)
        if letter is None:
            raise UnknownDeadLetterError(f"dead letter {letter_id} does not exist")
        if letter.raw is None:
            raise NotReplayableError(f"dead letter {letter_id} kept no exact payload (it was over the size limit)")
        letter.replay_requested_at = now
        letter.replay_result = None


def _requested() -> ColumnElement[bool]:
    return (DeadLetter.replay_requested_at.is_not(None)) & or_(
        DeadLetter.replayed_at.is_(None), DeadLetter.replayed_at < DeadLetter.replay_requested_at
    )


async def requested_ids(sm: async_sessionmaker[AsyncSession], limit: int = 20) -> list[int]:
    async with sm() as session:
        rows = await session.scalars(
            select(DeadLetter.id).where(_requested()).order_by(DeadLetter.replay_requested_at).limit(limit)
        )
        return list(rows)


async def claim(sm: async_sessionmaker[AsyncSession], letter_id: int, now: datetime) -> bool:
    """Take a requested replay for this instance; False when another instance took it first."""
    async with sm() as session, session.begin():
        result = await session.execute(
            update(DeadLetter)
            .where(DeadLetter.id == letter_id, _requested())
            .values(replayed_at=now, replay_result="replaying")
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
