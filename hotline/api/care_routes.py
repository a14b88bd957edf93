"""The service loop's API: the catalogue, entitlement rules and entitlements, work orders,
follow-ups, complaints, referrals, ratings, campaigns, consultations and reports."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from hotline.api.care_models import (
    AssessIn,
    CampaignIn,
    CampaignPatch,
    CheckInIn,
    CheckOutIn,
    CloseIn,
    ComplaintIn,
    ComplaintPatch,
    ComplaintQuery,
    ConsultationIn,
    FollowUpQuery,
    FollowUpResultIn,
    MonthQuery,
    ReferralIn,
    ReferralPatch,
    ReferralQuery,
    ReportQuery,
    RuleQuery,
    ScheduleIn,
    ServiceIn,
    ServicePatch,
    ServiceRequestIn,
    ServiceRequestQuery,
    TargetOutcomeIn,
)
from hotline.api.common import audit, listing, running
from hotline.api.keys import SERVICES
from hotline.api.models import PageQuery
from hotline.api.registry import Api, principal
from hotline.auth import require
from hotline.care import campaigns as camp
from hotline.care import ratings
from hotline.care.entitlements import entitlements, month_of
from hotline.care.reports import REPORTS, to_csv, to_xlsx
from hotline.care.service import CareService
from hotline.core import care as cw
from hotline.core.wire import Page
from hotline.errors import ConflictError, NotFoundError, ValidationError
from hotline.storage.models import (
    Campaign,
    CampaignRun,
    CampaignTarget,
    Complaint,
    Elder,
    EntitlementRuleSet,
    FollowUp,
    Provider,
    ProviderRating,
    QualityReview,
    Referral,
    Service,
    ServiceRequest,
)

api = Api()


def care(request: web.Request) -> CareService:
    return running(request.app[SERVICES].care, ConflictError("the service loop is not running"))


def _now() -> datetime:
    return datetime.now(UTC)


# -- the catalogue -----------------------------------------------------------------------------


@api.get("/api/v1/services", response=Page[cw.Service], permission="services.read", tag="service loop")
async def list_services(request: web.Request, query: PageQuery) -> Page[cw.Service]:
    """The service catalogue (养老服务包): units, prices and who may pay."""
    return await listing(request, select(Service).order_by(Service.code), query, cw.Service.model_validate)


@api.post(
    "/api/v1/services", response=cw.Service, status=201, permission="services.write", errors=(409,), tag="service loop"
)
async def create_service(request: web.Request, body: ServiceIn) -> cw.Service:
    """Add a catalogue entry (its code must be one of the catalogue's codes)."""
    async with request.app[SERVICES].sm() as session, session.begin():
        if await session.get(Service, body.code) is not None:
            raise ConflictError(f"service {body.code} exists; PATCH it")
        row = Service(**body.model_dump(), updated_at=_now())
        session.add(row)
        audit(session, principal(request), "service.create", "service", body.code)
        await session.flush()
        return cw.Service.model_validate(row)


@api.patch("/api/v1/services/{code}", response=cw.Service, permission="services.write", tag="service loop")
async def patch_service(request: web.Request, body: ServicePatch) -> cw.Service:
    """Change a catalogue entry's names, unit, price, payers or assessment rule."""
    code = request.match_info["code"]
    async with request.app[SERVICES].sm() as session, session.begin():
        row = await session.get(Service, code, with_for_update=True)
        if row is None:
            raise NotFoundError(f"service {code} not found")
        for name, value in body.model_dump(include=body.model_fields_set).items():
            setattr(row, name, value)
        row.updated_at = _now()
        audit(session, principal(request), "service.update", "service", code, fields=sorted(body.model_fields_set))
        return cw.Service.model_validate(row)


# -- entitlements ---------------------------------------------------------------------------------


@api.get("/api/v1/entitlement-rules", response=Page[cw.RuleSet], permission="rules.read", tag="service loop")
async def list_rules(request: web.Request, query: RuleQuery) -> Page[cw.RuleSet]:
    """Every version of every region's rule set, newest first."""
    stmt = select(EntitlementRuleSet).order_by(EntitlementRuleSet.region, EntitlementRuleSet.version.desc())
    if query.region:
        stmt = stmt.where(EntitlementRuleSet.region == query.region)
    return await listing(request, stmt, query, cw.RuleSet.model_validate)


@api.post(
    "/api/v1/entitlement-rules",
    response=cw.RuleSet,
    status=201,
    permission="rules.write",
    errors=(409,),
    tag="service loop",
)
async def create_rules(request: web.Request, body: cw.RuleSetIn) -> cw.RuleSet:
    """A new version of a region's rules, in force from ``effective_from``; earlier months keep
    the version they had."""
    who = principal(request)
    async with request.app[SERVICES].sm() as session:
        try:
            async with session.begin():
                latest = await session.scalar(
                    select(func.max(EntitlementRuleSet.version)).where(EntitlementRuleSet.region == body.region)
                )
                row = EntitlementRuleSet(
                    region=body.region,
                    version=(latest or 0) + 1,
                    effective_from=body.effective_from,
                    description=body.description,
                    rules=[r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in body.rules],
                    created_by=who.user_id,
                )
                session.add(row)
                await session.flush()
                audit(session, who, "rules.create", "entitlement_rules", f"{body.region}@{row.version}")
                return cw.RuleSet.model_validate(row)
        except IntegrityError as exc:
            raise ConflictError(f"rules of {body.region} were changed at the same time; retry") from exc


@api.get(
    "/api/v1/elders/{id}/entitlements",
    response=cw.Entitlements,
    permission="entitlements.read",
    errors=(409,),
    tag="service loop",
)
async def elder_entitlements(request: web.Request, query: MonthQuery) -> cw.Entitlements:
    """The month's entitlements, each grant with the facts behind it, and what is used and left."""
    who = principal(request)
    elder_id = request.match_info["id"]
    if not who.can_see_elder(elder_id):
        raise NotFoundError(f"elder {elder_id} not found")
    async with request.app[SERVICES].sm() as session:
        elder = await session.get(Elder, elder_id)
        if elder is None:
            raise NotFoundError(f"elder {elder_id} not found")
        return await entitlements(session, elder, query.month or month_of(_now()))


# -- work orders ---------------------------------------------------------------------------------


@api.post(
    "/api/v1/service-requests",
    response=cw.ServiceRequestDetail,
    status=201,
    permission="orders.write",
    errors=(409,),
    tag="service loop",
)
async def create_service_request(request: web.Request, body: ServiceRequestIn) -> cw.ServiceRequestDetail:
    """Open a work order; one without ``scheduled_for`` is offered to providers at once."""
    return await care(request).orders.create(
        actor=principal(request).user_id,
        elder_id=body.elder_id,
        service=body.service,
        quantity=body.quantity,
        scheduled_for=body.scheduled_for,
        payer=body.payer,
        remainder_payer=body.remainder_payer,
        note=body.note or "",
        call_id=body.call_id,
    )


@api.get(
    "/api/v1/service-requests",
    response=Page[cw.ServiceRequest],
    permission="orders.read",
    tag="service loop",
)
async def list_service_requests(request: web.Request, query: ServiceRequestQuery) -> Page[cw.ServiceRequest]:
    """Work orders, newest first; a provider account sees only its own."""
    who = principal(request)
    stmt = select(ServiceRequest).order_by(ServiceRequest.created_at.desc(), ServiceRequest.id)
    if who.role == "provider":
        stmt = stmt.where(ServiceRequest.provider_id == (who.provider_id or ""))
    if query.status:
        stmt = stmt.where(ServiceRequest.status == query.status)
    if query.elder_id:
        stmt = stmt.where(ServiceRequest.elder_id == query.elder_id)
    if query.provider_id:
        stmt = stmt.where(ServiceRequest.provider_id == query.provider_id)
    return await listing(request, stmt, query, cw.ServiceRequest.model_validate)


@api.get(
    "/api/v1/service-requests/{id}",
    response=cw.ServiceRequestDetail,
    permission="orders.read",
    tag="service loop",
)
async def get_service_request(request: web.Request) -> cw.ServiceRequestDetail:
    """A work order with its timeline, offers, check-in and check-out, and settlement."""
    who = principal(request)
    out = await care(request).orders.get(request.match_info["id"])
    if who.role == "provider" and out.provider_id != who.provider_id:
        raise NotFoundError(f"service request {out.id} not found")
    return out


_ORDER = {"response": cw.ServiceRequestDetail, "errors": (409,), "tag": "service loop"}


@api.post("/api/v1/service-requests/{id}/assess", permission="orders.write", **_ORDER)
async def assess_service_request(request: web.Request, body: AssessIn | None) -> cw.ServiceRequestDetail:
    """Record the home assessment (上门评估): approved orders are offered, others cancelled."""
    body = body or AssessIn()
    return await care(request).orders.assess(
        request.match_info["id"], principal(request).user_id, approved=body.approved, note=body.note
    )


@api.post("/api/v1/service-requests/{id}/dispatch", permission="orders.write", **_ORDER)
async def dispatch_service_request(request: web.Request) -> cw.ServiceRequestDetail:
    """Offer the order to the next suitable provider now."""
    return await care(request).orders.dispatch(request.match_info["id"], principal(request).user_id)


@api.post("/api/v1/service-requests/{id}/cancel", permission="orders.write", **_ORDER)
async def cancel_service_request(request: web.Request, body: CloseIn) -> cw.ServiceRequestDetail:
    """Cancel the order; open offers are withdrawn."""
    return await care(request).orders.cancel(request.match_info["id"], principal(request).user_id, reason=body.reason)


@api.post("/api/v1/service-requests/{id}/schedule", **_ORDER)
async def schedule_service_request(request: web.Request, body: ScheduleIn) -> cw.ServiceRequestDetail:
    """Agree a new time (the provider who took it, or staff); the no-show timer follows it."""
    who = principal(request)
    provider_id = None
    if who.role == "provider":
        provider_id = who.provider_id or ""
    else:
        require(who, "orders.write")
    return await care(request).orders.reschedule(
        request.match_info["id"], who.user_id, scheduled_for=body.scheduled_for, provider_id=provider_id
    )


def _provider_id(request: web.Request) -> str:
    who = principal(request)
    if who.provider_id is None:
        raise ValidationError("this account is not linked to a provider")
    return who.provider_id


@api.post("/api/v1/service-requests/{id}/check-in", permission="orders.visit", **_ORDER)
async def check_in(request: web.Request, body: CheckInIn) -> cw.ServiceRequestDetail:
    """The provider is at the door: starts the order. Far from the home, it is flagged."""
    return await care(request).orders.check_in(
        request.match_info["id"], _provider_id(request), principal(request).user_id, lat=body.lat, lon=body.lon
    )


@api.post("/api/v1/service-requests/{id}/check-out", permission="orders.visit", **_ORDER)
async def check_out(request: web.Request, body: CheckOutIn) -> cw.ServiceRequestDetail:
    """The service is done: completes and settles the order (409 when it would overdraw)."""
    return await care(request).orders.check_out(
        request.match_info["id"],
        _provider_id(request),
        principal(request).user_id,
        lat=body.lat,
        lon=body.lon,
        quantity=body.quantity,
        remainder_payer=body.remainder_payer,
    )


# -- follow-ups ---------------------------------------------------------------------------------


@api.get("/api/v1/follow-ups", response=Page[cw.FollowUp], permission="followups.read", tag="service loop")
async def list_follow_ups(request: web.Request, query: FollowUpQuery) -> Page[cw.FollowUp]:
    """Follow-up calls (回访), the soonest due first; ``?status=due`` is the operators' task list."""
    stmt = select(FollowUp).order_by(FollowUp.due_at, FollowUp.id)
    if query.status:
        stmt = stmt.where(FollowUp.status == query.status)
    if query.elder_id:
        stmt = stmt.where(FollowUp.elder_id == query.elder_id)
    return await listing(request, stmt, query, cw.FollowUp.model_validate)


@api.post(
    "/api/v1/follow-ups/{id}/result",
    response=cw.FollowUp,
    permission="followups.write",
    errors=(409,),
    tag="service loop",
)
async def follow_up_result(request: web.Request, body: FollowUpResultIn) -> cw.FollowUp:
    """The call's result; a score of 2 or less opens a quality review against the provider."""
    fu, _review = await care(request).quality.record(
        request.match_info["id"],
        principal(request).user_id,
        reached=body.reached,
        score=body.score,
        comment=body.comment,
    )
    return fu


@api.get("/api/v1/quality-reviews", response=Page[cw.QualityReview], permission="ratings.read", tag="service loop")
async def list_reviews(request: web.Request, query: PageQuery) -> Page[cw.QualityReview]:
    """Quality reviews opened by low follow-up scores and upheld complaints."""
    stmt = select(QualityReview).order_by(QualityReview.created_at.desc(), QualityReview.id)
    return await listing(request, stmt, query, cw.QualityReview.model_validate)


# -- complaints and referrals ---------------------------------------------------------------------


@api.post("/api/v1/complaints", response=cw.Complaint, status=201, permission="complaints.write", tag="service loop")
async def create_complaint(request: web.Request, body: ComplaintIn) -> cw.Complaint:
    """Record a complaint (投诉); it gets a deadline and is escalated when the deadline passes."""
    return await care(request).quality.complain(principal(request).user_id, **body.model_dump())


@api.get("/api/v1/complaints", response=Page[cw.Complaint], permission="complaints.read", tag="service loop")
async def list_complaints(request: web.Request, query: ComplaintQuery) -> Page[cw.Complaint]:
    """Complaints, newest first."""
    stmt = select(Complaint).order_by(Complaint.created_at.desc(), Complaint.id)
    if query.status:
        stmt = stmt.where(Complaint.status == query.status)
    if query.provider_id:
        stmt = stmt.where(Complaint.provider_id == query.provider_id)
    return await listing(request, stmt, query, cw.Complaint.model_validate)


@api.patch(
    "/api/v1/complaints/{id}", response=cw.Complaint, permission="complaints.write", errors=(409,), tag="service loop"
)
async def patch_complaint(request: web.Request, body: ComplaintPatch) -> cw.Complaint:
    """Assign, investigate, decide (upheld or rejected) and close with a resolution."""
    return await care(request).quality.update_complaint(
        request.match_info["id"],
        principal(request).user_id,
        status=body.status,
        handler=body.handler,
        finding=body.finding,
        resolution=body.resolution,
    )


@api.post(
    "/api/v1/referrals",
    response=cw.Referral,
    status=201,
    permission="referrals.write",
    errors=(409,),
    tag="service loop",
)
async def create_referral(request: web.Request, body: ReferralIn) -> cw.Referral:
    """Hand a request to an outside agency (转介); a linked work order ends as referred."""
    return await care(request).quality.refer(principal(request).user_id, **body.model_dump())


@api.get("/api/v1/referrals", response=Page[cw.Referral], permission="referrals.read", tag="service loop")
async def list_referrals(request: web.Request, query: ReferralQuery) -> Page[cw.Referral]:
    """Referrals, newest first."""
    stmt = select(Referral).order_by(Referral.created_at.desc(), Referral.id)
    if query.status:
        stmt = stmt.where(Referral.status == query.status)
    return await listing(request, stmt, query, cw.Referral.model_validate)


@api.patch(
    "/api/v1/referrals/{id}", response=cw.Referral, permission="referrals.write", errors=(409,), tag="service loop"
)
async def patch_referral(request: web.Request, body: ReferralPatch) -> cw.Referral:
    """Track the referral: accepted or declined by the agency, then closed with its outcome."""
    return await care(request).quality.update_referral(
        request.match_info["id"], principal(request).user_id, status=body.status, outcome=body.outcome
    )


# -- ratings ---------------------------------------------------------------------------------------


@api.post(
    "/api/v1/providers/ratings/recompute",
    response=cw.RecomputeResult,
    permission="ratings.write",
    errors=(409,),
    tag="service loop",
)
async def recompute_ratings(request: web.Request) -> cw.RecomputeResult:
    """Rate every provider now (it also runs every night); the router uses the new stars at once."""
    period, n = await care(request).recompute_ratings()
    return cw.RecomputeResult(period=period, providers=n)


@api.get("/api/v1/providers/review", response=cw.ReviewList, permission="ratings.read", tag="service loop")
async def providers_review(request: web.Request, query: MonthQuery) -> cw.ReviewList:
    """The bottom HOTLINE_REVIEW_BOTTOM_PCT of the period's ratings (末位淘汰), at least one."""
    svc = request.app[SERVICES]
    period = query.month or month_of(_now())
    pct = svc.settings.review_bottom_pct
    async with svc.sm() as session:
        rows = await ratings.bottom(session, period, pct)
    items = [
        cw.ReviewEntry(provider_id=p.id, name=p.name, stars=r.stars, score=r.score, bad_credit=p.bad_credit)
        for r, p in rows
    ]
    return cw.ReviewList(period=period, bottom_pct=pct, items=items)


@api.get("/api/v1/providers/{id}/rating", response=cw.Rating, permission="ratings.read", tag="service loop")
async def provider_rating(request: web.Request, query: MonthQuery) -> cw.Rating:
    """A provider's latest rating (or the month's), with every component and how they add up."""
    provider_id = request.match_info["id"]
    stmt = select(ProviderRating).where(ProviderRating.provider_id == provider_id)
    if query.month:
        stmt = stmt.where(ProviderRating.period == query.month)
    async with request.app[SERVICES].sm() as session:
        if await session.get(Provider, provider_id) is None:
            raise NotFoundError(f"provider {provider_id} not found")
        row = await session.scalar(stmt.order_by(ProviderRating.computed_at.desc()).limit(1))
    if row is None:
        raise NotFoundError(f"provider {provider_id} has no rating yet; POST /api/v1/providers/ratings/recompute")
    return cw.Rating.model_validate(row)


# -- campaigns -------------------------------------------------------------------------------------


@api.post("/api/v1/campaigns", response=cw.Campaign, status=201, permission="campaigns.write", tag="service loop")
async def create_campaign(request: web.Request, body: CampaignIn) -> cw.Campaign:
    """A wellbeing campaign: whom (the filter), when (an RRULE), in which hours, how hard."""
    try:
        camp.parse_hours(body.calling_hours)
    except ValueError as exc:
        raise ValidationError(f"calling_hours: {exc}", field="calling_hours") from exc
    dtstart = body.dtstart or _now()
    camp.check_rrule(body.rrule, dtstart)
    who = principal(request)
    async with request.app[SERVICES].sm() as session, session.begin():
        row = Campaign(
            **body.model_dump(exclude={"dtstart", "target"}),
            target=body.target.model_dump(mode="json", exclude_none=True),
            dtstart=dtstart,
            active=True,
            created_by=who.user_id,
        )
        session.add(row)
        await session.flush()
        audit(session, who, "campaign.create", "campaign", row.id)
        out = cw.Campaign.model_validate(row)
    care(request).campaigns.wake()
    return out


@api.get("/api/v1/campaigns", response=Page[cw.Campaign], permission="campaigns.read", tag="service loop")
async def list_campaigns(request: web.Request, query: PageQuery) -> Page[cw.Campaign]:
    """Campaigns, oldest first."""
    return await listing(
        request, select(Campaign).order_by(Campaign.created_at, Campaign.id), query, cw.Campaign.model_validate
    )


@api.get("/api/v1/campaigns/{id}", response=cw.CampaignDetail, permission="campaigns.read", tag="service loop")
async def get_campaign(request: web.Request) -> cw.CampaignDetail:
    """A campaign, its next occurrences and its runs."""
    async with request.app[SERVICES].sm() as session:
        row = await session.get(Campaign, request.match_info["id"])
        if row is None:
            raise NotFoundError(f"campaign {request.match_info['id']} not found")
        runs = (
            await session.scalars(
                select(CampaignRun).where(CampaignRun.campaign_id == row.id).order_by(CampaignRun.scheduled_for.desc())
            )
        ).all()
        base = cw.Campaign.model_validate(row).model_dump()
    return cw.CampaignDetail.model_validate(
        {
            **base,
            "next_runs": camp.occurrences(row.rrule, row.dtstart, after=_now(), count=5),
            "runs": [cw.CampaignRun.model_validate(r) for r in runs],
        }
    )


@api.patch("/api/v1/campaigns/{id}", response=cw.Campaign, permission="campaigns.write", tag="service loop")
async def patch_campaign(request: web.Request, body: CampaignPatch) -> cw.Campaign:
    """Pause (active false), resume or rename a campaign."""
    async with request.app[SERVICES].sm() as session, session.begin():
        row = await session.get(Campaign, request.match_info["id"], with_for_update=True)
        if row is None:
            raise NotFoundError(f"campaign {request.match_info['id']} not found")
        for name, value in body.model_dump(include=body.model_fields_set).items():
            setattr(row, name, value)
        audit(session, principal(request), "campaign.update", "campaign", row.id)
        return cw.Campaign.model_validate(row)


@api.post(
    "/api/v1/campaigns/{id}/runs",
    response=cw.CampaignRunDetail,
    status=201,
    permission="campaigns.write",
    errors=(409,),
    tag="service loop",
)
async def run_campaign_now(request: web.Request) -> cw.CampaignRunDetail:
    """Start a run now, outside the schedule (a heat wave, a cold snap)."""
    service = care(request)
    now = _now()
    run_id = await service.campaigns.start_run(request.match_info["id"], now, now)
    if run_id is None:
        raise ConflictError("a run for this moment exists already")
    service.campaigns.wake()
    return await _run_detail(request, run_id)


async def _run_detail(request: web.Request, run_id: int) -> cw.CampaignRunDetail:
    async with request.app[SERVICES].sm() as session:
        run = await session.get(CampaignRun, run_id)
        if run is None:
            raise NotFoundError(f"campaign run {run_id} not found")
        targets = (
            await session.scalars(
                select(CampaignTarget).where(CampaignTarget.run_id == run_id).order_by(CampaignTarget.id)
            )
        ).all()
        base = cw.CampaignRun.model_validate(run).model_dump()
    return cw.CampaignRunDetail.model_validate(
        {**base, "targets": [cw.CampaignTarget.model_validate(t) for t in targets]}
    )


@api.get(
    "/api/v1/campaigns/{id}/runs/{run}",
    response=cw.CampaignRunDetail,
    permission="campaigns.read",
    tag="service loop",
)
async def get_campaign_run(request: web.Request) -> cw.CampaignRunDetail:
    """One run with every target's state and outcome."""
    try:
        run_id = int(request.match_info["run"])
    except ValueError:
        raise ValidationError("run must be a number", field="run") from None
    out = await _run_detail(request, run_id)
    if out.campaign_id != request.match_info["id"]:
        raise NotFoundError(f"campaign run {run_id} not found")
    return out


@api.post(
    "/api/v1/campaign-targets/{id}/outcome",
    response=cw.CampaignTarget,
    permission="campaigns.record",
    errors=(409,),
    tag="service loop",
)
async def record_target(request: web.Request, body: TargetOutcomeIn) -> cw.CampaignTarget:
    """An operator's outcome for one elder of a run (operator mode, or no telephony)."""
    try:
        target_id = int(request.match_info["id"])
    except ValueError:
        raise ValidationError("id must be a number", field="id") from None
    row = await care(request).campaigns.record(target_id, body.outcome, principal(request).user_id, body.note)
    return cw.CampaignTarget.model_validate(row)


# -- the care advisor -----------------------------------------------------------------------------


@api.post(
    "/api/v1/elders/{id}/consultations",
    response=cw.Consultation,
    status=201,
    permission="consultations.write",
    errors=(409,),
    tag="service loop",
)
async def consult(request: web.Request, body: ConsultationIn) -> cw.Consultation:
    """The care advisor's list (养老顾问) for the stated needs, recorded, with a follow-up."""
    return await care(request).consult(request.match_info["id"], list(body.needs), principal(request).user_id)


# -- reports ----------------------------------------------------------------------------------------


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@api.get(
    "/api/v1/reports/{name}",
    response=cw.Report,
    permission="reports.read",
    alt_media=("text/csv", XLSX),
    tag="service loop",
)
async def report(request: web.Request, query: ReportQuery) -> web.StreamResponse | cw.Report:
    """A monthly report for the civil-affairs office, as JSON, CSV (UTF-8 with BOM) or XLSX.

    Names: entitlement-use, provider-services, satisfaction, complaints, campaign-coverage, settlement."""
    name = request.match_info["name"]
    build = REPORTS.get(name)
    if build is None:
        raise NotFoundError(f"no report {name!r} (known: {', '.join(REPORTS)})")
    async with request.app[SERVICES].sm() as session:
        table = await build(session, query.month)
    filename = f"{name}-{query.month}"
    if query.format == "csv":
        return web.Response(
            body=to_csv(table),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
        )
    if query.format == "xlsx":
        return web.Response(
            body=to_xlsx(name, table),
            content_type=XLSX,
            headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'},
        )
    return cw.Report(name=name, month=query.month, columns=table[0], rows=table[1])
