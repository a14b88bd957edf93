"""Dispatch API: providers, incident actions, offers for provider apps, escalation policies,
and the family's "I'm on my way"."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from aiohttp import web
from sqlalchemy import String, cast, func, select
from sqlalchemy.exc import IntegrityError

from dispatch.errors import PolicyError
from dispatch.escalation import offer_message
from dispatch.notify.links import FamilyLinks
from dispatch.policy import parse_tracks
from dispatch.ranking import check_working_hours
from dispatch.service import DispatchService
from hotline.api.care_routes import care
from hotline.api.common import audit, listing, running
from hotline.api.keys import SERVICES
from hotline.api.models import (
    CancelIn,
    DispatchIn,
    FamilyConfirmed,
    IncidentIn,
    OfferAnswer,
    OfferQuery,
    PageQuery,
    PolicyIn,
    PolicyQuery,
    ProgressIn,
    ProviderIn,
    ProviderOffer,
    ProviderPatch,
    ProviderQuery,
    ReasonIn,
    ResolveIn,
    WorkOrderState,
)
from hotline.api.registry import Api, Reply, principal
from hotline.auth import require
from hotline.care.orders import WorkOrders
from hotline.core import wire
from hotline.core.messages import OfferedIncident, OfferedWork
from hotline.errors import ConflictError, NotFoundError, ValidationError
from hotline.storage.models import (
    Elder,
    EscalationPolicy,
    Incident,
    Offer,
    Provider,
    RoutingDecision,
    ServiceRequest,
)

api = Api()


def _dispatch(request: web.Request) -> DispatchService:
    return running(request.app[SERVICES].dispatch, ConflictError("dispatch is not running"))


def family_links(request: web.Request) -> FamilyLinks:
    links = _dispatch(request).escalator.links
    if links is None:
        raise ConflictError("family links are not configured")
    return links


# -- providers --------------------------------------------------------------------------


def _hours(raw: dict[str, Any]) -> dict[str, Any]:
    if (problem := check_working_hours(raw)) is not None:
        raise ValidationError(f"working_hours {problem}", field="working_hours")
    return raw


@api.get("/api/v1/providers", response=wire.Page[wire.Provider], permission="providers.read", tag="providers")
async def list_providers(request: web.Request, query: ProviderQuery) -> wire.Page[wire.Provider]:
    """Contracted providers, filtered by kind, availability or a service they offer."""
    stmt = select(Provider).order_by(Provider.created_at, Provider.id)
    if query.kind:
        stmt = stmt.where(Provider.kind == query.kind)
    if query.availability:
        stmt = stmt.where(Provider.availability == query.availability)
    if query.service:
        # JSON containment differs between SQLite and PostgreSQL; a quoted LIKE works on both.
        stmt = stmt.where(cast(Provider.services, String).like(f'%"{query.service}"%'))
    return await listing(request, stmt, query, wire.Provider.model_validate)


@api.post("/api/v1/providers", response=wire.Provider, status=201, permission="providers.write", tag="providers")
async def create_provider(request: web.Request, body: ProviderIn) -> wire.Provider:
    """Register a provider."""
    who = principal(request)
    fields = body.model_dump()
    provider = Provider(
        **{**fields, "services": sorted(set(fields["services"])), "working_hours": _hours(body.working_hours)},
        current_load=0,
    )
    async with request.app[SERVICES].sm() as session, session.begin():
        session.add(provider)
        await session.flush()
        audit(session, who, "provider.create", "provider", provider.id, kind=body.kind)
        return wire.Provider.model_validate(provider)


@api.get("/api/v1/providers/{id}", response=wire.Provider, tag="providers")
async def get_provider(request: web.Request) -> wire.Provider:
    """One provider. Staff, or the provider's own account."""
    who = principal(request)
    provider_id = request.match_info["id"]
    if who.provider_id != provider_id:
        require(who, "providers.read")
    async with request.app[SERVICES].sm() as session:
        provider = await session.get(Provider, provider_id)
    if provider is None:
        raise NotFoundError(f"provider {provider_id} not found")
    return wire.Provider.model_validate(provider)


# What a provider may change about itself from its app; staff may change everything.
SELF_FIELDS = frozenset({"availability", "lat", "lon"})


