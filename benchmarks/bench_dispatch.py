"""Dispatch benchmark: one command, prints its figures.

    .venv/bin/python benchmarks/bench_dispatch.py [--providers 10000] [--queries 2000] [--alarms 1000]

1. Routing over N providers in Redis GEO: p50/p99 per recommendation (search, attributes,
   filters, ranking with reasons), against a raw ``GEOSEARCH`` with the same key, radius
   and count in the same run; throughput as a ratio of the two.
2. Alarm-to-first-offer latency: SOS events published over MQTT at 100 per second from
   distinct devices, each timed from the publish to the ``offer.created`` message on the
   console bus (the offer is committed and announced to the provider). Beside it, the bare
   MQTT publish-to-receive latency at the same rate, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import redis.asyncio as aioredis
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import backend, environment, machine, pct
from devices.credentials import hash_device_secret
from dispatch.catalogue import KIND_SERVICES
from dispatch.routing import GeoIndex, ProviderInfo, Router
from hotline.api.keys import SERVICES
from hotline.storage.db import make_engine, make_sessionmaker, upgrade
from hotline.storage.models import Device, Elder, Incident, Provider

CENTRE = (30.0, 121.1)
SPREAD = 0.15  # degrees: a city of about 30 km across
KINDS = ("service_station", "caregiver", "meal_kitchen", "clinic", "ambulance")
WEIGHTS = (0.3, 0.45, 0.1, 0.1, 0.05)


def random_point(rng: random.Random) -> tuple[float, float]:
    return CENTRE[0] + rng.uniform(-SPREAD, SPREAD), CENTRE[1] + rng.uniform(-SPREAD, SPREAD)


def random_provider(rng: random.Random, n: int) -> dict[str, Any]:
    kind = rng.choices(KINDS, WEIGHTS)[0]
    lat, lon = random_point(rng)
    return {
        "id": f"prv_bench{n:06d}",
        "name": f"服务商{n}",
        "kind": kind,
        "services": list(KIND_SERVICES[kind]),
        "lat": lat,
        "lon": lon,
        "service_radius_m": rng.choice((3000, 5000, 8000, 15000)),
        "working_hours": {},
        "capacity": rng.randint(1, 6),
        "current_load": rng.randint(0, 2),
        "availability": rng.choices(("available", "busy", "offline"), (0.8, 0.1, 0.1))[0],
        "rating": round(rng.triangular(2.5, 5.0, 4.3), 1),
        "last_offered_at": None,
    }


async def routing(redis_url: str, providers: int, queries: int) -> None:
    rng = random.Random(12349)
    redis = aioredis.from_url(redis_url)
    prefix = f"bench-route-{uuid.uuid4().hex[:6]}"
    geo = GeoIndex(redis, prefix)
    infos = [
        ProviderInfo(**{**p, "services": tuple(p["services"])})
        for p in (random_provider(rng, n) for n in range(providers))
    ]
    for start in range(0, len(infos), 2000):
        await geo.upsert(infos[start : start + 2000])
    engine = make_engine("sqlite+aiosqlite://")  # never used: Redis is up
    router = Router(geo, make_sessionmaker(engine))
    pol = router.policy
    points = [random_point(rng) for _ in range(queries)]
    now = datetime.now(UTC)
    key = geo.geo_key("emergency_rescue")
    indexed = await redis.zcard(key)

    async def raw(lat: float, lon: float, radius: float) -> None:
        await redis.geosearch(
            key,
            longitude=lon,
            latitude=lat,
            radius=radius,
            unit="m",
            sort="ASC",
            count=pol.max_candidates,
            withdist=True,
        )

    async def raw_first(lat: float, lon: float) -> None:
        await raw(lat, lon, pol.search_radii_m[0])

    async def raw_widest(lat: float, lon: float) -> None:
        await raw(lat, lon, pol.search_radius_m)

    async def ranked(lat: float, lon: float) -> None:
        await router.rank("emergency_rescue", lat, lon, now=now)

    first = f"raw GEOSEARCH {pol.search_radii_m[0] / 1000:g} km"
    widest = f"raw GEOSEARCH {pol.search_radius_m / 1000:g} km"
    paths = ((first, raw_first), (widest, raw_widest), ("router.rank", ranked))
    for lat, lon in points[:100]:  # warm every path
        for _, fn in paths:
            await fn(lat, lon)
    results: dict[str, list[float]] = {}
    for name, fn in paths:
        times: list[float] = []
        for lat, lon in points:
            t = time.perf_counter()
            await fn(lat, lon)
            times.append((time.perf_counter() - t) * 1000)
        results[name] = times
    sample = await router.rank("emergency_rescue", *points[0], now=now)
    print(
        f"routing: {providers} providers ({indexed} offer emergency_rescue), {queries} recommendations, "
        f"rings {'/'.join(f'{r / 1000:g}' for r in pol.search_radii_m)} km, up to {pol.max_candidates} candidates"
    )
    for name, times in results.items():
        rate = len(times) / (sum(times) / 1000)
        print(f"  {name:24s} p50 {pct(times, 50):.3f} ms  p99 {pct(times, 99):.3f} ms  {rate:,.0f}/s")
    for base in (first, widest):
        ratio = sum(results[base]) / sum(results["router.rank"])
        print(f"  router throughput / {base} throughput = {ratio:.2f}")
    print(
        f"  a sample ranking: {len(sample.candidates)} candidates, {len(sample.excluded)} excluded, "
        f"best {sample.best['eta_min'] if sample.best else None} min"
    )
    keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
    await redis.delete(*keys)
    await redis.aclose()
    await engine.dispose()


async def seed(db_url: str, alarms: int, providers: int) -> list[str]:
    rng = random.Random(7)
    engine = make_engine(db_url)
    now = datetime.now(UTC)
    secret = hash_device_secret("bench")
    ids = [f"BD{k:06d}" for k in range(alarms)]
    elders = []
    for k in range(alarms):
        lat, lon = random_point(rng)
        elders.append({
            "id": f"eld_bench{k:06d}", "name": f"老人{k}", "gender": "F", "birth_date": date(1940, 1, 1),
            "address": "余姚", "lat": lat, "lon": lon, "phones": [], "medical_notes": "", "care_level": "mild",
            "economic_category": "none", "living_situation": "alone", "home_radius_m": 500, "created_at": now,
        })  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(insert(Elder), elders)
        await conn.execute(
            insert(Device),
            [{"device_id": d, "kind": "one_touch_phone", "elder_id": elders[k]["id"], "credential_hash": secret,
              "created_at": now} for k, d in enumerate(ids)],
        )  # fmt: skip
        rows = [random_provider(rng, n) for n in range(providers)]
        await conn.execute(insert(Provider), [{**p, "created_at": now, "updated_at": now} for p in rows])
    await engine.dispose()
    return ids


def bare_latency(port: int, count: int, rate: float) -> list[float]:
    """Publish-to-receive through the same broker with plain paho clients: the floor."""
    got: dict[int, float] = {}
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-bare-sub-{uuid.uuid4().hex[:4]}")
    sub.on_message = lambda _c, _u, m: got.__setitem__(int(m.payload), time.time())
    sub.connect("127.0.0.1", port)
    sub.subscribe("bare/#", qos=1)
    sub.loop_start()
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-bare-pub-{uuid.uuid4().hex[:4]}")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    time.sleep(0.5)
    sent: dict[int, float] = {}
    for n in range(count):
        sent[n] = time.time()
        pub.publish(f"bare/{n}", str(n), qos=1)
        time.sleep(1 / rate)
    deadline = time.time() + 10
    while len(got) < count and time.time() < deadline:
        time.sleep(0.05)
    pub.loop_stop()
    sub.loop_stop()
    return [(got[n] - sent[n]) * 1000 for n in sent if n in got]


@contextlib.asynccontextmanager
async def postgres(admin_url: str) -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database for this run, dropped afterwards."""
    name = f"hotline_bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def first_offer(alarms: int, providers: int, rate: float, pg_admin: str | None) -> None:
    async with contextlib.AsyncExitStack() as stack:
        overrides = {"database_url": await stack.enter_async_context(postgres(pg_admin))} if pg_admin else {}
        await _first_offer(alarms, providers, rate, overrides)


