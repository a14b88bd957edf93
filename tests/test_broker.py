"""Against real Mosquitto: per-device ACLs, shared subscriptions, and the conformance kit."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices import contract
from devices.conformance import Observation, analyse, run_check
from hotline.cli import main as cli_main
from hotline.localsvc import start_mosquitto
from hotline.storage.models import DeviceEventRecord, Incident
from simulators.devices import DeviceFleet
from tests import factories
from tests.conftest import MQTT_PORT, Running
from tests.helpers import eventually


async def _elder_with_devices(sm: async_sessionmaker[AsyncSession], ids: list[str]) -> dict[str, str]:
    """Register devices directly; returns their plaintext passwords."""

    from devices.credentials import hash_device_secret, new_device_secret
    from hotline.storage.models import Device

    secrets = {d: new_device_secret() for d in ids}
    async with sm() as s, s.begin():
        elder = factories.elder()
        s.add(elder)
        await s.flush()
        for d, pw in secrets.items():
            s.add(Device(device_id=d, kind="watch", elder_id=elder.id, credential_hash=hash_device_secret(pw)))
    return secrets


class Probe:
    """A paho MQTT 5 client that records what it receives and the broker's reason codes."""

    def __init__(self, port: int, client_id: str, user: str, password: str) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.suback: list[int] = []
        self.puback: list[int] = []
        self.connected = -1
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        c.username_pw_set(user, password)
        c.on_connect = lambda _c, _u, _f, rc, _p: setattr(self, "connected", rc.value)
        c.on_message = lambda _c, _u, m: self.got.append((m.topic, bytes(m.payload)))
        c.on_subscribe = lambda _c, _u, _mid, rcs, _p: self.suback.extend(r.value for r in rcs)
        c.on_publish = lambda _c, _u, _mid, rc, _p: self.puback.append(rc.value)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    async def wait_connected(self) -> int:
        for _ in range(100):
            if self.connected >= 0:
                return self.connected
            await asyncio.sleep(0.05)
        return self.connected

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
async def secured_broker(
    tmp_path: Path, db_url: str, sm: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[int, dict[str, str]]]:
    secrets = await _elder_with_devices(sm, ["DEVA0001", "DEVB0002"])
    monkeypatch.setenv("HOTLINE_DATABASE_URL", db_url)
    monkeypatch.setenv("HOTLINE_MQTT_URL", "mqtt://hotline-backend:backend-secret-1@127.0.0.1:1883")
    monkeypatch.setenv("HOTLINE_MQTT_PREFIX", "acl/v1")
    out = tmp_path / "auth"
    assert await asyncio.to_thread(cli_main, ["devices", "mosquitto-auth", "--out", str(out)]) == 0
    acl = (out / "acl").read_text()
    assert "pattern write acl/v1/devices/%u/events" in acl and "user hotline-backend" in acl
    assert "backend-secret-1" not in (out / "passwd").read_text()
    port, child = await start_mosquitto(tmp_path, extra_conf=(out / "mosquitto-auth.conf").read_text())
    yield port, secrets
    child.stop()


async def test_a_device_can_neither_publish_as_another_nor_read_its_commands(
    secured_broker: tuple[int, dict[str, str]],
) -> None:
    port, secrets = secured_broker
    backend = Probe(port, "hotline-backend", "hotline-backend", "backend-secret-1")
    assert await backend.wait_connected() == 0
    backend.client.subscribe("acl/v1/devices/+/events", qos=1)
    a = Probe(port, "DEVA0001", "DEVA0001", secrets["DEVA0001"])
    assert await a.wait_connected() == 0
    a.client.subscribe([("acl/v1/devices/DEVA0001/commands", 1), ("acl/v1/devices/DEVB0002/commands", 1)])
    await eventually(lambda: _ready(a.suback, 2))
    assert a.suback[0] == 1  # own commands: granted QoS 1
    # Mosquitto 2.0 may grant the subscription to B's commands; its ACL is enforced at
    # delivery, which is what matters and is checked below.
    await asyncio.sleep(0.3)
    backend.client.publish("acl/v1/devices/DEVB0002/commands", b'{"for": "B"}', qos=1)
    backend.client.publish("acl/v1/devices/DEVA0001/commands", b'{"for": "A"}', qos=1)
    a.client.publish("acl/v1/devices/DEVA0001/events", b'{"own": true}', qos=1)
    await eventually(lambda: _ready(a.got, 1))  # type: ignore[arg-type]
    await eventually(lambda: _ready(backend.got, 1))  # type: ignore[arg-type]
    # Forged last: paho 2.2 drops its connection after a refused (0x87) PUBACK.
    a.client.publish("acl/v1/devices/DEVB0002/events", b'{"forged": true}', qos=1)
    await eventually(lambda: _ready(a.puback, 2))
    await asyncio.sleep(0.5)  # room for anything that should not arrive
    assert backend.got == [("acl/v1/devices/DEVA0001/events", b'{"own": true}')]
    assert a.puback == [0, 0x87]  # the forgery is refused, and the forger is told "not authorized"
    assert a.got == [("acl/v1/devices/DEVA0001/commands", b'{"for": "A"}')]
    wrong = Probe(port, "DEVB0002", "DEVB0002", secrets["DEVA0001"])
    assert await wrong.wait_connected() not in (-1, 0)
    anonymous = Probe(port, "nobody", "", "")
    assert await anonymous.wait_connected() not in (-1, 0)
    for p in (backend, a, wrong, anonymous):
        p.close()