@api.patch("/api/v1/providers/{id}", response=wire.Provider, tag="providers")
async def patch_provider(request: web.Request, body: ProviderPatch) -> wire.Provider:
    """Change a provider: staff any field, the provider's own account its availability and position."""
    who = principal(request)
    provider_id = request.match_info["id"]
    changed = body.model_fields_set
    if who.role == "provider" and who.provider_id == provider_id:
        if extra := sorted(changed - SELF_FIELDS):
            raise ValidationError(f"a provider may change only {', '.join(sorted(SELF_FIELDS))}", field=extra[0])
    else:
        require(who, "providers.write")
    if "bad_credit" in changed:
        require(who, "providers.credit")
    values = body.model_dump(include=changed)
    if "services" in values:
        values["services"] = sorted(set(values["services"]))
    if "working_hours" in values:
        _hours(values["working_hours"])
    async with request.app[SERVICES].sm() as session, session.begin():
        provider = await session.get(Provider, provider_id, with_for_update=True)
        if provider is None:
            raise NotFoundError(f"provider {provider_id} not found")
        for name, value in values.items():
            setattr(provider, name, value)
        provider.updated_at = datetime.now(UTC)
        audit(session, who, "provider.update", "provider", provider_id, fields=sorted(changed))
        return wire.Provider.model_validate(provider)


# -- incidents --------------------------------------------------------------------------


@api.post(
    "/api/v1/incidents",
    response=wire.CreatedIncident,
    status=201,
    also={200: wire.CreatedIncident},
    permission="incidents.write",
    errors=(409,),
    tag="incidents",
)
async def create_incident(request: web.Request, body: IncidentIn) -> Reply:
    """Open an incident as an operator.

    A signal inside the merge window joins the open incident: the answer is then 200 with merged true.
    """
    who = principal(request)
    if body.type == "service_request":
        # One record of a service request: the work order, not an incident beside it.
        raise ValidationError(
            "a service request is a work order: POST /api/v1/service-requests (or POST /api/v1/calls/{id}/incident)",
            field="type",
        )
    out, merged = await _dispatch(request).create(
        elder_id=body.elder_id,
        actor=who.user_id,
        type_=body.type,
        source="operator",
        severity=body.severity,
        service=body.service,
        location=body.location.model_dump() if body.location else None,
        detail={"note": body.note},
    )
    return Reply(wire.CreatedIncident.model_validate({**out, "merged": merged}), 200 if merged else 201)


_ACTION = {"permission": "incidents.write", "errors": (409,), "tag": "incidents"}


@api.post("/api/v1/incidents/{id}/acknowledge", response=wire.IncidentWithOffers, **_ACTION)
async def acknowledge(request: web.Request) -> wire.IncidentWithOffers:
    """An operator takes the incident; a second acknowledgement changes nothing."""
    out = await _dispatch(request).acknowledge(request.match_info["id"], principal(request).user_id)
    return wire.IncidentWithOffers.model_validate(out)


@api.post("/api/v1/incidents/{id}/dispatch", response=wire.IncidentWithOffers, **_ACTION)
async def dispatch_incident(request: web.Request, body: DispatchIn | None) -> wire.IncidentWithOffers:
    """Offer the incident to a provider: the one named, or the nearest suitable."""
    body = body or DispatchIn()
    out = await _dispatch(request).dispatch(
        request.match_info["id"],
        principal(request).user_id,
        provider_id=body.provider_id,
        service=body.service,
        timeout_s=body.timeout_s,
    )
    return wire.IncidentWithOffers.model_validate(out)


@api.post("/api/v1/incidents/{id}/resolve", response=wire.IncidentWithOffers, **_ACTION)
async def resolve(request: web.Request, body: ResolveIn | None) -> wire.IncidentWithOffers:
    """Close the incident as resolved; open offers are withdrawn."""
    note = body.note if body else None
    out = await _dispatch(request).close(
        request.match_info["id"], principal(request).user_id, status="resolved", note=note
    )
    return wire.IncidentWithOffers.model_validate(out)


@api.post("/api/v1/incidents/{id}/cancel", response=wire.IncidentWithOffers, **_ACTION)
async def cancel(request: web.Request, body: CancelIn) -> wire.IncidentWithOffers:
    """Close the incident as cancelled (a false alarm, ...); the note says why."""
    out = await _dispatch(request).close(
        request.match_info["id"], principal(request).user_id, status="cancelled", note=body.note
    )
    return wire.IncidentWithOffers.model_validate(out)


@api.get(
    "/api/v1/incidents/{id}/decisions",
    response=wire.Page[wire.RoutingDecision],
    permission="decisions.read",
    tag="incidents",
)
async def decisions(request: web.Request, query: PageQuery) -> wire.Page[wire.RoutingDecision]:
    """Every stored ranking for an incident, with each candidate's keys and reasons."""
    stmt = (
        select(RoutingDecision)
        .where(RoutingDecision.incident_id == request.match_info["id"])
        .order_by(RoutingDecision.id)
    )
    return await listing(request, stmt, query, wire.RoutingDecision.model_validate)


