"""Chaos run: three instances under mixed traffic while their parts are broken on purpose.

    .venv/bin/python benchmarks/chaos.py --minutes 10 [--instances 3] [--rate 20] [--fault-every 20]

Everything runs on loopback and is ours, ended by PID: three ``hotline serve`` processes on
one PostgreSQL database (a fresh one, dropped afterwards) and one MQTT shared subscription;
a Mosquitto with persistence; Redis as a master, a replica and three sentinels
(``redis+sentinel://``); the AMI simulator as the PBX. The traffic:

- alarms and test events from a fleet of devices (QoS 1, persistent sessions), about
  ``--rate`` a second; an SOS or fall now and then opens an incident, whose escalation
  policy runs timers, offers providers, notifies families and calls the device back;
- calls to the 12349 queue, one every 2 s, each ringing one operator, whose console is a
  WebSocket on one of the live instances (reconnecting with ``?since=`` when it drops);
- work orders asked for through the API of a random live instance.

Meanwhile, every ``--fault-every`` seconds, one of: SIGKILL a random instance (restarted 3 s
later), restart the broker, or fail Redis over (SIGKILL the master; the sentinels promote the
replica; the old master comes back as a replica). After ``--minutes`` the faults stop, the
traffic drains, and the run reports, for each kind, what was sent, stored, lost and doubled.
The target is 0 lost and 0 doubled everywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as paho
import redis.asyncio as aioredis
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import machine, pct
from hotline.config import load_settings
from hotline.localsvc import Child, die_with_parent, free_port, start_mosquitto, start_redis, start_sentinel
from hotline.seed import seed_demo
from hotline.storage.db import make_engine, make_sessionmaker, upgrade
from hotline.storage.models import (
    CallRecord,
    Device,
    DeviceEventRecord,
    EscalationTimer,
    IncidentEvent,
    ServiceRequest,
)
from hotline.users import add_user
from simulators.asterisk import AsteriskSim

SERVICE = "mymaster"
MEMBERS = ("op1001", "op1002", "op1003")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Instance:
    name: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['HOTLINE_HTTP_PORT']}"

    def start(self) -> None:
        out = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hotline", "serve"],
            env={**os.environ, **self.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl runs between fork and exec
        )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            Child(self.name, self.proc).stop(grace_s=15)


@dataclass
class Redis:
    work: Path
    ports: list[int]  # the two data servers
    children: dict[int, Child]
    sentinels: list[int]
    sentinel_children: list[Child]

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinels) + f"/{SERVICE}/0"

    async def master(self) -> int:
        for port in self.sentinels:
            client = aioredis.Redis(port=port, socket_timeout=2)
            try:
                _h, p = await client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)  # type: ignore[no-untyped-call]
                return int(p)
            except (OSError, aioredis.RedisError):
                continue
            finally:
                await client.aclose()
        raise RuntimeError("no sentinel answers")

    async def fail_over(self) -> float:
        """SIGKILL the master; seconds until the sentinels name the other one."""
        old = await self.master()
        started = time.monotonic()
        self.children[old].proc.kill()
        self.children[old].proc.wait(5)
        while await self.master() == old:
            if time.monotonic() - started > 60:
                raise RuntimeError("the sentinels did not fail over within 60 s")
            await asyncio.sleep(0.2)
        took = time.monotonic() - started
        new = await self.master()
        # The old master returns as a replica of the new one (the sentinels would make it so).
        self.children[old] = (await start_redis(self.work, port=old, replica_of=new))[1]
        return took

    def stop(self) -> None:
        for child in [*self.sentinel_children, *self.children.values()]:
            child.stop()


async def start_redis_cluster(work: Path) -> Redis:
    master, m = await start_redis(work)
    replica, r = await start_redis(work, replica_of=master)
    sentinels, children = [], []
    for _ in range(3):
        port, child = await start_sentinel(work, master)
        sentinels.append(port)
        children.append(child)
    cluster = Redis(work, [master, replica], {master: m, replica: r}, sentinels, children)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the sentinels have found the replica and each other
        client = aioredis.Redis(port=sentinels[0], socket_timeout=2)
        try:
            info = await client.info("sentinel")
        finally:
            await client.aclose()
        state = info.get("master0")
        if isinstance(state, dict) and int(state["slaves"]) >= 1 and int(state["sentinels"]) >= 3:
            return cluster
        await asyncio.sleep(0.3)
    raise RuntimeError("the sentinels did not form")


@dataclass
class Fleet:
    """The devices: one persistent MQTT client publishing for all of them, one reading acks."""

    port: int
    prefix: str
    ids: list[str]
    sent: list[str] = field(default_factory=list)
    sos: list[str] = field(default_factory=list)
    acks: Counter[str] = field(default_factory=Counter)  # event_id -> times acked "accepted"
    acked: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, tag: str) -> None:
        self.listener = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"chaos-acks-{tag}", clean_session=False)
        self.listener.on_message = self._on_ack
        self.listener.on_connect = lambda c, *_: c.subscribe(f"{self.prefix}/devices/+/ack", qos=1)
        self.listener.connect("127.0.0.1", self.port)
        self.listener.loop_start()
        self.publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"chaos-fleet-{tag}", clean_session=False)
        self.publisher.max_inflight_messages_set(200)
        self.publisher.max_queued_messages_set(0)
        self.publisher.connect("127.0.0.1", self.port)
        self.publisher.loop_start()

    def _on_ack(self, _c: paho.Client, _u: object, m: paho.MQTTMessage) -> None:
        ack = json.loads(m.payload)
        with self.lock:
            self.acked.add(ack["event_id"])
            if ack.get("status") == "accepted":
                self.acks[ack["event_id"]] += 1

    def publish(self, rng: random.Random, n: int) -> None:
        device = rng.choice(self.ids)
        kind = "sos" if rng.random() < 0.02 else "test"
        event_id = f"ch-{n}"
        body = json.dumps({"event_id": event_id, "type": kind, "ts": int(time.time() * 1000)})
        self.publisher.publish(f"{self.prefix}/devices/{device}/events", body, qos=1)
        self.sent.append(event_id)
        if kind == "sos":
            self.sos.append(event_id)

    def stop(self) -> None:
        for c in (self.publisher, self.listener):
            c.disconnect()
            c.loop_stop()


@dataclass
class Console:
    """One operator's console: a WebSocket on some live instance, resuming with ?since=."""

    token: str
    pops: list[tuple[str, str, str]] = field(default_factory=list)  # (seq, linkedid, member)
    reconnects: int = 0

    async def run(self, instances: list[Instance], http: aiohttp.ClientSession, until: asyncio.Event) -> None:
        since = ""
        rng = random.Random(self.token)
        while not until.is_set():
            live = [i for i in instances if i.alive]
            if not live:
                await asyncio.sleep(0.5)
                continue
            target = rng.choice(live)
            url = f"{target.url}/api/v1/ws?token={self.token}" + (f"&since={since}" if since else "")
            try:
                async with http.ws_connect(url, heartbeat=5) as ws:
                    self.reconnects += 1
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        m = json.loads(msg.data)
                        since = m.get("seq") or since
                        if m["type"] == "call.ringing":
                            self.pops.append((m.get("seq") or "", m["call"]["linkedid"], m["operator"]["member"]))
                        if until.is_set():
                            return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.3)


