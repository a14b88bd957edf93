"""Telephony benchmark. Run: ``.venv/bin/python benchmarks/bench_telephony.py``

Measures, in one run:
1. events per second through the full AMI path (our link on panoramisk, typed events, the
   call tracker), against a bare panoramisk ``Manager`` counting the events of the same
   byte stream from the same simulator in the same process (the ratio is the figure);
2. screen-pop latency, from the simulator writing ``AgentCalled`` to the operator's
   WebSocket receiving ``call.ringing``, with 50 calls ringing at once, then again while
   the simulator sends 2,000 background events per second.

The backend, the simulator and the WebSocket clients share one process and one event
loop, so the latency figures include their competition for it: a pessimistic setting.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import secrets
import sys
import time
from datetime import date
from pathlib import Path

import aiohttp
from panoramisk import Manager

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import backend, environment, machine, pct
from hotline.auth import hash_token
from hotline.core.targets import AmiTarget
from hotline.localsvc import free_port
from hotline.storage.db import make_engine, make_sessionmaker
from hotline.storage.models import Elder, User
from hotline.telephony.events import AmiEvent
from hotline.telephony.frames import FrameReader, encode_frame
from hotline.telephony.link import AmiLink
from hotline.telephony.tracker import CallTracker
from simulators.asterisk import AsteriskSim

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "answered-call.ami"


def recorded_stream(calls: int) -> tuple[bytes, int]:
    """The recorded Asterisk call, repeated with fresh channel ids; returns (bytes, events)."""
    frames = [f for f in FrameReader().feed(FIXTURE.read_bytes()) if "Event" in f and f["Event"] != "FullyBooted"]
    template = b"".join(encode_frame(list(f.items())) for f in frames)
    parts = [
        template.replace(b"1795352680.2", f"7{i:09d}.1".encode()).replace(b"1795352681.3", f"7{i:09d}.2".encode())
        for i in range(calls)
    ]
    return b"".join(parts), len(frames) * calls


async def _until(predicate: object, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step did not finish in time")
        await asyncio.sleep(0.001)


async def _bare_rate(stream: bytes, expected: int) -> float:
    sim = AsteriskSim()
    await sim.start()
    counted = [0]

    def count(_m: Manager, _e: object) -> None:
        counted[0] += 1

    m = Manager(
        loop=asyncio.get_running_loop(),
        host="127.0.0.1",
        port=sim.port,
        username="hotline",
        secret="hotline",
        ping_delay=3600,
    )
    m.register_event("*", count)
    await m.connect()
    await _until(lambda: sim.connected == 1 and m.authenticated, 5)
    counted[0] = 0
    started = time.perf_counter()
    await sim.send_raw(stream)
    await _until(lambda: counted[0] >= expected, 120)
    elapsed = time.perf_counter() - started
    m.close()
    await sim.stop()
    return expected / elapsed


async def _full_rate(stream: bytes, expected: int) -> tuple[float, int]:
    sim = AsteriskSim()
    await sim.start()
    counted, ended = [0], [0]
    tracker = CallTracker(queues=frozenset({"12349"}))

    def track(e: AmiEvent) -> None:
        counted[0] += 1
        ended[0] += sum(1 for c in tracker.feed(e) if c.kind == "ended")

    link = AmiLink(AmiTarget("127.0.0.1", sim.port, "hotline", "hotline"), ping_interval_s=3600)
    link.subscribe(track)
    link.start()
    await link.wait_ready(5)
    counted[0] = 0
    started = time.perf_counter()
    await sim.send_raw(stream)
    await _until(lambda: counted[0] >= expected, 120)
    elapsed = time.perf_counter() - started
    await link.close()
    await sim.stop()
    return expected / elapsed, ended[0]


async def throughput(calls: int) -> None:
    stream, expected = recorded_stream(calls)
    bare: list[float] = []
    full: list[float] = []
    for _ in range(2):
        bare.append(await _bare_rate(stream, expected))
        print(f"  bare panoramisk  {expected:>8,} events: {bare[-1]:>9,.0f} events/s")
        rate, ended = await _full_rate(stream, expected)
        full.append(rate)
        print(f"  full tracker     {expected:>8,} events: {rate:>9,.0f} events/s, {ended:,} calls tracked to the end")
    print(f"  ratio full / bare (best of two each): {max(full) / max(bare):.2f}")


async def screen_pops(operators: int, rounds: int, noise: float) -> None:
    sim = AsteriskSim(members=[f"op{1001 + i}" for i in range(operators)])
    await sim.start()
    written: dict[str, float] = {}

    def on_emit(event: str, headers: dict[str, str]) -> None:
        if event == "AgentCalled":
            written.setdefault(headers["Linkedid"], time.perf_counter())

    sim.on_emit = on_emit
    port = free_port()
    async with environment(http_port=port) as (base, _mqtt, _work):
        settings = dataclasses.replace(base, ami=AmiTarget("127.0.0.1", sim.port, "hotline", "hotline"))
        tokens = await _seed(settings.database_url, operators)
        async with backend(settings) as app, aiohttp.ClientSession() as http:
            from hotline.api.keys import SERVICES

            tel = app[SERVICES].telephony
            assert tel is not None
            await tel.link.wait_ready(10)
            sockets = [await http.ws_connect(f"http://127.0.0.1:{port}/api/v1/ws?token={t}") for t in tokens]
            for ws in sockets:
                await ws.receive_json()
            for label, rate in (("50 calls in flight", 0.0), (f"50 calls in flight + {noise:,.0f} events/s", noise)):
                latencies: list[float] = []
                noise_task = sim.spawn(sim.run_noise(rate, duration_s=3600)) if rate else None
                await asyncio.sleep(0.5 if rate else 0)
                for _round in range(rounds):
                    gate = asyncio.Event()
                    calls = [
                        sim.spawn(
                            sim.inbound_call(
                                f"1380000{k:04d}", "张三", rings=[[f"op{1001 + k}"]], answer_gate=gate, talk_s=0.1
                            )
                        )
                        for k in range(operators)
                    ]
                    got = await asyncio.gather(*(_ringing(ws) for ws in sockets))
                    now = time.perf_counter()
                    latencies += [(t - written[lid]) * 1000 for lid, t in got]
                    assert all(lid in written for lid, _ in got), now
                    gate.set()
                    await asyncio.gather(*calls)
                    for ws in sockets:
                        await _drain(ws)
                if noise_task is not None:
                    noise_task.cancel()
                print(
                    f"  {label:34s} pops={len(latencies)} p50={pct(latencies, 50):6.1f} ms "
                    f"p99={pct(latencies, 99):6.1f} ms max={max(latencies):6.1f} ms"
                )
            for ws in sockets:
                await ws.close()
    await sim.stop()


async def _ringing(ws: aiohttp.ClientWebSocketResponse) -> tuple[str, float]:
    while True:
        msg = await ws.receive_json(timeout=30)
        if msg["type"] == "call.ringing":
            return msg["call"]["linkedid"], time.perf_counter()


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        try:
            msg = await ws.receive_json(timeout=0.3)
        except TimeoutError:
            return
        if msg["type"] == "call.ended":
            return


async def _seed(db_url: str, operators: int) -> list[str]:
    engine = make_engine(db_url)
    sm = make_sessionmaker(engine)
    tokens = [f"bench-{secrets.token_hex(8)}" for _ in range(operators)]
    async with sm() as session, session.begin():
        for k, token in enumerate(tokens):
            session.add(User(name=f"op{k}", role="operator", token_hash=hash_token(token), extension=f"op{1001 + k}"))
            session.add(
                Elder(
                    name="张三",
                    gender="M",
                    birth_date=date(1940, 1, 1),
                    address="余姚",
                    lat=30.0,
                    lon=121.1,
                    phones=[f"1380000{k:04d}"],
                    care_level="severe",
                    economic_category="none",
                    living_situation="alone",
                )
            )
    await engine.dispose()
    return tokens


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=3000, help="recorded calls in the throughput stream")
    p.add_argument("--rounds", type=int, default=10, help="rounds of 50 simultaneous pops")
    p.add_argument("--noise", type=float, default=2000.0, help="background events per second")
    args = p.parse_args()
    print(f"machine: {machine()}")
    print(f"1. AMI throughput, {args.calls:,} recorded calls")
    await throughput(args.calls)
    print("2. screen-pop latency, AgentCalled written -> call.ringing received")
    await screen_pops(50, args.rounds, args.noise)


if __name__ == "__main__":
    asyncio.run(main())
