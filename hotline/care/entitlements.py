"""Entitlements for a month: the rule set in force then, evaluated on the elder's facts, and
what the month's settled work orders have used of it (the ledger: ``settlement_lines``).

Unused hours and yuan do not carry over: each month is computed afresh.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.ranking import LOCAL_TZ
from hotline.care.builtin import BUILT_IN_RULES, BUILT_IN_SERVICES
from hotline.care.rules import Facts, Outcome, age_on, evaluate
from hotline.core.care import Balance, Entitlements, Rule
from hotline.core.wire import Eligibility
from hotline.errors import ConflictError
from hotline.storage.models import Elder, EntitlementRuleSet, Service, SettlementLine


def month_of(when: datetime) -> str:
    """The local (UTC+8) month of a moment: settlements and balances count in local months."""
    return when.astimezone(LOCAL_TZ).strftime("%Y-%m")


async def rule_set(session: AsyncSession, region: str, month: str) -> EntitlementRuleSet:
    """The version in force in ``month``: the latest effective on or before it."""
    row = await session.scalar(
        select(EntitlementRuleSet)
        .where(EntitlementRuleSet.region == region, EntitlementRuleSet.effective_from <= month)
        .order_by(EntitlementRuleSet.effective_from.desc(), EntitlementRuleSet.version.desc())
        .limit(1)
    )
    if row is None:
        raise ConflictError(f"no entitlement rules for region {region} in force in {month}")
    return row


def facts_of(elder: Elder, month: str) -> Facts:
    return Facts(
        age=age_on(elder.birth_date, month),
        eligibility=Eligibility.model_validate(elder.eligibility or {}),
        living_situation=elder.living_situation,
    )


async def outcome(session: AsyncSession, elder: Elder, month: str) -> tuple[EntitlementRuleSet, Outcome]:
    rules = await rule_set(session, elder.region, month)
    return rules, evaluate([Rule.model_validate(r) for r in rules.rules], facts_of(elder, month))


async def used(session: AsyncSession, elder_id: str, month: str) -> Balance:
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(SettlementLine.hours).filter(SettlementLine.payer == "subsidy_hours"), 0.0),
                func.coalesce(func.sum(SettlementLine.yuan).filter(SettlementLine.payer == "subsidy_yuan"), 0.0),
            ).where(SettlementLine.elder_id == elder_id, SettlementLine.month == month)
        )
    ).one()
    return Balance(home_care_hours=round(float(row[0]), 2), subsidy_yuan=round(float(row[1]), 2))


async def entitlements(session: AsyncSession, elder: Elder, month: str) -> Entitlements:
    return (await balance(session, elder, month))[0]


async def balance(session: AsyncSession, elder: Elder, month: str) -> tuple[Entitlements, Outcome]:
    """The month's entitlements and the evaluation behind them (its grants, with their funders)."""
    rules, out = await outcome(session, elder, month)
    spent = await used(session, elder.id, month)
    hours, yuan = out.total("home_care_hours"), out.total("subsidy_yuan")
    ent = Entitlements(
        elder_id=elder.id,
        month=month,
        region=elder.region,
        rules_version=rules.version,
        home_care_hours=hours,
        subsidy_yuan=yuan,
        free_one_touch_phone=out.free_one_touch_phone,
        grants=out.grants,
        excluded=out.excluded,
        used=spent,
        remaining=Balance(
            home_care_hours=round(max(0.0, hours - spent.home_care_hours), 2),
            subsidy_yuan=round(max(0.0, yuan - spent.subsidy_yuan), 2),
        ),
    )
    return ent, out


async def install_defaults(sm: async_sessionmaker[AsyncSession], *, actor: str = "system") -> int:
    """The built-in catalogue and rule sets, unless present; one transaction per row, so instances
    starting together each skip what another stored first. Returns how many rows were added."""
    rows: list[tuple[Any, Any]] = [
        (select(Service.code).where(Service.code == e["code"]), lambda e=e: Service(**e, active=True))
        for e in BUILT_IN_SERVICES
    ]
    rows += [
        (
            select(EntitlementRuleSet.id).where(EntitlementRuleSet.region == rs.region),
            lambda rs=rs: EntitlementRuleSet(
                region=rs.region,
                version=1,
                effective_from=rs.effective_from,
                description=rs.description,
                rules=[r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in rs.rules],
                created_by=actor,
            ),
        )
        for rs in BUILT_IN_RULES
    ]
    added = 0
    for exists, build in rows:
        async with sm() as session:
            try:
                async with session.begin():
                    if await session.scalar(exists) is not None:
                        continue
                    session.add(build())
                added += 1
            except IntegrityError:
                continue  # another instance stored it first
    return added