async def wait_ready(instance: Instance, http: aiohttp.ClientSession, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with http.get(f"{instance.url}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                if r.status in (200, 503) and (await r.json())["checks"]["database"] == "ok":
                    return
        await asyncio.sleep(0.3)
    raise RuntimeError(f"{instance.name} did not come up; see {instance.log_path}")


async def main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="hotline-chaos-"))
    ns = uuid.uuid4().hex[:8]
    admin_url = args.pg_admin
    db_name = f"hotline_chaos_{ns}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{db_name}"'))
    db_url = admin_url.rsplit("/", 1)[0] + f"/{db_name}"
    log(f"work in {work}; database {db_name}")
    instances: list[Instance] = []
    brokers: list[Child] = []
    redis: Redis | None = None
    sim = AsteriskSim(members=MEMBERS, speed=1.0)
    fleet: Fleet | None = None
    try:
        await asyncio.to_thread(upgrade, db_url)
        mqtt_port, broker = await start_mosquitto(work, persistent=True)
        brokers.append(broker)
        redis = await start_redis_cluster(work)
        await sim.start()
        base_env = {
            "HOTLINE_DATABASE_URL": db_url,
            "HOTLINE_REDIS_URL": redis.url,
            "HOTLINE_REDIS_PREFIX": f"chaos-{ns}",
            "HOTLINE_MQTT_URL": f"mqtt://127.0.0.1:{mqtt_port}",
            "HOTLINE_MQTT_PREFIX": f"chaos-{ns}/v1",
            "HOTLINE_MQTT_SHARED_GROUP": "hotline",
            "HOTLINE_AMI_URL": f"ami://hotline:hotline@127.0.0.1:{sim.port}",
            "HOTLINE_LOG_LEVEL": "WARNING",
            "HOTLINE_HTTP_HOST": "127.0.0.1",
        }
        settings = load_settings(base_env)
        engine = make_engine(db_url)
        sm = make_sessionmaker(engine)
        seeded = await seed_demo(sm, elders=args.elders, providers=args.providers, seed=args.seed)
        tokens = [await add_user(settings, f"op{n}", "operator", extension=m) for n, m in enumerate(MEMBERS)]
        desk = await add_user(settings, "chaos-desk", "operator")
        async with sm() as session:
            elder_ids = list((await session.scalars(select(Device.elder_id).distinct())).all())
        device_ids = [d for d, kind in seeded.devices if kind != "sensor"][: args.devices]
        for n in range(args.instances):
            instances.append(
                Instance(
                    f"i{n}",
                    {
                        **base_env,
                        "HOTLINE_INSTANCE_ID": f"chaos-i{n}",
                        "HOTLINE_MQTT_CLIENT_ID": f"chaos-{ns}-i{n}",
                        "HOTLINE_HTTP_PORT": str(free_port()),
                    },
                    work / f"i{n}.log",
                )
            )
        for i in instances:
            i.start()
        async with aiohttp.ClientSession() as http:
            for i in instances:
                await wait_ready(i, http)
            log(f"{len(instances)} instances up; {len(device_ids)} devices, {len(elder_ids)} elders")
            rings: list[tuple[float, str, str]] = []

            def on_emit(name: str, headers: dict[str, str]) -> None:
                if name == "AgentCalled":
                    rings.append((time.time(), headers["Linkedid"], headers.get("MemberName", "")))

            sim.on_emit = on_emit
            fleet = Fleet(mqtt_port, base_env["HOTLINE_MQTT_PREFIX"], device_ids)
            fleet.start(ns)
            until = asyncio.Event()
            consoles = [Console(t) for t in tokens]
            console_tasks = [asyncio.create_task(c.run(instances, http, until)) for c in consoles]
            faults: Counter[str] = Counter()
            fault_log: list[tuple[float, str, float]] = []
            orders_asked: list[str] = []
            orders_failed = 0
            calls: list[asyncio.Task[str]] = []

            async def devices_loop() -> None:
                n = 0
                start = time.monotonic()
                while not until.is_set():
                    fleet.publish(rng, n)
                    n += 1
                    ahead = start + n / args.rate - time.monotonic()
                    if ahead > 0:
                        await asyncio.sleep(ahead)

            async def calls_loop() -> None:
                n = 0
                while not until.is_set():
                    member = MEMBERS[n % len(MEMBERS)]
                    number = f"139{rng.randrange(10**8):08d}"
                    calls.append(sim.spawn(sim.inbound_call(number, "", rings=[[member]], ring_s=1.5, talk_s=2.0)))
                    n += 1
                    await asyncio.sleep(2.0)

            async def orders_loop() -> None:
                nonlocal orders_failed
                while not until.is_set():
                    live = [i for i in instances if i.alive]
                    if live:
                        target = rng.choice(live)
                        body = {"elder_id": rng.choice(elder_ids), "service": "cleaning", "note": f"chaos {ns}"}
                        try:
                            async with http.post(
                                f"{target.url}/api/v1/service-requests",
                                json=body,
                                headers={"Authorization": f"Bearer {desk}"},
                                timeout=aiohttp.ClientTimeout(total=10),
                            ) as r:
                                if r.status == 201:
                                    orders_asked.append((await r.json())["id"])
                                else:
                                    orders_failed += 1
                        except (aiohttp.ClientError, OSError, TimeoutError):
                            orders_failed += 1
                    await asyncio.sleep(3.0)

            async def faults_loop() -> None:
                end = time.monotonic() + args.minutes * 60
                kinds = ["kill", "broker", "redis"]
                while time.monotonic() + args.fault_every < end:
                    await asyncio.sleep(args.fault_every)
                    kind = kinds[sum(faults.values()) % 3] if args.round_robin else rng.choice(kinds)
                    at = time.time()
                    t0 = time.monotonic()
                    if kind == "kill":
                        victim = rng.choice([i for i in instances if i.alive])
                        victim.kill()
                        log(f"fault: SIGKILL {victim.name}")
                        await asyncio.sleep(3.0)
                        victim.start()
                        await wait_ready(victim, http)
                    elif kind == "broker":
                        log("fault: broker restart")
                        brokers[-1].stop()
                        brokers.append((await start_mosquitto(work, port=mqtt_port, persistent=True))[1])
                    else:
                        assert redis is not None
                        took = await redis.fail_over()
                        log(f"fault: Redis master killed; failed over in {took:.1f} s")
                    faults[kind] += 1
                    fault_log.append((at, kind, time.monotonic() - t0))

            workers = [asyncio.create_task(f()) for f in (devices_loop, calls_loop, orders_loop)]
            t_start = time.time()
            await faults_loop()
            remaining = t_start + args.minutes * 60 - time.time()
            if remaining > 0:
                await asyncio.sleep(remaining)
            until.set()
            log("faults over; draining")
            for w in workers:
                w.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*workers, return_exceptions=True)
            await asyncio.gather(*calls, return_exceptions=True)
            drain_end = time.monotonic() + args.drain_s
            async with sm() as session:
                while time.monotonic() < drain_end:
                    stored = await session.scalar(
                        select(func.count(func.distinct(DeviceEventRecord.event_id))).where(
                            DeviceEventRecord.event_id.like("ch-%")
                        )
                    )
                    with fleet.lock:
                        all_acked = len(fleet.acked) >= len(fleet.sent)
                    if stored == len(fleet.sent) and all_acked:
                        break
                    await asyncio.sleep(1.0)
                    session.expire_all()
            await asyncio.sleep(5.0)  # the last pops and escalation steps
            for t in console_tasks:
                t.cancel()
            await asyncio.gather(*console_tasks, return_exceptions=True)
            report = await measure(sm, fleet, consoles, rings, sim, orders_asked, fault_log)
            report.update(
                {
                    "machine": machine(),
                    "minutes": args.minutes,
                    "instances": args.instances,
                    "rate_per_s": args.rate,
                    "faults": dict(faults),
                    "orders_refused_or_unanswered": orders_failed,
                    "console_connections": sum(c.reconnects for c in consoles),
                }
            )
            print(json.dumps(report, ensure_ascii=False, indent=2), flush=True)
            await engine.dispose()
            ok = all(report[k]["lost"] == 0 and report[k]["doubled"] == 0 for k in ("events", "calls"))
            ok = ok and report["escalation_steps"]["doubled"] == 0 and report["pops"]["doubled"] == 0
            return 0 if ok else 1
    finally:
        if fleet is not None:
            with contextlib.suppress(Exception):
                fleet.stop()
        for i in instances:
            i.stop()
        with contextlib.suppress(Exception):
            await sim.stop()
        if redis is not None:
            redis.stop()
        for b in brokers:
            b.stop()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        await admin.dispose()


