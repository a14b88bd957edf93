"""Secure by default (issue 15, item 5), on a real Mosquitto running the shipped
``deploy/mosquitto/mosquitto.conf`` under ``deploy/mosquitto/run-with-reload.sh``, as
docker-compose runs them. The backend keeps the broker's password file and ACL in step with
its registry (HOTLINE_BROKER_AUTH_DIR): anonymous and unregistered clients are refused, a
device registered through the API connects within HOTLINE_BROKER_AUTH_SYNC_S with no
restart, and a rotated or retired credential is refused the same way.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hotline.config import load_settings
from hotline.errors import ConfigError
from hotline.localsvc import die_with_parent, free_port, port_open
from hotline.users import add_user
from tests.conftest import Running, auth
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto"
SYNC_S = 30.0
BACKEND_USER, BACKEND_PASSWORD = "hotline-backend", "backend-secret-7"


class Broker:
    def __init__(self, devices: int, backends: int, proc: subprocess.Popen[bytes]) -> None:
        self.devices, self.backends, self.proc = devices, backends, proc


def _rendered_conf(tmp: Path, devices: int, backends: int) -> Path:
    """The shipped file with this test's ports and folders; nothing else changed."""
    text = (DEPLOY / "mosquitto.conf").read_text(encoding="utf-8")
    text = text.replace("listener 1883\n", f"listener {devices} 127.0.0.1\n")
    text = text.replace("listener 1884\n", f"listener {backends} 127.0.0.1\n")
    text = text.replace("/mosquitto/auth/", f"{tmp}/auth/").replace("/mosquitto/data/", f"{tmp}/data/")
    if os.geteuid() == 0:  # as root Mosquitto drops to its own user, which cannot read a private tmp
        text += "user root\n"
    (tmp / "data").mkdir()
    conf = tmp / "mosquitto.conf"
    conf.write_text(text, encoding="utf-8")
    return conf


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    devices, backends = free_port(), free_port()
    conf = _rendered_conf(tmp_path, devices, backends)
    env = {**os.environ, "AUTH_DIR": str(tmp_path / "auth"), "MOSQUITTO_CONF": str(conf), "RELOAD_EVERY": "1"}
    log = (tmp_path / "broker.log").open("wb")
    proc = subprocess.Popen(
        ["/bin/sh", str(DEPLOY / "run-with-reload.sh")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl runs between fork and exec
    )
    yield Broker(devices, backends, proc)
    proc.send_signal(signal.SIGTERM)  # the script passes it on to Mosquitto
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


async def _connect(port: int, user: str | None, password: str | None) -> int:
    """The CONNACK reason code the broker gives (0: accepted), or -1 if none came."""
    rc: list[int] = []
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=user or f"anon-{time.monotonic_ns()}", protocol=paho.MQTTv5)
    if user is not None:
        c.username_pw_set(user, password)
    c.on_connect = lambda _c, _u, _f, code, _p: rc.append(code.value)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        for _ in range(100):
            if rc:
                return rc[0]
            await asyncio.sleep(0.05)
        return -1
    finally:
        c.disconnect()
        c.loop_stop()


