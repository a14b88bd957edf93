"""Provider star ratings (星级评定) and the bottom of the list (末位淘汰).

The formula, over the ``WINDOW`` before the computation (docs/service-loop.md):

====================  ======  ==============================================================
component             weight  value on a 0-1 scale
====================  ======  ==============================================================
satisfaction          0.40    (mean follow-up score - 1) / 4
punctuality           0.25    check-ins no later than scheduled + ``LATE_GRACE`` / check-ins
completion            0.25    completed / (completed + no-shows)
complaints            0.10    1 / (1 + upheld complaints)
====================  ======  ==============================================================

Each value is shrunk towards a neutral prior (0.75, four stars) with the weight of ``PRIOR_N``
samples, so a provider with two jobs is neither a hero nor a villain:
``v' = (n * v + PRIOR_N * 0.75) / (n + PRIOR_N)``. The score is the weighted sum, and the
stars are ``1 + 4 * score``, to one decimal. New stars are written to the provider, so the
router ranks with them at once (its Redis mirror follows the commit).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hotline.care.entitlements import month_of
from hotline.core.care import RatingComponent
from hotline.storage.models import (
    FollowUp,
    Provider,
    ProviderRating,
    QualityReview,
    ServiceRequest,
    ServiceRequestEvent,
)

WINDOW = timedelta(days=90)
LATE_GRACE = timedelta(minutes=15)
PRIOR = 0.75
PRIOR_N = 3.0
WEIGHTS = {"satisfaction": 0.40, "punctuality": 0.25, "completion": 0.25, "complaints": 0.10}


def _component(value: float | None, samples: int, weight: float) -> RatingComponent:
    shrunk = ((value or 0.0) * samples + PRIOR * PRIOR_N) / (samples + PRIOR_N)
    return RatingComponent(
        value=None if value is None else round(value, 4),
        samples=samples,
        weight=weight,
        points=round(weight * shrunk, 4),
    )


def _at(raw: Any) -> datetime | None:
    return datetime.fromisoformat(str(raw).replace("Z", "+00:00")) if raw else None


async def recompute(session: AsyncSession, now: datetime) -> tuple[str, int]:
    """Rate every provider for the window ending now; returns the period and how many were rated."""
    since = now - WINDOW
    period = month_of(now)
    scores: dict[str, list[int]] = defaultdict(list)
    for fu_provider, fu_score in (
        await session.execute(
            select(FollowUp.provider_id, FollowUp.score).where(
                FollowUp.provider_id.is_not(None), FollowUp.score.is_not(None), FollowUp.done_at >= since
            )
        )
    ).all():
        scores[str(fu_provider)].append(int(fu_score or 0))
    on_time: dict[str, list[bool]] = defaultdict(list)
    completed: dict[str, int] = defaultdict(int)
    for o in (
        await session.scalars(
            select(ServiceRequest).where(ServiceRequest.provider_id.is_not(None), ServiceRequest.updated_at >= since)
        )
    ).all():
        checked = _at((o.check_in or {}).get("at"))
        if checked is not None and o.scheduled_for is not None:
            on_time[str(o.provider_id)].append(checked <= o.scheduled_for + LATE_GRACE)
        if o.status == "completed":
            completed[str(o.provider_id)] += 1
    no_shows: dict[str, int] = defaultdict(int)
    for data in (
        await session.scalars(
            select(ServiceRequestEvent.data).where(
                ServiceRequestEvent.kind == "no_show", ServiceRequestEvent.at >= since
            )
        )
    ).all():
        if data.get("provider_id"):
            no_shows[data["provider_id"]] += 1
    upheld: dict[str, int] = defaultdict(int)
    # An upheld complaint opens a review (hotline/care/quality.py): it stays counted once closed.
    for (provider_id,) in (
        await session.execute(
            select(QualityReview.provider_id).where(
                QualityReview.source == "complaint", QualityReview.created_at >= since
            )
        )
    ).all():
        upheld[provider_id] += 1
    providers = (await session.scalars(select(Provider).order_by(Provider.id))).all()
    existing = {
        r.provider_id: r
        for r in (await session.scalars(select(ProviderRating).where(ProviderRating.period == period))).all()
    }
    for p in providers:
        s, t = scores.get(p.id, []), on_time.get(p.id, [])
        done, missed, bad = completed.get(p.id, 0), no_shows.get(p.id, 0), upheld.get(p.id, 0)
        comps = {
            "satisfaction": _component((sum(s) / len(s) - 1) / 4 if s else None, len(s), WEIGHTS["satisfaction"]),
            "punctuality": _component(sum(t) / len(t) if t else None, len(t), WEIGHTS["punctuality"]),
            "completion": _component(
                done / (done + missed) if done + missed else None, done + missed, WEIGHTS["completion"]
            ),
            "complaints": _component(1 / (1 + bad), done + bad, WEIGHTS["complaints"]),
        }
        score = round(sum(c.points for c in comps.values()), 4)
        stars = round(1 + 4 * score, 1)
        row = existing.get(p.id)
        if row is None:
            row = ProviderRating(provider_id=p.id, period=period)
            session.add(row)
        row.stars, row.score, row.computed_at = stars, score, now
        row.components = {k: c.model_dump() for k, c in comps.items()}
        if p.rating != stars:
            p.rating, p.updated_at = stars, now
    return period, len(providers)


async def bottom(session: AsyncSession, period: str, pct: float) -> list[tuple[ProviderRating, Provider]]:
    """The bottom ``pct`` percent of the period's ratings, at least one provider."""
    rows = (
        await session.execute(
            select(ProviderRating, Provider)
            .join(Provider, Provider.id == ProviderRating.provider_id)
            .where(ProviderRating.period == period)
            .order_by(ProviderRating.score, Provider.id)
        )
    ).all()
    if not rows:
        return []
    n = max(1, math.ceil(len(rows) * pct / 100))
    return [(r, p) for r, p in rows[:n]]
