"""The device gateway: MQTT messages in, stored events and acks out.

For an ``events`` message the order is fixed, because it is the whole guarantee:

1. parse (sans-IO, :mod:`devices.contract`);
2. store the event, and for an emergency the incident and its outbox rows, in one
   transaction; the ``(device_id, event_id)`` constraint makes a retransmission a no-op;
3. only then publish the application ack to the device and PUBACK the broker;
4. push the console event and wake the outbox.

A crash before step 3 leaves the message unacknowledged in the broker's session, so it
comes back; a crash after it finds the row already there and answers ``duplicate``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from devices import contract
from devices.errors import ContractError, UnknownTopicError
from devices.mqtt_link import Inbound, MqttLink
from dispatch.incidents import IncidentCreated, open_incident
from hotline.backoff import backoff_delay
from hotline.bus import EventBus
from hotline.clock import Clock, SystemClock
from hotline.storage.models import DeadLetter, Device, DeviceEventRecord, Elder

log = logging.getLogger(__name__)

DEAD_LETTER_PAYLOAD_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Outcome:
    status: contract.AckStatus
    incident_id: str | None = None
    reason: str | None = None
    created: IncidentCreated | None = None


class DeviceGateway:
    def __init__(
        self,
        *,
        sm: async_sessionmaker[AsyncSession],
        link: MqttLink,
        bus: EventBus,
        prefix: str,
        on_notifications: Callable[[], None] = lambda: None,
        clock: Clock | None = None,
        workers: int = 4,
    ) -> None:
        self._sm = sm
        self._link = link
        self._bus = bus
        self._prefix = prefix
        self._on_notifications = on_notifications
        self._clock = clock or SystemClock()
        self._workers = workers
        self.metrics: Counter[str] = Counter()
        self.presence_key = f"{bus.channel.rsplit(':', 1)[0]}:presence"

    async def run(self) -> None:
        """Consume the link's inbox with a few workers until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for n in range(self._workers):
                tg.create_task(self._worker(), name=f"devices.gateway.worker[{n}]")

    async def _worker(self) -> None:
        while True:
            item = await self._link.inbox.get()
            try:
                await self.handle(item)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Not acked: the broker keeps it in our session and redelivers it.
                self.metrics["errors"] += 1
                log.exception("unhandled error on topic=%s; message left unacknowledged", item.topic)

    async def handle(self, item: Inbound) -> None:
        try:
            topic = contract.parse_topic(self._prefix, item.topic)
        except UnknownTopicError as exc:
            await self._dead_letter(item, None, None, str(exc))
            self._link.ack(item)
            return
        if topic.channel == "events":
            await self._handle_event(item, topic.device_id)
        elif topic.channel in ("telemetry", "status"):
            await self._touch_presence(topic.device_id, item)
            self._link.ack(item)
        else:
            self._link.ack(item)

    async def _handle_event(self, item: Inbound, device_id: str) -> None:
        self.metrics["events_received"] += 1
        if item.retain:
            # A retained alarm would replay to every new subscriber; the contract forbids it.
            await self._reject(item, device_id, _event_id_of(item.payload), "events must not be retained")
            return
        try:
            event = contract.parse_event(item.payload)
        except ContractError as exc:
            await self._reject(item, device_id, exc.event_id, exc.reason)
            return
        outcome = await self._store_with_retry(device_id, event)
        if outcome.status == "rejected":
            await self._reject(item, device_id, event.event_id, outcome.reason or "rejected")
            return
        self.metrics[f"events_{outcome.status}"] += 1
        self._send_ack(device_id, event.event_id, outcome)
        self._link.ack(item)
        if outcome.created is not None:
            if outcome.created.notifications:
                self._on_notifications()
            await self._bus.publish(outcome.created.message())

    async def _store_with_retry(self, device_id: str, event: contract.DeviceEvent) -> Outcome:
        """Retry transient database failures: the alarm is not acknowledged until it is stored."""
        attempt = 0
        while True:
            try:
                return await self.store(device_id, event)
            except OperationalError as exc:
                delay = backoff_delay(attempt, cap_exp=6)
                attempt += 1
                self.metrics["store_retries"] += 1
                log.warning("storing event failed (%s); retry in %.1fs device_id=%s", exc.orig, delay, device_id)
                await asyncio.sleep(delay)

    async def store(self, device_id: str, event: contract.DeviceEvent) -> Outcome:
        now = self._clock.now()
        try:
            async with self._sm() as session, session.begin():
                device = await session.scalar(
                    select(Device)
                    .where(Device.device_id == device_id)
                    .options(selectinload(Device.elder).selectinload(Elder.contacts))
                )
                if device is None:
                    return Outcome("rejected", reason=f"unknown device {device_id}")
                record = DeviceEventRecord(
                    device_id=device_id,
                    event_id=event.event_id,
                    type=event.type,
                    device_ts=event.ts,
                    received_at=now,
                    payload=event.raw,
                )
                session.add(record)
                await session.flush()  # the unique constraint speaks here
                created = None
                if event.is_emergency:
                    incident, created = await open_incident(
                        session,
                        elder=device.elder,
                        type_=event.type,
                        source="device",
                        actor=f"device:{device_id}",
                        now=now,
                        device_id=device_id,
                        location=_location(event, device.elder),
                        detail={
                            "event_id": event.event_id,
                            "device_ts": event.ts.isoformat(),
                            "battery_pct": event.battery_pct,
                        },
                    )
                    record.incident_id = incident.id
                return Outcome("accepted", incident_id=record.incident_id, created=created)
        except IntegrityError:
            async with self._sm() as session:
                incident_id = await session.scalar(
                    select(DeviceEventRecord.incident_id).where(
                        DeviceEventRecord.device_id == device_id,
                        DeviceEventRecord.event_id == event.event_id,
                    )
                )
            return Outcome("duplicate", incident_id=incident_id)

    async def _reject(self, item: Inbound, device_id: str | None, event_id: str | None, reason: str) -> None:
        self.metrics["events_rejected"] += 1
        log.info("event rejected device_id=%s event_id=%s reason=%s", device_id, event_id, reason)
        await self._dead_letter(item, device_id, event_id, reason)
        if device_id is not None and event_id is not None:
            self._send_ack(device_id, event_id, Outcome("rejected", reason=reason))
        self._link.ack(item)

    def _send_ack(self, device_id: str, event_id: str, outcome: Outcome) -> None:
        self._link.publish(
            contract.topics(self._prefix, device_id)["ack"],
            contract.build_ack(event_id, outcome.status, incident_id=outcome.incident_id, reason=outcome.reason),
            qos=1,
        )

    async def _dead_letter(self, item: Inbound, device_id: str | None, event_id: str | None, reason: str) -> None:
        self.metrics["dead_letters"] += 1
        text = _printable(item.payload[: DEAD_LETTER_PAYLOAD_CHARS * 4].decode("utf-8", errors="backslashreplace"))
        async with self._sm() as session, session.begin():
            session.add(
                DeadLetter(
                    received_at=self._clock.now(),
                    topic=item.topic[:255],
                    device_id=device_id,
                    event_id=event_id,
                    reason=_printable(reason)[:500],
                    payload=text[:DEAD_LETTER_PAYLOAD_CHARS],
                    size=len(item.payload),
                )
            )

    async def _touch_presence(self, device_id: str, item: Inbound) -> None:
        try:
            await self._bus.redis.hset(self.presence_key, device_id, str(time.time()))
        except (RedisError, OSError) as exc:
            self.metrics["presence_errors"] += 1
            log.debug("presence update failed: %s", exc)

    async def online_count(self, window_s: float) -> int:
        """Devices heard from within ``window_s``."""
        try:
            seen: dict[Any, Any] = await self._bus.redis.hgetall(self.presence_key)
        except (RedisError, OSError):
            return 0
        cutoff = time.time() - window_s
        return sum(1 for ts in seen.values() if float(ts) >= cutoff)


_CONTROL = {c: f"\\x{c:02x}" for c in range(32) if chr(c) not in "\t\n\r"}


def _printable(text: str) -> str:
    """Escape control characters: PostgreSQL text refuses NUL, and logs should not carry them."""
    return text.translate(_CONTROL)


def _location(event: contract.DeviceEvent, elder: Elder) -> dict[str, Any]:
    if event.location is not None:
        loc = event.location
        return {"lat": loc.lat, "lon": loc.lon, "accuracy_m": loc.accuracy_m, "source": loc.source or "device"}
    # A one-touch phone has no GPS: it is where the elder lives.
    return {"lat": elder.lat, "lon": elder.lon, "accuracy_m": None, "source": "home"}


def _event_id_of(payload: bytes) -> str | None:
    try:
        return contract.parse_event(payload).event_id
    except ContractError as exc:
        return exc.event_id
