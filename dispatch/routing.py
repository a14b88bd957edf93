"""Routing's engine: where the candidates come from, and the ranking's I/O.

Candidates come from Redis GEO, one sorted set per catalogue service, so a search for a
rare service is never crowded out by a thousand caregivers nearby. Each provider's
ranking attributes sit beside it in a Redis hash. The database stays the source of
truth: :class:`GeoIndex` follows it through an after-commit hook (:class:`GeoSync`), is
rebuilt at start, and when Redis is unreachable the router falls back to a database scan.
The ranking itself is pure, in :mod:`dispatch.ranking`; every ranking is stored.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.catalogue import SERVICES
from dispatch.lifecycle import OFFER
from dispatch.ranking import (
    ProviderInfo,
    Ranking,
    RoadFactorEstimator,
    RoutingPolicy,
    TravelEstimator,
    haversine_m,
    rank,
    settled,
)
from hotline.core.wire import RankedCandidate
from hotline.storage.models import Offer, Provider, RoutingDecision, new_id
from hotline.tasks import raise_if_cancelling, wait_event

log = logging.getLogger(__name__)
# The ranking's value types, for callers that meet them through the router.
__all__ = [
    "GeoIndex",
    "GeoSync",
    "ProviderInfo",
    "Ranking",
    "Router",
    "RoutingPolicy",
    "TravelEstimator",
    "place_offer",
    "store_decision",
]


class GeoIndex:
    """Providers in Redis: ``{prefix}:prov:geo:{service}`` sorted sets and a ``{prefix}:prov:attrs`` hash."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self._geo = f"{prefix}:prov:geo:"
        self._attrs = f"{prefix}:prov:attrs"

    def geo_key(self, service: str) -> str:
        return self._geo + service

    async def upsert(self, providers: Iterable[ProviderInfo]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        n = 0
        for p in providers:
            for service in SERVICES:
                if service in p.services:
                    pipe.geoadd(self.geo_key(service), (p.lon, p.lat, p.id))
                else:
                    pipe.zrem(self.geo_key(service), p.id)
            pipe.hset(self._attrs, p.id, p.dumps())
            n += 1
        if n:
            await pipe.execute()

    async def rebuild(self, sm: async_sessionmaker[AsyncSession], *, chunk: int = 1000) -> int:
        """Re-add every provider from the database, and drop ids the database no longer has."""
        seen: set[str] = set()
        async with sm() as session:
            result = await session.stream_scalars(select(Provider).execution_options(yield_per=chunk))
            batch: list[ProviderInfo] = []
            async for p in result:
                batch.append(ProviderInfo.of(p))
                seen.add(p.id)
                if len(batch) >= chunk:
                    await self.upsert(batch)
                    batch = []
            await self.upsert(batch)
        stale = [k.decode() if isinstance(k, bytes) else k for k in await self.redis.hkeys(self._attrs)]
        stale = [k for k in stale if k not in seen]
        if stale:
            pipe = self.redis.pipeline(transaction=False)
            for service in SERVICES:
                pipe.zrem(self.geo_key(service), *stale)
            pipe.hdel(self._attrs, *stale)
            await pipe.execute()
        return len(seen)

    async def search(
        self, service: str, lat: float, lon: float, radius_m: float, count: int
    ) -> list[tuple[ProviderInfo, float]]:
        hits = await self.redis.geosearch(
            self.geo_key(service),
            longitude=lon,
            latitude=lat,
            radius=radius_m,
            unit="m",
            sort="ASC",
            count=count,
            withdist=True,
        )
        if not hits:
            return []
        pairs: list[Any] = list(hits)
        ids = [h[0].decode() if isinstance(h[0], bytes) else str(h[0]) for h in pairs]
        raw = await self.redis.hmget(self._attrs, ids)
        return [(ProviderInfo.loads(r), float(h[1])) for h, r in zip(pairs, raw, strict=True) if r is not None]


class Router:
    """Ranks providers for one service at one place. Stateless apart from its seams."""

    def __init__(
        self,
        geo: GeoIndex | None,
        sm: async_sessionmaker[AsyncSession],
        *,
        estimator: TravelEstimator | None = None,
        policy: RoutingPolicy | None = None,
    ) -> None:
        self.geo = geo
        self._sm = sm
        self.estimator = estimator or RoadFactorEstimator()
        self.policy = policy or RoutingPolicy()
        self.fallbacks = 0

    async def rank(
        self,
        service: str,
        lat: float,
        lon: float,
        *,
        now: datetime,
        exclude: Sequence[str] = (),
        session: AsyncSession | None = None,
        subsidised: bool = False,
    ) -> Ranking:
        """Rank providers for ``service`` at a place; ``subsidised`` leaves out bad credit."""
        if self.geo is not None:
            try:
                count = self.policy.max_candidates + len(exclude)
                for radius in self.policy.search_radii_m:
                    found = await self.geo.search(service, lat, lon, radius, count)
                    ranking = self.order(
                        service, lat, lon, found, now=now, exclude=exclude, source="redis", subsidised=subsidised
                    )
                    if settled(ranking, radius, full=len(found) >= count, policy=self.policy, estimator=self.estimator):
                        return ranking
                return ranking
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                self.fallbacks += 1
                log.warning("redis GEO search failed (%s); ranking from the database", exc)
        found = await self._scan(service, lat, lon, session)
        return self.order(service, lat, lon, found, now=now, exclude=exclude, source="database", subsidised=subsidised)

    async def _scan(
        self, service: str, lat: float, lon: float, session: AsyncSession | None
    ) -> list[tuple[ProviderInfo, float]]:
        """The fallback: a bounding box in SQL, then exact distances here."""
        dlat = self.policy.search_radius_m / 111_000
        dlon = dlat / max(0.1, math.cos(math.radians(lat)))
        stmt = select(Provider).where(
            Provider.lat.between(lat - dlat, lat + dlat), Provider.lon.between(lon - dlon, lon + dlon)
        )
        if session is not None:
            rows = (await session.scalars(stmt)).all()
        else:
            async with self._sm() as s:
                rows = (await s.scalars(stmt)).all()
        out = []
        for p in rows:
            if service not in p.services:
                continue
            d = haversine_m(lat, lon, p.lat, p.lon)
            if d <= self.policy.search_radius_m:
                out.append((ProviderInfo.of(p), d))
        out.sort(key=lambda x: x[1])
        return out[: self.policy.max_candidates]

    def order(
        self,
        service: str,
        lat: float,
        lon: float,
        found: Iterable[tuple[ProviderInfo, float]],
        *,
        now: datetime,
        exclude: Sequence[str] = (),
        source: str = "given",
        subsidised: bool = False,
    ) -> Ranking:
        return rank(
            service,
            lat,
            lon,
            found,
            now=now,
            policy=self.policy,
            estimator=self.estimator,
            exclude=exclude,
            source=source,
            subsidised=subsidised,
        )


async def store_decision(
    session: AsyncSession,
    ranking: Ranking,
    chosen: RankedCandidate | None,
    *,
    now: datetime,
    incident_id: str | None = None,
    service_request_id: str | None = None,
) -> RoutingDecision:
    """Keep a ranking, with who was chosen, for the incident or the work order it was made for."""
    decision = RoutingDecision(
        incident_id=incident_id,
        service_request_id=service_request_id,
        at=now,
        service=ranking.service,
        origin=ranking.origin,
        estimator=ranking.estimator,
        source=ranking.source,
        candidates=ranking.candidates,
        excluded=ranking.excluded,
        chosen_provider_id=chosen["provider_id"] if chosen else None,
        reachable_in_time=ranking.reachable_in_time,
    )
    session.add(decision)
    await session.flush()
    return decision


async def place_offer(
    session: AsyncSession,
    chosen: RankedCandidate,
    decision: RoutingDecision,
    *,
    now: datetime,
    timeout_s: float,
    incident_id: str | None = None,
    service_request_id: str | None = None,
) -> Offer:
    """Offer the job to the chosen candidate, and move that provider to the back of its equals."""
    offer = Offer(
        id=new_id("ofr"),
        incident_id=incident_id,
        service_request_id=service_request_id,
        provider_id=chosen["provider_id"],
        decision_id=decision.id,
        rank=chosen["rank"],
        eta_min=chosen["eta_min"],
        status=OFFER.initial,
        offered_at=now,
        expires_at=now + timedelta(seconds=timeout_s),
        updated_at=now,
    )
    session.add(offer)
    with session.no_autoflush:
        provider = await session.get(Provider, chosen["provider_id"])
    if provider is not None:
        provider.last_offered_at, provider.updated_at = now, now
    return offer


class GeoSync:
    """Keeps :class:`GeoIndex` in step with the database: committed provider rows arrive
    through the after-commit hook, and a full rebuild runs at start and every ``rebuild_s``
    (and after Redis was unreachable), which also repairs anything a crash lost."""

    def __init__(self, geo: GeoIndex, sm: async_sessionmaker[AsyncSession], *, rebuild_s: float = 300) -> None:
        self.geo = geo
        self._sm = sm
        self._rebuild_s = rebuild_s
        self._pending: dict[str, ProviderInfo] = {}
        self._wake = asyncio.Event()
        self._next_rebuild = 0.0
        self.synced = asyncio.Event()

    def on_commit(self, infos: list[ProviderInfo]) -> None:
        for info in infos:
            self._pending[info.id] = info
        self._wake.set()

    async def flush(self) -> None:
        batch, self._pending = self._pending, {}
        try:
            await self.geo.upsert(batch.values())
        except (RedisError, OSError):
            self._pending = {**batch, **self._pending}
            raise

    async def run(self) -> None:
        while True:
            try:
                if time.monotonic() >= self._next_rebuild:
                    count = await self.geo.rebuild(self._sm)
                    self._next_rebuild = time.monotonic() + self._rebuild_s
                    self.synced.set()
                    log.info("provider GEO index rebuilt providers=%d", count)
                await self.flush()
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                self._next_rebuild = 0.0  # rebuild once Redis is back: updates may have been missed
                log.warning("provider GEO sync failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            self._wake.clear()
            if self._pending:
                continue
            await wait_event(self._wake, min(60.0, self._rebuild_s))
