"""Faults under load: 10,000 QoS 1 events while the backend is SIGKILLed three times, stopped
with SIGTERM twice (each stop bounded), or the broker is restarted twice with its persistence:
nothing lost or doubled, and commands still reach a device afterwards.

The broker is our own Mosquitto with ``max_queued_messages 0``: the default (1,000 per
client) would itself drop what queues up while the backend is dead.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices import contract
from devices.credentials import hash_device_secret
from hotline.localsvc import start_mosquitto
from hotline.storage.models import Device, DeviceEventRecord, Incident
from tests import factories
from tests.helpers import BackendProcess, DeviceClient, eventually

pytestmark = pytest.mark.e2e

DEVICES = 100
PER_DEVICE = 100
TOTAL = DEVICES * PER_DEVICE


# Its own deadline is 240 s; the suite's 120 s would cut a slow run short and leave it half done.
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("stop", "stops"), [("kill", 3), ("term", 2), ("broker", 2)])
async def test_a_fault_during_10000_events_stores_each_once_and_acks_every_one(
    env: dict[str, str], tmp_path: Path, sm: async_sessionmaker[AsyncSession], stop: str, stops: int
) -> None:
    """SIGKILL (a power cut), SIGTERM (a routine restart, bounded), or a broker restart (with
    deploy/mosquitto's persistence: sessions and queued messages survive it)."""
    port, broker = await start_mosquitto(tmp_path, persistent=True)
    brokers = [broker]

    async def restart_broker() -> None:
        brokers[-1].stop()  # SIGTERM: Mosquitto writes its persistence file on the way out
        brokers.append((await start_mosquitto(tmp_path, port=port, persistent=True))[1])

    try:
        await _run(env, tmp_path, sm, port, stop=stop, stops=stops, restart_broker=restart_broker)
    finally:
        brokers[-1].stop()


async def _run(
    env: dict[str, str],
    tmp_path: Path,
    sm: async_sessionmaker[AsyncSession],
    port: int,
    *,
    stop: str,
    stops: int,
    restart_broker: Callable[[], Awaitable[None]],
) -> None:
    ids = [f"LD{n:06d}" for n in range(DEVICES)]
    secret = hash_device_secret("x")
    async with sm() as s, s.begin():
        elders = [factories.elder(name=f"测试{n}", living_situation="with_family") for n in range(10)]
        s.add_all(elders)
        await s.flush()
        s.add_all(
            Device(device_id=d, kind="watch", elder_id=elders[n % 10].id, credential_hash=secret)
            for n, d in enumerate(ids)
        )
    env = {**env, "HOTLINE_MQTT_URL": f"mqtt://127.0.0.1:{port}", "HOTLINE_LOG_LEVEL": "WARNING"}
    backend = BackendProcess(env, tmp_path / "backend.log")
    admin = backend.cli("user", "add", "admin", "--role", "admin")
    prefix = env["HOTLINE_MQTT_PREFIX"]

    acked: dict[str, str] = {}
    lock = threading.Lock()

    def on_ack(_c: paho.Client, _u: object, m: paho.MQTTMessage) -> None:
        ack = json.loads(m.payload)
        with lock:
            # A duplicate after an accepted is normal (the backend died between ack and PUBACK).
            if acked.get(ack["event_id"]) != "accepted":
                acked[ack["event_id"]] = ack["status"]

    # Persistent sessions, as devices have: a broker restart keeps their subscriptions and queues.
    listener = paho.Client(CallbackAPIVersion.VERSION2, client_id="load-acks", clean_session=False)
    listener.on_message = on_ack
    listener.connect("127.0.0.1", port)
    listener.subscribe(f"{prefix}/devices/+/ack", qos=1)
    listener.loop_start()

    await backend.start()
    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id="load-devices", clean_session=False)
    publisher.max_inflight_messages_set(500)
    publisher.max_queued_messages_set(0)
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    now = int(time.time() * 1000)

    def publish_all() -> None:
        for k in range(PER_DEVICE):
            for d in ids:
                kind = "sos" if k == 0 else "test"
                body = json.dumps({"event_id": f"{d}-{k}", "type": kind, "ts": now})
                publisher.publish(f"{prefix}/devices/{d}/events", body, qos=1)
            time.sleep(0.01)

    sender = threading.Thread(target=publish_all)
    sender.start()

    async def stored() -> int:
        async with sm() as s:
            return int(await s.scalar(select(func.count()).select_from(DeviceEventRecord)) or 0)

    kills = 0
    last = 0
    deadline = time.monotonic() + 240
    while kills < stops and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        n = await stored()
        if n >= last + 1000 and n < TOTAL - 1500:  # well inside the stream
            if stop == "broker":
                await restart_broker()
                kills += 1
                last = n
                continue
            if stop == "kill":
                backend.kill()
            else:
                # HOTLINE_SHUTDOWN_TIMEOUT's default (10 s), and a second for the interpreter.
                code, took = backend.terminate(within_s=11)
                assert code == 0, f"exit {code} after {took:.1f} s"
            kills += 1
            last = n
            await asyncio.sleep(0.5)
            await backend.start()
    assert kills == stops, f"only {kills} stops happened before the stream ended"
    sender.join(60)

    while time.monotonic() < deadline:
        with lock:
            done = len(acked) >= TOTAL
        if done and await stored() >= TOTAL:
            break
        await asyncio.sleep(0.5)
    publisher.loop_stop()
    listener.loop_stop()
    # Commands still flow after the faults: down to a device, and its result back up.
    device = await DeviceClient(port, prefix, ids[0], asyncio.get_running_loop()).ready()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as http:
        async with http.post(f"{backend.url}/api/v1/devices/{ids[0]}/commands", json={"type": "locate"}) as r:
            assert r.status == 201, await r.text()
            command = await r.json()
        received = contract.parse_command(await asyncio.wait_for(device.commands.get(), 10))
        assert received.command_id == command["command_id"]
        device.publish(contract.build_command_result(received.command_id, "done"), channel="commands/result")

        async def finished() -> bool:
            async with http.get(f"{backend.url}/api/v1/commands/{received.command_id}") as r:
                return bool((await r.json())["status"] == "done")

        await eventually(finished)
    device.close()
    backend.stop()

    async with sm() as s:
        total = await s.scalar(select(func.count()).select_from(DeviceEventRecord))
        distinct = await s.scalar(
            select(func.count(func.distinct(DeviceEventRecord.device_id + "/" + DeviceEventRecord.event_id)))
        )
        incidents = (await s.scalars(select(Incident))).all()
    assert total == TOTAL and distinct == TOTAL
    # One SOS per device, none doubled by redelivery; an elder's ten devices merge into one incident.
    assert len(incidents) == 10
    assert sorted(len(i.signals) for i in incidents) == [DEVICES // 10] * 10
    with lock:
        missing = [f"{d}-{k}" for d in ids for k in range(PER_DEVICE) if f"{d}-{k}" not in acked]
        statuses = set(acked.values())
    assert not missing, f"{len(missing)} events never acked, e.g. {missing[:5]}"
    assert statuses <= {"accepted", "duplicate"}
