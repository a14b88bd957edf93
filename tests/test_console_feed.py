"""The console feed: who sees what, Redis fallback, and what reaches the logs."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import pytest
import redis.asyncio as aioredis

from hotline.api.keys import SERVICES
from hotline.bus import EventBus
from hotline.localsvc import free_port
from hotline.users import add_user
from tests.conftest import MQTT_PORT, Running, auth
from tests.helpers import DeviceClient
from tests.test_api import ELDER


async def test_a_family_socket_receives_only_its_own_elders_events(
    running: Running, http: aiohttp.ClientSession
) -> None:
    op = await add_user(running.settings, "op", "operator")
    async with http.post(f"{running.url}/api/v1/elders", headers=auth(op), json=ELDER) as r:
        mine = (await r.json())["id"]
    fam = await add_user(running.settings, "fam", "family", elder_id=mine)
    bus = running.app[SERVICES].bus
    assert bus is not None
    bus.strict = False  # hand-made partial messages: this test is about who sees what, not their shape
    async with (
        http.ws_connect(f"{running.url}/api/v1/ws?token={op}") as op_ws,
        http.ws_connect(f"{running.url}/api/v1/ws", headers=auth(fam)) as fam_ws,
    ):
        assert (await op_ws.receive_json(timeout=5))["role"] == "operator"
        assert (await fam_ws.receive_json(timeout=5))["role"] == "family"
        await bus.publish(
            {
                "type": "incident.created",
                "incident": {"id": "i1", "elder_id": "eld_other"},
                "elder": {"id": "eld_other"},
            }
        )
        await bus.publish(
            {"type": "incident.created", "incident": {"id": "i2", "elder_id": mine}, "elder": {"id": mine}}
        )
        assert [(await op_ws.receive_json(timeout=5))["incident"]["id"] for _ in range(2)] == ["i1", "i2"]
        assert (await fam_ws.receive_json(timeout=5))["incident"]["id"] == "i2"
        await fam_ws.send_str("not json")
        assert (await fam_ws.receive_json(timeout=5))["type"] == "error"
        await fam_ws.send_json({"type": "ping"})
        assert (await fam_ws.receive_json(timeout=5)) == {"type": "pong"}


async def test_websocket_refuses_missing_tokens_and_roles_without_access(
    running: Running, http: aiohttp.ClientSession
) -> None:
    vendor = await add_user(running.settings, "v", "vendor")
    for headers in ({}, auth("hl_nope"), auth(vendor)):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{running.url}/api/v1/ws", headers=headers)
        assert info.value.status in (401, 403)


async def test_bus_delivers_locally_when_redis_is_down() -> None:
    dead = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    bus = EventBus(dead, prefix="t")
    got: list[dict[str, object]] = []
    bus.add_listener(got.append)
    await bus.publish({"type": "incident.created", "n": 1})
    assert got == [{"type": "incident.created", "n": 1}] and bus.fallbacks == 1
    assert not await bus.ping()
    await dead.aclose()


async def test_logs_carry_no_names_or_phone_numbers(
    running: Running, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # The rule is "no personal data at INFO"; drivers' DEBUG traces echo SQL parameters.
    caplog.set_level(logging.INFO)
    op = await add_user(running.settings, "op", "operator")
    admin = await add_user(running.settings, "admin", "admin")
    async with http.post(f"{running.url}/api/v1/elders", headers=auth(op), json=ELDER) as r:
        elder = await r.json()
    async with http.post(
        f"{running.url}/api/v1/devices",
        headers=auth(admin),
        json={"device_id": "WCH000001", "kind": "watch", "elder_id": elder["id"], "sim_number": "13755556666"},
    ) as r:
        assert r.status == 201
    device = await DeviceClient(
        MQTT_PORT, running.settings.mqtt_prefix, "WCH000001", asyncio.get_running_loop()
    ).ready()
    device.publish({"event_id": "p-1", "type": "fall", "ts": int(time.time() * 1000)})
    assert (await device.next_ack())["status"] == "accepted"
    device.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "incident opened" in text and "王**" in text
    for secret in ("王秀英", "13812345678", "62341234", "13900001111", "13755556666"):
        assert secret not in text


async def test_a_retained_alarm_is_refused(running: Running) -> None:
    device = await DeviceClient(
        MQTT_PORT, running.settings.mqtt_prefix, "PDT000001", asyncio.get_running_loop()
    ).ready()
    device.publish({"event_id": "ret-1", "type": "sos", "ts": int(time.time() * 1000)}, retain=True)
    try:
        ack = await device.next_ack()
        assert ack["status"] == "rejected" and "retained" in ack["reason"]
    finally:
        device.publish(b"", retain=True)  # clear it from the broker
        device.close()
