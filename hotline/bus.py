"""The console event bus on Redis, so every backend instance's WebSocket clients see every
event, whichever instance produced it.

Theory of operation. A publish is one Lua call that appends the message to a capped
stream (the replay log) and PUBLISHes it with the stream id as its ``seq``. An event for
the console is never dropped in silence:

* when this instance is not subscribed (Redis down, or the subscriber still reconnecting),
  the message is also delivered to this instance's own listeners;
* when PUBLISH reports no receiver at all, even though we think we are subscribed, our
  subscription is stale: deliver locally as well;
* a console that reconnects names the last ``seq`` it saw and is sent what it missed
  from the log (:meth:`EventBus.since`).

A message can so reach a listener twice (local delivery racing a resubscribe); it keeps
its ``seq``, and the hub drops repeats.

A message whose publish failed (Redis down, or failing over to a new master) reaches this
instance's consoles at once and is *held*; when Redis answers again it is published for
the other instances, marked with this bus's origin so that our own subscriber does not
deliver it here a second time. A pop for an operator whose console is on another instance
is so late by the length of the outage, not lost (held for at most ``HELD_MAX_AGE_S``).
And a subscriber that was away (its connection dropped, Redis failed over) catches up from
the log when it subscribes again: what other instances published meanwhile reached no
subscriber of ours, but it is in the log.

Redis pub/sub ignores the database number: a channel published on ``/0`` reaches
subscribers on ``/7``. The channel name therefore carries the database as well as the
prefix, so two deployments that share a Redis server never see each other's events.

The subscriber is a supervised loop. While it is down it polls Redis every
``RECONNECT_POLL_S`` and resubscribes as soon as Redis answers, instead of sitting out a
long back-off while alarms go by.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import pydantic
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hotline.backoff import backoff_delay
from hotline.core.messages import BUS_MESSAGE
from hotline.errors import HotlineError
from hotline.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]
RECONNECT_POLL_S = 0.2
LOG_LENGTH = 5000  # messages kept for consoles that reconnect
HELD_MAX = 2000  # failed publishes kept for the other instances
HELD_MAX_AGE_S = 60.0  # older than this, a held message is news nobody needs
ORIGIN = "_origin"

# XADD to the log, then PUBLISH "seq json"; returns {seq, receivers}.
_PUBLISH = """
local seq = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[1])
local n = redis.call('PUBLISH', KEYS[2], seq .. ' ' .. ARGV[1])
return {seq, n}
"""


def seq_key(seq: str) -> tuple[int, int]:
    """A stream id ("ms-n") as a sortable pair."""
    ms, _, n = seq.partition("-")
    return int(ms), int(n or 0)


class EventBus:
    def __init__(self, redis: aioredis.Redis, *, prefix: str, strict: bool = False) -> None:
        self.redis = redis
        self.strict = strict
        self.invalid = 0
        db = int(redis.connection_pool.connection_kwargs.get("db", 0) or 0)
        self.channel = f"{prefix}:db{db}:console"
        self.log_key = f"{prefix}:console:log"
        self._listeners: list[Listener] = []
        self._script = redis.register_script(_PUBLISH)
        self.subscribed = asyncio.Event()
        self.fallbacks = 0
        self.local_deliveries = 0
        self.resent = 0
        self.caught_up = 0
        self._origin = uuid.uuid4().hex[:12]
        self._held: deque[tuple[float, dict[str, Any]]] = deque(maxlen=HELD_MAX)
        self._resending = asyncio.Lock()
        self._last_seq: str | None = None  # the newest message our subscriber delivered

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _deliver(self, message: dict[str, Any]) -> None:
        for listener in self._listeners:
            try:
                listener(message)
            except Exception:
                log.exception("console listener failed")

    def check(self, message: dict[str, Any]) -> None:
        """``message`` against its model in :mod:`hotline.core.messages`. A mismatch is a bug
        in the publisher: strict mode raises; otherwise it is logged and still delivered, since
        a console that gets a slightly odd message beats one that misses an alarm."""
        try:
            BUS_MESSAGE.validate_python(message)
        except pydantic.ValidationError as exc:
            self.invalid += 1
            if self.strict:
                raise HotlineError(f"bus message {message.get('type')!r} does not match its model: {exc}") from exc
            log.error("bus message %r does not match its model: %s", message.get("type"), exc)  # noqa: TRY400

    async def publish(self, message: dict[str, Any]) -> None:
        self.check(message)
        data = json.dumps(message, ensure_ascii=False, default=str)
        was_subscribed = self.subscribed.is_set()
        try:
            seq, receivers = await self._script(keys=[self.log_key, self.channel], args=[data, LOG_LENGTH])
        except (RedisError, OSError) as exc:
            raise_if_cancelling()
            self.fallbacks += 1
            log.warning("redis publish failed (%s); delivering locally, held for the other instances", exc)
            self._deliver(message)
            self._held.append((time.monotonic(), message))
            return
        if self._held:
            await self._resend_held()
        if not was_subscribed or int(receivers) == 0:
            # Our own subscriber will not see it: deliver here, or nobody on this instance will.
            self.local_deliveries += 1
            self._deliver({**message, "seq": seq.decode() if isinstance(seq, bytes) else str(seq)})

    def _note_seq(self, seq: str) -> None:
        with contextlib.suppress(ValueError):
            if self._last_seq is None or seq_key(seq) > seq_key(self._last_seq):
                self._last_seq = seq

    async def _catch_up(self) -> None:
        """After a resubscribe: deliver what the log has after the last message we saw (the hub
        drops any that arrive twice, by ``seq``), except what we published and held ourselves."""
        if self._last_seq is None:
            return
        rows: list[Any] = (
            await self.redis.xrange(self.log_key, min=f"({self._last_seq}", max="+", count=LOG_LENGTH) or []
        )
        for raw_id, _fields in rows:
            self._note_seq(_text(raw_id))
        for message, own in self._parse_log(rows):
            if not own:
                self._deliver(message)
        if rows:
            self.caught_up += len(rows)
            log.info("console subscriber caught up %d messages from the log", len(rows))

    async def _resend_held(self) -> None:
        """Publish what failed while Redis was away, for the other instances; our own consoles
        had it at the time, so it carries our origin and our subscriber skips it."""
        if self._resending.locked():
            return  # the publisher or the subscriber is at it already; one is enough, in order
        async with self._resending:
            while self._held:
                held_at, message = self._held.popleft()
                if time.monotonic() - held_at > HELD_MAX_AGE_S:
                    continue
                data = json.dumps({**message, ORIGIN: self._origin}, ensure_ascii=False, default=str)
                try:
                    await self._script(keys=[self.log_key, self.channel], args=[data, LOG_LENGTH])
                except (RedisError, OSError):
                    self._held.appendleft((held_at, message))  # still away: try again later
                    raise_if_cancelling()
                    return
                self.resent += 1

    async def since(self, seq: str, *, limit: int = 1000) -> tuple[list[dict[str, Any]], bool]:
        """Messages after ``seq`` from the log, and whether the log still reaches back that far
        (False: some were trimmed, and the caller should reload its state)."""
        try:
            seq_key(seq)
        except ValueError:
            return [], False
        rows: list[Any] = await self.redis.xrange(self.log_key, min=f"({seq}", max="+", count=limit) or []
        first: list[Any] = await self.redis.xrange(self.log_key, min="-", max="+", count=1) or []
        complete = not first or seq_key(_text(first[0][0])) <= seq_key(seq)
        out = [m for m, _own in self._parse_log(rows)]
        return out, complete and len(rows) < limit

    async def recent(self, limit: int = 500) -> list[dict[str, Any]]:
        """The last ``limit`` messages of the log, newest first (raises if Redis is away)."""
        rows: list[Any] = await self.redis.xrevrange(self.log_key, max="+", min="-", count=limit) or []
        return [m for m, _own in self._parse_log(rows)]

    def _parse_log(self, rows: list[Any]) -> list[tuple[dict[str, Any], bool]]:
        """Log entries as messages with their ``seq``, each with whether this bus held and
        resent it itself; unreadable entries are skipped."""
        out: list[tuple[dict[str, Any], bool]] = []
        for raw_id, fields in rows:
            with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
                message = json.loads(fields[b"m"])
                own = message.pop(ORIGIN, None) == self._origin
                out.append(({**message, "seq": _text(raw_id)}, own))
        return out

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
                if attempt:
                    log.info("redis subscription restored channel=%s", self.channel)
                if self._last_seq is None:  # where we started listening: catch-ups start here
                    tip: list[Any] = await self.redis.xrevrange(self.log_key, max="+", min="-", count=1) or []
                    self._last_seq = _text(tip[0][0]) if tip else "0-0"
                elif attempt:
                    await self._catch_up()
                attempt = 0
                await self._resend_held()
                async for raw in pubsub.listen():
                    if raw.get("type") != "message":
                        continue
                    try:
                        seq, _, data = _text(raw["data"]).partition(" ")
                        message = json.loads(data)
                        self._note_seq(seq)
                        if message.pop(ORIGIN, None) == self._origin:
                            continue  # held and resent by us: our consoles had it at the time
                        self._deliver({**message, "seq": seq})
                    except (ValueError, TypeError, AttributeError):
                        log.warning("ignoring a non-JSON console message")
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                self.subscribed.clear()
                attempt += 1
                log.warning("redis subscription lost (%s); delivering locally until it is back", exc)
            except Exception:
                # A bug here must not end the fan-out for good: log it, and subscribe again.
                raise_if_cancelling()
                attempt += 1
                log.exception("console subscriber failed; subscribing again")
            finally:
                self.subscribed.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await self._wait_for_redis(backoff_delay(attempt, cap_exp=8))

    async def _wait_for_redis(self, at_most_s: float) -> None:
        """Return when Redis answers a PING, or after ``at_most_s``."""
        deadline = time.monotonic() + at_most_s
        while time.monotonic() < deadline:
            await asyncio.sleep(RECONNECT_POLL_S)
            if await self.ping():
                return


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
