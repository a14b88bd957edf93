"""Redis clients from ``HOTLINE_REDIS_URL``: a plain server, or a master found through Sentinel.

``redis+sentinel://[:password@]host:26379,host:26380/mymaster/0`` asks the sentinels for
``mymaster`` and connects to it; redis-py's Sentinel pool re-asks on every new connection, and a
demoted master's connections fail (Sentinel kills them, or they answer READONLY and are
dropped), so after a failover every client follows the new master on its next command.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import RedisError

from hotline.errors import ConfigError

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    password: str | None


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The parts of a ``redis+sentinel://`` URL; :class:`ConfigError` naming what is wrong."""
    rest = url.strip().removeprefix(f"{SENTINEL_SCHEME}://")
    netloc, _, path = rest.partition("/")
    password: str | None = None
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        password = unquote(userinfo.partition(":")[2]) or None
    sentinels: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if not host:
            raise ConfigError(f"a sentinel address in {url!r} has no host: {item!r}")
        try:
            sentinels.append((host.strip("[]"), int(port) if port else SENTINEL_PORT))
        except ValueError:
            raise ConfigError(f"a sentinel address in {url!r} has an invalid port: {item!r}") from None
    service, _, db = path.strip("/").partition("/")
    if not service:
        raise ConfigError(f"{url!r} names no master: redis+sentinel://host:26379,host:26380/mymaster/0")
    try:
        number = int(db) if db else 0
    except ValueError:
        raise ConfigError(f"{url!r} has an invalid database number: {db!r}") from None
    return SentinelTarget(tuple(sentinels), service, number, password)


def redis_client(url: str, **kwargs: Any) -> aioredis.Redis:
    """A client for ``url``; ``kwargs`` are the connection options (timeouts, health checks).
    Close it with :func:`close_redis`, which also closes the sentinel connections."""
    if not url.startswith(f"{SENTINEL_SCHEME}://"):
        return aioredis.from_url(url, **kwargs)
    target = parse_sentinel_url(url)
    # The sentinels get the same timeouts, so asking them for the master cannot hang either.
    sentinel_kwargs = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs, **kwargs)  # type: ignore[no-untyped-call]
    client: aioredis.Redis = sentinel.master_for(target.service, db=target.db, password=target.password)
    return client


async def close_redis(client: aioredis.Redis) -> None:
    pool = client.connection_pool
    await client.aclose()
    if isinstance(pool, SentinelConnectionPool):
        with contextlib.suppress(RedisError, OSError):
            await pool.sentinel_manager.aclose()
