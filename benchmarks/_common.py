"""Shared set-up for the benchmarks: a private broker, a temp database, a backend in-process."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from hotline.config import Settings, load_settings
from hotline.localsvc import die_with_parent, start_mosquitto
from hotline.storage.db import upgrade


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_mb(pid: int | None = None) -> float:
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@asynccontextmanager
async def environment(**overrides: Any) -> AsyncIterator[tuple[Settings, int, Path]]:
    """A private Mosquitto (no queue limit), a migrated SQLite file, and settings for both."""
    work = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    port, broker = await start_mosquitto(work)
    ns = uuid.uuid4().hex[:8]
    db = f"sqlite+aiosqlite:///{work / 'bench.db'}"
    await asyncio.to_thread(upgrade, db)
    settings = load_settings(
        {
            "HOTLINE_DATABASE_URL": db,
            "HOTLINE_MQTT_URL": f"mqtt://127.0.0.1:{port}",
            "HOTLINE_MQTT_PREFIX": "bench/v1",
            "HOTLINE_MQTT_CLIENT_ID": f"bench-{ns}",
            "HOTLINE_REDIS_PREFIX": f"bench-{ns}",
            "HOTLINE_LOG_LEVEL": "WARNING",
            "HOTLINE_HTTP_PORT": "0",
        }
    )
    settings = dataclasses.replace(settings, **overrides)
    try:
        yield settings, port, work
    finally:
        broker.stop()


@asynccontextmanager
async def backend(settings: Settings) -> AsyncIterator[web.Application]:
    from hotline.app import serve

    loop = asyncio.get_running_loop()
    ready: asyncio.Future[web.Application] = loop.create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, shutdown=stop, on_ready=lambda app, _port: ready.set_result(app)))
    app = await asyncio.wait_for(ready, 30)
    try:
        yield app
    finally:
        stop.set()
        await task


def spawn_publisher(
    port: int,
    topic_fmt: str,
    ids: list[str],
    count: int,
    *,
    qos: int,
    rate: float = 0,
    payload: str = '{{"ts": {ts}, "battery_pct": 80}}',
) -> subprocess.Popen[bytes]:
    """A paho publisher in another process, as the baselines in the brief were measured."""
    id_file = Path(tempfile.mkstemp(prefix="bench-ids-", suffix=".json")[1])
    id_file.write_text(json.dumps(ids))
    code = f"""
import json, sys, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
ids = json.load(open({str(id_file)!r}))
c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub-{uuid.uuid4().hex[:6]}")
c.max_inflight_messages_set(1000)
c.max_queued_messages_set(0)
c.connect("127.0.0.1", {port})
c.loop_start()
rate = {rate}
start = time.monotonic()
for n in range({count}):
    d = ids[n % len(ids)]
    c.publish("{topic_fmt}".format(d=d), '{payload}'.format(ts=int(time.time() * 1000)), qos={qos})
    # paho keys queued QoS 1 messages by a 16-bit message id: past 65,535 queued, ids wrap
    # and earlier messages are silently overwritten. Keep the queue well below that.
    while len(c._out_messages) > 5000:
        time.sleep(0.002)
    if rate and n % 50 == 0:
        ahead = start + n / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
while c.want_write() or len(c._out_messages):
    time.sleep(0.05)
c.disconnect(); c.loop_stop()
"""
    # The publisher dies with the benchmark, even when the benchmark is killed.
    return subprocess.Popen([sys.executable, "-c", code], preexec_fn=die_with_parent)  # noqa: PLW1509
