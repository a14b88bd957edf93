"""The Redis presence scripts: each transition happens once, whoever races for it."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from devices.presence_store import PresenceStore
from tests.conftest import REDIS_URL


@pytest.fixture
async def store() -> AsyncIterator[PresenceStore]:
    r = aioredis.from_url(REDIS_URL)
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield PresenceStore(r, prefix)
    keys = [k async for k in r.scan_iter(f"{prefix}:*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()


async def test_touch_reports_only_real_transitions(store: PresenceStore) -> None:
    assert await store.touch({"A": 110.0, "B": 110.0}, 100.0) == [("A", "unknown"), ("B", "unknown")]
    assert await store.touch({"A": 120.0}, 110.0) == []  # already online
    assert await store.expire(115.0, maint_after_s=60) == ["B"]
    assert await store.expire(116.0, maint_after_s=60) == []  # once only
    assert await store.touch({"B": 200.0}, 150.0) == [("B", "offline")]
    assert await store.pop_due(store.k_maint, 1000.0) == []  # B came back: no maintenance incident


async def test_concurrent_sweepers_split_the_expired_devices_without_overlap(store: PresenceStore) -> None:
    await store.touch({f"D{n}": 10.0 for n in range(3000)}, 0.0)
    results = await asyncio.gather(*(store.expire(20.0, maint_after_s=5, limit=200) for _ in range(40)))
    flat = [d for batch in results for d in batch]
    assert len(flat) == len(set(flat)) == 3000
    due = await asyncio.gather(*(store.pop_due(store.k_maint, 30.0, limit=500) for _ in range(10)))
    popped = [d for batch in due for d in batch]
    assert len(popped) == len(set(popped)) == 3000


async def test_a_last_will_only_pulls_the_deadline_in(store: PresenceStore) -> None:
    await store.touch({"W": 1000.0}, 0.0)
    await store.offline_hint("W", 30.0)
    assert await store.redis.zscore(store.k_deadline, "W") == 30.0
    await store.offline_hint("W", 500.0)  # a later hint never postpones
    assert await store.redis.zscore(store.k_deadline, "W") == 30.0
    assert await store.expire(31.0, maint_after_s=60) == ["W"]
