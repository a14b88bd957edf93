"""End to end, through a real ``hotline serve`` process, Mosquitto, Redis and the database."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from hotline.storage.models import DeadLetter, DeviceEventRecord, Incident
from simulators.family import FamilyReceiver
from tests.conftest import MQTT_PORT, TEST_DB, auth
from tests.helpers import BackendProcess, DeviceClient, eventually

pytestmark = pytest.mark.e2e

ELDER: dict[str, Any] = {
    "name": "张三",
    "gender": "M",
    "birth_date": "1941-05-03",
    "address": "浙江省余姚市梨洲街道新建社区新建北路88号2幢1单元301室",
    "lat": 30.05,
    "lon": 121.16,
    "phones": ["0574-62228888"],
    "medical_notes": "冠心病，服用阿司匹林",
    "care_level": "severe",
    "living_situation": "alone",
}


async def setup_world(
    backend: BackendProcess, http: aiohttp.ClientSession, webhook_url: str | None, device_id: str = "YJT10000001"
) -> dict[str, Any]:
    backend.cli("db", "upgrade")
    op = backend.cli("user", "add", "op1", "--role", "operator", "--extension", "op1001")
    admin = backend.cli("user", "add", "admin1", "--role", "admin")
    contacts = (
        [{"name": "张伟", "relation": "儿子", "phone": "13911112222", "channel": "webhook", "webhook_url": webhook_url}]
        if webhook_url
        else []
    )
    await backend.start()
    async with http.post(f"{backend.url}/api/v1/elders", json={**ELDER, "contacts": contacts}, headers=auth(op)) as r:
        assert r.status == 201, await r.text()
        elder = await r.json()
    body = {"device_id": device_id, "kind": "one_touch_phone", "elder_id": elder["id"], "sim_number": "13700009999"}
    async with http.post(f"{backend.url}/api/v1/devices", json=body, headers=auth(admin)) as r:
        assert r.status == 201, await r.text()
    return {"op": op, "admin": admin, "elder": elder, "device_id": device_id}


async def test_sos_reaches_device_ack_operator_screen_and_family(
    backend: BackendProcess, http: aiohttp.ClientSession, env: dict[str, str]
) -> None:
    receiver = FamilyReceiver([env["HOTLINE_WEBHOOK_SECRET"]])
    world = await setup_world(backend, http, await receiver.start())
    device = await DeviceClient(
        MQTT_PORT, env["HOTLINE_MQTT_PREFIX"], world["device_id"], asyncio.get_running_loop()
    ).ready()
    async with http.ws_connect(f"{backend.url}/api/v1/ws?token={world['op']}") as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        sent = time.monotonic()
        device.publish({"event_id": "sos-1", "type": "sos", "ts": int(time.time() * 1000)})
        arrived, ack = await asyncio.wait_for(device.acks.get(), 5)
        assert ack["status"] == "accepted" and ack["event_id"] == "sos-1"
        assert arrived - sent < 1.0, f"ack took {arrived - sent:.3f}s"
        pushed = await ws.receive_json(timeout=5)
    assert pushed["type"] == "incident.created"
    assert pushed["incident"]["id"] == ack["incident_id"]
    assert pushed["elder"]["name"] == "张三"
    assert pushed["elder"]["medical_notes"] == "冠心病，服用阿司匹林"
    await asyncio.wait_for(receiver.received.wait(), 10)
    alert = receiver.alerts[0]
    assert receiver.bad_signatures == 0
    assert alert.body["data"]["incident_id"] == ack["incident_id"]
    assert alert.body["data"]["elder"]["name"] == "张三"
    async with http.get(f"{backend.url}/api/v1/incidents/{ack['incident_id']}", headers=auth(world["op"])) as r:
        detail = await r.json()
    kinds = [e["kind"] for e in detail["timeline"]]
    assert kinds[:2] == ["opened", "escalation.started"]
    family = [
        e["data"] for e in detail["timeline"] if e["kind"] == "escalation.step" and e["data"]["track"] == "family"
    ]
    assert [(f["to"], f["queued"]) for f in family] == [("family", 1)]
    await eventually(lambda: _delivered(http, backend, world["op"], ack["incident_id"]))
    device.close()
    await receiver.stop()


async def _delivered(http: aiohttp.ClientSession, backend: BackendProcess, token: str, incident_id: str) -> bool:
    async with http.get(f"{backend.url}/api/v1/incidents/{incident_id}", headers=auth(token)) as r:
        notes = (await r.json())["notifications"]
        return [n["status"] for n in notes if n["channel"] == "webhook"] == ["delivered"]


async def test_a_repeated_event_id_gives_one_incident_and_a_duplicate_ack(
    backend: BackendProcess, http: aiohttp.ClientSession, env: dict[str, str], sm: async_sessionmaker[AsyncSession]
) -> None:
    world = await setup_world(backend, http, None)
    device = await DeviceClient(
        MQTT_PORT, env["HOTLINE_MQTT_PREFIX"], world["device_id"], asyncio.get_running_loop()
    ).ready()
    event = {"event_id": "sos-dup", "type": "sos", "ts": int(time.time() * 1000)}
    device.publish(event)
    first = await device.next_ack()
    device.publish(event)
    second = await device.next_ack()
    assert first["status"] == "accepted"
    assert second == {**first, "status": "duplicate"}
    async with sm() as s:
        assert await s.scalar(select(func.count()).select_from(Incident)) == 1
        assert await s.scalar(select(func.count()).select_from(DeviceEventRecord)) == 1
    device.close()


async def test_garbage_and_unknown_devices_are_rejected_and_the_backend_keeps_serving(
    backend: BackendProcess, http: aiohttp.ClientSession, env: dict[str, str], sm: async_sessionmaker[AsyncSession]
) -> None:
    world = await setup_world(backend, http, None)
    loop = asyncio.get_running_loop()
    device = await DeviceClient(MQTT_PORT, env["HOTLINE_MQTT_PREFIX"], world["device_id"], loop).ready()
    stranger = await DeviceClient(MQTT_PORT, env["HOTLINE_MQTT_PREFIX"], "NOBODY0001", loop).ready()
    now = int(time.time() * 1000)

    device.publish(b"\x00\xff not json at all")  # no event_id to answer to: dead letter only
    device.publish({"event_id": "bad-type", "type": "explode", "ts": now})
    device.publish({"event_id": "bad-ts", "type": "sos", "ts": "last tuesday at noon"})
    device.publish({"event_id": "bad-batt", "type": "sos", "ts": now, "battery_pct": "full"})
    device.publish(json.dumps({"event_id": "huge", "type": "sos", "ts": now, "extra": {"x": "y" * 20000}}))
    stranger.publish({"event_id": "who-am-i", "type": "sos", "ts": now})
    device.publish({"event_id": "good-after", "type": "sos", "ts": now})

    acks = {}
    for _ in range(5):
        ack = await device.next_ack()
        acks[ack["event_id"]] = ack
    assert {k: a["status"] for k, a in acks.items()} == {
        "bad-type": "rejected",
        "bad-ts": "rejected",
        "bad-batt": "rejected",
        "huge": "rejected",
        "good-after": "accepted",
    }
    assert "exceeds" in acks["huge"]["reason"]
    assert "type" in acks["bad-type"]["reason"] and "RFC 3339" in acks["bad-ts"]["reason"]
    unknown = await stranger.next_ack()
    assert unknown["status"] == "rejected" and "unknown device" in unknown["reason"]

    async def dead_letters() -> int:
        async with sm() as s:
            return int(await s.scalar(select(func.count()).select_from(DeadLetter)) or 0)

    assert await eventually(lambda: _at_least(dead_letters, 6)) >= 6
    async with http.get(f"{backend.url}/readyz") as r:
        assert r.status == 200
    async with sm() as s:
        assert await s.scalar(select(func.count()).select_from(Incident)) == 1
    device.close()
    stranger.close()


async def _at_least(fn: Any, n: int) -> int:
    value: int = await fn()
    return value if value >= n else 0


async def test_crash_between_receiving_and_storing_loses_nothing(
    backend: BackendProcess,
    http: aiohttp.ClientSession,
    env: dict[str, str],
    db_url: str,
    sm: async_sessionmaker[AsyncSession],
) -> None:
    """The backend is SIGKILLed while an SOS waits on a locked table; after a restart the
    broker redelivers it (persistent session, no PUBACK was sent) and it is stored once."""
    world = await setup_world(backend, http, None)
    device = await DeviceClient(
        MQTT_PORT, env["HOTLINE_MQTT_PREFIX"], world["device_id"], asyncio.get_running_loop()
    ).ready()
    locker = create_async_engine(db_url)
    async with locker.connect() as conn:
        if TEST_DB == "postgres":
            await conn.execute(text("BEGIN"))
            await conn.execute(text("LOCK TABLE device_events IN EXCLUSIVE MODE"))
        else:
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        device.publish({"event_id": "sos-crash", "type": "sos", "ts": int(time.time() * 1000)})
        with pytest.raises(TimeoutError):
            await device.next_ack(timeout=1.5)  # stuck before the store: no ack may go out
        backend.kill()
        await conn.rollback()
    await locker.dispose()
    async with sm() as s:
        assert await s.scalar(select(func.count()).select_from(DeviceEventRecord)) == 0
    await backend.start()
    ack = await device.next_ack(timeout=15)
    assert ack["event_id"] == "sos-crash" and ack["status"] == "accepted"
    async with sm() as s:
        assert await s.scalar(select(func.count()).select_from(DeviceEventRecord)) == 1
        assert await s.scalar(select(func.count()).select_from(Incident)) == 1
    device.close()
