"""Device gateway benchmark. Run: ``.venv/bin/python benchmarks/bench_devices.py``

Measures, in one run, on a private Mosquitto (``max_queued_messages 0``):
1. heartbeat ingest (QoS 1) through the full gateway, against a bare aiomqtt subscriber
   that only parses JSON, with the same publisher process (the ratio is the figure);
2. alarm latency from publish to the device's ack, p50 and p99, while heartbeats flow at
   5,000 msg/s;
3. memory for 100,000 registered and present devices (backend RSS growth and Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
import redis.asyncio as aioredis
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import backend, environment, machine, pct, rss_mb, spawn_publisher
from devices.credentials import hash_device_secret
from hotline.api.keys import SERVICES
from hotline.storage.db import make_engine
from hotline.storage.models import Device, Elder


async def register(db_url: str, n: int) -> list[str]:
    engine = make_engine(db_url)
    ids = [f"BN{k:07d}" for k in range(n)]
    secret = hash_device_secret("bench")
    async with engine.begin() as conn:
        await conn.execute(
            insert(Elder).values(
                id="eld_bench",
                name="基准",
                gender="F",
                birth_date=date(1940, 1, 1),
                address="余姚",
                lat=30.0,
                lon=121.1,
                phones=[],
                medical_notes="",
                care_level="mild",
                economic_category="none",
                living_situation="with_family",
                home_radius_m=500,
                created_at=datetime.now(UTC),
            )
        )
        now = datetime.now(UTC)
        for start in range(0, n, 5000):
            await conn.execute(
                insert(Device),
                [
                    {
                        "device_id": d,
                        "kind": "watch",
                        "elder_id": "eld_bench",
                        "credential_hash": secret,
                        "created_at": now,
                    }
                    for d in ids[start : start + 5000]
                ],
            )
    await engine.dispose()
    return ids


async def bare_baseline(port: int, ids: list[str], count: int) -> float:
    got = 0
    first = last = 0.0
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-bare") as client:
        await client.subscribe("bench/v1/devices/+/telemetry", qos=1)
        pub = spawn_publisher(port, "bench/v1/devices/{d}/telemetry", ids, count, qos=1)
        async for message in client.messages:
            json.loads(message.payload)  # type: ignore[arg-type]
            got += 1
            if got == 1:
                first = time.monotonic()
            if got == count:
                last = time.monotonic()
                break
        pub.wait(60)
    return (count - 1) / (last - first)


async def gateway_ingest(settings, port: int, ids: list[str], count: int) -> float:  # type: ignore[no-untyped-def]
    async with backend(settings) as app:
        gw = app[SERVICES].gateway
        link = app[SERVICES].link
        assert gw is not None and link is not None
        await link.wait_connected(10)
        await asyncio.wait_for(gw.ready.wait(), 120)
        await asyncio.sleep(0.5)
        pub = spawn_publisher(port, "bench/v1/devices/{d}/telemetry", ids, count, qos=1)
        while gw.metrics["rx_telemetry"] == 0:
            await asyncio.sleep(0.001)
        first = time.monotonic()
        while gw.metrics["telemetry_processed"] < count:
            await asyncio.sleep(0.01)
            if time.monotonic() - first > 300:
                raise RuntimeError(f"only {gw.metrics['telemetry_processed']} of {count} processed in 300 s")
        elapsed = time.monotonic() - first
        pub.wait(60)
    return (count - 1) / elapsed


async def alarm_latency(
    settings,
    port: int,
    ids: list[str],
    *,
    hb_rate: float,
    alarms: int,  # type: ignore[no-untyped-def]
    alarm_rate: float,
) -> tuple[list[float], float]:
    async with backend(settings) as app:
        gw = app[SERVICES].gateway
        assert gw is not None
        await asyncio.wait_for(gw.ready.wait(), 120)  # measure the running system, not its start-up
        await asyncio.sleep(0.5)
        hb_count = int(hb_rate * (alarms / alarm_rate + 4))
        pub = spawn_publisher(port, "bench/v1/devices/{d}/telemetry", ids, hb_count, qos=0, rate=hb_rate)
        sent: dict[str, float] = {}
        lat: list[float] = []
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def on_ack(_c: paho.Client, _u: object, m: paho.MQTTMessage) -> None:
            t = time.monotonic()
            ack = json.loads(m.payload)

            def record() -> None:
                if ack["event_id"] in sent:
                    lat.append(t - sent.pop(ack["event_id"]))
                    if len(lat) == alarms:
                        done.set()

            loop.call_soon_threadsafe(record)

        c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-alarms")
        c.on_message = on_ack
        c.connect("127.0.0.1", port)
        c.subscribe("bench/v1/devices/+/ack", qos=1)
        c.loop_start()
        await asyncio.sleep(2)  # let the heartbeat stream reach its rate
        hb_before, t_before = gw.metrics["telemetry_processed"], time.monotonic()
        for k in range(alarms):
            d = ids[(k * 7919) % len(ids)]
            event_id = f"al-{k}"
            sent[event_id] = time.monotonic()
            body = json.dumps({"event_id": event_id, "type": "sos", "ts": int(time.time() * 1000)})
            c.publish(f"bench/v1/devices/{d}/events", body, qos=1)
            await asyncio.sleep(1 / alarm_rate)
        try:
            await asyncio.wait_for(done.wait(), 60)
        except TimeoutError:
            print(
                f"  only {len(lat)} of {alarms} alarms acked within 60 s; gateway: {dict(gw.metrics)}, "
                f"inbox {app[SERVICES].link.qsize()}"
            )  # type: ignore[union-attr]
            raise
        achieved = (gw.metrics["telemetry_processed"] - hb_before) / (time.monotonic() - t_before)
        c.loop_stop()
        pub.terminate()
        pub.wait(10)
    return lat, achieved


async def presence_memory(settings, port: int, ids: list[str]) -> tuple[float, float, float, float]:  # type: ignore[no-untyped-def]
    r = aioredis.from_url(settings.redis_url)
    rss_before = rss_mb()
    async with backend(settings) as app:
        gw = app[SERVICES].gateway
        assert gw is not None
        await asyncio.wait_for(gw.ready.wait(), 300)
        await asyncio.sleep(1)
        rss0 = rss_mb()
        mem0 = (await r.info("memory"))["used_memory"]
        pub = spawn_publisher(port, "bench/v1/devices/{d}/telemetry", ids, len(ids), qos=1)
        while gw.metrics["telemetry_processed"] < len(ids):
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # last presence flush
        pub.wait(60)
        present = await gw.presence.online_within(3600)
        rss1 = rss_mb()
        mem1 = (await r.info("memory"))["used_memory"]
    keys = [k async for k in r.scan_iter(f"{settings.redis_prefix}:*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()
    return rss0 - rss_before, rss1 - rss0, (mem1 - mem0) / 1e6, present


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=30_000)
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--alarms", type=int, default=200)
    args = p.parse_args()
    print(f"machine: {machine()}")
    async with environment() as (settings, port, _work):
        t = time.monotonic()
        ids = await register(settings.database_url, args.devices)
        print(f"registered {len(ids)} devices in {time.monotonic() - t:.1f} s")
        ingest_ids = ids[:2000]
        bare = await bare_baseline(port, ingest_ids, args.messages)
        ours = await gateway_ingest(settings, port, ingest_ids, args.messages)
        print(f"heartbeat ingest, QoS 1, {args.messages} msgs from {len(ingest_ids)} devices:")
        print(f"  bare aiomqtt JSON subscriber: {bare:9.0f} msg/s")
        print(f"  full gateway:                 {ours:9.0f} msg/s   ratio {ours / bare:.2f}")
        lat, achieved = await alarm_latency(settings, port, ingest_ids, hb_rate=5000, alarms=args.alarms, alarm_rate=10)
        print(
            f"alarm publish->ack, {len(lat)} alarms at 10/s, heartbeats offered at 5,000 msg/s "
            f"(gateway processed {achieved:.0f} msg/s):"
        )
        print(f"  p50 {pct(lat, 50) * 1000:.1f} ms   p99 {pct(lat, 99) * 1000:.1f} ms   max {max(lat) * 1000:.1f} ms")
        loaded, rss, redis_mb, present = await presence_memory(settings, port, ids)
        print(f"memory, {len(ids)} registered devices, {present:.0f} of them present:")
        print(f"  backend RSS: +{loaded:.1f} MB to start with all devices loaded, +{rss:.1f} MB more once all present")
        print(f"  Redis: +{redis_mb:.1f} MB for presence (deadlines, last seen, state, last telemetry)")


if __name__ == "__main__":
    asyncio.run(main())
