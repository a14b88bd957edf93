"""Device-fleet simulator: thousands of devices, one MQTT connection each, in one event loop.

Each device behaves like the field hardware does:
- it announces itself with a retained ``status`` and leaves a Last Will;
- it sends heartbeats on ``telemetry``, with a draining battery (and a low_battery event
  when it gets low, then a recharge);
- on an alarm it publishes an event at QoS 1 and retransmits it, with the same event_id,
  until the application ack arrives (also right after a reconnect); a ``retry`` ack makes
  it wait ``retry_after_s`` before the next transmission;
- it answers commands, unless told not to;
- now and then it has an offline episode: its socket dies without a DISCONNECT (the broker
  publishes the Last Will), it stays away a while, then reconnects.

Payloads are built and acks parsed with :mod:`devices.contract`, the same code the backend
validates with. Run it with ``python -m simulators.devices --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import aiomqtt

from devices import contract
from devices.errors import ContractError
from hotline.core.targets import MqttTarget

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Pending:
    payload: bytes
    first_sent: float
    last_sent: float
    not_before: float = 0.0  # a "retry" ack said: not again until then


@dataclass
class FleetProfile:
    heartbeat_s: float = 30.0
    retry_s: float = 5.0
    #: chance, per heartbeat, that a device drops off the network for a while
    offline_chance: float = 0.0
    offline_s: tuple[float, float] = (20.0, 120.0)
    #: battery percentage points lost per heartbeat
    drain_per_beat: float = 0.05
    answer_commands: bool = True


@dataclass(eq=False)
class SimDevice:
    device_id: str
    fleet: DeviceFleet
    battery: float = field(default_factory=lambda: random.uniform(30, 100))
    location: contract.Location | None = None
    pending: dict[str, _Pending] = field(default_factory=dict)
    online: bool = False
    _client: aiomqtt.Client | None = None
    _seq: int = 0
    _low_sent: bool = False

    def __post_init__(self) -> None:
        self.topics = contract.topics(self.fleet.prefix, self.device_id)

    @property
    def stats(self) -> Counter[str]:
        return self.fleet.stats

    async def run(self) -> None:
        """Connect, live, drop off now and then, reconnect; until cancelled."""
        target = self.fleet.target
        attempt = 0
        while True:
            will = aiomqtt.Will(self.topics["status"], contract.build_status(False, _now_ms()), qos=1, retain=True)
            client = aiomqtt.Client(
                target.host,
                target.port,
                identifier=self.device_id,
                will=will,
                keepalive=30,
                username=self.fleet.username_for(self.device_id),
                password=self.fleet.password_for(self.device_id),
                max_queued_outgoing_messages=1000,
            )
            try:
                async with client:
                    attempt = 0
                    self._client = client
                    await client.subscribe([(self.topics["ack"], 1), (self.topics["commands"], 1)])
                    await client.publish(
                        self.topics["status"], contract.build_status(True, _now_ms()), qos=1, retain=True
                    )
                    self.online = True
                    self.stats["connects"] += 1
                    await self._live(client)
            except aiomqtt.MqttError:
                self.stats["connection_errors"] += 1
                attempt += 1
            except Exception:
                # One broken device must not take the fleet down with it.
                log.exception("simulated device %s failed; restarting it", self.device_id)
                self.stats["device_errors"] += 1
                attempt += 1
            finally:
                self.online = False
                self._client = None
            await asyncio.sleep(self.fleet.rng.uniform(0.5, min(30.0, 1.5**attempt)))

    async def _live(self, client: aiomqtt.Client) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._receive(client))
                tg.create_task(self._beat(client))
        except* aiomqtt.MqttError as group:
            raise group.exceptions[0] from None  # a lost connection, not a bug

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if message.topic.matches(self.topics["commands"]):
                await self._on_command(client, bytes(message.payload))
            else:
                self._on_ack(bytes(message.payload))

    async def _beat(self, client: aiomqtt.Client) -> None:
        profile = self.fleet.profile
        await self._retransmit(client, force=True)  # after a reconnect, at once
        while True:
            await self._heartbeat(client)
            if self.fleet.rng.random() < profile.offline_chance:
                await self._drop_off()
                return
            for _ in range(max(1, int(profile.heartbeat_s / 0.5))):
                await asyncio.sleep(min(0.5, profile.heartbeat_s))
                await self._retransmit(client)

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        profile = self.fleet.profile
        charging = self.battery < 8
        self.battery = 100.0 if charging else max(0.0, self.battery - profile.drain_per_beat)
        body = contract.build_telemetry(
            _now_ms(),
            battery_pct=int(self.battery),
            charging=charging or None,
            signal_dbm=self.fleet.rng.randint(-105, -60),
            location=self.location,
        )
        await client.publish(self.topics["telemetry"], body, qos=0)
        self.stats["heartbeats"] += 1
        if self.battery <= 15 and not self._low_sent:
            self._low_sent = True
            self.alarm("low_battery")
        elif self.battery > 30:
            self._low_sent = False

    async def _drop_off(self) -> None:
        """The cellular link dies: no DISCONNECT, so the broker publishes our Last Will."""
        self.stats["offline_episodes"] += 1
        client = self._client
        if client is not None:
            sock = client._client.socket()  # aiomqtt exposes no "abort"; this is paho's socket
            if isinstance(sock, socket.socket):
                # shutdown, not close: the broker sees the link die, and aiomqtt still owns the fd.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        await asyncio.sleep(self.fleet.rng.uniform(*self.fleet.profile.offline_s))
        raise aiomqtt.MqttError("simulated offline episode")

    def _on_ack(self, payload: bytes) -> None:
        try:
            ack = contract.parse_ack(payload)
        except ContractError:
            self.stats["bad_acks"] += 1
            return
        self.stats[f"ack_{ack['status']}"] += 1
        if ack["status"] == "retry":
            # Not stored: keep it, and send it again (same event_id) once the hint has passed.
            waiting = self.pending.get(ack["event_id"])
            if waiting is not None:
                waiting.not_before = time.monotonic() + ack.get("retry_after_s", 1)
            return
        p = self.pending.pop(ack["event_id"], None)
        if p is not None:
            self.fleet.latencies.append(time.monotonic() - p.first_sent)

    async def _on_command(self, client: aiomqtt.Client, payload: bytes) -> None:
        """Act on a command as a conforming device does: check expiry, answer with a result."""
        self.stats["commands"] += 1
        try:
            cmd = contract.parse_command(payload)
        except ContractError:
            self.stats["bad_commands"] += 1
            return
        if not self.fleet.profile.answer_commands or cmd.expires_at < datetime.now(UTC):
            return
        location = self.location or contract.Location(30.0372, 121.1546, accuracy_m=15, source="gps")
        result = contract.build_command_result(
            cmd.command_id, "done", f"{cmd.type} ok", location if cmd.type == "locate" else None
        )
        await client.publish(self.topics["commands/result"], result, qos=1)

    def alarm(self, type_: str = "sos") -> str:
        """Raise an event; it is sent now if connected, and retransmitted until acked."""
        self._seq += 1
        event_id = f"{self.device_id}-{int(time.time() * 1000)}-{self._seq}"
        payload = contract.build_event(
            event_id=event_id, type=type_, ts=datetime.now(UTC), location=self.location, battery_pct=int(self.battery)
        )
        self.pending[event_id] = _Pending(payload, time.monotonic(), 0.0)
        self.stats[f"sent_{type_}"] += 1
        if self._client is not None:
            self.fleet.spawn(self._retransmit(self._client))
        return event_id

    async def _retransmit(self, client: aiomqtt.Client, *, force: bool = False) -> None:
        now = time.monotonic()
        for p in list(self.pending.values()):
            if now < p.not_before:
                continue
            if (
                force
                or now - p.last_sent >= self.fleet.profile.retry_s
                or (p.not_before and p.last_sent < p.not_before)
            ):
                if p.last_sent:
                    self.stats["retransmits"] += 1
                p.last_sent = now
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.publish(self.topics["events"], p.payload, qos=1)


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
        offline_chance: float = 0.0,
        passwords: dict[str, str] | None = None,
        connect_per_s: float = 500,
    ) -> None:
        self.target = target
        self.prefix = prefix
        self.device_ids = list(device_ids)
        self.profile = FleetProfile(
            heartbeat_s=heartbeat_s, retry_s=retry_s, offline_chance=offline_chance, answer_commands=answer_commands
        )
        self.sos_every_s = sos_every_s
        self.first_sos_after_s = first_sos_after_s
        self.rng = rng or random.Random()
        self.passwords = passwords or {}
        self.connect_per_s = connect_per_s
        self.stats: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.devices: list[SimDevice] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def username_for(self, device_id: str) -> str | None:
        return device_id if device_id in self.passwords else self.target.username

    def password_for(self, device_id: str) -> str | None:
        return self.passwords.get(device_id, self.target.password)

    def spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        self.devices = [SimDevice(d, self) for d in self.device_ids]
        try:
            async with asyncio.TaskGroup() as tg:
                for n, device in enumerate(self.devices):
                    tg.create_task(device.run(), name=f"sim.device[{device.device_id}]")
                    if n % 50 == 49:  # ramp up, as a real fleet does not connect in one instant
                        await asyncio.sleep(50 / self.connect_per_s)
                if self.sos_every_s:
                    tg.create_task(self._alarms(), name="sim.alarms")
        finally:
            for task in list(self._tasks):
                task.cancel()

    async def _alarms(self) -> None:
        assert self.sos_every_s is not None
        await asyncio.sleep(self.first_sos_after_s)
        while True:
            online = [d for d in self.devices if d.online] or self.devices
            self.rng.choice(online).alarm(self.rng.choice(("sos", "sos", "sos", "fall")))
            await asyncio.sleep(self.rng.expovariate(1 / self.sos_every_s))

    @property
    def unacked(self) -> int:
        return sum(len(d.pending) for d in self.devices)

    @property
    def online(self) -> int:
        return sum(d.online for d in self.devices)


def broker_target(url: str) -> MqttTarget:
    """The simulator's own reading of a broker URL: it never loads the backend's settings."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise SystemExit(f"--broker must look like mqtt://host:1883, got {url!r}")
    return MqttTarget(
        parts.hostname,
        parts.port or (8883 if parts.scheme == "mqtts" else 1883),
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def main() -> None:
    p = argparse.ArgumentParser(description="simulate a fleet of alarm devices over MQTT")
    p.add_argument("device_ids", nargs="*", help="device ids (default: SIM000000.. numbered)")
    p.add_argument("--devices", type=int, default=100, help="how many numbered devices when no ids are given")
    p.add_argument("--heartbeat", type=float, default=30)
    p.add_argument("--sos-every", type=float, default=0, help="mean seconds between alarms (0: none)")
    p.add_argument("--offline-chance", type=float, default=0.001, help="chance per heartbeat of an offline episode")
    p.add_argument("--duration", type=float, default=0)
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt[s]://[user:password@]host:port")
    p.add_argument("--prefix", default="hotline/v1", help="the device contract's topic prefix")
    args = p.parse_args()
    target = broker_target(args.broker)
    ids = args.device_ids or [f"SIM{n:06d}" for n in range(args.devices)]
    logging.basicConfig(level="WARNING")

    async def run() -> None:
        fleet = DeviceFleet(
            target,
            args.prefix,
            ids,
            heartbeat_s=args.heartbeat,
            sos_every_s=args.sos_every or None,
            offline_chance=args.offline_chance,
        )
        task = asyncio.create_task(fleet.run())
        started = time.monotonic()
        try:
            while not args.duration or time.monotonic() - started < args.duration:
                await asyncio.sleep(5)
                print(f"online {fleet.online}/{len(ids)} {dict(fleet.stats)}", flush=True)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(run())


if __name__ == "__main__":
    main()
