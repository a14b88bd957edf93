"""PostgreSQL away for 20 s in the middle of a stream of alarms (issue 15, item 2), on a
PostgreSQL server of the test's own (initdb on a free port), stopped with ``pg_ctl stop -m
fast`` and started again.

- While it is away nothing is acknowledged: an ack means stored, and nothing is stored.
- The API answers 503 with Retry-After at once instead of hanging; /readyz says why.
- When it is back every alarm is stored exactly once and acknowledged, including those that
  arrived meanwhile: the broker held them, since we had not acknowledged them. The
  ``killed`` case proves it is the broker that held them: the backend is SIGKILLed during the
  outage and restarted after it, with nothing of the stream in its memory.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from hotline.localsvc import free_port
from hotline.storage.models import DeviceEventRecord
from tests.conftest import MQTT_PORT, auth
from tests.helpers import BackendProcess, DeviceClient, eventually, metric_families

# Its PostgreSQL is its own, whichever database the suite runs on.
pytestmark = [pytest.mark.e2e, pytest.mark.one_database]

EVENTS = 300
STOP_AT = 60
STALL_S = 20.0
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/usr/lib/postgresql/15/bin"))


class PrivatePostgres:
    """A PostgreSQL cluster of our own, run as the ``postgres`` user (initdb refuses root)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hotline-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(PG_BIN / "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @staticmethod
    def _cmd(*argv: str | Path) -> list[str]:
        cmd = [str(a) for a in argv]
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def _run(self, *argv: str | Path) -> None:
        subprocess.run(self._cmd(*argv), check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-o", opts, "-l", self.root / "log", "-w", "start")

    def stop(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        cmd = self._cmd(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "stop")
        subprocess.run(cmd, capture_output=True, timeout=30, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL's initdb is not at {PG_BIN} (apt-get install postgresql; ./dev test does)")
    pg = PrivatePostgres()
    pg.start()
    yield pg
    pg.remove()


async def _stored(url: str) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(DeviceEventRecord)) or 0)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend_during_outage", ["alive", "killed"])
async def test_a_database_away_for_20_s_loses_nothing_and_answers_503_meanwhile(
    env: dict[str, str], tmp_path: Path, private_pg: PrivatePostgres, backend_during_outage: str
) -> None:
    backend = BackendProcess(
        {
            **env,
            "HOTLINE_DATABASE_URL": private_pg.url,
            "HOTLINE_LOG_LEVEL": "WARNING",
            # The backlog reaches the gateway as one burst when the database returns; the
            # per-device limiter would answer part of it "retry" (tested elsewhere), not store it.
            "HOTLINE_DEVICE_EVENT_RATE": "1000",
            "HOTLINE_DEVICE_EVENT_BURST": "1000",
        },
        tmp_path / "backend.log",
    )
    backend.cli("db", "upgrade")
    admin = backend.cli("user", "add", "admin", "--role", "admin")
    await backend.start()
    prefix = env["HOTLINE_MQTT_PREFIX"]
    async with aiohttp.ClientSession(headers=auth(admin)) as http:
        async with http.post(f"{backend.url}/api/v1/elders", json=_ELDER) as r:
            elder_id = (await r.json())["id"]
        async with http.post(
            f"{backend.url}/api/v1/devices", json={"device_id": "WCH900001", "kind": "watch", "elder_id": elder_id}
        ) as r:
            assert r.status == 201, await r.text()
        device = await DeviceClient(MQTT_PORT, prefix, "WCH900001", asyncio.get_running_loop()).ready()
        acks: list[tuple[float, dict[str, Any]]] = []  # (monotonic time it came, the ack)

        def drain() -> None:
            while not device.acks.empty():
                acks.append(device.acks.get_nowait())

        stopped_at = started_at = 0.0
        answered_in: list[float] = []
        for n in range(EVENTS):
            drain()
            if n == STOP_AT:
                await asyncio.to_thread(private_pg.stop)
                stopped_at = time.monotonic()
                if backend_during_outage == "killed":
                    await asyncio.sleep(2.0)  # let it take in what it will, then cut its power
                    backend.kill()
                else:
                    # The API answers at once, 503 with Retry-After, instead of hanging on the pool.
                    t0 = time.monotonic()
                    async with http.get(f"{backend.url}/api/v1/incidents") as r:
                        answered_in.append(time.monotonic() - t0)
                        assert r.status == 503, await r.text()
                        assert r.headers["Retry-After"] == "5"
                    async with http.get(f"{backend.url}/readyz") as r:
                        assert r.status == 503 and (await r.json())["checks"]["database"].startswith("error")
            if stopped_at and not started_at and time.monotonic() - stopped_at >= STALL_S:
                await asyncio.to_thread(private_pg.start)
                started_at = time.monotonic()
                if backend_during_outage == "killed":
                    await backend.start()
            kind = "sos" if n % 50 == 0 else "test"
            device.publish({"event_id": f"st-{n}", "type": kind, "ts": int(time.time() * 1000)})
            await asyncio.sleep(STALL_S * 1.5 / EVENTS)
        assert started_at, "the stream ended before the database came back"

        async def all_acked() -> bool:
            drain()
            return len({a["event_id"] for _, a in acks}) >= EVENTS

        await eventually(all_acked, timeout=60, every=0.2)
        device.close()
        outcomes = (await metric_families(http, backend.url)).get("hotline_gateway_messages_total", {})
    backend.stop()

    # The outage was waited out, not counted against the messages: nothing parked, and (for the
    # backend that lived through it) the alarms waited inside the store until it came back.
    assert outcomes.get("outcome=parked", 0) == 0, outcomes
    if backend_during_outage == "alive":
        assert outcomes.get("outcome=store_retries", 0) > 0, outcomes

    assert answered_in == [] or max(answered_in) < 3.0, f"the API took {answered_in} s to answer"
    # Not one "accepted" while the database was away: an ack means stored.
    during = [(a["event_id"], a["status"]) for when, a in acks if stopped_at + 1.0 < when and when < started_at - 0.5]
    assert during == [], f"acknowledged while the database was away: {during[:5]}"
    refused = [a for _, a in acks if a["status"] not in ("accepted", "duplicate")]
    assert refused == [], f"{len(refused)} refused, first: {refused[:3]}"
    assert await _stored(private_pg.url) == EVENTS
    engine = create_async_engine(private_pg.url)
    try:
        async with engine.connect() as conn:
            distinct = await conn.scalar(select(func.count(func.distinct(DeviceEventRecord.event_id))))
    finally:
        await engine.dispose()
    assert distinct == EVENTS


_ELDER = {
    "name": "孙阿桂",
    "gender": "F",
    "birth_date": "1939-03-03",
    "address": "余姚市凤山街道",
    "lat": 30.05,
    "lon": 121.16,
    "care_level": "mild",
    "living_situation": "alone",
}
