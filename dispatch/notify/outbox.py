"""The notification outbox and its delivery worker.

Theory of operation: a notification is a row written in the same transaction as the
incident it announces, so nothing is announced that was not stored and nothing stored
goes unannounced. The worker claims due rows with a lease (``sending`` until
``lease_until``), so several backend instances can run workers side by side, and a
worker that dies mid-delivery only delays the row until its lease runs out. Each row's
``id`` is also the ``webhook-id``, so a receiver can drop the duplicates that
at-least-once delivery implies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.errors import DeliveryError
from dispatch.notify import webhooks
from dispatch.notify.links import FamilyLinks
from hotline.clock import Clock, SystemClock
from hotline.privacy import mask_phone
from hotline.storage.db import log_failure
from hotline.storage.models import Elder, Notification
from hotline.tasks import raise_if_cancelling, wait_event

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
LEASE = timedelta(seconds=30)


async def enqueue(
    session: AsyncSession,
    *,
    key: str,
    channel: str,
    target: str,
    event_type: str,
    payload: dict[str, Any],
    now: datetime,
    elder_id: str | None = None,
    incident_id: str | None = None,
    contact_id: int | None = None,
) -> bool:
    """Queue one message unless ``key`` was queued before. Returns whether it was new."""
    existing = await session.scalar(select(Notification.id).where(Notification.idempotency_key == key))
    if existing is not None:
        return False
    session.add(
        Notification(
            idempotency_key=key,
            channel=channel,
            target=target,
            event_type=event_type,
            payload=payload,
            elder_id=elder_id,
            incident_id=incident_id,
            contact_id=contact_id,
            status="pending",
            next_attempt_at=now,
            created_at=now,
        )
    )
    return True


async def enqueue_family_alerts(
    session: AsyncSession,
    *,
    incident: dict[str, Any],
    elder: Elder,
    now: datetime,
    tag: str = "created",
    event_type: str = "incident.created",
    message: str | None = None,
    links: FamilyLinks | None = None,
) -> int:
    """One alert per emergency contact with a channel; returns how many were queued.

    With ``links``, each alert carries the contact's own signed "I'm on my way" link.
    """
    count = 0
    for contact in elder.contacts:
        if contact.channel == "none":
            continue
        target = contact.webhook_url if contact.channel == "webhook" else contact.phone
        if not target:
            continue
        data: dict[str, Any] = {
            "incident_id": incident["id"],
            "incident_type": incident["type"],
            "severity": incident["severity"],
            "elder": {"id": elder.id, "name": elder.name, "address": elder.address},
            "contact": {"name": contact.name, "relation": contact.relation},
            "location": incident["location"],
        }
        if message is not None:
            data["message"] = message
        if links is not None and contact.id is not None:
            data["confirm_url"] = links.url(incident["id"], contact.id, now=now)
        stamp = incident["created_at"] if tag == "created" else now.isoformat()
        payload = {"type": event_type, "timestamp": stamp, "data": data}
        if await enqueue(
            session,
            key=f"incident:{incident['id']}:{tag}:contact:{contact.id}",
            channel=contact.channel,
            target=target,
            event_type=event_type,
            payload=payload,
            now=now,
            elder_id=elder.id,
            incident_id=incident["id"],
            contact_id=contact.id,
        ):
            count += 1
    return count


def retry_delay(attempts: int) -> float:
    """1 s, 2 s, 4 s ... capped at 10 minutes, with jitter so retries don't stampede."""
    return min(600.0, 2.0 ** max(0, attempts - 1)) * random.uniform(0.75, 1.0)


Sender = Callable[[Notification], Awaitable[None]]


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    limit: aiohttp.ClientTimeout,
    *,
    who: str | None = None,
) -> None:
    """POST for an HTTP channel: 2xx is delivered; anything else raises :class:`DeliveryError`,
    permanent for a 4xx other than 408, 409 and 429 (the receiver will never take it)."""
    try:
        async with http.post(url, data=body, headers=headers, timeout=limit) as resp:
            if 200 <= resp.status < 300:
                return
            permanent = 400 <= resp.status < 500 and resp.status not in (408, 409, 429)
            status = f"HTTP {resp.status}"
            raise DeliveryError(f"{who} answered {status}" if who else status, permanent=permanent)
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise DeliveryError(f"{who}: {error}" if who else error) from exc


class WebhookSender:
    """Posts a notification as a Standard Webhooks message, signed with every current secret."""

    def __init__(self, session: aiohttp.ClientSession, secrets: Sequence[str], *, timeout_s: float = 10) -> None:
        self._http = session
        self._secrets = tuple(secrets)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __call__(self, n: Notification) -> None:
        body = json.dumps(n.payload, ensure_ascii=False, separators=(",", ":")).encode()
        hdrs = webhooks.headers(self._secrets, n.id, int(time.time()), body)
        await post(self._http, n.target, body, hdrs, self._timeout)


