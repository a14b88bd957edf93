"""Presence in Redis: one sorted set of deadlines instead of a timer per device.

Theory of operation. Every sign of life pushes the device's deadline (last seen + its
heartbeat timeout) in ``{p}:deadline``. A sweeper pops what is past due. Both steps run as
Lua scripts, so each online/offline *transition* happens exactly once across any number of
backend instances: the instance whose script flipped the state is the one that announces
it. A device that went offline is also put in ``{p}:maint`` with the time at which a
maintenance incident should open if it has not come back.

Heartbeats are buffered and flushed every 100 ms in one script call, so 100,000 devices cost
a few Redis round trips a second, not one per message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis

from devices.presence import Damping

_TOUCH = """
local now = ARGV[1]
local out = {}
for i = 2, #ARGV, 2 do
  local d = ARGV[i]
  redis.call('HSET', KEYS[1], d, now)
  redis.call('ZADD', KEYS[2], ARGV[i + 1], d)
  local st = redis.call('HGET', KEYS[3], d)
  if st ~= 'online' then
    redis.call('HSET', KEYS[3], d, 'online')
    redis.call('ZREM', KEYS[4], d)
    table.insert(out, d)
    table.insert(out, st or 'unknown')
  end
end
return out
"""

_EXPIRE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, d in ipairs(due) do
  redis.call('ZREM', KEYS[1], d)
  if redis.call('HGET', KEYS[2], d) == 'online' then
    redis.call('HSET', KEYS[2], d, 'offline')
    redis.call('ZADD', KEYS[3], tonumber(ARGV[1]) + tonumber(ARGV[3]), d)
    table.insert(out, d)
  end
end
return out
"""

_POP_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, d in ipairs(due) do redis.call('ZREM', KEYS[1], d) end
return due
"""


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class PresenceStore:
    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        p = f"{prefix}:presence"
        self.k_seen, self.k_deadline, self.k_state = f"{p}:seen", f"{p}:deadline", f"{p}:state"
        self.k_maint, self.k_damping, self.k_last = f"{p}:maint", f"{p}:damping", f"{p}:last"
        self.k_steps, self.k_inactive = f"{p}:steps", f"{p}:inactive"
        self._touch = redis.register_script(_TOUCH)
        self._expire = redis.register_script(_EXPIRE)
        self._pop = redis.register_script(_POP_DUE)

    async def touch(self, deadlines: dict[str, float], now: float) -> list[tuple[str, str]]:
        """Record signs of life; returns ``(device_id, previous_state)`` for each device that came online."""
        if not deadlines:
            return []
        args: list[Any] = [now]
        for device_id, deadline in deadlines.items():
            args += [device_id, deadline]
        keys = [self.k_seen, self.k_deadline, self.k_state, self.k_maint]
        flat = [_s(v) for v in await self._touch(keys=keys, args=args)]
        return list(zip(flat[0::2], flat[1::2], strict=True))

    async def offline_hint(self, device_id: str, at: float) -> None:
        """A Last Will or an ``offline`` status: pull the deadline in (never push it out)."""
        await self.redis.zadd(self.k_deadline, {device_id: at}, lt=True)

    async def expire(self, now: float, *, maint_after_s: float, limit: int = 1000) -> list[str]:
        """Devices whose deadline passed and that this call moved to offline."""
        out = await self._expire(keys=[self.k_deadline, self.k_state, self.k_maint], args=[now, limit, maint_after_s])
        return [_s(v) for v in out]

    async def pop_due(self, key: str, now: float, limit: int = 1000) -> list[str]:
        return [_s(v) for v in await self._pop(keys=[key], args=[now, limit])]

    async def state(self, device_id: str) -> dict[str, Any]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self.k_state, device_id)
        pipe.hget(self.k_seen, device_id)
        pipe.zscore(self.k_deadline, device_id)
        pipe.hget(self.k_last, device_id)
        st, seen, deadline, last = await pipe.execute()
        return {
            "state": _s(st) if st else "unknown",
            "last_seen": float(seen) if seen else None,
            "deadline": deadline,
            "last_telemetry": json.loads(last) if last else None,
        }

    async def online_within(self, window_s: float) -> int:
        seen = await self.redis.hvals(self.k_seen)
        cutoff = time.time() - window_s
        return sum(1 for ts in seen if float(ts) >= cutoff)

    async def damping(self, device_id: str) -> Damping:
        return Damping.decode(await self.redis.hget(self.k_damping, device_id))

    async def set_damping(self, device_id: str, value: Damping) -> None:
        await self.redis.hset(self.k_damping, device_id, value.encode())

    async def save_telemetry(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for device_id, snapshot in items:
            pipe.hset(self.k_last, device_id, json.dumps(snapshot, default=str))
        await pipe.execute()

    async def swap_steps(self, device_id: str, steps: int) -> int | None:
        """Store today's step count; returns the previous one."""
        pipe = self.redis.pipeline(transaction=False)  # one round trip on the telemetry path
        pipe.hget(self.k_steps, device_id)
        pipe.hset(self.k_steps, device_id, steps)
        old, _ = await pipe.execute()
        return int(old) if old is not None else None

    async def arm_inactivity(self, device_id: str, due: float) -> None:
        await self.redis.zadd(self.k_inactive, {device_id: due})
