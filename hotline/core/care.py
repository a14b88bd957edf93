"""The service loop's shapes: eligibility, entitlement rules as data, and the wire models of
work orders, follow-ups, complaints, referrals, ratings, campaigns and consultations.

Rules are data: a rule set is a list of :class:`Rule`, each a tree of named conditions
(:class:`Condition`) over an elder's facts. The evaluator is :mod:`hotline.care.rules`; the
built-in rule sets of the policy documents are :mod:`hotline.care.builtin`.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hotline.core.vocab import (
    Benefit,
    CampaignMode,
    ComplaintStatus,
    ContactMethod,
    Degree,
    EligibilityCategory,
    FollowUpStatus,
    LivingSituation,
    Payer,
    ReferralStatus,
    Region,
    ServiceCode,
    ServiceRequestStatus,
    TargetState,
    Unit,
    WellbeingOutcome,
)
from hotline.core.wire import Offer, RoutingDecision, UtcTime, Wire

MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)


# -- rules ---------------------------------------------------------------------------------

Flag = Literal["local_hukou", "resident", "disability_nursing_subsidy", "severe_chronic_disease"]


class DegreeTest(Strict):
    of: list[Literal["disability", "dementia"]] = Field(min_length=1, max_length=2)
    level: Degree


class Condition(Strict):
    """Exactly one named test, or a combination of conditions."""

    flag: Flag | None = Field(None, description="a true/false fact of the eligibility")
    age_at_least: int | None = Field(None, ge=0, le=130, description="full years on the month's first day")
    category_in: list[EligibilityCategory] | None = Field(None, min_length=1)
    degree_at_least: DegreeTest | None = Field(None, description="the worse of the named degrees")
    living_situation_in: list[LivingSituation] | None = Field(None, min_length=1)
    all: list[Condition] | None = Field(None, min_length=1, max_length=20)
    any: list[Condition] | None = Field(None, min_length=1, max_length=20)
    not_: Condition | None = Field(None, alias="not")

    model_config = ConfigDict(extra="forbid", use_enum_values=True, validate_by_name=True, serialize_by_alias=True)

    @model_validator(mode="after")
    def _one(self) -> Self:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"a condition names exactly one test (got {', '.join(given) or 'none'})")
        return self


class Tier(Strict):
    when: Condition
    amount: float = Field(gt=0, le=100_000)


class Exclusion(Strict):
    when: Condition
    why: str = Field(min_length=1, max_length=200, description="a sentence in Chinese")


class Rule(Strict):
    """One entitlement: who gets it (``when``), how much (``amount`` or the first matching
    ``tier``), who pays which share, and what excludes it."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")
    label: str = Field(min_length=1, max_length=64, description="the policy's name, in Chinese")
    benefit: Benefit
    when: Condition
    amount: float | None = Field(None, gt=0, le=100_000)
    tiers: list[Tier] | None = Field(None, min_length=1, max_length=10)
    payers: dict[str, float] = Field(
        default_factory=lambda: {"government": 1.0},
        description="who funds the benefit, by share (the shares add up to 1): {'province_city': 0.7, 'district': 0.3}",
    )
    unless: list[Exclusion] = Field(default_factory=list, max_length=10)
    supersedes: list[str] = Field(default_factory=list, description="rules an elder with this grant does not also get")

    @model_validator(mode="after")
    def _amount(self) -> Self:
        if self.benefit == Benefit.FREE_ONE_TOUCH_PHONE:
            if self.amount is not None or self.tiers is not None:
                raise ValueError("a free_one_touch_phone rule has no amount")
        elif (self.amount is None) == (self.tiers is None):
            raise ValueError("give either amount or tiers")
        if not self.payers or abs(sum(self.payers.values()) - 1.0) > 1e-6 or min(self.payers.values()) <= 0:
            raise ValueError("payers' shares must be positive and add up to 1")
        return self


class RuleSetIn(Strict):
    region: Region
    effective_from: str = Field(pattern=MONTH_PATTERN, description="YYYY-MM: the first month it applies to")
    description: str = Field("", max_length=500)
    rules: list[Rule] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _names(self) -> Self:
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        for r in self.rules:
            if unknown := set(r.supersedes) - set(names):
                raise ValueError(f"rule {r.name} supersedes unknown rules: {', '.join(sorted(unknown))}")
        return self


class RuleSet(Wire):
    id: int
    region: Region
    version: int
    effective_from: str
    description: str
    rules: list[Rule]
    created_by: str
    created_at: UtcTime


# -- entitlements --------------------------------------------------------------------------


class Grant(BaseModel):
    rule: str
    benefit: Benefit
    amount: float
    payer: str
    why: str


class Excluded(BaseModel):
    rule: str
    why: str


class Balance(BaseModel):
    home_care_hours: float
    subsidy_yuan: float


class Entitlements(BaseModel):
    elder_id: str
    month: str
    region: Region
    rules_version: int
    home_care_hours: float
    subsidy_yuan: float
    free_one_touch_phone: bool
    grants: list[Grant]
    excluded: list[Excluded]
    used: Balance
    remaining: Balance


# -- the catalogue ---------------------------------------------------------------------------


class Service(Wire):
    code: ServiceCode
    name_zh: str
    name_en: str
    unit: Unit
    price_yuan: float
    payers: list[Payer]
    needs_assessment: bool
    active: bool
    updated_at: UtcTime


# -- work orders -------------------------------------------------------------------------------


class Visit(BaseModel):
    at: UtcTime
    lat: float
    lon: float
    distance_m: float = Field(description="from the elder's home")
    far: bool = Field(description="farther than HOTLINE_CHECKIN_RADIUS_M")
    quantity: float | None = None


