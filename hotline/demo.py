"""``hotline demo``: the whole system on one machine, with simulators.

SQLite in the work directory, the Redis and Mosquitto on the default ports when they
answer (otherwise child processes on free ports), a seeded district, the backend, a
device fleet that raises alarms, and a family receiver that checks every signature.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import random
import signal
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from redis.exceptions import RedisError
from sqlalchemy import func, select

from hotline.api.keys import SERVICES
from hotline.app import serve
from hotline.config import Settings, load_settings
from hotline.localsvc import Child, port_open, start_mosquitto, start_redis
from hotline.seed import seed_demo
from hotline.storage.db import make_engine, make_sessionmaker, upgrade
from hotline.storage.models import (
    OPEN_STATUSES,
    CampaignTarget,
    Elder,
    Incident,
    Notification,
    Provider,
    ServiceRequest,
)
from hotline.storage.redisconn import SENTINEL_SCHEME, close_redis, redis_client
from hotline.tasks import cancel_and_wait
from hotline.users import add_user
from simulators.asterisk import AsteriskSim
from simulators.devices import DeviceFleet
from simulators.family import FamilyReceiver
from simulators.provider_app import ProviderApp
from simulators.service_desk import ServiceDesk, start_campaign

# The demo's console password for every demo account; a real deployment sets its own
# with `hotline user add NAME --role R --password-stdin`.
DEMO_PASSWORD = "demo12349"  # noqa: S105 (printed for the demo on purpose)


async def run_demo(base: Settings, args: argparse.Namespace) -> int:
    workdir = await asyncio.to_thread(Path(args.workdir).resolve)
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    children: list[Child] = []
    try:
        return await _run(base, args, workdir, children)
    finally:
        for child in reversed(children):
            child.stop()


async def _run(base: Settings, args: argparse.Namespace, workdir: Path, children: list[Child]) -> int:
    db = workdir / "hotline-demo.db"
    for suffix in ("", "-wal", "-shm"):
        await asyncio.to_thread(Path(f"{db}{suffix}").unlink, missing_ok=True)
    env = {
        "HOTLINE_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "HOTLINE_REDIS_PREFIX": "hotline-demo",
        # A fresh client id each run: a persistent session from an old demo would replay
        # events whose devices no longer exist in the new database.
        "HOTLINE_MQTT_CLIENT_ID": f"hotline-demo-{uuid.uuid4().hex[:8]}",
        "HOTLINE_MQTT_SESSION_EXPIRY": "300",
        "HOTLINE_MQTT_PREFIX": base.mqtt_prefix,
        "HOTLINE_HTTP_HOST": base.http_host,
    }
    redis = urlsplit(base.redis_url)
    if base.redis_url.startswith(SENTINEL_SCHEME) or await port_open(redis.hostname or "127.0.0.1", redis.port or 6379):
        env["HOTLINE_REDIS_URL"] = base.redis_url
    else:
        port, child = await start_redis(workdir)
        children.append(child)
        env["HOTLINE_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    if await port_open(base.mqtt.host, base.mqtt.port):
        env["HOTLINE_MQTT_URL"] = base.mqtt_url
    else:
        port, child = await start_mosquitto(workdir)
        children.append(child)
        env["HOTLINE_MQTT_URL"] = f"mqtt://127.0.0.1:{port}"
    env["HOTLINE_HTTP_PORT"] = str(base.http_port if not await port_open(base.http_host, base.http_port) else 0)
    # The PBX is the AMI simulator: the wellbeing campaign and follow-ups dial through it.
    pbx = AsteriskSim(speed=10.0, members=("op1001", "op1002", "op1003"))
    await pbx.start()
    env["HOTLINE_AMI_URL"] = f"ami://hotline:hotline@127.0.0.1:{pbx.port}"
    env["HOTLINE_CAMPAIGN_TICK_S"] = "0.5"
    settings = load_settings(env)
    settings = dataclasses.replace(
        settings, webhook_secrets=base.webhook_secrets, webhook_secret_is_default=base.webhook_secret_is_default
    )

    await asyncio.to_thread(upgrade, settings.database_url)
    receiver = FamilyReceiver(settings.webhook_secrets)
    webhook_url = await receiver.start()
    engine = make_engine(settings.database_url)
    sm = make_sessionmaker(engine, phone_area_code=settings.phone_area_code)
    seeded = await seed_demo(sm, elders=args.elders, providers=args.providers, family_webhook=webhook_url)
    token = await add_user(settings, "demo-operator", "operator", extension="op1001", password=DEMO_PASSWORD)
    await add_user(settings, "demo-operator2", "operator", extension="op1002", password=DEMO_PASSWORD)
    supervisor = await add_user(settings, "demo-supervisor", "supervisor", password=DEMO_PASSWORD)
    rng = random.Random(7)
    callers: list[tuple[str, str]] = []
    async with sm() as session:
        elders = (await session.scalars(select(Elder).order_by(Elder.id))).all()
        await add_user(settings, "demo-family", "family", elder_id=elders[0].id, password=DEMO_PASSWORD)
        callers = [(e.phones[0], e.name) for e in elders if e.phones]
        for elder in elders:
            for phone in elder.phones[:1]:
                # Most press 1 (all well), some 2 (need something), a few never answer.
                roll = rng.random()
                if roll < 0.15:
                    pbx.originate_outcomes[phone] = "noanswer"
                elif roll < 0.35:
                    pbx.wellbeing_digits[phone] = "2"
    _say(f"seeded {seeded.elders} elders, {len(seeded.devices)} devices, {seeded.providers} providers into {db}")
    _say(f"redis {settings.redis_url}  mqtt {settings.mqtt_url}  family receiver {webhook_url}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready: asyncio.Future[tuple[web.Application, int]] = loop.create_future()
    server = asyncio.create_task(
        serve(settings, shutdown=stop, on_ready=lambda app, port: ready.set_result((app, port))),
        name="demo.backend",
    )
    app, port = await asyncio.wait_for(ready, 30)
    url = f"http://{settings.http_host}:{port}"
    _say(f"API     {url}/api/v1   (OpenAPI: {url}/api/v1/openapi.json)")
    _say(f"console {url}/console/   sign in as demo-operator / {DEMO_PASSWORD}")
    _say("        also demo-supervisor (wallboard), demo-family, demo-provider-0 (same password)")
    _say(f"token   {token}   (role operator, for the API)")

    # Every seeded provider gets an account and a simulated app that accepts most offers.
    async with sm() as session:
        provider_ids = list((await session.scalars(select(Provider.id))).all())
    apps = [
        ProviderApp(
            url,
            await add_user(settings, f"demo-provider-{n}", "provider", provider_id=pid, password=DEMO_PASSWORD),
            seed=n,
            poll_s=1.0,
        )
        for n, pid in enumerate(provider_ids)
    ]
    app_tasks = [asyncio.create_task(a.run(until=stop), name=f"demo.provider_app[{n}]") for n, a in enumerate(apps)]

    desk = ServiceDesk(url, token, every_s=2.0, seed=1)
    desk_task = asyncio.create_task(desk.run(until=stop), name="demo.service_desk")
    # The queue: callers from the register (their profiles pop) and strangers, all day long.
    calls_task = asyncio.create_task(pbx.call_traffic(callers, every_s=args.call_every, until=stop), name="demo.calls")
    campaign = await start_campaign(url, supervisor)
    _say(f"campaign {campaign['id']} ({campaign['name']}): one run started now")

    ids = [d for d, kind in seeded.devices if kind != "sensor"][: args.devices]
    fleet = DeviceFleet(settings.mqtt, settings.mqtt_prefix, ids, heartbeat_s=10, sos_every_s=args.sos_every)
    fleet_task = asyncio.create_task(fleet.run(), name="demo.fleet")
    started = time.monotonic()
    gateway = app[SERVICES].gateway
    tty = sys.stdout.isatty()
    open_n: int | None = 0
    resolved_n: int | None = 0
    orders_done: int | None = 0
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if args.duration and time.monotonic() - started >= args.duration:
                stop.set()
            async with sm() as session:
                open_n = await session.scalar(
                    select(func.count()).select_from(Incident).where(Incident.status.in_(OPEN_STATUSES))
                )
                resolved_n = await session.scalar(
                    select(func.count()).select_from(Incident).where(Incident.status == "resolved")
                )
                sent = await session.scalar(
                    select(func.count()).select_from(Notification).where(Notification.status == "delivered")
                )
                orders_done = await session.scalar(
                    select(func.count()).select_from(ServiceRequest).where(ServiceRequest.status == "completed")
                )
            online = await gateway.online_count(35) if gateway else 0
            line = (
                f"[{time.monotonic() - started:5.0f}s] devices online {online}/{len(ids)} | "
                f"alarms sent {fleet.stats['sent_sos'] + fleet.stats['sent_fall']} acked "
                f"{fleet.stats['ack_accepted']} | incidents open {open_n} resolved {resolved_n} | "
                f"offers accepted {sum(len(a.accepted) for a in apps)} | notifications sent {sent} | "
                f"family alerts verified {len(receiver.alerts)} | work orders {len(desk.requested)} "
                f"completed {orders_done} follow-ups {len(desk.followed_up)}"
            )
            print("\r" + line if tty else line, end="" if tty else "\n", flush=True)
    finally:
        stop.set()
        await cancel_and_wait(calls_task)
        await cancel_and_wait(desk_task)
        await cancel_and_wait(fleet_task)
        for task in app_tasks:
            await cancel_and_wait(task)
        await server
        async with sm() as session:
            outcomes = dict(
                (
                    await session.execute(
                        select(func.coalesce(CampaignTarget.outcome, CampaignTarget.state), func.count()).group_by(
                            func.coalesce(CampaignTarget.outcome, CampaignTarget.state)
                        )
                    )
                ).all()
            )
        await receiver.stop()
        await pbx.stop()
        await engine.dispose()
        dropped = await drop_redis_keys(settings.redis_url, settings.redis_prefix)
        _say(f"removed {dropped} demo keys ({settings.redis_prefix}:*) from Redis")
    print(flush=True)
    lat = sorted(fleet.latencies)
    summary = {
        "event": "demo.summary",
        "alarms_sent": fleet.stats["sent_sos"] + fleet.stats["sent_fall"],
        "acks_accepted": fleet.stats["ack_accepted"],
        "ack_p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
        "incidents_open": open_n,
        "incidents_resolved": resolved_n,
        "offers_accepted": sum(len(a.accepted) for a in apps),
        "offers_declined": sum(len(a.declined) for a in apps),
        "notifications_delivered": sent,
        "family_alerts_verified": len(receiver.alerts),
        "bad_signatures": receiver.bad_signatures,
        "work_orders_requested": len(desk.requested),
        "work_orders_completed": orders_done,
        "follow_ups_answered": len(desk.followed_up),
        "campaign_outcomes": outcomes,
    }
    print(json.dumps(summary, ensure_ascii=False), flush=True)
    return 0


async def drop_redis_keys(url: str, prefix: str) -> int:
    """Delete the demo's keys (``{prefix}:*``), so a demo leaves nothing behind in a shared Redis."""
    client = redis_client(url, socket_connect_timeout=2, socket_timeout=5)
    dropped = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                dropped += await client.unlink(*batch)
                batch = []
        if batch:
            dropped += await client.unlink(*batch)
    except (RedisError, OSError) as exc:
        _say(f"could not remove the demo keys from Redis: {exc}")
    finally:
        await close_redis(client)
    return dropped


def _say(text: str) -> None:
    print(text, flush=True)
