"""The console event bus on Redis pub/sub, so every backend instance's WebSocket
clients see every event, whichever instance produced it.

The subscriber is a supervised loop with jittered back-off. When Redis is down, a
publish falls back to this instance's own listeners: operators connected here still see
the alarm, which matters more than perfect fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hotline.backoff import backoff_delay
from hotline.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]


class EventBus:
    def __init__(self, redis: aioredis.Redis, *, prefix: str) -> None:
        self.redis = redis
        self.channel = f"{prefix}:console"
        self._listeners: list[Listener] = []
        self.subscribed = asyncio.Event()
        self.fallbacks = 0

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _deliver(self, message: dict[str, Any]) -> None:
        for listener in self._listeners:
            try:
                listener(message)
            except Exception:
                log.exception("console listener failed")

    async def publish(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, ensure_ascii=False, default=str)
        try:
            await self.redis.publish(self.channel, data)
        except (RedisError, OSError) as exc:
            raise_if_cancelling()
            self.fallbacks += 1
            log.warning("redis publish failed (%s); delivering locally only", exc)
            self._deliver(message)

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    async def run(self) -> None:
        """Subscribe and relay until cancelled, resubscribing after any Redis failure."""
        attempt = 0
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                attempt = 0
                async for raw in pubsub.listen():
                    if raw.get("type") != "message":
                        continue
                    try:
                        self._deliver(json.loads(raw["data"]))
                    except (ValueError, TypeError):
                        log.warning("ignoring a non-JSON console message")
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                self.subscribed.clear()
                delay = backoff_delay(attempt)
                attempt += 1
                log.warning("redis subscription lost (%s); retry in %.1fs", exc, delay)
                await asyncio.sleep(delay)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
