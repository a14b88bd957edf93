"""Ranking providers for one service at one place: pure, no Redis, no database.

After the hard filters (availability, capacity, working hours, service radius, rating floor),
candidates sort by (lower first):

1. travel time band: minutes behind the fastest candidate, in bands of ``band_min``, so
   6.1 and 6.9 minutes are near-equals rather than a win;
2. capability: a specialist kind for the service before a generalist;
3. availability: ``available`` before ``busy``;
4. load band: quarters of capacity in use;
5. rating, in half stars, best first: well-rated providers win among near-equals;
6. turn: the provider offered work longest ago first, so equals take turns;
7. exact travel time, then id, so the order is total and reproducible.

Every ranking comes with those keys and readable reasons. Where the candidates come from
(Redis GEO, or the database when Redis is away) is :mod:`dispatch.routing`'s business.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

from hotline.core.vocab import Availability, values
from hotline.core.wire import Exclusion, RankedCandidate
from hotline.storage.models import Provider

# China keeps one time zone and no daylight saving: working hours are read in UTC+8.
LOCAL_TZ = timezone(timedelta(hours=8))
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ELIGIBLE_AVAILABILITY = ("available", "busy")
AVAILABILITY = values(Availability)

# Kinds that specialise in a service rank ahead of generalists at the same travel time.
SPECIALISTS: dict[str, frozenset[str]] = {
    "emergency_rescue": frozenset({"ambulance", "clinic"}),
    "medical_escort": frozenset({"clinic", "ambulance"}),
    "rehab_nursing": frozenset({"clinic", "caregiver"}),
    "meals": frozenset({"meal_kitchen"}),
    "daily_care": frozenset({"caregiver"}),
    "bathing": frozenset({"caregiver"}),
}


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """What routing needs to know about a provider; mirrored into Redis."""

    id: str
    name: str
    kind: str
    services: tuple[str, ...]
    lat: float
    lon: float
    service_radius_m: int
    working_hours: dict[str, Any]
    capacity: int
    current_load: int
    availability: str
    rating: float
    last_offered_at: float | None  # epoch seconds
    bad_credit: bool = False  # never offered government-paid work

    @classmethod
    def of(cls, p: Provider) -> ProviderInfo:
        return cls(
            id=p.id,
            name=p.name,
            kind=p.kind,
            services=tuple(p.services),
            lat=p.lat,
            lon=p.lon,
            service_radius_m=p.service_radius_m,
            working_hours=dict(p.working_hours or {}),
            capacity=p.capacity,
            current_load=p.current_load,
            availability=p.availability,
            rating=p.rating,
            last_offered_at=p.last_offered_at.timestamp() if p.last_offered_at else None,
            bad_credit=bool(p.bad_credit),
        )

    def dumps(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> ProviderInfo:
        d = json.loads(raw)
        d["services"] = tuple(d["services"])
        return cls(**d)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


class TravelEstimator(Protocol):
    """The seam where a real routing engine (OSRM, a map vendor's API) plugs in."""

    @property
    def name(self) -> str: ...

    def minutes(self, kind: str, distance_m: float) -> float: ...

    def explain(self, kind: str, distance_m: float) -> str: ...

    def lower_bound(self, distance_m: float) -> float:
        """No provider of any kind gets here faster: the search stops widening past it."""
        ...


@dataclass(frozen=True)
class RoadFactorEstimator:
    """Straight-line distance times a road factor, at a typical urban speed per provider kind,
    plus the minutes a kind needs to set off."""

    road_factor: float = 1.4
    speed_kmh: dict[str, float] = field(
        default_factory=lambda: {
            "ambulance": 35.0,
            "clinic": 25.0,
            "service_station": 18.0,  # electric bikes
            "caregiver": 15.0,
            "meal_kitchen": 18.0,
        }
    )
    setup_min: dict[str, float] = field(default_factory=lambda: {"ambulance": 2.0, "clinic": 2.0})
    name: str = "road-factor-v1"

    def minutes(self, kind: str, distance_m: float) -> float:
        speed = self.speed_kmh.get(kind, 15.0)
        return self.setup_min.get(kind, 1.0) + distance_m * self.road_factor / 1000 / speed * 60

    def lower_bound(self, distance_m: float) -> float:
        return min(self.minutes(kind, distance_m) for kind in self.speed_kmh)

    def explain(self, kind: str, distance_m: float) -> str:
        return (
            f"{distance_m / 1000:.2f} km x road factor {self.road_factor} at {self.speed_kmh.get(kind, 15.0):g} km/h"
            f" + {self.setup_min.get(kind, 1.0):g} min to set off"
        )


def _minutes(hhmm: str) -> int:
    h, m = hhmm.strip().split(":")
    value = int(h) * 60 + int(m)
    if not (0 <= int(m) < 60 and 0 <= value <= 24 * 60):
        raise ValueError(hhmm)
    return value


def _days(spec: str) -> set[int]:
    out: set[int] = set()
    for raw in spec.lower().split(","):
        part = raw.strip()
        if "-" in part:
            a, b = (DAYS.index(x.strip()) for x in part.split("-"))
            out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        else:
            out.add(DAYS.index(part))
    return out


def check_working_hours(hours: Any) -> str | None:
    """None when ``hours`` is valid, else what is wrong with it."""
    if not isinstance(hours, dict):
        return 'must be an object such as {"mon-fri": "08:00-18:00"}'
    for days, spans in hours.items():
        try:
            _days(days)
            for span in [spans] if isinstance(spans, str) else spans:
                a, b = span.split("-")
                _minutes(a)
                _minutes(b)
        except (ValueError, AttributeError, TypeError):
            return f"bad entry {days!r}: {spans!r}; use day ranges like mon-fri and spans like 08:00-18:00"
    return None


def open_at(hours: dict[str, Any], when: datetime) -> bool:
    """Whether ``hours`` covers ``when``. No hours at all means always open; spans may cross
    midnight (``20:00-08:00``)."""
    if not hours:
        return True
    local = when.astimezone(LOCAL_TZ)
    minute = local.hour * 60 + local.minute
    today, yesterday = local.weekday(), (local.weekday() - 1) % 7
    for days, spans in hours.items():
        day_set = _days(days)
        for span in [spans] if isinstance(spans, str) else spans:
            a, b = (_minutes(x) for x in span.split("-"))
            if a <= b:
                if today in day_set and a <= minute < b:
                    return True
            elif (today in day_set and minute >= a) or (yesterday in day_set and minute < b):
                return True
    return False


@dataclass(frozen=True)
class RoutingPolicy:
    reach_min: float = 15.0  # the policy's "15-minute service circle"
    band_min: float = 2.0
    min_rating: float = 2.0  # the worst-rated are dropped
    # The search widens through these radii until it has ``enough`` eligible candidates and
    # nobody beyond the ring could be a near-equal of the fastest: in a city the first ring
    # nearly always suffices, and a 30 km GEOSEARCH costs more than the ranking itself.
    search_radii_m: tuple[int, ...] = (2_500, 6_000, 15_000, 30_000)
    enough: int = 5
    max_candidates: int = 20

    @property
    def search_radius_m(self) -> int:
        return self.search_radii_m[-1]


@dataclass
class Ranking:
    service: str
    origin: dict[str, float]
    estimator: str
    source: str
    candidates: list[RankedCandidate]
    excluded: list[Exclusion]

    @property
    def best(self) -> RankedCandidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def reachable_in_time(self) -> bool:
        return any(c["within_reach"] for c in self.candidates)


def rank(
    service: str,
    lat: float,
    lon: float,
    found: Iterable[tuple[ProviderInfo, float]],
    *,
    now: datetime,
    policy: RoutingPolicy,
    estimator: TravelEstimator,
    exclude: Sequence[str] = (),
    source: str = "given",
    subsidised: bool = False,
) -> Ranking:
    """Filter and order ``found`` (providers with their distance) for ``service`` at a place.

    ``subsidised``: the government pays, so providers with a bad credit record are left out."""
    pol = policy
    skip = set(exclude)
    eligible: list[tuple[tuple[Any, ...], RankedCandidate]] = []
    excluded: list[Exclusion] = []
    passing: list[tuple[ProviderInfo, float, float]] = []
    for p, dist in found:
        why = _exclusion(p, dist, service, now=now, skip=skip, policy=policy, subsidised=subsidised)
        if why is not None:
            excluded.append({"provider_id": p.id, "name": p.name, "distance_m": round(dist), "reason": why})
        else:
            passing.append((p, dist, estimator.minutes(p.kind, dist)))
    # Bands count from the fastest candidate, so near-equals are near each other, not near a boundary.
    fastest = min((eta for _, _, eta in passing), default=0.0)
    for p, dist, eta in passing:
        band = int((eta - fastest) // pol.band_min)
        specialist = p.kind in SPECIALISTS.get(service, frozenset())
        load_band = int(4 * p.current_load / max(1, p.capacity))
        rating_band = math.floor(p.rating * 2) / 2
        turn = p.last_offered_at or 0.0
        key = (band, 0 if specialist else 1, ELIGIBLE_AVAILABILITY.index(p.availability), load_band, -rating_band)
        last = datetime.fromtimestamp(p.last_offered_at, UTC).isoformat() if p.last_offered_at else "never"
        entry: RankedCandidate = {
            "provider_id": p.id,
            "name": p.name,
            "kind": p.kind,
            "distance_m": round(dist),
            "eta_min": round(eta, 2),
            "within_reach": eta <= pol.reach_min,
            "key": {
                "eta_band": band,
                "specialist": specialist,
                "availability": p.availability,
                "load_band": load_band,
                "rating_band": rating_band,
                "last_offered_at": last,
            },
            "reasons": [
                f"travel {eta:.1f} min ({estimator.explain(p.kind, dist)})",
                f"travel band {band}: within {(band + 1) * pol.band_min:g} min of the fastest candidate",
                f"{p.kind} is {'a specialist' if specialist else 'a generalist'} for {service}",
                f"availability {p.availability}",
                f"load {p.current_load}/{p.capacity}",
                f"rating {p.rating:.1f}",
                f"last offered work: {last}",
            ],
            "rank": 0,
        }
        eligible.append(((*key, turn, eta, p.id), entry))
    eligible.sort(key=lambda x: x[0])
    candidates = [e for _, e in eligible]
    for rank, c in enumerate(candidates):
        c["rank"] = rank
    if candidates and not candidates[0]["within_reach"]:
        candidates[0]["reasons"].append(f"nobody can reach the elder within {pol.reach_min:g} minutes")
    return Ranking(
        service=service,
        origin={"lat": lat, "lon": lon},
        estimator=estimator.name,
        source=source,
        candidates=candidates,
        excluded=excluded,
    )


def _exclusion(
    p: ProviderInfo,
    dist: float,
    service: str,
    *,
    now: datetime,
    skip: set[str],
    policy: RoutingPolicy,
    subsidised: bool = False,
) -> str | None:
    if p.id in skip:
        return "already offered this job"
    if subsidised and p.bad_credit:
        return "bad credit record: no government-paid work"
    if service not in p.services:
        return f"does not offer {service}"
    if p.availability not in ELIGIBLE_AVAILABILITY:
        return f"availability {p.availability}"
    if p.current_load >= p.capacity:
        return f"at capacity ({p.current_load}/{p.capacity})"
    if dist > p.service_radius_m:
        return f"outside its service radius ({dist / 1000:.1f} km > {p.service_radius_m / 1000:.1f} km)"
    if p.rating < policy.min_rating:
        return f"rating {p.rating:.1f} below the floor of {policy.min_rating:g}"
    if not open_at(p.working_hours, now):
        return "outside working hours"
    return None


def settled(
    ranking: Ranking, radius_m: float, *, full: bool, policy: RoutingPolicy, estimator: TravelEstimator
) -> bool:
    """Whether widening the search past ``radius_m`` could not change the head of the ranking."""
    if full:
        return True  # the ring already holds more providers than we rank
    best = ranking.best
    if best is None or len(ranking.candidates) < policy.enough:
        return False
    return bool(estimator.lower_bound(radius_m) > best["eta_min"] + policy.band_min)