@api.post(
    "/api/v1/incidents/{id}/family/confirm",
    response=FamilyConfirmed,
    permission="family.confirm",
    errors=(409,),
    tag="family",
)
async def family_confirm(request: web.Request) -> FamilyConfirmed:
    """A family account says "I'm on my way" for its own elder's incident."""
    who = principal(request)
    out = await _dispatch(request).family_confirm(request.match_info["id"], who.user_id, elder_id=who.elder_id)
    return FamilyConfirmed.model_validate(out)


@api.get("/api/v1/family/confirm", public=True, media="text/html", errors=(400, 403, 409), tag="family")
async def family_link_page(request: web.Request) -> web.Response:
    """The signed link from an alert: a page with one button.

    GET only shows the button: link previewers fetch GETs, and a preview must not tell the
    operators that someone is on the way.
    """
    family_links(request).verify(request.query, now=datetime.now(UTC))
    form = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(request.query[k])}">' for k in "icse")
    html = (
        '<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
        "<title>12349</title><h1>12349 养老服务热线</h1><p>您正在赶往老人身边吗？</p>"
        f'<form method="post">{form}<button type="submit">我正在赶往</button></form>'
    )
    return web.Response(text=html, content_type="text/html")


@api.post("/api/v1/family/confirm", response=FamilyConfirmed, public=True, errors=(400, 403, 409), tag="family")
async def family_link_confirm(request: web.Request) -> web.StreamResponse | FamilyConfirmed:
    """The button of the signed link (the link's parameters, in the query or a form)."""
    params: dict[str, str] = dict(request.query)
    if not params and request.can_read_body:
        form = await request.post()
        params = {k: str(form[k]) for k in form}
    incident_id, contact_id = family_links(request).verify(params, now=datetime.now(UTC))
    out = await _dispatch(request).family_confirm(incident_id, f"contact:{contact_id}", contact_id=contact_id)
    if "text/html" in request.headers.get("accept", ""):
        return web.Response(text='<!doctype html><meta charset="utf-8"><p>已收到，谢谢。</p>', content_type="text/html")
    return FamilyConfirmed.model_validate(out)


# -- provider apps ----------------------------------------------------------------------


@api.get("/api/v1/provider/offers", response=wire.Page[ProviderOffer], permission="offers.respond", tag="provider app")
async def provider_offers(request: web.Request, query: OfferQuery) -> wire.Page[ProviderOffer]:
    """The calling provider's offers, newest first (open ones unless status says otherwise),
    each with what the provider needs to go: the address and the kind of help (for a work
    order, the service and the time), never the medical file."""
    who = principal(request)
    stmt = select(Offer).where(Offer.provider_id == (who.provider_id or "")).order_by(Offer.offered_at.desc(), Offer.id)
    if query.status != "all":
        stmt = stmt.where(Offer.status.in_(query.status.split(",")))
    page = await listing(request, stmt, query, ProviderOffer.model_validate)
    incident_ids = {o.incident_id for o in page.items if o.incident_id}
    order_ids = {o.service_request_id for o in page.items if o.service_request_id}
    async with request.app[SERVICES].sm() as session:
        incidents = {i.id: i for i in await session.scalars(select(Incident).where(Incident.id.in_(incident_ids)))}
        orders = {
            r.id: r for r in await session.scalars(select(ServiceRequest).where(ServiceRequest.id.in_(order_ids)))
        }
        elder_ids = {i.elder_id for i in incidents.values()} | {r.elder_id for r in orders.values()}
        elders = {e.id: e for e in await session.scalars(select(Elder).where(Elder.id.in_(elder_ids)))}
        rows = {o.id: o for o in await session.scalars(select(Offer).where(Offer.id.in_([o.id for o in page.items])))}
    for item in page.items:
        row = rows[item.id]
        if (incident := incidents.get(item.incident_id or "")) is not None:
            subject = offer_message(row, incident, "", elder=elders.get(incident.elder_id))
            item.incident = OfferedIncident.model_validate(subject["incident"])
        if (order := orders.get(item.service_request_id or "")) is not None:
            subject = WorkOrders.offer_message(row, order, "", elder=elders.get(order.elder_id))
            item.service_request = OfferedWork.model_validate(subject["service_request"])
    return page


def _provider_id(request: web.Request) -> str:
    who = principal(request)
    if who.provider_id is None:
        raise ValidationError("this account is not linked to a provider")
    return who.provider_id


def _answer(out: dict[str, Any], offer_id: str) -> OfferAnswer:
    offer = next(o for o in out["offers"] if o["id"] == offer_id)
    return OfferAnswer.model_validate({"offer": offer, "incident": {"id": out["id"], "status": out["status"]}})


_OFFER = {"response": OfferAnswer, "permission": "offers.respond", "errors": (409,), "tag": "provider app"}


async def _work_order(request: web.Request, offer_id: str) -> bool:
    """Whether the offer is for a work order (the service loop answers it) or an incident."""
    async with request.app[SERVICES].sm() as session:
        return await session.scalar(select(Offer.service_request_id).where(Offer.id == offer_id)) is not None