async def measure(
    sm: Any,
    fleet: Fleet,
    consoles: list[Console],
    rings: list[tuple[float, str, str]],
    sim: AsteriskSim,
    orders: list[str],
    faults: list[tuple[float, str, float]],
) -> dict[str, Any]:
    async with sm() as session:
        rows = (
            await session.execute(
                select(DeviceEventRecord.event_id, func.count())
                .where(DeviceEventRecord.event_id.like("ch-%"))
                .group_by(DeviceEventRecord.event_id)
            )
        ).all()
        steps = (await session.scalars(select(IncidentEvent).where(IncidentEvent.kind == "escalation.step"))).all()
        overdue = await session.scalar(
            select(func.count())
            .select_from(EscalationTimer)
            .where(
                EscalationTimer.state == "pending", EscalationTimer.due_at < datetime.now(UTC) - timedelta(seconds=10)
            )
        )
        inbound = (await session.scalars(select(CallRecord).where(CallRecord.direction == "inbound"))).all()
        outbound = (await session.scalars(select(CallRecord).where(CallRecord.direction == "outbound"))).all()
        made = (
            await session.scalar(select(func.count()).select_from(ServiceRequest).where(ServiceRequest.id.in_(orders)))
            if orders
            else 0
        )
    stored: dict[str, int] = {str(e): int(n) for e, n in rows}
    with fleet.lock:
        acks = dict(fleet.acks)
        acked = set(fleet.acked)
    sent = fleet.sent
    step_keys = Counter((s.incident_id, s.data.get("track"), s.data.get("step"), s.data.get("run")) for s in steps)
    late = []
    for s in steps:
        with contextlib.suppress(KeyError, ValueError, TypeError):
            late.append(
                (datetime.fromisoformat(s.data["fired_at"]) - datetime.fromisoformat(s.data["due_at"])).total_seconds()
            )
    popped: dict[tuple[str, str], set[str]] = {}
    for c in consoles:
        for seq, lid, member in c.pops:
            popped.setdefault((lid, member), set()).add(seq)
    ring_keys = {(lid, member) for _t, lid, member in rings}
    gaps = [(at, at + took + 6.0) for at, kind, took in faults if kind in ("kill", "redis")]
    lost_pops = [k for k in ring_keys if k not in popped]
    in_gap = [k for k in lost_pops if any(a <= t <= b for t, lid, m in rings if (lid, m) == k for a, b in gaps)]
    rang_at = {(lid, m): t for t, lid, m in rings}
    lost_after: Counter[str] = Counter()  # the fault each lost pop came closest after
    for k in lost_pops:
        before = [(at, kind) for at, kind, _took in faults if at <= rang_at[k]]
        lost_after[max(before)[1] if before else "none"] += 1
    originates = Counter(o.get("ChannelId", "") for o in sim.originates)
    call_ids = {r.linkedid for r in inbound}
    sim_calls = {lid for _t, lid, _m in rings}
    return {
        "events": {
            "sent": len(sent),
            "stored": len(stored),
            "lost": len([e for e in sent if e not in stored]),
            "doubled": sum(1 for n in stored.values() if n > 1),
            "never_acked": len([e for e in sent if e not in acked]),
            "accepted_twice": sum(1 for n in acks.values() if n > 1),
            "sos_sent": len(fleet.sos),
        },
        "escalation_steps": {
            "fired": len(steps),
            "doubled": sum(1 for n in step_keys.values() if n > 1),
            "late_p50_s": round(pct(late, 50), 2),
            "late_p99_s": round(pct(late, 99), 2),
            "overdue_unfired_at_end": int(overdue or 0),
        },
        "pops": {
            "rings": len(ring_keys),
            "delivered": len([k for k in ring_keys if k in popped]),
            "doubled": sum(1 for k, seqs in popped.items() if len(seqs) > 1),
            "lost": len(lost_pops),
            "lost_inside_a_fault_window": len(in_gap),
            "lost_after_fault": dict(lost_after),
        },
        "calls": {
            "placed_by_pbx": len(sim_calls),
            "recorded": len(call_ids & sim_calls),
            "lost": len(sim_calls - call_ids),
            "doubled": 0 if len(inbound) == len(call_ids) else len(inbound) - len(call_ids),
            "left_live": len([r for r in inbound if r.linkedid in sim_calls and r.state != "ended"]),
            "outbound_recorded": len(outbound),
            "outbound_dialled_twice": sum(1 for n in originates.values() if n > 1),
        },
        "work_orders": {"created": len(orders), "found": int(made or 0)},
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--instances", type=int, default=3)
    p.add_argument("--rate", type=float, default=20.0, help="device events per second")
    p.add_argument("--fault-every", type=float, default=20.0, help="seconds between faults")
    p.add_argument("--round-robin", action="store_true", help="faults in turn rather than at random")
    p.add_argument("--drain-s", type=float, default=120.0, help="how long to wait for the backlog after the faults")
    p.add_argument("--elders", type=int, default=60)
    p.add_argument("--providers", type=int, default=20)
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--seed", type=int, default=12349)
    p.add_argument(
        "--pg-admin",
        default=os.environ.get("HOTLINE_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL URL allowed to create and drop a database",
    )
    return p


if __name__ == "__main__":
    sys.exit(asyncio.run(main(_parser().parse_args())))
