"""The broker adapter: paho-mqtt 2.x in its own thread, bridged to asyncio.

Theory of operation. paho runs its network loop in a dedicated thread; every inbound
PUBLISH is handed to the event loop through ``call_soon_threadsafe`` and put on an
asyncio queue. We use ``manual_ack=True``: paho does **not** send the QoS 1 PUBACK when
``on_message`` returns; the gateway calls :meth:`MqttLink.ack` only after the event is
committed. If the process dies first, the broker still holds the message in our
persistent session (clean_start=False, a session expiry interval) and redelivers it on
reconnect. MQTT 5's Receive Maximum bounds how many unacknowledged QoS 1 messages the
broker sends us at once, which is our backpressure window.

Reconnects are ours, not paho's (``reconnect_on_failure=False``): the thread waits a
jittered exponential back-off between attempts so a fleet of backends that lost the same
broker does not reconnect in lock-step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from devices.errors import BrokerUnavailableError
from hotline.backoff import backoff_delay
from hotline.core.targets import MqttTarget

log = logging.getLogger(__name__)

SESSION_TAKEN_OVER = 0x8E
SHORT_SESSION_S = 20.0
SHORT_SESSIONS_FOR_CONFLICT = 3


@dataclass(slots=True, eq=False)
class Inbound:
    """One delivery. Mutable on purpose: :meth:`MqttLink.ack` marks it, so a second ack of the
    same delivery is a no-op (the broker reuses packet ids, and a stray PUBACK for a reused id
    would acknowledge a newer message that is not stored yet)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    generation: int  # which connection delivered it; acks on a later one are pointless
    attempt: int = 0  # handling attempts that failed so far
    db_waits: int = 0  # handling attempts that found the database away (never counted as failures)
    acked: bool = False
    received: float = 0.0  # time.monotonic() when paho handed it over (0 for a replay)