async def _no_adapter(n: Notification) -> None:
    raise DeliveryError(f"no {n.channel} adapter is configured", permanent=True)


class OutboxWorker:
    """Delivers due notifications. Owned by the app; ``run()`` is cancelled on shutdown."""

    def __init__(
        self,
        sm: async_sessionmaker[AsyncSession],
        senders: dict[str, Sender],
        *,
        clock: Clock | None = None,
        batch: int = 20,
        poll_s: float = 1.0,
        concurrency: int = 8,
    ) -> None:
        self._sm = sm
        self._senders = senders
        self._clock = clock or SystemClock()
        self._batch = batch
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._limit = asyncio.Semaphore(concurrency)
        self.delivered = 0
        self.failed = 0

    def add_sender(self, channel: str, sender: Sender) -> None:
        self._senders[channel] = sender

    def wake(self) -> None:
        """Called after a commit that queued messages, so they go out now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                claimed = await self._claim()
                if claimed:
                    async with asyncio.TaskGroup() as tg:
                        for n in claimed:
                            tg.create_task(self._deliver(n), name=f"outbox.deliver[{n.id}]")
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise_if_cancelling()
                log_failure(log, "outbox cycle", exc)
            self._wake.clear()
            await wait_event(self._wake, self._poll_s)

    async def _claim(self) -> list[Notification]:
        now = self._clock.now()
        due = or_(
            and_(Notification.status == "pending", Notification.next_attempt_at <= now),
            and_(Notification.status == "sending", Notification.lease_until < now),
        )
        async with self._sm() as session, session.begin():
            candidates = (
                await session.scalars(
                    select(Notification).where(due).order_by(Notification.next_attempt_at).limit(self._batch)
                )
            ).all()
            claimed = []
            for n in candidates:
                # Compare-and-set on the observed state: another instance may have won the row.
                result = await session.execute(
                    update(Notification)
                    .where(
                        Notification.id == n.id, Notification.status == n.status, Notification.attempts == n.attempts
                    )
                    .values(status="sending", lease_until=now + LEASE)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(n)
        return claimed

    async def _deliver(self, n: Notification) -> None:
        sender = self._senders.get(n.channel, _no_adapter)
        async with self._limit:
            try:
                await sender(n)
                error: DeliveryError | None = None
            except DeliveryError as exc:
                error = exc
            except Exception as exc:
                log.exception("sender crashed notification_id=%s", n.id)
                error = DeliveryError(f"{type(exc).__name__}: {exc}")
        now = self._clock.now()
        attempts = n.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "lease_until": None}
        if error is None:
            values |= {"status": "delivered", "delivered_at": now, "last_error": None}
            self.delivered += 1
            log.info("notification delivered notification_id=%s channel=%s attempts=%d", n.id, n.channel, attempts)
        elif error.permanent or attempts >= MAX_ATTEMPTS:
            values |= {"status": "failed", "last_error": error.reason[:500]}
            self.failed += 1
            log.warning(
                "notification failed for good notification_id=%s channel=%s target=%s error=%s",
                n.id,
                n.channel,
                _mask_target(n),
                error.reason,
            )
        else:
            values |= {
                "status": "pending",
                "last_error": error.reason[:500],
                "next_attempt_at": now + timedelta(seconds=retry_delay(attempts)),
            }
            log.info(
                "notification retry scheduled notification_id=%s attempts=%d error=%s", n.id, attempts, error.reason
            )
        async with self._sm() as session, session.begin():
            result = await session.execute(
                update(Notification).where(Notification.id == n.id, Notification.status == "sending").values(**values)
            )
            gave_up = values.get("status") == "failed" and bool(result.rowcount)  # type: ignore[attr-defined]
            if gave_up and (fallback := n.payload.get("fallback")):
                # In the transaction that gives up, so a fallback is neither lost nor sent twice.
                for index, spec in enumerate(fallback):
                    await enqueue(
                        session,
                        key=f"{n.idempotency_key}:fallback:{index}",
                        channel=spec["channel"],
                        target=spec["target"],
                        event_type=spec["event_type"],
                        payload=spec["payload"],
                        now=now,
                        elder_id=n.elder_id,
                        incident_id=n.incident_id,
                    )
        if gave_up and n.payload.get("fallback"):
            log.warning("notification given up; its fallbacks are queued notification_id=%s", n.id)
            self.wake()


def _mask_target(n: Notification) -> str:
    return n.target if n.channel == "webhook" else mask_phone(n.target)
