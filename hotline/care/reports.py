"""Reports for the civil-affairs office, one month each (local months, UTC+8).

Each report is a list of columns and rows; the API writes it as JSON, CSV (UTF-8 with a BOM,
so that Excel shows Chinese) or XLSX (openpyxl).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from openpyxl import Workbook
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.ranking import LOCAL_TZ
from hotline.care.entitlements import outcome
from hotline.care.ratings import LATE_GRACE
from hotline.storage.models import (
    Campaign,
    CampaignRun,
    CampaignTarget,
    Complaint,
    Elder,
    FollowUp,
    Provider,
    ServiceRequest,
    SettlementLine,
)

Table = tuple[list[str], list[list[Any]]]


def month_range(month: str) -> tuple[datetime, datetime]:
    """The UTC instants the local ``month`` starts and ends at."""
    start = datetime(int(month[:4]), int(month[5:7]), 1, tzinfo=LOCAL_TZ)
    end = (start + timedelta(days=32)).replace(day=1)
    return start.astimezone(UTC), end.astimezone(UTC)


async def _names(session: AsyncSession) -> dict[str, str]:
    return {p.id: p.name for p in (await session.scalars(select(Provider))).all()}


async def entitlement_use(session: AsyncSession, month: str) -> Table:
    granted: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for elder in (await session.scalars(select(Elder))).all():
        _, result = await outcome(session, elder, month)
        per_rule: dict[tuple[str, str, str], float] = defaultdict(float)
        for g in result.grants:
            per_rule[(elder.region, g.rule, str(g.benefit))] += g.amount
        for key, amount in per_rule.items():
            granted[key][0] += 1
            granted[key][1] += amount
    used: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for line in (await session.scalars(select(SettlementLine).where(SettlementLine.month == month))).all():
        if line.rule:
            used[line.rule][0] += line.hours
            used[line.rule][1] += line.yuan if line.payer == "subsidy_yuan" else 0.0
    rows = []
    for (region, rule, benefit), (elders, amount) in sorted(granted.items()):
        u = used.get(rule, [0.0, 0.0])
        spent = u[0] if benefit == "home_care_hours" else u[1] if benefit == "subsidy_yuan" else 0.0
        rows.append([region, rule, benefit, int(elders), round(amount, 2), round(spent, 2)])
    return ["region", "rule", "benefit", "elders", "granted", "used"], rows


async def provider_services(session: AsyncSession, month: str) -> Table:
    start, end = month_range(month)
    names = await _names(session)
    stats: dict[str, list[Any]] = defaultdict(lambda: [0, 0.0, 0, 0])
    for o in (
        await session.scalars(
            select(ServiceRequest).where(
                ServiceRequest.status == "completed", ServiceRequest.closed_at >= start, ServiceRequest.closed_at < end
            )
        )
    ).all():
        s = stats[str(o.provider_id)]
        s[0] += 1
        s[1] += float((o.check_out or {}).get("quantity") or o.quantity) if o.unit == "hour" else 0.0
        checked = (o.check_in or {}).get("at")
        if checked and o.scheduled_for is not None:
            s[3] += 1
            s[2] += datetime.fromisoformat(checked.replace("Z", "+00:00")) <= o.scheduled_for + LATE_GRACE
    rows = [
        [pid, names.get(pid, ""), n, round(hours, 2), round(on / seen, 4) if seen else None]
        for pid, (n, hours, on, seen) in sorted(stats.items())
    ]
    return ["provider_id", "provider", "orders", "hours", "on_time_rate"], rows


async def satisfaction(session: AsyncSession, month: str) -> Table:
    start, end = month_range(month)
    names = await _names(session)
    scores: dict[str, list[int]] = defaultdict(list)
    for fu in (
        await session.scalars(
            select(FollowUp).where(FollowUp.score.is_not(None), FollowUp.done_at >= start, FollowUp.done_at < end)
        )
    ).all():
        scores[fu.provider_id or ""].append(int(fu.score or 0))
    rows = [
        [pid or None, names.get(pid, ""), len(s), round(sum(s) / len(s), 2), sum(1 for x in s if x <= 2)]
        for pid, s in sorted(scores.items())
    ]
    return ["provider_id", "provider", "follow_ups", "mean_score", "low_scores"], rows


async def complaints(session: AsyncSession, month: str) -> Table:
    start, end = month_range(month)
    per: dict[str, list[Any]] = defaultdict(lambda: [0, 0, 0, 0, []])
    for c in (
        await session.scalars(select(Complaint).where(Complaint.created_at >= start, Complaint.created_at < end))
    ).all():
        s = per[c.category]
        s[0] += 1
        s[1] += c.decision == "upheld"
        s[2] += c.closed_at is not None
        s[3] += c.escalated_at is not None
        if c.closed_at is not None:
            s[4].append((c.closed_at - c.created_at).total_seconds() / 86400)
    rows = [
        [cat, n, up, closed, late, round(sum(d) / len(d), 2) if d else None]
        for cat, (n, up, closed, late, d) in sorted(per.items())
    ]
    return ["category", "received", "upheld", "closed", "escalated", "mean_days_to_close"], rows


async def campaign_coverage(session: AsyncSession, month: str) -> Table:
    start, end = month_range(month)
    names = {c.id: c.name for c in (await session.scalars(select(Campaign))).all()}
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    rows_q = await session.execute(
        select(CampaignTarget)
        .join(CampaignRun, CampaignRun.id == CampaignTarget.run_id)
        .where(CampaignRun.scheduled_for >= start, CampaignRun.scheduled_for < end)
    )
    for (t,) in rows_q.all():
        s = per[t.campaign_id]
        s[0] += 1
        s[1] += t.outcome in ("answered_ok", "answered_need")
        s[2] += t.outcome in ("no_answer", "failed")
        s[3] += t.visit_request_id is not None
    rows = [[cid, names.get(cid, ""), *v] for cid, v in sorted(per.items())]
    return ["campaign_id", "campaign", "targeted", "reached", "unanswered", "visits_opened"], rows


async def settlement(session: AsyncSession, month: str) -> Table:
    names = await _names(session)
    per: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    for line in (await session.scalars(select(SettlementLine).where(SettlementLine.month == month))).all():
        s = per[(line.provider_id, line.payer, line.funder)]
        s[0] += line.quantity
        s[1] += line.hours
        s[2] += line.yuan
        s[3] += 1
    rows = [
        [pid, names.get(pid, ""), payer, funder or None, int(n), round(q, 2), round(h, 2), round(y, 2)]
        for (pid, payer, funder), (q, h, y, n) in sorted(per.items())
    ]
    return ["provider_id", "provider", "payer", "funder", "lines", "quantity", "hours", "yuan"], rows


REPORTS: dict[str, Callable[[AsyncSession, str], Awaitable[Table]]] = {
    "entitlement-use": entitlement_use,
    "provider-services": provider_services,
    "satisfaction": satisfaction,
    "complaints": complaints,
    "campaign-coverage": campaign_coverage,
    "settlement": settlement,
}


def to_csv(table: Table) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(table[0])
    writer.writerows([["" if v is None else v for v in row] for row in table[1]])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def to_xlsx(name: str, table: Table) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = name[:31]
    ws.append(table[0])
    for row in table[1]:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