async def _first_offer(alarms: int, providers: int, rate: float, overrides: dict[str, Any]) -> None:
    async with environment(**overrides) as (settings, port, _work):
        ids = await seed(settings.database_url, alarms, providers)
        bare = await asyncio.to_thread(bare_latency, port, min(alarms, 500), rate)
        async with backend(settings) as app:
            svc = app[SERVICES]
            assert svc.gateway is not None and svc.bus is not None
            await asyncio.wait_for(svc.gateway.ready.wait(), 60)
            seen: dict[str, float] = {}

            def on_bus(m: dict[str, Any]) -> None:
                if m.get("type") == "offer.created":
                    seen.setdefault(m["offer"]["incident_id"], time.time())

            svc.bus.add_listener(on_bus)
            c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-alarms")
            c.connect("127.0.0.1", port)
            c.loop_start()
            await asyncio.sleep(1.0)
            sent: dict[str, float] = {}
            start = time.monotonic()
            for k, d in enumerate(ids):
                sent[d] = time.time()
                body = json.dumps({"event_id": f"al-{k}", "type": "sos", "ts": int(time.time() * 1000)})
                c.publish(f"bench/v1/devices/{d}/events", body, qos=1)
                ahead = start + (k + 1) / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            achieved = alarms / (time.monotonic() - start)
            deadline = time.monotonic() + 60
            while len(seen) < alarms and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            c.loop_stop()
            async with svc.sm() as s:
                device_of = dict((await s.execute(select(Incident.id, Incident.device_id))).all())
        lat = [(seen[i] - sent[device_of[i]]) * 1000 for i in seen if device_of.get(i) in sent]
        drained = len(seen) / (max(seen.values()) - min(sent.values())) if seen else 0.0
        print(
            f"alarm to first offer: {alarms} SOS from distinct devices at {achieved:.0f}/s (target {rate:g}/s), "
            f"{providers} providers, one process, {settings.database_url.split('+')[0]}"
        )
        print(
            f"  offered {len(lat)} of {alarms}; {drained:.1f} first offers/s from the first publish to the last offer"
        )
        print(
            f"  publish -> offer.created  p50 {pct(lat, 50):.1f} ms  p99 {pct(lat, 99):.1f} ms  max {max(lat):.1f} ms"
        )
        print(
            f"  bare MQTT publish -> receive at the same rate  p50 {pct(bare, 50):.1f} ms  p99 {pct(bare, 99):.1f} ms"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--providers", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--alarms", type=int, default=1000)
    parser.add_argument("--rates", default="100,20", help="alarm rates per second, comma-separated")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--postgres",
        metavar="ADMIN_URL",
        help="also run the alarm benchmark on PostgreSQL, e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test",
    )
    parser.add_argument("--skip-routing", action="store_true")
    args = parser.parse_args()
    print(machine())
    if not args.skip_routing:
        await routing(args.redis, args.providers, args.queries)
    for rate in (float(r) for r in args.rates.split(",")):
        alarms = min(args.alarms, int(rate * 10))  # ten seconds of load at each rate
        await first_offer(alarms, min(args.providers, 500), rate, None)
        if args.postgres:
            await first_offer(alarms, min(args.providers, 500), rate, args.postgres)


if __name__ == "__main__":
    asyncio.run(main())