class MqttLink:
    """One supervised MQTT v5 connection with manual QoS 1 acknowledgement."""

    def __init__(
        self,
        target: MqttTarget,
        *,
        client_id: str,
        subscriptions: Sequence[tuple[str, int]],
        receive_maximum: int = 100,
        session_expiry_s: int = 86_400,
        keepalive_s: int = 30,
        queue_size: int = 10_000,
        is_bulk: Callable[[str], bool] = lambda _topic: False,
    ) -> None:
        self._target = target
        self._subscriptions = list(subscriptions)
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        self._keepalive = keepalive_s
        # Two lanes: urgent (alarms, results, presence) is always served first and never
        # dropped; bulk (telemetry) may drop QoS 0 samples when full. An SOS must not wait
        # behind a heartbeat flood.
        # The urgent lane is fair between topics (one per device and channel): round-robin,
        # so one device's backlog cannot delay another device's alarm inside our window.
        self._urgent: dict[str, deque[Inbound]] = {}
        self._urgent_len = 0
        self._bulk: deque[Inbound] = deque()
        self._bulk_limit = queue_size
        self._is_bulk = is_bulk
        self._ready = asyncio.Event()
        self._incoming: deque[Inbound] = deque()  # appended by paho's thread, drained by the loop
        self._drain_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = threading.Event()
        self._generation = 0
        self.reconnects = 0
        self.dropped_qos0 = 0
        self.client_id = client_id
        # Session takeover: another client with our client id makes the broker end our
        # session; MQTT 5 brokers say so with reason 0x8E, Mosquitto 2.0 just closes the
        # socket. Either way the sign is sessions that keep ending soon after they began.
        self._connected_at = 0.0
        self._short_sessions = 0
        self._conflict_at = 0.0
        self._conflict_logged_at = 0.0
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        if target.username:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set_context(ssl.create_default_context())
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def session_conflict(self) -> bool:
        """True while our session keeps being taken over (cleared by a session that lasts)."""
        if not self._conflict_at:
            return False
        return not (self.connected and time.monotonic() - self._connected_at > 2 * SHORT_SESSION_S)

    @property
    def generation(self) -> int:
        return self._generation

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the network thread; returns at once (the thread keeps retrying)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"mqtt[{self._client._client_id!r}]", daemon=True)
        self._thread.start()

    async def wait_connected(self, seconds: float) -> None:
        ok = await asyncio.to_thread(self._connected.wait, seconds)
        if not ok:
            raise BrokerUnavailableError(
                f"no MQTT connection to {self._target.host}:{self._target.port} after {seconds}s"
            )

    async def close(self) -> None:
        self._stopping.set()
        with contextlib.suppress(Exception):  # already gone: nothing to tell
            self._client.disconnect()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)

    def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self._session_expiry_s
            props.ReceiveMaximum = self._receive_maximum
            try:
                self._client.connect(
                    self._target.host,
                    self._target.port,
                    keepalive=self._keepalive,
                    clean_start=False,
                    properties=props,
                )
            except (OSError, ValueError) as exc:
                delay = backoff_delay(attempt)
                attempt += 1
                log.warning(
                    "mqtt connect to %s:%d failed (%s); retry in %.1fs",
                    self._target.host,
                    self._target.port,
                    exc,
                    delay,
                )
                self._stopping.wait(delay)
                continue
            attempt = 0
            self._client.loop_forever()
            self._connected.clear()
            if not self._stopping.is_set():
                self.reconnects += 1
                delay = backoff_delay(min(attempt, 3))
                log.warning("mqtt connection lost; reconnecting in %.1fs", delay)
                self._stopping.wait(delay)

    # -- paho callbacks (network thread) ------------------------------------------------

    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        if reason.is_failure:
            log.error("mqtt connect refused: %s", reason)
            self._stopping.wait(backoff_delay(3))
            client.disconnect()
            return
        self._generation += 1
        if self._subscriptions:
            # Retain As Published keeps the retain flag on live messages, so the gateway
            # can refuse a retained alarm (which would replay to every new subscriber).
            client.subscribe(
                [(topic, SubscribeOptions(qos=qos, retainAsPublished=True)) for topic, qos in self._subscriptions]
            )
        self._connected_at = time.monotonic()
        self._connected.set()
        log.info("mqtt connected host=%s port=%d generation=%d", self._target.host, self._target.port, self._generation)

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        self._connected.clear()
        if self._stopping.is_set():
            return
        log.warning("mqtt disconnected: %s", reason)
        lasted = time.monotonic() - self._connected_at
        if reason.value == SESSION_TAKEN_OVER or lasted < SHORT_SESSION_S:
            self._short_sessions += 1
        else:
            self._short_sessions = 0
        if reason.value == SESSION_TAKEN_OVER or self._short_sessions >= SHORT_SESSIONS_FOR_CONFLICT:
            self._conflict_at = time.monotonic()
            if time.monotonic() - self._conflict_logged_at > 60:
                self._conflict_logged_at = time.monotonic()
                log.error(
                    "mqtt session taken over: another client connects with client id %r, so the broker keeps "
                    "ending our session (%d sessions in a row lasted under %.0f s; last reason: %s). "
                    "Give every backend instance its own HOTLINE_MQTT_CLIENT_ID; acks are lost meanwhile",
                    self.client_id,
                    self._short_sessions,
                    SHORT_SESSION_S,
                    reason,
                )

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        self._incoming.append(
            Inbound(
                msg.topic,
                bytes(msg.payload),
                msg.qos,
                bool(msg.retain),
                msg.mid,
                self._generation,
                received=time.monotonic(),
            )
        )
        # One wake-up per batch, not per message: at thousands of messages a second, a
        # callback each would flood the event loop's ready queue, and every await on the
        # alarm path (each database round trip) would wait behind that backlog.
        if not self._drain_scheduled:
            self._drain_scheduled = True
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False  # before draining: a message appended now schedules another
        while self._incoming:
            self._enqueue(self._incoming.popleft())

    def _enqueue(self, item: Inbound) -> None:
        if not self._is_bulk(item.topic):
            self._urgent.setdefault(item.topic, deque()).append(item)
            self._urgent_len += 1
        elif item.qos == 0 and len(self._bulk) >= self._bulk_limit:
            # QoS 1 is bounded by Receive Maximum and never dropped; a lost QoS 0 telemetry
            # sample is replaced by the next one, so we count it rather than block.
            self.dropped_qos0 += 1
            return
        else:
            self._bulk.append(item)
        self._ready.set()

    def put_back(self, item: Inbound) -> None:
        """Queue a delivery again (a retry after a failed attempt); it keeps its place in the
        broker's window until it is acknowledged."""
        self._enqueue(item)

    async def get(self) -> Inbound:
        """The next message: urgent lane first, round-robin over its topics."""
        while True:
            if self._urgent:
                topic, queue = next(iter(self._urgent.items()))
                item = queue.popleft()
                del self._urgent[topic]
                if queue:
                    self._urgent[topic] = queue  # to the back of the rotation
                self._urgent_len -= 1
                return item
            if self._bulk:
                return self._bulk.popleft()
            self._ready.clear()
            await self._ready.wait()

    def qsize(self) -> int:
        return self._urgent_len + len(self._bulk)

    # -- asyncio side --------------------------------------------------------------------

    def ack(self, item: Inbound) -> None:
        """Send the PUBACK for a QoS 1 message; call only after it is durably handled."""
        if item.acked:
            return
        item.acked = True
        if item.qos > 0 and item.generation == self._generation:
            self._client.ack(item.mid, item.qos)

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, properties: Properties | None = None
    ) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise BrokerUnavailableError(f"publish to {topic} failed: {paho.error_string(info.rc)}")
