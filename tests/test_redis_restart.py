"""Redis restarted in the middle of an escalation (issue 15, item 2), on a Redis of the
test's own with no persistence, so the restart loses every wake-up and presence key.

/readyz reports the outage while it lasts; the timers still fire exactly once, close to
their time, because the database sweep covers lost wake-ups; and a device's presence is
back as soon as it next speaks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.localsvc import start_redis
from hotline.users import add_user
from tests.conftest import MQTT_PORT, Running, auth
from tests.helpers import DeviceClient, eventually
from tests.test_dispatch_crash import all_done, ladder, ladder_steps, late_s, open_sos, prepare


async def test_timers_fire_once_and_presence_returns_across_a_redis_restart(
    start_backend: Callable[..., Awaitable[Running]],
    sm: async_sessionmaker[AsyncSession],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    (elder_id,) = await prepare(sm, ladder(2, 6, 2), elders=1)
    port, redis = await start_redis(tmp_path)
    try:
        backend = await start_backend(redis_url=f"redis://127.0.0.1:{port}/0")
        admin = auth(await add_user(backend.settings, "admin", "admin"))
        token = await add_user(backend.settings, "op", "operator")
        body = {"device_id": "WCH610001", "kind": "watch", "elder_id": elder_id}
        async with http.post(f"{backend.url}/api/v1/devices", json=body, headers=admin) as r:
            assert r.status == 201, await r.text()
        device = await DeviceClient(
            MQTT_PORT, backend.settings.mqtt_prefix, "WCH610001", asyncio.get_running_loop()
        ).ready()
        incident = await open_sos(http, backend.url, token, elder_id)

        async def first_rung() -> bool:
            return len(await ladder_steps(sm, incident)) == 1

        await eventually(first_rung, timeout=10)
        redis.stop()  # rung 2 is due about 6 s after rung 1; its wake-up goes with Redis

        async def says_redis_down() -> bool:
            async with http.get(f"{backend.url}/readyz") as r:
                return r.status == 503 and (await r.json())["checks"]["redis"] == "down"

        await eventually(says_redis_down, timeout=10)
        await asyncio.sleep(2.0)
        _, redis = await start_redis(tmp_path, port=port)  # empty: no wake-ups, no presence

        async def ready() -> bool:
            async with http.get(f"{backend.url}/readyz") as r:
                return r.status == 200

        await eventually(ready, timeout=15)
        device.publish({"ts": int(time.time() * 1000), "battery_pct": 77}, channel="telemetry", qos=0)

        async def online() -> bool:
            async with http.get(f"{backend.url}/api/v1/devices/WCH610001", headers=admin) as r:
                presence = (await r.json())["presence"]
                return bool(presence and presence.get("state") == "online")

        await eventually(online, timeout=10)
        await eventually(lambda: all_done(sm, [incident]), timeout=30)
        device.close()
    finally:
        redis.stop()
    steps = await ladder_steps(sm, incident)
    assert [s["run"] for s in steps] == [1, 2, 3], steps  # each rung exactly once
    assert all(0 <= late_s(s) <= 2.0 for s in steps), [late_s(s) for s in steps]