async def _within(check: Callable[[], Awaitable[bool]], seconds: float) -> float:
    """Seconds until ``check`` holds; fails past ``seconds``."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        await asyncio.sleep(0.25)
    return time.monotonic() - started


async def test_the_shipped_broker_refuses_strangers_and_follows_the_registry(
    broker: Broker, tmp_path: Path, start_backend: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession
) -> None:
    url = f"mqtt://{BACKEND_USER}:{BACKEND_PASSWORD}@127.0.0.1:{broker.backends}"
    backend = await start_backend(
        mqtt_url=url,
        mqtt=load_settings({"HOTLINE_MQTT_URL": url}).mqtt,
        broker_auth_dir=str(tmp_path / "auth"),
        broker_auth_sync_s=SYNC_S,
    )
    # The backend wrote the files, the script started Mosquitto on them, the backend got in.
    await eventually(lambda: port_open("127.0.0.1", broker.devices), timeout=20)

    async def mqtt_up() -> bool:
        async with http.get(f"{backend.url}/readyz") as r:
            return bool((await r.json())["checks"]["mqtt"] == "ok")

    await eventually(mqtt_up, timeout=20)
    assert BACKEND_PASSWORD not in (tmp_path / "auth" / "passwd").read_text()

    for port in (broker.devices, broker.backends):
        assert await _connect(port, None, None) not in (0, -1), "an anonymous client got in"
    assert await _connect(broker.devices, "WCH800001", "guess") not in (0, -1), "an unregistered device got in"

    admin = auth(await add_user(backend.settings, "broker-admin", "admin"))
    async with http.post(f"{backend.url}/api/v1/elders", json=_ELDER, headers=admin) as r:
        elder_id = (await r.json())["id"]
    body = {"device_id": "WCH800001", "kind": "watch", "elder_id": elder_id}
    async with http.post(f"{backend.url}/api/v1/devices", json=body, headers=admin) as r:
        assert r.status == 201, await r.text()
        first = (await r.json())["credentials"]["password"]

    async def admitted(password: str) -> bool:
        return await _connect(broker.devices, "WCH800001", password) == 0

    async def refused(password: str) -> bool:
        return await _connect(broker.devices, "WCH800001", password) not in (0, -1)

    joined = await _within(lambda: admitted(first), SYNC_S)
    # And the ACL lets it do its job: an alarm up, its ack down.
    ack = await _alarm(broker.devices, backend.settings.mqtt_prefix, "WCH800001", first)
    assert ack["status"] == "accepted"

    async with http.post(f"{backend.url}/api/v1/devices/WCH800001/credentials", headers=admin) as r:
        assert r.status == 201, await r.text()
        second = (await r.json())["credentials"]["password"]
    rotated = await _within(lambda: refused(first), SYNC_S)
    assert await admitted(second)

    async with http.delete(f"{backend.url}/api/v1/devices/WCH800001", headers=admin) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["retired_at"] is not None
    retired = await _within(lambda: refused(second), SYNC_S)
    async with http.post(f"{backend.url}/api/v1/devices/WCH800001/credentials", headers=admin) as r:
        assert r.status == 409
    print(f"registered→admitted {joined:.1f} s, rotated→refused {rotated:.1f} s, retired→refused {retired:.1f} s")


_ELDER = {
    "name": "钱阿芳",
    "gender": "F",
    "birth_date": "1940-02-02",
    "address": "余姚市梨洲街道",
    "lat": 30.04,
    "lon": 121.15,
    "care_level": "mild",
    "living_situation": "alone",
}


async def _alarm(port: int, prefix: str, device_id: str, password: str) -> dict[str, Any]:
    """As the device: subscribe to its ack, send an SOS, return the ack."""
    loop = asyncio.get_running_loop()
    acks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    subscribed = asyncio.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=paho.MQTTv5)
    c.username_pw_set(device_id, password)
    c.on_connect = lambda cl, *_: cl.subscribe(f"{prefix}/devices/{device_id}/ack", qos=1)
    c.on_subscribe = lambda *_: loop.call_soon_threadsafe(subscribed.set)
    c.on_message = lambda _c, _u, m: loop.call_soon_threadsafe(acks.put_nowait, json.loads(m.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        await asyncio.wait_for(subscribed.wait(), 10)
        event = {"event_id": "sec-1", "type": "sos", "ts": int(time.time() * 1000)}
        c.publish(f"{prefix}/devices/{device_id}/events", json.dumps(event), qos=1)
        return await asyncio.wait_for(acks.get(), 10)
    finally:
        c.disconnect()
        c.loop_stop()


def test_the_auth_directory_needs_the_backends_own_broker_user() -> None:
    with pytest.raises(ConfigError, match="HOTLINE_BROKER_AUTH_DIR needs the backend's own broker user"):
        load_settings({"HOTLINE_BROKER_AUTH_DIR": "/tmp/x", "HOTLINE_MQTT_URL": "mqtt://127.0.0.1:1883"})
    s = load_settings({"HOTLINE_BROKER_AUTH_DIR": "/tmp/x", "HOTLINE_MQTT_URL": "mqtt://u:p@127.0.0.1:1884"})
    assert (s.broker_auth_dir, s.broker_auth_sync_s) == ("/tmp/x", 30.0)
