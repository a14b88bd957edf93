"""The device gateway: MQTT messages in, stored facts, acks and console events out.

For an ``events`` message the order is fixed, because it is the whole guarantee:

1. parse (sans-IO, :mod:`devices.contract`);
2. store the event, and for an emergency the incident and its outbox rows, in one
   transaction; the ``(device_id, event_id)`` constraint makes a retransmission a no-op;
3. only then publish the application ack to the device and PUBACK the broker;
4. apply the condition rules, push console events and wake the outbox.

A crash before step 3 leaves the message unacknowledged in the broker's session, so it
comes back; a crash after it finds the row already there and answers ``duplicate``.

Telemetry and status are signs of life for :class:`~devices.presence_store.PresenceStore`
(buffered, flushed in batches) and inputs to the condition rules.

No message may hold a slot of the broker's in-flight window (Receive Maximum) for long,
because the window is shared by every device:

* a payload that breaks the contract (too large, too deep, not JSON, wrong shape) is
  refused with a dead letter, then acknowledged;
* any other failure while handling a message is retried a few times with back-off, off
  the worker, then the message is *parked*: a dead letter with the exact bytes and the
  error, replayable later. It is acknowledged only once the dead letter is stored;
* alarms and safety events are always stored. A device sending other events faster than
  its rate is answered ``retry`` with ``retry_after_s``, not refused;
* a device that keeps sending bad messages is throttled on those only: past its
  allowance their dead letters are sampled and they are not logged one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import random
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from devices import contract, deadletters, rules
from devices.commands import CommandService
from devices.conditions import ConditionService
from devices.directory import DeviceDirectory, to_info
from devices.errors import ContractError, UnknownTopicError
from devices.mqtt_link import Inbound, MqttLink
from devices.presence import DampingPolicy
from devices.presence_store import PresenceStore
from devices.ratelimit import EventPacer, RateLimiter
from dispatch.incidents import IncidentCreated, Incidents
from hotline.backoff import backoff_delay
from hotline.bus import EventBus
from hotline.clock import Clock, SystemClock
from hotline.core import wire
from hotline.metrics import latency_histogram
from hotline.storage.db import reason, unavailable
from hotline.storage.models import DeadLetter, Device, DeviceEventRecord, Elder
from hotline.tasks import raise_if_cancelling, wait_event

log = logging.getLogger(__name__)

DEAD_LETTER_PAYLOAD_CHARS = 2000
# Exact bytes are kept up to this size, so a parked or refused message can be replayed.
DEAD_LETTER_RAW_BYTES = 64 * 1024
REPLAY_POLL_S = 1.0
# Brokers built with metrics report drops; every Mosquitto reports its queued-message count,
# which grows when a subscriber falls behind: the warning before anything is dropped.
SYS_DROPPED = "$SYS/broker/publish/messages/dropped"
SYS_STORED = "$SYS/broker/store/messages/count"


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayPolicy:
    heartbeat_misses: int = 3
    lw_grace_s: float = 30.0
    offline_incident_after_s: float = 1800.0
    max_clock_skew_s: float = 300.0
    # telemetry, status and command results: over the rate they are dropped (and counted)
    rate_per_s: float = 2.0
    burst: float = 30.0
    # events other than alarms and safety events: over the rate they are answered "retry"
    event_rate_per_s: float = 10.0
    event_burst: float = 100.0
    # bad messages: past this allowance they are sampled, not recorded one by one
    bad_rate_per_s: float = 1.0
    bad_burst: float = 20.0
    # unexpected handling errors: attempts before a message is parked
    max_attempts: int = 3
    retry_base_s: float = 0.2


@dataclass(frozen=True, slots=True)
class Outcome:
    status: contract.AckStatus
    incident_id: str | None = None
    reason: str | None = None
    retry_after_s: int | None = None
    created: IncidentCreated | None = None
    info: rules.DeviceInfo | None = None
    extra: tuple[dict[str, Any], ...] = ()


class DeviceGateway:
    def __init__(
        self,
        *,
        sm: async_sessionmaker[AsyncSession],
        link: MqttLink,
        bus: EventBus,
        prefix: str,
        presence: PresenceStore,
        commands: CommandService,
        directory: DeviceDirectory | None = None,
        conditions: ConditionService | None = None,
        policy: GatewayPolicy | None = None,
        on_notifications: Callable[[], None] = lambda: None,
        incidents: Incidents | None = None,
        clock: Clock | None = None,
        workers: int = 4,
    ) -> None:
        self._sm = sm
        self._link = link
        self._bus = bus
        self._prefix = prefix
        self.presence = presence
        self.commands = commands
        self.directory = directory or DeviceDirectory(sm)
        self.incidents = incidents or Incidents()
        self.conditions = conditions or ConditionService(sm, incidents=self.incidents)
        self.policy = policy or GatewayPolicy()
        self._on_notifications = on_notifications
        self._clock = clock or SystemClock()
        self._workers = workers
        self._limiter = RateLimiter(rate_per_s=self.policy.rate_per_s, burst=self.policy.burst)
        self._pacer = EventPacer(rate_per_s=self.policy.event_rate_per_s, burst=self.policy.event_burst)
        self._bad = RateLimiter(rate_per_s=self.policy.bad_rate_per_s, burst=self.policy.bad_burst)
        self._retries: list[tuple[float, int, Inbound]] = []
        self._retry_seq = itertools.count()
        self._retry_wake = asyncio.Event()
        self._pending_touch: dict[str, float] = {}
        self._pending_snap: dict[str, dict[str, Any]] = {}
        self._dead_letter_sampled: dict[str, float] = {}
        self.metrics: Counter[str] = Counter()
        self.broker_dropped: int | None = None
        self.broker_stored: int | None = None
        self.ready = asyncio.Event()  # set once the device directory is loaded
        self.ack_latency = latency_histogram(
            "hotline_alarm_ack_seconds", "From an alarm (sos, fall) reaching the backend to its ack, stored first"
        )

    async def run(self) -> None:
        """Consume the link's inbox with a few workers, and flush presence, until cancelled."""
        try:
            log.info("device directory preloaded devices=%d", await self.directory.preload())
        except Exception as exc:
            if not unavailable(exc):
                raise
            log.warning("device directory preload failed (%s); loading on demand", reason(exc))
        self.ready.set()
        async with asyncio.TaskGroup() as tg:
            for n in range(self._workers):
                tg.create_task(self._worker(), name=f"devices.gateway.worker[{n}]")
            tg.create_task(self._flusher(), name="devices.gateway.presence_flush")
            tg.create_task(self._refresh_conditions(), name="devices.gateway.conditions_refresh")
            tg.create_task(self._retrier(), name="devices.gateway.retrier")
            tg.create_task(self._replay_requests(), name="devices.gateway.replay_requests")

    async def _worker(self) -> None:
        while True:
            item = await self._link.get()
            await self._attempt(item)
            raise_if_cancelling()

    async def _attempt(self, item: Inbound) -> None:
        try:
            await self.handle(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise_if_cancelling()
            await self._failed(item, exc)

    async def _failed(self, item: Inbound, exc: Exception) -> None:
        """An unexpected error: retry off the worker, then park the message and free its slot."""
        if item.acked:
            # The fact was stored and acknowledged; what failed came after it (rules, console).
            self.metrics["errors"] += 1
            log.error("error after a message was stored topic=%s", item.topic, exc_info=exc)
            return
        if unavailable(exc):
            # The database is away, which is no fault of the message: wait it out, never park it
            # for that (a park that succeeds as the database returns would answer "rejected").
            self.metrics["db_waits"] += 1
            delay = backoff_delay(item.db_waits, cap_exp=6)
            item.db_waits += 1
            log.warning("handling waits for the database (%s) topic=%s; retry in %.1fs", reason(exc), item.topic, delay)
            self._retry_later(item, delay)
            return
        item.attempt += 1
        self.metrics["errors"] += 1
        if item.attempt < self.policy.max_attempts:
            delay = self.policy.retry_base_s * 2 ** (item.attempt - 1) * (0.75 + 0.5 * random.random())
            log.warning(
                "handling failed (%s) topic=%s attempt=%d/%d; retry in %.2fs",
                reason(exc),
                item.topic,
                item.attempt,
                self.policy.max_attempts,
                delay,
            )
            self._retry_later(item, delay)
            return
        device_id, event_id = _ids_of(self._prefix, item)
        error = "".join(traceback.format_exception(exc))[-4000:]
        try:
            letter_id = await self._dead_letter(
                item,
                device_id,
                event_id,
                f"handling failed {item.attempt} times: {type(exc).__name__}: {exc}",
                disposition="parked",
                error=error,
            )
        except Exception as store_exc:
            raise_if_cancelling()
            # Not parked, so not acknowledged: keep it in the window and try again later.
            log.warning("parking a message failed (%s); it stays unacknowledged", type(store_exc).__name__)
            self._retry_later(item, backoff_delay(item.attempt - self.policy.max_attempts, cap_exp=5))
            return
        self.metrics["parked"] += 1
        log.error(
            "message parked after %d attempts dead_letter=%s topic=%s device_id=%s event_id=%s",
            item.attempt,
            letter_id,
            item.topic,
            device_id,
            event_id,
            exc_info=exc,
        )
        if device_id is not None and event_id is not None and item.topic.endswith("/events"):
            # The device may send it again: a replay of the parked copy is idempotent anyway.
            self._send_ack(device_id, event_id, Outcome("rejected", reason="internal error; kept for replay"))
        self._link.ack(item)

    def _retry_later(self, item: Inbound, delay: float) -> None:
        heapq.heappush(self._retries, (time.monotonic() + delay, next(self._retry_seq), item))
        self._retry_wake.set()

    async def _retrier(self) -> None:
        """Puts failed deliveries back on the link when their back-off ends."""
        while True:
            now = time.monotonic()
            while self._retries and self._retries[0][0] <= now:
                self._link.put_back(heapq.heappop(self._retries)[2])
            self._retry_wake.clear()
            wait = self._retries[0][0] - now if self._retries else 3600.0
            await wait_event(self._retry_wake, wait)

    async def replay(self, letter_id: int) -> str:
        """Run a dead letter's exact bytes through the normal path again; returns what happened
        (for an event, the status the device was told). Idempotent by (device_id, event_id)."""
        async with self._sm() as session:
            letter = await session.get(DeadLetter, letter_id)
        if letter is None:
            raise deadletters.UnknownDeadLetterError(f"dead letter {letter_id} does not exist")
        if letter.raw is None:
            raise deadletters.NotReplayableError(f"dead letter {letter_id} kept no exact payload")
        # QoS 0 and no connection generation: there is no broker delivery to acknowledge.
        item = Inbound(letter.topic, letter.raw, qos=0, retain=False, mid=0, generation=-1)
        try:
            outcome = await self.handle(item)
        except Exception as exc:
            raise_if_cancelling()
            log.exception("replay of dead letter %d failed", letter_id)
            result = f"failed: {type(exc).__name__}: {exc}"
        else:
            result = "handled" if outcome is None else outcome.status
            if outcome is not None and outcome.incident_id:
                result += f" incident={outcome.incident_id}"
            if outcome is not None and outcome.reason:
                result += f" ({outcome.reason})"
        async with self._sm() as session, session.begin():
            stored = await session.get(DeadLetter, letter_id)
            if stored is not None:
                stored.replayed_at = self._clock.now()
                stored.replay_result = _printable(result)[:500]
        self.metrics["replayed"] += 1
        log.info("dead letter replayed dead_letter=%d result=%s", letter_id, result)
        return result

    async def _replay_requests(self) -> None:
        """Replays asked for from the command line, claimed so that one instance runs each."""
        while True:
            await asyncio.sleep(REPLAY_POLL_S)
            try:
                for letter_id in await deadletters.requested_ids(self._sm):
                    if await deadletters.claim(self._sm, letter_id, self._clock.now()):
                        await self.replay(letter_id)
            except Exception as exc:
                raise_if_cancelling()
                if not (unavailable(exc) or isinstance(exc, deadletters.NotReplayableError)):
                    raise
                log.warning("dead-letter replay requests not read: %s", reason(exc))

    async def handle(self, item: Inbound) -> Outcome | None:
        """Handle one delivery. For an ``events`` message, returns the outcome told the device."""
        if item.topic == SYS_DROPPED:
            self._on_broker_dropped(item.payload)
            return None
        if item.topic == SYS_STORED:
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                self.broker_stored = int(item.payload.decode().strip())
            return None
        try:
            topic = contract.parse_topic(self._prefix, item.topic)
        except UnknownTopicError as exc:
            self.metrics["unknown_topics"] += 1
            await self._dead_letter(item, None, None, str(exc), sample=True)
            self._link.ack(item)
            return None
        self.metrics[f"rx_{topic.channel}"] += 1
        if topic.channel == "events":
            return await self._handle_event(item, topic.device_id)
        if not self._limiter.allow(topic.device_id, time.monotonic()):
            self.metrics["throttled"] += 1
            await self._dead_letter(item, topic.device_id, None, "rate limited", sample=True)
        elif topic.channel == "telemetry":
            await self._handle_telemetry(item, topic.device_id)
        elif topic.channel == "status":
            await self._handle_status(item, topic.device_id)
        else:
            await self._handle_command_result(item, topic.device_id)
        self._link.ack(item)
        return None

    # -- events -------------------------------------------------------------------------

    async def _handle_event(self, item: Inbound, device_id: str) -> Outcome:
        if item.retain:
            # A retained alarm would replay to every new subscriber; the contract forbids it.
            return await self._reject(item, device_id, _event_id_of(item.payload), "events must not be retained")
        try:
            event = contract.parse_event(item.payload)
        except ContractError as exc:
            return await self._reject(item, device_id, exc.event_id, exc.reason)
        if event.type not in contract.ALWAYS_STORED_TYPES:
            wait = self._pacer.admit(device_id, time.monotonic())
            if wait > 0:
                # Slowed down, not silenced: the device sends it again after the hint.
                self.metrics["events_retry"] += 1
                outcome = Outcome("retry", reason="rate limited", retry_after_s=max(1, math.ceil(wait)))
                self._send_ack(device_id, event.event_id, outcome)
                self._link.ack(item)
                return outcome
        outcome = await self._store_with_retry(device_id, event)
        if outcome.status == "rejected":
            return await self._reject(item, device_id, event.event_id, outcome.reason or "rejected")
        self.metrics[f"events_{outcome.status}"] += 1
        self._send_ack(device_id, event.event_id, outcome)
        if event.is_emergency and item.received:
            self.ack_latency.observe(time.monotonic() - item.received)
        self._link.ack(item)
        messages: list[dict[str, Any]] = []
        if outcome.created is not None:
            if outcome.created.notifications:
                self._on_notifications()
            messages += outcome.created.messages()
        messages += outcome.extra
        if outcome.status == "accepted" and outcome.info is not None:
            self._touch(outcome.info)
            messages += await self._apply_rules(outcome.info, rules.from_event(event, outcome.info))
        for message in messages:
            await self._bus.publish(message)
        return outcome

    async def _store_with_retry(self, device_id: str, event: contract.DeviceEvent) -> Outcome:
        """Retry transient database failures: the alarm is not acknowledged until it is stored."""
        attempt = 0
        while True:
            try:
                return await self.store(device_id, event)
            except Exception as exc:
                # Refused, shut down, "starting up", a full pool: the database is away, the alarm
                # is fine. Parking it would answer "rejected" the moment the database is back.
                if not unavailable(exc):
                    raise
                raise_if_cancelling()
                delay = backoff_delay(attempt, cap_exp=6)
                attempt += 1
                self.metrics["store_retries"] += 1
                log.warning("storing event failed (%s); retry in %.1fs device_id=%s", reason(exc), delay, device_id)
                await asyncio.sleep(delay)

    async def store(self, device_id: str, event: contract.DeviceEvent) -> Outcome:
        now = self._clock.now()
        skew = (event.ts - now).total_seconds()
        try:
            async with self._sm() as session, session.begin():
                device = await session.scalar(
                    select(Device)
                    .where(Device.device_id == device_id)
                    .options(selectinload(Device.elder).selectinload(Elder.contacts))
                )
                if device is None:
                    return Outcome("rejected", reason=f"unknown device {device_id}")
                if device.retired_at is not None:
                    return Outcome("rejected", reason=f"device {device_id} is retired")
                record = DeviceEventRecord(
                    device_id=device_id,
                    event_id=event.event_id,
                    type=event.type,
                    device_ts=event.ts,
                    received_at=now,
                    payload=event.raw,
                    clock_skew_s=round(skew, 3),
                )
                session.add(record)
                await session.flush()  # the unique constraint speaks here
                created = None
                extra: tuple[dict[str, Any], ...] = ()
                if event.is_emergency:
                    incident, created = await self.incidents.open(
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
                elif event.type == "removed":
                    extra = await self._removed(session, device, event, now)
                elif event.type == "test":
                    extra = (
                        {
                            "type": "device.test",
                            "device_id": device_id,
                            "elder_id": device.elder_id,
                            "event_id": event.event_id,
                            "elder": wire.dump(wire.ElderSummary, device.elder),
                            "received_at": now.isoformat(),
                        },
                    )
                reason = None
                if abs(skew) > self.policy.max_clock_skew_s:
                    reason = f"device clock is off by {skew:+.0f} s; server time is used"
                    self.metrics["clock_skew"] += 1
                    session.add(
                        DeadLetter(
                            received_at=now,
                            topic=f"{self._prefix}/devices/{device_id}/events",
                            device_id=device_id,
                            event_id=event.event_id,
                            reason=reason,
                            disposition="accepted_with_warning",
                            payload="",
                            size=0,
                        )
                    )
                info = to_info(device, device.elder)
                return Outcome(
                    "accepted", incident_id=record.incident_id, created=created, info=info, extra=extra, reason=reason
                )
        except IntegrityError:
            async with self._sm() as session:
                incident_id = await session.scalar(
                    select(DeviceEventRecord.incident_id).where(
                        DeviceEventRecord.device_id == device_id, DeviceEventRecord.event_id == event.event_id
                    )
                )
            return Outcome("duplicate", incident_id=incident_id)

    async def _removed(
        self, session: AsyncSession, device: Device, event: contract.DeviceEvent, now: datetime
    ) -> tuple[dict[str, Any], ...]:
        """A wearable taken off during an alarm is an emergency: escalate the open alarm."""
        alarm = await self.incidents.escalate_open_alarm(
            session,
            elder_id=device.elder_id,
            kind="device_removed",
            actor=f"device:{device.device_id}",
            now=now,
            data={"event_id": event.event_id},
        )
        if alarm is None:
            return ()  # taken off at bedtime: recorded, nothing more
        return (
            {
                "type": "incident.updated",
                "elder_id": device.elder_id,
                "incident_id": alarm.id,
                "change": "device_removed",
                "severity": "critical",
            },
        )

    # -- telemetry, status, command results ---------------------------------------------

    async def _handle_telemetry(self, item: Inbound, device_id: str) -> None:
        try:
            sample = contract.parse_telemetry(item.payload)
        except ContractError as exc:
            self.metrics["telemetry_rejected"] += 1
            await self._dead_letter(item, device_id, None, exc.reason, sample=True)
            return
        info = await self.directory.get(device_id)
        if info is None:
            self.metrics["telemetry_unknown_device"] += 1
            await self._dead_letter(item, device_id, None, f"unknown device {device_id}", sample=True)
            return
        self._touch(info)
        self._pending_snap[device_id] = _snapshot(sample)
        moved = False
        if sample.steps is not None:
            with contextlib.suppress(RedisError, OSError):
                before = await self.presence.swap_steps(device_id, sample.steps)
                moved = before is not None and sample.steps != before
                if (moved or before is None) and info.elder.lives_alone:
                    await self.presence.arm_inactivity(device_id, time.time() + info.elder.inactivity_hours * 3600)
        for message in await self._apply_rules(info, rules.from_telemetry(sample, info, moved=moved)):
            await self._bus.publish(message)
        self.metrics["telemetry_processed"] += 1

    async def _handle_status(self, item: Inbound, device_id: str) -> None:
        try:
            status = contract.parse_status(item.payload)
        except ContractError as exc:
            await self._dead_letter(item, device_id, None, exc.reason, sample=True)
            return
        info = await self.directory.get(device_id)
        if info is None:
            await self._dead_letter(item, device_id, None, f"unknown device {device_id}", sample=True)
            return
        if not status.online:
            # A Last Will (or a clean goodbye): offline after a short grace, so a device that
            # reconnects at once on a flaky cellular link does not flap.
            with contextlib.suppress(RedisError, OSError):
                await self.presence.offline_hint(device_id, time.time() + self.policy.lw_grace_s)
        elif not item.retain:
            # A retained "online" is history, not a sign of life.
            self._touch(info)

    async def _handle_command_result(self, item: Inbound, device_id: str) -> None:
        try:
            result = contract.parse_command_result(item.payload)
            message = await self.commands.on_result(device_id, result, self._clock.now())
        except ContractError as exc:
            self.metrics["command_results_rejected"] += 1
            await self._dead_letter(
                item, device_id, None, exc.reason, sample=not self._bad.allow(device_id, time.monotonic())
            )
            return
        info = await self.directory.get(device_id)
        if info is not None:
            message["elder_id"] = info.elder.elder_id
            self._touch(info)
        await self._bus.publish(message)

    # -- presence ---------------------------------------------------------------------------

    def _touch(self, info: rules.DeviceInfo) -> None:
        self._pending_touch[info.device_id] = time.time() + info.heartbeat_timeout_s(self.policy.heartbeat_misses)

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            await self.flush()
            raise_if_cancelling()  # in case a client library swallowed it somewhere inside

    async def _refresh_conditions(self) -> None:
        while True:
            try:
                await self.conditions.refresh()
            except Exception as exc:
                raise_if_cancelling()
                if not unavailable(exc):
                    raise
                log.warning("refreshing active conditions failed: %s", reason(exc))
            await asyncio.sleep(self.conditions.refresh_s)

    async def flush(self) -> None:
        touches, self._pending_touch = self._pending_touch, {}
        snaps, self._pending_snap = self._pending_snap, {}
        if not touches and not snaps:
            return
        try:
            came_online = await self.presence.touch(touches, time.time())
            if snaps:
                await self.presence.save_telemetry(snaps.items())
        except (RedisError, OSError) as exc:
            raise_if_cancelling()
            self.metrics["presence_errors"] += 1
            log.warning("presence flush failed: %s", exc)
            return
        for device_id, previous in came_online:
            if previous == "offline":
                await self._announce_online(device_id)

    async def _announce_online(self, device_id: str) -> None:
        info = await self.directory.get(device_id)
        if info is None:
            return
        now = time.time()
        damping = (await self.presence.damping(device_id)).check(now, PRESENCE_DAMPING)
        await self.presence.set_damping(device_id, damping)
        messages = await self._apply_rules(info, [rules.Change("offline", False, {"source": "presence"})])
        if not damping.suppressed:
            messages.append({"type": "device.online", "device_id": device_id, "elder_id": info.elder.elder_id})
        for message in messages:
            await self._bus.publish(message)

    async def _apply_rules(self, info: rules.DeviceInfo, changes: list[rules.Change]) -> list[dict[str, Any]]:
        messages = await self.conditions.apply(info, changes, self._clock.now())
        if any(m["type"] == "incident.created" for m in messages):
            self._on_notifications()
        return messages

    # -- helpers ------------------------------------------------------------------------------

    async def _reject(self, item: Inbound, device_id: str | None, event_id: str | None, reason: str) -> Outcome:
        self.metrics["events_rejected"] += 1
        within = device_id is None or self._bad.allow(device_id, time.monotonic())
        if within:
            log.info("event rejected device_id=%s event_id=%s reason=%s", device_id, event_id, reason)
        else:
            self.metrics["bad_throttled"] += 1
        await self._dead_letter(item, device_id, event_id, reason, sample=not within)
        outcome = Outcome("rejected", reason=reason)
        if device_id is not None and event_id is not None:
            self._send_ack(device_id, event_id, outcome)
        self._link.ack(item)
        return outcome

    def _send_ack(self, device_id: str, event_id: str, outcome: Outcome) -> None:
        self._link.publish(
            contract.topics(self._prefix, device_id)["ack"],
            contract.build_ack(
                event_id,
                outcome.status,
                incident_id=outcome.incident_id,
                reason=outcome.reason,
                retry_after_s=outcome.retry_after_s,
            ),
            qos=1,
        )

    async def _dead_letter(
        self,
        item: Inbound,
        device_id: str | None,
        event_id: str | None,
        reason: str,
        *,
        sample: bool = False,
        disposition: str = "rejected",
        error: str | None = None,
    ) -> int | None:
        """Record a refused or parked message; returns its id. ``sample``: at most one row per
        device and reason a minute, so a flood is visible without becoming a flood of writes."""
        self.metrics["dead_letters"] += 1
        if sample:
            key = f"{device_id}|{reason[:40]}"
            now = time.monotonic()
            if self._dead_letter_sampled.get(key, 0) > now:
                self.metrics["dead_letters_sampled_out"] += 1
                return None
            if len(self._dead_letter_sampled) > 100_000:
                self._dead_letter_sampled = {k: v for k, v in self._dead_letter_sampled.items() if v > now}
            self._dead_letter_sampled[key] = now + 60
        text = _printable(item.payload[: DEAD_LETTER_PAYLOAD_CHARS * 4].decode("utf-8", errors="backslashreplace"))
        letter = DeadLetter(
            received_at=self._clock.now(),
            topic=item.topic[:255],
            device_id=device_id,
            event_id=event_id,
            reason=_printable(reason)[:500],
            disposition=disposition,
            payload=text[:DEAD_LETTER_PAYLOAD_CHARS],
            size=len(item.payload),
            raw=item.payload if len(item.payload) <= DEAD_LETTER_RAW_BYTES else None,
            error=error,
            attempts=max(1, item.attempt),
        )
        async with self._sm() as session, session.begin():
            session.add(letter)
        return letter.id

    def _on_broker_dropped(self, payload: bytes) -> None:
        try:
            value = int(payload.decode().strip())
        except (ValueError, UnicodeDecodeError):
            return
        if self.broker_dropped is not None and value > self.broker_dropped:
            log.warning(
                "the broker dropped %d messages since the last report (total %d): check max_queued_messages",
                value - self.broker_dropped,
                value,
            )
        self.broker_dropped = value

    async def online_count(self, window_s: float) -> int:
        try:
            return await self.presence.online_within(window_s)
        except (RedisError, OSError):
            return 0


PRESENCE_DAMPING = DampingPolicy()

_CONTROL = {c: f"\\x{c:02x}" for c in range(32) if chr(c) not in "\t\n\r"}


def _printable(text: str) -> str:
    """Escape control characters: PostgreSQL text refuses NUL, and logs should not carry them."""
    return text.translate(_CONTROL)


def _snapshot(t: contract.Telemetry) -> dict[str, Any]:
    snap: dict[str, Any] = {"ts": t.ts.isoformat(), "received_at": time.time()}
    for key in ("battery_pct", "charging", "power", "heart_rate", "spo2", "signal_dbm", "steps", "worn"):
        value = getattr(t, key)
        if value is not None:
            snap[key] = value
    if t.location is not None:
        snap["location"] = {"lat": t.location.lat, "lon": t.location.lon, "accuracy_m": t.location.accuracy_m}
    return snap


def _location(event: contract.DeviceEvent, elder: Elder) -> dict[str, Any]:
    if event.location is not None:
        loc = event.location
        return {"lat": loc.lat, "lon": loc.lon, "accuracy_m": loc.accuracy_m, "source": loc.source or "device"}
    # A one-touch phone has no GPS: it is where the elder lives.
    return {"lat": elder.lat, "lon": elder.lon, "accuracy_m": None, "source": "home"}


def _ids_of(prefix: str, item: Inbound) -> tuple[str | None, str | None]:
    """The device and event ids of a delivery, as far as they can be read."""
    try:
        device_id: str | None = contract.parse_topic(prefix, item.topic).device_id
    except UnknownTopicError:
        device_id = None
    event_id = _event_id_of(item.payload) if item.topic.endswith("/events") else None
    return device_id, event_id


def _event_id_of(payload: bytes) -> str | None:
    try:
        return contract.parse_event(payload).event_id
    except ContractError as exc:
        return exc.event_id