async def _reply(request: web.Request, *, accept: bool, body: ReasonIn | None) -> OfferAnswer:
    offer_id = request.match_info["id"]
    reason = body.reason if body else None
    if await _work_order(request, offer_id):
        offer, order = await care(request).orders.respond(
            offer_id, _provider_id(request), principal(request).user_id, accept=accept, reason=reason
        )
        return OfferAnswer(
            offer=wire.Offer.model_validate(offer), service_request=WorkOrderState(id=order.id, status=order.status)
        )
    out = await _dispatch(request).respond(
        offer_id, _provider_id(request), principal(request).user_id, accept=accept, reason=reason
    )
    return _answer(out, offer_id)


@api.post("/api/v1/offers/{id}/accept", **_OFFER)
async def offer_accept(request: web.Request, body: ReasonIn | None) -> OfferAnswer:
    """The provider takes the job."""
    return await _reply(request, accept=True, body=body)


@api.post("/api/v1/offers/{id}/decline", **_OFFER)
async def offer_decline(request: web.Request, body: ReasonIn | None) -> OfferAnswer:
    """The provider declines; the next candidate is offered the job."""
    return await _reply(request, accept=False, body=body)


async def _progress(request: web.Request, step: str, body: ProgressIn | None) -> OfferAnswer:
    location = None
    if body is not None and (body.lat is not None or body.lon is not None):
        if body.lat is None or body.lon is None:
            raise ValidationError("give both lat and lon", field="lat" if body.lat is None else "lon")
        location = {"lat": body.lat, "lon": body.lon}
    offer_id = request.match_info["id"]
    if await _work_order(request, offer_id):
        raise ConflictError(
            "a work order moves by check-in and check-out: POST /api/v1/service-requests/{id}/check-in|check-out"
        )
    out = await _dispatch(request).progress(
        offer_id, _provider_id(request), principal(request).user_id, step=step, location=location
    )
    return _answer(out, offer_id)


@api.post("/api/v1/offers/{id}/en_route", **_OFFER)
async def offer_en_route(request: web.Request, body: ProgressIn | None) -> OfferAnswer:
    """The provider is on the way (optionally with its position)."""
    return await _progress(request, "en_route", body)


@api.post("/api/v1/offers/{id}/on_scene", **_OFFER)
async def offer_on_scene(request: web.Request, body: ProgressIn | None) -> OfferAnswer:
    """The provider is with the elder."""
    return await _progress(request, "on_scene", body)


@api.post("/api/v1/offers/{id}/done", **_OFFER)
async def offer_done(request: web.Request, body: ProgressIn | None) -> OfferAnswer:
    """The provider has finished."""
    return await _progress(request, "done", body)


# -- policies -----------------------------------------------------------------------------


@api.get("/api/v1/policies", response=wire.Page[wire.Policy], permission="policies.read", tag="policies")
async def list_policies(request: web.Request, query: PolicyQuery) -> wire.Page[wire.Policy]:
    """Escalation policies, every version, newest version first per name."""
    stmt = select(EscalationPolicy).order_by(EscalationPolicy.name, EscalationPolicy.version.desc())
    if query.name:
        stmt = stmt.where(EscalationPolicy.name == query.name)
    return await listing(request, stmt, query, wire.Policy.model_validate)


@api.post(
    "/api/v1/policies",
    response=wire.Policy,
    status=201,
    permission="policies.write",
    errors=(409,),
    tag="policies",
)
async def create_policy(request: web.Request, body: PolicyIn) -> wire.Policy:
    """A new policy, or a new version of an existing one: running incidents keep their snapshot."""
    who = principal(request)
    try:
        tracks = parse_tracks(body.tracks)
    except PolicyError as exc:
        raise ValidationError(str(exc), field="tracks") from exc
    async with request.app[SERVICES].sm() as session:
        try:
            async with session.begin():
                latest = await session.scalar(
                    select(func.max(EscalationPolicy.version)).where(EscalationPolicy.name == body.name)
                )
                policy = EscalationPolicy(
                    **body.model_dump(exclude={"tracks"}),
                    version=(latest or 0) + 1,
                    tracks=tracks,
                    created_by=who.user_id,
                )
                session.add(policy)
                await session.flush()
                audit(session, who, "policy.create", "policy", f"{body.name}@{policy.version}")
                out = wire.Policy.model_validate(policy)
        except IntegrityError as exc:
            raise ConflictError(f"policy {body.name} was changed at the same time; retry") from exc
    if (dispatch := request.app[SERVICES].dispatch) is not None:
        dispatch.escalator.policies.invalidate()  # other instances follow within the book's TTL
    return out
