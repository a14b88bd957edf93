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
from hotline.config import MqttTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    generation: int  # which connection delivered it; acks on a later one are pointless


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
        self._urgent: deque[Inbound] = deque()
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
        self._connected.set()
        log.info("mqtt connected host=%s port=%d generation=%d", self._target.host, self._target.port, self._generation)

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("mqtt disconnected: %s", reason)

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        self._incoming.append(
            Inbound(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), msg.mid, self._generation)
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
            self._urgent.append(item)
        elif item.qos == 0 and len(self._bulk) >= self._bulk_limit:
            # QoS 1 is bounded by Receive Maximum and never dropped; a lost QoS 0 telemetry
            # sample is replaced by the next one, so we count it rather than block.
            self.dropped_qos0 += 1
            return
        else:
            self._bulk.append(item)
        self._ready.set()

    async def get(self) -> Inbound:
        """The next message, urgent lane first."""
        while True:
            if self._urgent:
                return self._urgent.popleft()
            if self._bulk:
                return self._bulk.popleft()
            self._ready.clear()
            await self._ready.wait()

    def qsize(self) -> int:
        return len(self._urgent) + len(self._bulk)

    # -- asyncio side --------------------------------------------------------------------

    def ack(self, item: Inbound) -> None:
        """Send the PUBACK for a QoS 1 message; call only after it is durably handled."""
        if item.qos > 0 and item.generation == self._generation:
            self._client.ack(item.mid, item.qos)

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, properties: Properties | None = None
    ) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise BrokerUnavailableError(f"publish to {topic} failed: {paho.error_string(info.rc)}")