async def _ready(items: list[int], n: int) -> bool:
    return len(items) >= n


async def test_two_instances_share_the_load_without_duplicate_incidents(
    start_backend: Callable[..., Awaitable[Running]], sm: async_sessionmaker[AsyncSession], ns: str
) -> None:
    ids = [f"SHR{n:05d}" for n in range(10)]
    await _elder_with_devices(sm, ids)
    one = await start_backend(mqtt_shared_group=f"g{ns}", mqtt_client_id=f"one-{ns}")
    two = await start_backend(mqtt_shared_group=f"g{ns}", mqtt_client_id=f"two-{ns}")
    await asyncio.sleep(0.5)
    prefix = one.settings.mqtt_prefix
    acks: list[dict[str, Any]] = []
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{ns}")
    pub.on_message = lambda _c, _u, m: acks.append(json.loads(m.payload))
    pub.connect("127.0.0.1", MQTT_PORT)
    pub.subscribe(f"{prefix}/devices/+/ack", qos=1)
    pub.loop_start()
    await asyncio.sleep(0.3)
    now = int(time.time() * 1000)
    for n in range(200):
        device = ids[n % len(ids)]
        kind = "sos" if n % 20 == 0 else "test"
        pub.publish(
            f"{prefix}/devices/{device}/events", json.dumps({"event_id": f"e{n}", "type": kind, "ts": now}), qos=1
        )
    await eventually(lambda: _ready(acks, 200), timeout=30)  # type: ignore[arg-type]
    pub.loop_stop()
    assert sorted(a["event_id"] for a in acks) == sorted(f"e{n}" for n in range(200))
    assert {a["status"] for a in acks} == {"accepted"}
    async with sm() as s:
        assert await s.scalar(select(func.count()).select_from(DeviceEventRecord)) == 200
        # One elder: the ten SOS join one incident (the merge window), each signal once, on either instance.
        incidents = (await s.scalars(select(Incident))).all()
        assert len(incidents) == 1
        assert len(incidents[0].signals) == 10
    handled = [_accepted(b) for b in (one, two)]
    assert sum(handled) == 200 and min(handled) > 0, handled


def _accepted(r: Running) -> int:
    from hotline.api.keys import SERVICES

    gw = r.app[SERVICES].gateway
    assert gw is not None
    return int(gw.metrics["events_accepted"])


async def test_conformance_kit_passes_a_good_device_and_names_a_bad_ones_faults(
    running: Running, sm: async_sessionmaker[AsyncSession]
) -> None:
    await _elder_with_devices(sm, ["GOOD0001", "BAD00001"])
    fleet = DeviceFleet(
        running.settings.mqtt,
        running.settings.mqtt_prefix,
        ["GOOD0001"],
        heartbeat_s=0.5,
        sos_every_s=None,
        answer_commands=True,
    )
    task = asyncio.create_task(fleet.run())
    await asyncio.sleep(0.5)

    async def press() -> None:
        await asyncio.sleep(1.0)
        fleet.devices[0].alarm("test")

    presser = asyncio.create_task(press())
    s = running.settings
    code = await run_check(s.mqtt, s.mqtt_prefix, s.database_url, "GOOD0001", seconds=3, probe=True, as_json=False)
    await presser
    task.cancel()
    assert code == 0

    # A bad device: QoS 0 event, retained telemetry, an invalid payload, no status.
    prefix = running.settings.mqtt_prefix
    bad = paho.Client(CallbackAPIVersion.VERSION2, client_id="BAD00001")
    bad.connect("127.0.0.1", MQTT_PORT)
    bad.loop_start()

    async def misbehave() -> None:
        await asyncio.sleep(0.5)
        now = int(time.time() * 1000)
        bad.publish(
            f"{prefix}/devices/BAD00001/events", json.dumps({"event_id": "q0", "type": "test", "ts": now}), qos=0
        )
        bad.publish(f"{prefix}/devices/BAD00001/telemetry", json.dumps({"ts": now, "battery": 50}), qos=1)
        bad.publish(f"{prefix}/devices/BAD00001/telemetry", json.dumps({"ts": now}), qos=1, retain=True)

    mis = asyncio.create_task(misbehave())
    from devices.conformance import observe

    obs, _ = await observe(running.settings.mqtt, running.settings.mqtt_prefix, "BAD00001", seconds=2.5, probe=False)
    await mis
    bad.publish(f"{prefix}/devices/BAD00001/telemetry", b"", retain=True).wait_for_publish(5)
    bad.loop_stop()
    findings = analyse(obs, window_s=2.5)
    fails = {(f.check, f.detail.split(":")[0]) for f in findings if f.verdict == "FAIL"}
    assert ("status", "no status message") in fails
    assert ("events", "an event was published at QoS 0") in fails
    assert ("telemetry", "invalid telemetry") in fails


def test_analyse_flags_retained_events_missing_acks_and_bad_clocks() -> None:
    now = time.time()
    old = int((now - 3600) * 1000)
    ev = contract.build_event(event_id="x1", type="sos", ts=old)
    obs = [
        Observation(now, "events", ev, 1, True),
        Observation(now, "status", contract.build_status(True, old), 1, True),
    ]
    found = {(f.verdict, f.check) for f in analyse(obs, window_s=10)}
    assert ("FAIL", "events") in found  # retained
    assert ("FAIL", "ack") in found  # never acknowledged
    assert ("FAIL", "clock") in found  # an hour off
    assert ("PASS", "status") in found
    assert ("FAIL", "heartbeat") in found  # no telemetry at all
