"""Request bodies and query strings of the service loop (docs/service-loop.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from hotline.api.models import Id40, In, Lat, Lon, Note, PageQuery, Patch, Query, Text64, Text128, Text500
from hotline.core.care import MONTH_PATTERN, CampaignTargetFilter
from hotline.core.vocab import (
    CampaignMode,
    ComplaintStatus,
    ContactMethod,
    FollowUpStatus,
    Payer,
    ReferralStatus,
    Region,
    ServiceCode,
    ServiceRequestStatus,
    Unit,
    WellbeingOutcome,
)
from hotline.core.wire import UtcTime

Month = Annotated[str, StringConstraints(pattern=MONTH_PATTERN)]
Quantity = Annotated[float, Field(gt=0, le=1000, description="hours, visits, meals or items, as the service's unit")]


class ServiceIn(In):
    code: ServiceCode
    name_zh: Text64
    name_en: Text64
    unit: Unit
    price_yuan: float = Field(ge=0, le=1_000_000)
    payers: list[Payer] = Field(min_length=1)
    needs_assessment: bool = False
    active: bool = True


class ServicePatch(Patch):
    name_zh: Text64 | None = None
    name_en: Text64 | None = None
    unit: Unit | None = None
    price_yuan: float | None = Field(None, ge=0, le=1_000_000)
    payers: list[Payer] | None = Field(None, min_length=1)
    needs_assessment: bool | None = None
    active: bool | None = None


class RuleQuery(PageQuery):
    region: Region | None = None


class MonthQuery(Query):
    month: Month | None = Field(None, description="YYYY-MM (local time); this month when left out")


class ServiceRequestIn(In):
    elder_id: Id40
    service: ServiceCode
    quantity: Quantity = 1.0
    scheduled_for: UtcTime | None = Field(None, description="left out: wanted as soon as possible, offered at once")
    payer: Payer | None = Field(None, description="left out: the cheapest entitlement that covers it, else self_pay")
    remainder_payer: Literal["self_pay"] | None = Field(
        None, description="self_pay: what the entitlement does not cover is billed to the elder"
    )
    note: Note | None = None
    call_id: Id40 | None = None


class ServiceRequestQuery(PageQuery):
    status: ServiceRequestStatus | None = None
    elder_id: Annotated[str, StringConstraints(max_length=40)] | None = None
    provider_id: Annotated[str, StringConstraints(max_length=40)] | None = None


class AssessIn(In):
    approved: bool = True
    note: Note | None = None


class ScheduleIn(In):
    scheduled_for: UtcTime


class CheckInIn(In):
    lat: Lat
    lon: Lon


class CheckOutIn(In):
    lat: Lat
    lon: Lon
    quantity: Quantity
    remainder_payer: Literal["self_pay"] | None = None


class CloseIn(In):
    reason: Text500


class FollowUpQuery(PageQuery):
    status: FollowUpStatus | None = None
    elder_id: Annotated[str, StringConstraints(max_length=40)] | None = None


class FollowUpResultIn(In):
    reached: bool
    score: int | None = Field(None, ge=1, le=5, description="required when reached")
    comment: Note | None = None


class ComplaintIn(In):
    elder_id: Id40 | None = None
    provider_id: Id40 | None = None
    service_request_id: Id40 | None = None
    category: Text64
    description: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
    channel: ContactMethod = ContactMethod.PHONE
    handler: Text64 | None = None


class ComplaintPatch(Patch):
    status: ComplaintStatus | None = None
    handler: Text64 | None = None
    finding: Note | None = None
    resolution: Note | None = None


class ComplaintQuery(PageQuery):
    status: ComplaintStatus | None = None
    provider_id: Annotated[str, StringConstraints(max_length=40)] | None = None


class ReferralIn(In):
    elder_id: Id40
    agency: Text128
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
    service_request_id: Id40 | None = None


class ReferralPatch(Patch):
    status: ReferralStatus | None = None
    outcome: Note | None = None


class ReferralQuery(PageQuery):
    status: ReferralStatus | None = None


class CampaignIn(In):
    name: Text128
    target: CampaignTargetFilter = Field(default_factory=CampaignTargetFilter)
    rrule: Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=500)] = Field(
        description="RFC 5545, e.g. FREQ=WEEKLY;BYDAY=MO (read in local time)"
    )
    dtstart: UtcTime | None = Field(None, description="the first occurrence's earliest time; now when left out")
    calling_hours: Annotated[str, StringConstraints(strip_whitespace=True, min_length=11, max_length=200)] = (
        "09:00-11:30,14:00-17:30"
    )
    max_concurrent_calls: int = Field(2, ge=1, le=100)
    attempts: int = Field(3, ge=1, le=10)
    retry_after_min: float = Field(30, ge=0.01, le=1440, description="minutes between attempts")
    mode: CampaignMode = CampaignMode.IVR


class CampaignPatch(Patch):
    active: bool | None = None
    name: Text128 | None = None


class RunNowIn(In):
    pass


class TargetOutcomeIn(In):
    outcome: WellbeingOutcome
    note: Text500 | None = None


class ConsultationIn(In):
    needs: list[ServiceCode] = Field(min_length=1, max_length=14, description="the services the elder asks about")


class ReportQuery(Query):
    month: Month
    format: Literal["json", "csv", "xlsx"] = "json"
