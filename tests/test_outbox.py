"""The outbox against a real HTTP receiver and the real database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.incidents import open_incident
from dispatch.notify.outbox import OutboxWorker, WebhookSender, enqueue
from dispatch.notify.webhooks import new_secret
from hotline.storage.models import Elder, EmergencyContact, Notification
from simulators.family import FamilyReceiver
from tests import factories
from tests.helpers import eventually


class ManualClock:
    def __init__(self) -> None:
        self.t = datetime.now(UTC)

    def now(self) -> datetime:
        return self.t


async def _elder_with_contacts(sm: async_sessionmaker[AsyncSession], url: str, n: int = 2) -> Elder:
    async with sm() as s, s.begin():
        elder = factories.elder(name="李秀兰", gender="F", care_level="severe")
        elder.contacts = [
            EmergencyContact(
                name=f"子女{k}", relation="女儿", phone=f"1390000000{k}", channel="webhook", webhook_url=url, priority=k
            )
            for k in range(n)
        ]
        s.add(elder)
    return elder


async def _status(sm: async_sessionmaker[AsyncSession]) -> list[tuple[str, int]]:
    async with sm() as s:
        rows = (await s.scalars(select(Notification).order_by(Notification.id))).all()
    return [(n.status, n.attempts) for n in rows]


async def test_deliveries_survive_a_receiver_that_fails_its_first_attempts(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    secret = new_secret()
    receiver = FamilyReceiver([secret], fail_first=3)
    url = await receiver.start()
    elder = await _elder_with_contacts(sm, url, n=2)
    async with sm() as s, s.begin():
        from sqlalchemy.orm import selectinload

        e = await s.scalar(select(Elder).where(Elder.id == elder.id).options(selectinload(Elder.contacts)))
        assert e is not None
        _, created = await open_incident(s, elder=e, type_="sos", source="device", actor="test", now=datetime.now(UTC))
    assert created.notifications == 2
    async with aiohttp.ClientSession() as http:
        worker = OutboxWorker(sm, {"webhook": WebhookSender(http, [secret])}, poll_s=0.05)
        task = asyncio.create_task(worker.run())
        try:
            # Retry back-off is 1 s, 2 s, ... so three refusals spread over two rows clear in a few seconds.
            await eventually(lambda: _all_delivered(sm), timeout=20)
        finally:
            task.cancel()
    assert receiver.attempts >= 5 and receiver.bad_signatures == 0
    assert len(receiver.alerts) == 2  # each delivered once, despite the retries
    statuses = await _status(sm)
    assert all(s == "delivered" for s, _ in statuses)
    assert sum(a for _, a in statuses) == receiver.attempts
    await receiver.stop()


async def _all_delivered(sm: async_sessionmaker[AsyncSession]) -> bool:
    statuses = await _status(sm)
    return bool(statuses) and all(s == "delivered" for s, _ in statuses)


async def test_channels_without_an_adapter_fail_permanently_with_a_reason(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    clock = ManualClock()
    async with sm() as s, s.begin():
        sms = {"key": "k-sms", "channel": "sms", "target": "13900001111", "event_type": "incident.created"}
        await enqueue(s, **sms, payload={}, now=clock.now())
        assert not await enqueue(s, **sms, payload={}, now=clock.now())  # same key: not queued twice
    worker = OutboxWorker(sm, {}, clock=clock)
    task = asyncio.create_task(worker.run())
    await eventually(lambda: _status(sm))
    await eventually(lambda: _has_status(sm, "failed"))
    task.cancel()
    async with sm() as s:
        n = await s.scalar(select(Notification))
    assert n is not None and n.last_error == "no sms adapter is configured" and n.attempts == 1


async def _has_status(sm: async_sessionmaker[AsyncSession], status: str) -> bool:
    return any(s == status for s, _ in await _status(sm))


async def test_two_workers_never_deliver_the_same_message_twice(sm: async_sessionmaker[AsyncSession]) -> None:
    secret = new_secret()
    receiver = FamilyReceiver([secret])
    url = await receiver.start()
    now = datetime.now(UTC)
    async with sm() as s, s.begin():
        for k in range(40):
            await enqueue(s, key=f"k{k}", channel="webhook", target=url, event_type="test", payload={"k": k}, now=now)
    async with aiohttp.ClientSession() as http:
        workers = [OutboxWorker(sm, {"webhook": WebhookSender(http, [secret])}, poll_s=0.05, batch=7) for _ in range(2)]
        tasks = [asyncio.create_task(w.run()) for w in workers]
        await eventually(lambda: _all_delivered(sm), timeout=20)
        for t in tasks:
            t.cancel()
    assert receiver.attempts == 40 and receiver.duplicates == 0
    assert sum(w.delivered for w in workers) == 40
    await receiver.stop()


async def test_a_row_claimed_by_a_dead_worker_is_retried_after_its_lease(sm: async_sessionmaker[AsyncSession]) -> None:
    clock = ManualClock()
    secret = new_secret()
    receiver = FamilyReceiver([secret])
    url = await receiver.start()
    async with sm() as s, s.begin():
        await enqueue(s, key="orphan", channel="webhook", target=url, event_type="test", payload={}, now=clock.now())
        # As if a worker claimed it and then died before recording the outcome.
        await s.execute(update(Notification).values(status="sending", lease_until=clock.now() + timedelta(seconds=30)))
    async with aiohttp.ClientSession() as http:
        worker = OutboxWorker(sm, {"webhook": WebhookSender(http, [secret])}, clock=clock, poll_s=0.05)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.3)
        assert receiver.attempts == 0  # lease still valid
        clock.t += timedelta(seconds=31)
        await eventually(lambda: _all_delivered(sm))
        task.cancel()
    assert receiver.attempts == 1
    await receiver.stop()
