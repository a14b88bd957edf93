"""Console sign-in: argon2id passwords, cookie sessions, CSRF tokens and a failed-login limit.

A browser signs in once and then carries an HttpOnly, SameSite=Strict cookie; machines keep
using bearer tokens. Only the SHA-256 of a session token is stored, like bearer tokens. The
CSRF token is derived from the session token with a keyed hash, so it needs no column and
cannot be computed by a script that cannot read the HttpOnly cookie.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from hotline.auth import hash_token
from hotline.storage.models import User, WebSession

log = logging.getLogger(__name__)

SESSION_COOKIE = "hotline_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL = timedelta(hours=12)  # one shift and its handover
MIN_PASSWORD = 8

_HASHER = PasswordHasher()  # argon2id with the library's current recommended cost
# Verified against when the user does not exist, so an unknown name costs what a wrong
# password costs and the response time does not tell which names exist.
_DUMMY = _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def csrf_of(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"hotline-csrf", hashlib.sha256).hexdigest()


def csrf_ok(session_token: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(csrf_of(session_token), presented)


async def start_session(session: AsyncSession, user: User, now: datetime) -> tuple[str, datetime]:
    """A new session for ``user``; returns the cookie's token (shown once) and its expiry."""
    token = "hs_" + secrets.token_urlsafe(32)
    expires = now + SESSION_TTL
    # Expired sessions go whenever someone signs in: no sweeper task to own.
    await session.execute(delete(WebSession).where(WebSession.expires_at < now))
    session.add(WebSession(token_hash=hash_token(token), user_id=user.id, created_at=now, expires_at=expires))
    return token, expires


async def session_user(session: AsyncSession, token: str, now: datetime) -> User | None:
    row = await session.execute(
        select(User)
        .join(WebSession, WebSession.user_id == User.id)
        .where(WebSession.token_hash == hash_token(token), WebSession.expires_at > now)
    )
    return row.scalar_one_or_none()


async def end_session(session: AsyncSession, token: str) -> None:
    await session.execute(delete(WebSession).where(WebSession.token_hash == hash_token(token)))


@dataclass
class LoginThrottle:
    """At most ``limit`` failed sign-ins per name, and ``address_limit`` per address, in
    ``window_s``. The address limit is higher: a whole call centre may sit behind one NAT.

    Counted in Redis, so every instance behind the balancer shares the count; while Redis
    is down each instance counts on its own, which still bounds a guessing run.
    """

    redis: Redis | None
    prefix: str = "hotline"
    limit: int = 5
    address_limit: int = 50
    window_s: int = 900
    _local: dict[str, deque[float]] = field(default_factory=dict)

    @property
    def _limits(self) -> tuple[int, int]:
        return self.limit, self.address_limit

    def _keys(self, username: str, address: str) -> list[str]:
        name = hashlib.sha256(username.lower().encode()).hexdigest()[:24]  # no names in Redis keys
        return [f"{self.prefix}:login-fail:user:{name}", f"{self.prefix}:login-fail:addr:{address}"]

    async def retry_after(self, username: str, address: str) -> int:
        """Seconds until another try is allowed; 0 when it is allowed now."""
        keys = self._keys(username, address)
        if self.redis is not None:
            try:
                waits = []
                for key, limit in zip(keys, self._limits, strict=True):
                    count = int(await self.redis.get(key) or 0)
                    if count >= limit:
                        waits.append(max(1, int(await self.redis.ttl(key))))
                return max(waits, default=0)
            except RedisError as exc:
                log.warning("login throttle: redis unavailable (%s); counting locally", exc)
        now = time.monotonic()
        waits = []
        for key, limit in zip(keys, self._limits, strict=True):
            q = self._local.get(key)
            while q and q[0] <= now - self.window_s:
                q.popleft()
            if q and len(q) >= limit:
                waits.append(max(1, int(q[0] + self.window_s - now)))
        return max(waits, default=0)

    async def failed(self, username: str, address: str) -> None:
        keys = self._keys(username, address)
        if self.redis is not None:
            try:
                for key in keys:
                    if await self.redis.incr(key) == 1:
                        await self.redis.expire(key, self.window_s)
                return
            except RedisError as exc:
                log.warning("login throttle: redis unavailable (%s); counting locally", exc)
        now = time.monotonic()
        for key in keys:
            self._local.setdefault(key, deque(maxlen=self.address_limit)).append(now)
        if len(self._local) > 10_000:  # bounded memory under a spray of names
            self._local.clear()

    async def succeeded(self, username: str) -> None:
        key = self._keys(username, "-")[0]
        self._local.pop(key, None)
        if self.redis is not None:
            with contextlib.suppress(RedisError):
                await self.redis.delete(key)
