"""Redis Sentinel (issue 15, item 2): a real master, a replica and three ``redis-sentinel``
processes on loopback; the master is SIGKILLed in the middle of a stream of device events.

Nothing is lost (every event stored once and acknowledged, every one on the operator's
console once), and the backend follows the new master: its console messages are written to
the promoted replica's log, and /readyz is green again with Redis and the console bus.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.api.keys import SERVICES
from hotline.errors import ConfigError
from hotline.localsvc import Child, start_redis, start_sentinel
from hotline.storage.models import DeviceEventRecord
from hotline.storage.redisconn import close_redis, parse_sentinel_url, redis_client
from tests.conftest import Running
from tests.helpers import Feed, eventually
from tests.test_console_bus import _seed

SERVICE = "mymaster"
EVENTS = 200
KILL_AT = 60


class Cluster:
    def __init__(self, master: int, replica: int, sentinels: list[int], children: list[Child]) -> None:
        self.master, self.replica, self.sentinels, self.children = master, replica, sentinels, children

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinels) + f"/{SERVICE}/0"

    async def master_port(self) -> int:
        client = aioredis.Redis(port=self.sentinels[0], socket_timeout=2)
        try:
            _host, port = await client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            return int(port)
        finally:
            await client.aclose()


async def _info(port: int, section: str) -> dict[str, object]:
    client = aioredis.Redis(port=port, socket_timeout=2)
    try:
        info: dict[str, object] = await client.info(section)
        return info
    finally:
        await client.aclose()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    children: list[Child] = []
    try:
        master, child = await start_redis(tmp_path)
        children.append(child)
        replica, child = await start_redis(tmp_path, replica_of=master)
        children.append(child)
        sentinels = []
        for _ in range(3):
            port, child = await start_sentinel(tmp_path, master)
            children.append(child)
            sentinels.append(port)

        async def formed() -> bool:
            if (await _info(replica, "replication")).get("master_link_status") != "up":
                return False
            for port in sentinels:  # each sentinel has found the replica and the two others
                state = (await _info(port, "sentinel")).get("master0")
                if not isinstance(state, dict) or int(state["slaves"]) < 1 or int(state["sentinels"]) < 3:
                    return False
            return True

        await eventually(formed, timeout=30, every=0.2)
        yield Cluster(master, replica, sentinels, children)
    finally:
        for child in reversed(children):
            child.stop()


def test_sentinel_urls_are_parsed_and_bad_ones_named() -> None:
    target = parse_sentinel_url("redis+sentinel://:s3cret@10.0.0.1:26379,[::1]:26380,sentinel-c/mymaster/2")
    assert target.sentinels == (("10.0.0.1", 26379), ("::1", 26380), ("sentinel-c", 26379))
    assert (target.service, target.db, target.password) == ("mymaster", 2, "s3cret")
    assert parse_sentinel_url("redis+sentinel://h:1/m").db == 0
    for bad, says in [
        ("redis+sentinel://h:1", "names no master"),
        ("redis+sentinel://h:x/m/0", "invalid port"),
        ("redis+sentinel://h:1/m/zero", "invalid database"),
        ("redis+sentinel://:1/m/0", "no host"),
    ]:
        with pytest.raises(ConfigError, match=says):
            parse_sentinel_url(bad)


async def test_a_master_killed_mid_stream_loses_nothing_and_the_backend_follows_the_new_master(
    cluster: Cluster,
    start_backend: Callable[..., Awaitable[Running]],
    http: aiohttp.ClientSession,
    sm: async_sessionmaker[AsyncSession],
) -> None:
    backend = await start_backend(redis_url=cluster.url)
    bus = backend.app[SERVICES].bus
    op, device = await _seed(backend, http, "WCH700001")
    async with http.ws_connect(f"{backend.url}/api/v1/ws?token={op}") as ws:
        feed = Feed(ws)
        await feed.wait_for("hello")
        killed_at = 0.0
        for n in range(EVENTS):
            if n == KILL_AT:
                cluster.children[0].proc.kill()  # SIGKILL: no goodbye to clients or sentinels
                cluster.children[0].proc.wait(5)
                killed_at = time.time()
            device.publish({"event_id": f"s-{n}", "type": "test", "ts": int(time.time() * 1000)})
            await asyncio.sleep(0.05)

        assert await eventually(cluster.master_port, timeout=30) == cluster.replica
        acks = [await device.next_ack(timeout=20) for _ in range(EVENTS)]
        assert {a["event_id"] for a in acks} == {f"s-{n}" for n in range(EVENTS)}
        assert {a["status"] for a in acks} == {"accepted"}

        async def green() -> bool:
            async with http.get(f"{backend.url}/readyz") as r:
                body = await r.json()
                return r.status == 200 and body["checks"]["redis"] == body["checks"]["console_bus"] == "ok"

        await eventually(green, timeout=30, every=0.2)
        # One more after the failover has settled: it must travel through the new master.
        device.publish({"event_id": "after", "type": "test", "ts": int(time.time() * 1000)})
        last = await feed.wait_for("device.test", event_id="after", timeout=10)
        await feed.drain(1.0)
        seen = [m["event_id"] for m in feed.seen if m["type"] == "device.test"]
    # Every event reached the console once: in the gap by local delivery, otherwise through Redis.
    assert sorted(seen) == sorted(f"s-{n}" for n in range(EVENTS))
    promoted = aioredis.Redis(port=cluster.replica, socket_timeout=2)
    try:
        assert (await promoted.info("replication"))["role"] == "master"
        logged = await promoted.xrange(bus.log_key, min=last["seq"], max=last["seq"])  # type: ignore[union-attr]
        assert len(logged) == 1
        assert int(last["seq"].split("-")[0]) > killed_at * 1000
    finally:
        await promoted.aclose()
    async with sm() as s:
        stored = await s.scalar(select(func.count()).select_from(DeviceEventRecord))
        distinct = await s.scalar(select(func.count(func.distinct(DeviceEventRecord.event_id))))
    assert stored == distinct == EVENTS + 1
    device.close()


async def test_a_plain_redis_url_still_gives_a_plain_client() -> None:
    client = redis_client("redis://127.0.0.1:6379/3", socket_connect_timeout=1)
    try:
        assert client.connection_pool.connection_kwargs["db"] == 3
        assert await client.ping()
    finally:
        await close_redis(client)