class SettlementLine(Wire):
    payer: Payer
    funder: str
    rule: str | None
    hours: float
    quantity: float
    yuan: float
    month: str
    provider_id: str


class TimelineEntry(Wire):
    at: UtcTime
    kind: str
    actor: str
    data: dict[str, Any]


class ServiceRequest(Wire):
    id: str
    elder_id: str
    service: ServiceCode
    quantity: float
    unit: Unit
    scheduled_for: UtcTime | None
    payer: Payer | None
    remainder_payer: Payer | None
    status: ServiceRequestStatus
    provider_id: str | None
    call_id: str | None
    note: str
    assessment: dict[str, Any] | None
    check_in: Visit | None
    check_out: Visit | None
    far_check_in: bool
    no_shows: int
    settled_month: str | None
    closed_reason: str | None
    created_by: str
    created_at: UtcTime
    updated_at: UtcTime
    closed_at: UtcTime | None


class Site(BaseModel):
    """Where the service happens: the elder's home (what the provider needs to go)."""

    address: str
    lat: float
    lon: float


class ServiceRequestDetail(ServiceRequest):
    site: Site
    timeline: list[TimelineEntry]
    offers: list[Offer]
    settlement: list[SettlementLine]
    decisions: list[RoutingDecision]


# -- follow-ups, complaints, referrals ---------------------------------------------------------


class FollowUp(Wire):
    id: str
    elder_id: str
    service_request_id: str | None
    consultation_id: str | None
    provider_id: str | None
    status: FollowUpStatus
    due_at: UtcTime
    reached: bool | None
    score: int | None
    comment: str | None
    done_by: str | None
    done_at: UtcTime | None
    created_at: UtcTime


class QualityReview(Wire):
    id: int
    provider_id: str
    source: str
    ref_id: str
    reason: str
    status: str
    created_at: UtcTime


class Complaint(Wire):
    id: str
    elder_id: str | None
    provider_id: str | None
    service_request_id: str | None
    category: str
    description: str
    channel: ContactMethod
    status: ComplaintStatus
    handler: str | None
    deadline_at: UtcTime
    escalated_at: UtcTime | None
    decision: str | None
    finding: str | None
    resolution: str | None
    created_by: str
    created_at: UtcTime
    updated_at: UtcTime
    decided_at: UtcTime | None
    closed_at: UtcTime | None


class Referral(Wire):
    id: str
    elder_id: str
    service_request_id: str | None
    agency: str
    reason: str
    status: ReferralStatus
    outcome: str | None
    created_by: str
    created_at: UtcTime
    updated_at: UtcTime
    closed_at: UtcTime | None


# -- ratings -------------------------------------------------------------------------------------


class RatingComponent(BaseModel):
    value: float | None = Field(description="the measured rate or mean; null without data (the neutral prior is used)")
    samples: int
    weight: float
    points: float = Field(description="value on a 0-1 scale times the weight")


class Rating(Wire):
    provider_id: str
    period: str
    stars: float
    score: float
    components: dict[str, RatingComponent]
    computed_at: UtcTime


class ReviewEntry(BaseModel):
    provider_id: str
    name: str
    stars: float
    score: float
    bad_credit: bool


class ReviewList(BaseModel):
    period: str
    bottom_pct: float
    items: list[ReviewEntry]


class RecomputeResult(BaseModel):
    period: str
    providers: int


# -- campaigns ------------------------------------------------------------------------------------


class CampaignTargetFilter(Strict):
    living_situation: list[LivingSituation] | None = Field(None, min_length=1)
    min_age: int | None = Field(None, ge=0, le=130)
    categories: list[EligibilityCategory] | None = Field(None, min_length=1)
    region: Region | None = None


class Campaign(Wire):
    id: str
    name: str
    target: CampaignTargetFilter
    rrule: str
    dtstart: UtcTime
    calling_hours: str
    max_concurrent_calls: int
    attempts: int
    retry_after_min: float
    mode: CampaignMode
    active: bool
    created_by: str
    created_at: UtcTime


class CampaignTarget(Wire):
    id: int
    run_id: int
    elder_id: str
    state: TargetState
    attempts: int
    next_attempt_at: UtcTime
    outcome: WellbeingOutcome | None
    recorded_by: str | None
    note: str | None
    visit_request_id: str | None
    family_notified: bool
    updated_at: UtcTime


class CampaignRun(Wire):
    id: int
    campaign_id: str
    scheduled_for: UtcTime
    status: str
    started_at: UtcTime
    finished_at: UtcTime | None


class CampaignRunDetail(CampaignRun):
    targets: list[CampaignTarget]


class CampaignDetail(Campaign):
    next_runs: list[UtcTime] = Field(description="the next occurrences of the RRULE")
    runs: list[CampaignRun]


# -- the care advisor -------------------------------------------------------------------------------


class AdvisedProvider(BaseModel):
    provider_id: str
    name: str
    rank: int
    eta_min: float
    reasons: list[str]


class AdvisedService(BaseModel):
    service: ServiceCode
    name_zh: str
    need: str = Field(description="the stated need it answers")
    paid_by: Payer
    why_paid: str
    unit: Unit
    price_yuan: float
    providers: list[AdvisedProvider]


class Consultation(Wire):
    id: str
    elder_id: str
    needs: list[str]
    result: dict[str, Any]
    advisor: str
    follow_up_id: str | None
    created_at: UtcTime


class Report(BaseModel):
    name: str
    month: str
    columns: list[str]
    rows: list[list[Any]]
