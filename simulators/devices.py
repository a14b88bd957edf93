"""Device-fleet simulator: one MQTT connection per simulated device, as in the field.

Each device announces itself with a retained ``status`` and a Last Will, sends heartbeats
on ``telemetry``, and on an alarm publishes an event at QoS 1 and retransmits it, with the
same ``event_id``, until the backend's application ack arrives. Payloads are built and
acks parsed with :mod:`devices.contract`, the same code the backend validates with.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from devices import contract
from devices.errors import ContractError
from hotline.config import MqttTarget

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    payload: bytes
    first_sent: float
    last_sent: float


@dataclass
class SimDevice:
    device_id: str
    target: MqttTarget
    prefix: str
    loop: asyncio.AbstractEventLoop
    stats: Counter[str]
    latencies: list[float]
    battery: int = 100
    location: contract.Location | None = None
    pending: dict[str, _Pending] = field(default_factory=dict)
    answer_commands: bool = True
    _seq: int = 0

    def __post_init__(self) -> None:
        self.topics = contract.topics(self.prefix, self.device_id)
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{self.device_id}", protocol=paho.MQTTv311)
        if self.target.username:
            c.username_pw_set(self.target.username, self.target.password)
        c.will_set(self.topics["status"], contract.build_status(False, _now_ms()), qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 10)
        self.client = c

    def start(self) -> None:
        self.client.connect_async(self.target.host, self.target.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.publish(self.topics["status"], contract.build_status(False, _now_ms()), qos=1, retain=True)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: paho.Client, *_: object) -> None:
        client.subscribe([(self.topics["ack"], 1), (self.topics["commands"], 1)])
        client.publish(self.topics["status"], contract.build_status(True, _now_ms()), qos=1, retain=True)
        self.loop.call_soon_threadsafe(self.stats.update, ["connects"])

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        if msg.topic == self.topics["commands"]:
            self.loop.call_soon_threadsafe(self._on_command, bytes(msg.payload))
        else:
            self.loop.call_soon_threadsafe(self._on_ack, bytes(msg.payload))

    def _on_command(self, payload: bytes) -> None:
        """Act on a command as a conforming device does: check expiry, answer with a result."""
        self.stats["commands"] += 1
        try:
            cmd = contract.parse_command(payload)
        except ContractError:
            self.stats["bad_commands"] += 1
            return
        if not self.answer_commands or cmd.expires_at < datetime.now(UTC):
            return
        location = self.location or contract.Location(30.0372, 121.1546, accuracy_m=15, source="gps")
        result = contract.build_command_result(
            cmd.command_id, "done", f"{cmd.type} ok", location if cmd.type == "locate" else None
        )
        self.client.publish(self.topics["commands/result"], result, qos=1)

    def _on_ack(self, payload: bytes) -> None:
        try:
            ack = contract.parse_ack(payload)
        except ContractError:
            self.stats["bad_acks"] += 1
            return
        self.stats[f"ack_{ack['status']}"] += 1
        p = self.pending.pop(ack["event_id"], None)
        if p is not None:
            self.latencies.append(time.monotonic() - p.first_sent)

    def heartbeat(self) -> None:
        self.battery = max(5, self.battery - (random.random() < 0.02))
        body = contract.build_telemetry(_now_ms(), battery_pct=self.battery, signal_dbm=random.randint(-100, -60))
        self.client.publish(self.topics["telemetry"], body, qos=0)
        self.stats["heartbeats"] += 1

    def alarm(self, type_: str = "sos") -> str:
        self._seq += 1
        event_id = f"{self.device_id}-{int(time.time() * 1000)}-{self._seq}"
        payload = contract.build_event(
            event_id=event_id, type=type_, ts=datetime.now(UTC), location=self.location, battery_pct=self.battery
        )
        now = time.monotonic()
        self.pending[event_id] = _Pending(payload, now, now)
        self.client.publish(self.topics["events"], payload, qos=1)
        self.stats[f"sent_{type_}"] += 1
        return event_id

    def retransmit(self, after_s: float) -> None:
        now = time.monotonic()
        for p in self.pending.values():
            if now - p.last_sent >= after_s:
                p.last_sent = now
                self.client.publish(self.topics["events"], p.payload, qos=1)
                self.stats["retransmits"] += 1


class DeviceFleet:
    """Plays ``device_ids`` until cancelled. Owned by whoever awaits :meth:`run`."""

    def __init__(
        self,
        target: MqttTarget,
        prefix: str,
        device_ids: Sequence[str],
        *,
        heartbeat_s: float = 30,
        sos_every_s: float | None = None,
        retry_s: float = 5,
        first_sos_after_s: float = 2,
        rng: random.Random | None = None,
        answer_commands: bool = True,
    ) -> None:
        self.target = target
        self.prefix = prefix
        self.device_ids = list(device_ids)
        self.heartbeat_s = heartbeat_s
        self.sos_every_s = sos_every_s
        self.retry_s = retry_s
        self.first_sos_after_s = first_sos_after_s
        self.answer_commands = answer_commands
        self.rng = rng or random.Random()
        self.stats: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.devices: list[SimDevice] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.devices = [
            SimDevice(
                d, self.target, self.prefix, loop, self.stats, self.latencies, answer_commands=self.answer_commands
            )
            for d in self.device_ids
        ]
        for d in self.devices:
            d.start()
        try:
            next_beat = time.monotonic()
            next_sos = time.monotonic() + self.first_sos_after_s
            while True:
                now = time.monotonic()
                if now >= next_beat:
                    for d in self.devices:
                        d.heartbeat()
                    next_beat = now + self.heartbeat_s
                if self.sos_every_s and now >= next_sos and self.devices:
                    self.rng.choice(self.devices).alarm(self.rng.choice(("sos", "sos", "sos", "fall")))
                    next_sos = now + self.rng.expovariate(1 / self.sos_every_s)
                for d in self.devices:
                    d.retransmit(self.retry_s)
                await asyncio.sleep(0.2)
        finally:
            await asyncio.to_thread(self._stop_all)

    def _stop_all(self) -> None:
        for d in self.devices:
            try:
                d.stop()
            except Exception:  # noqa: S112 - best effort at shutdown
                continue

    @property
    def unacked(self) -> int:
        return sum(len(d.pending) for d in self.devices)


def _now_ms() -> int:
    return int(time.time() * 1000)
