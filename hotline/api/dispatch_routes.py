"""Dispatch API: providers, incident actions, offers for provider apps, escalation policies,
and the family's "I'm on my way"."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from aiohttp import web
from sqlalchemy import String, cast, func, select
from sqlalchemy.exc import IntegrityError

from dispatch.catalogue import SERVICES as CATALOGUE
from dispatch.errors import PolicyError
from dispatch.notify.links import FamilyLinks
from dispatch.policy import parse_tracks
from dispatch.routing import AVAILABILITY, check_working_hours
from dispatch.service import DispatchService
from hotline.api import validation as v
from hotline.api.jsonutil import json_response
from hotline.api.keys import SERVICES
from hotline.api.routes import audit, body, listing, principal
from hotline.auth import require
from hotline.core.vocab import OPERATOR_INCIDENT_TYPES
from hotline.errors import ConflictError, NotFoundError, ValidationError
from hotline.storage.models import PROVIDER_KINDS, SEVERITIES, EscalationPolicy, Offer, Provider, RoutingDecision
from hotline.views import decision_view, offer_view, policy_view, provider_view

routes = web.RouteTableDef()

INCIDENT_TYPES = tuple(str(t) for t in OPERATOR_INCIDENT_TYPES)


def _dispatch(request: web.Request) -> DispatchService:
    svc = request.app[SERVICES].dispatch
    if svc is None:
        raise ConflictError("dispatch is not running")
    return svc


def family_links(request: web.Request) -> FamilyLinks:
    links = _dispatch(request).escalator.links
    if links is None:
        raise ConflictError("family links are not configured")
    return links


PROVIDER_FIELDS = (
    "name",
    "kind",
    "services",
    "lat",
    "lon",
    "address",
    "phone",
    "service_radius_m",
    "working_hours",
    "capacity",
    "availability",
    "rating",
)
INCIDENT_FIELDS = ("type", "service", "location", "elder_id", "severity", "note")
POLICY_FIELDS = ("name", "tracks", "types", "severities", "description", "priority", "active")


# -- providers --------------------------------------------------------------------------


def _services(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not raw or any(not isinstance(s, str) or s not in CATALOGUE for s in raw):
        raise ValidationError(
            f"services must be a non-empty list of catalogue codes: {', '.join(CATALOGUE)}", field="services"
        )
    return sorted(set(raw))


def _hours(raw: Any) -> dict[str, Any]:
    if (problem := check_working_hours(raw)) is not None:
        raise ValidationError(f"working_hours {problem}", field="working_hours")
    assert isinstance(raw, dict)
    return raw


@routes.get("/api/v1/providers")
async def list_providers(request: web.Request) -> web.Response:
    require(principal(request), "providers.read")
    stmt = select(Provider).order_by(Provider.created_at, Provider.id)
    if kind := request.query.get("kind"):
        stmt = stmt.where(Provider.kind == kind)
    if availability := request.query.get("availability"):
        stmt = stmt.where(Provider.availability == availability)
    if service := request.query.get("service"):
        if service not in CATALOGUE:
            raise ValidationError("service must be a catalogue code", field="service")
        # JSON containment differs between SQLite and PostgreSQL; a quoted LIKE works on both.
        stmt = stmt.where(cast(Provider.services, String).like(f'%"{service}"%'))
    return await listing(request, stmt, provider_view)


@routes.post("/api/v1/providers")
async def create_provider(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, "providers.write")
    b = v.obj(await body(request), PROVIDER_FIELDS)
    kind = v.choice(b, "kind", PROVIDER_KINDS)
    phone = b.get("phone")
    provider = Provider(
        name=v.req_string(b, "name", max_len=128),
        kind=kind,
        services=_services(b.get("services")),
        lat=v.number(b, "lat", -90, 90),
        lon=v.number(b, "lon", -180, 180),
        address=v.string(b, "address", max_len=255, required=False) or "",
        phone=v.phone(phone, "phone") if phone is not None else None,
        service_radius_m=v.integer(b, "service_radius_m", 100, 100_000, default=3000),
        working_hours=_hours(b.get("working_hours", {})),
        capacity=v.integer(b, "capacity", 1, 10_000, default=1),
        current_load=0,
        availability=v.choice(b, "availability", AVAILABILITY, default="available"),
        rating=v.number(b, "rating", 0, 5, default=4.0),
    )
    async with request.app[SERVICES].sm() as session, session.begin():
        session.add(provider)
        await session.flush()
        audit(session, who, "provider.create", "provider", provider.id, kind=kind)
        out = provider_view(provider)
    return json_response(out, status=201)


@routes.get("/api/v1/providers/{id}")
async def get_provider(request: web.Request) -> web.Response:
    who = principal(request)
    provider_id = request.match_info["id"]
    if who.provider_id != provider_id:
        require(who, "providers.read")
    async with request.app[SERVICES].sm() as session:
        provider = await session.get(Provider, provider_id)
    if provider is None:
        raise NotFoundError(f"provider {provider_id} not found")
    return json_response(provider_view(provider))


# What a provider may change about itself from its app; staff may change everything.
SELF_FIELDS = frozenset({"availability", "lat", "lon"})


@routes.patch("/api/v1/providers/{id}")
async def patch_provider(request: web.Request) -> web.Response:
    who = principal(request)
    provider_id = request.match_info["id"]
    raw = await body(request)
    if who.role == "provider" and who.provider_id == provider_id:
        if isinstance(raw, dict) and (extra := sorted(set(raw) - SELF_FIELDS)):
            raise ValidationError(f"a provider may change only {', '.join(sorted(SELF_FIELDS))}", field=extra[0])
    else:
        require(who, "providers.write")
    b = v.obj(raw, PROVIDER_FIELDS)
    async with request.app[SERVICES].sm() as session, session.begin():
        provider = await session.get(Provider, provider_id, with_for_update=True)
        if provider is None:
            raise NotFoundError(f"provider {provider_id} not found")
        if "name" in b:
            provider.name = v.req_string(b, "name", max_len=128)
        if "kind" in b:
            provider.kind = v.choice(b, "kind", PROVIDER_KINDS)
        if "services" in b:
            provider.services = _services(b["services"])
        if "lat" in b:
            provider.lat = v.number(b, "lat", -90, 90)
        if "lon" in b:
            provider.lon = v.number(b, "lon", -180, 180)
        if "address" in b:
            provider.address = v.string(b, "address", max_len=255, required=False) or ""
        if "phone" in b:
            provider.phone = v.phone(b["phone"], "phone") if b["phone"] is not None else None
        if "service_radius_m" in b:
            provider.service_radius_m = v.integer(b, "service_radius_m", 100, 100_000)
        if "working_hours" in b:
            provider.working_hours = _hours(b["working_hours"])
        if "capacity" in b:
            provider.capacity = v.integer(b, "capacity", 1, 10_000)
        if "availability" in b:
            provider.availability = v.choice(b, "availability", AVAILABILITY)
        if "rating" in b:
            provider.rating = v.number(b, "rating", 0, 5)
        provider.updated_at = datetime.now(UTC)
        audit(session, who, "provider.update", "provider", provider_id, fields=sorted(b))
        out = provider_view(provider)
    return json_response(out)


# -- incidents --------------------------------------------------------------------------


@routes.post("/api/v1/incidents")
async def create_incident(request: web.Request) -> web.Response:
    """An operator-created incident; a signal inside the merge window joins the open one (200)."""
    who = principal(request)
    require(who, "incidents.write")
    b = v.obj(await body(request), INCIDENT_FIELDS)
    type_ = v.choice(b, "type", INCIDENT_TYPES)
    service = v.choice(b, "service", tuple(CATALOGUE)) if "service" in b else None
    if type_ == "service_request" and service is None:
        raise ValidationError("a service request needs a catalogue service", field="service")
    location = None
    if "location" in b:
        loc = v.obj(b["location"], ("lat", "lon"), where="location")
        location = {"lat": v.number(loc, "lat", -90, 90), "lon": v.number(loc, "lon", -180, 180)}
    out, merged = await _dispatch(request).create(
        elder_id=v.req_string(b, "elder_id", max_len=40),
        actor=who.user_id,
        type_=type_,
        source="operator",
        severity=v.choice(b, "severity", SEVERITIES) if "severity" in b else None,
        service=service,
        location=location,
        detail={"note": v.string(b, "note", max_len=1000, required=False)},
    )
    return json_response({**out, "merged": merged}, status=200 if merged else 201)


@routes.post("/api/v1/incidents/{id}/acknowledge")
async def acknowledge(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, "incidents.write")
    return json_response(await _dispatch(request).acknowledge(request.match_info["id"], who.user_id))


@routes.post("/api/v1/incidents/{id}/dispatch")
async def dispatch_incident(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, "incidents.write")
    b = v.obj(await body(request), ("provider_id", "service", "timeout_s")) if request.can_read_body else {}
    out = await _dispatch(request).dispatch(
        request.match_info["id"],
        who.user_id,
        provider_id=v.string(b, "provider_id", max_len=40, required=False),
        service=v.choice(b, "service", tuple(CATALOGUE)) if "service" in b else None,
        timeout_s=v.integer(b, "timeout_s", 5, 86_400, default=60),
    )
    return json_response(out)


async def _close(request: web.Request, status: str) -> web.Response:
    who = principal(request)
    require(who, "incidents.write")
    b = v.obj(await body(request), ("note",)) if request.can_read_body else {}
    note = v.string(b, "note", max_len=1000, required=False)
    if status == "cancelled" and not note:
        raise ValidationError("say why the incident is cancelled (a false alarm, ...)", field="note")
    return json_response(
        await _dispatch(request).close(request.match_info["id"], who.user_id, status=status, note=note)
    )


@routes.post("/api/v1/incidents/{id}/resolve")
async def resolve(request: web.Request) -> web.Response:
    return await _close(request, "resolved")


@routes.post("/api/v1/incidents/{id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    return await _close(request, "cancelled")


@routes.get("/api/v1/incidents/{id}/decisions")
async def decisions(request: web.Request) -> web.Response:
    """Every stored ranking for an incident, with each candidate's keys and reasons."""
    require(principal(request), "decisions.read")
    stmt = (
        select(RoutingDecision)
        .where(RoutingDecision.incident_id == request.match_info["id"])
        .order_by(RoutingDecision.id)
    )
    return await listing(request, stmt, decision_view)


@routes.post("/api/v1/incidents/{id}/family/confirm")
async def family_confirm(request: web.Request) -> web.Response:
    """A family account says "I'm on my way" for its own elder's incident."""
    who = principal(request)
    require(who, "family.confirm")
    out = await _dispatch(request).family_confirm(request.match_info["id"], who.user_id, elder_id=who.elder_id)
    return json_response({"id": out["id"], "family_confirmed_at": out["family_confirmed_at"]})


@routes.get("/api/v1/family/confirm")
async def family_link_page(request: web.Request) -> web.Response:
    """The signed link from an alert. GET only shows a button: link previewers fetch GETs,
    and a preview must not tell the operators that someone is on the way."""
    family_links(request).verify(request.query, now=datetime.now(UTC))
    form = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(request.query[k])}">' for k in "icse")
    html = (
        '<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
        "<title>12349</title><h1>12349 养老服务热线</h1><p>您正在赶往老人身边吗？</p>"
        f'<form method="post">{form}<button type="submit">我正在赶往</button></form>'
    )
    return web.Response(text=html, content_type="text/html")


@routes.post("/api/v1/family/confirm")
async def family_link_confirm(request: web.Request) -> web.Response:
    params: dict[str, str] = dict(request.query)
    if not params and request.can_read_body:
        form = await request.post()
        params = {k: str(form[k]) for k in form}
    incident_id, contact_id = family_links(request).verify(params, now=datetime.now(UTC))
    out = await _dispatch(request).family_confirm(incident_id, f"contact:{contact_id}", contact_id=contact_id)
    if "text/html" in request.headers.get("accept", ""):
        return web.Response(text='<!doctype html><meta charset="utf-8"><p>已收到，谢谢。</p>', content_type="text/html")
    return json_response({"id": out["id"], "family_confirmed_at": out["family_confirmed_at"]})


# -- provider apps ----------------------------------------------------------------------


@routes.get("/api/v1/provider/offers")
async def provider_offers(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, "offers.respond")
    stmt = select(Offer).where(Offer.provider_id == (who.provider_id or "")).order_by(Offer.offered_at.desc(), Offer.id)
    status = request.query.get("status", "offered")
    if status != "all":
        stmt = stmt.where(Offer.status.in_(status.split(",")))
    return await listing(request, stmt, offer_view)


async def _respond(request: web.Request, action: str) -> web.Response:
    who = principal(request)
    require(who, "offers.respond")
    if who.provider_id is None:
        raise ValidationError("this account is not linked to a provider")
    b = (
        v.obj(await body(request), ("reason",) if action in ("accept", "decline") else ("lat", "lon"))
        if request.can_read_body
        else {}
    )
    offer_id = request.match_info["id"]
    svc = _dispatch(request)
    if action in ("accept", "decline"):
        reason = v.string(b, "reason", max_len=500, required=False)
        out = await svc.respond(offer_id, who.provider_id, who.user_id, accept=action == "accept", reason=reason)
    else:
        location = None
        if "lat" in b or "lon" in b:
            location = {"lat": v.number(b, "lat", -90, 90), "lon": v.number(b, "lon", -180, 180)}
        out = await svc.progress(offer_id, who.provider_id, who.user_id, step=action, location=location)
    offer = next(o for o in out["offers"] if o["id"] == offer_id)
    return json_response({"offer": offer, "incident": {"id": out["id"], "status": out["status"]}})


def _offer_route(action: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return await _respond(request, action)

    handler.__name__ = f"offer_{action}"
    routes.post(f"/api/v1/offers/{{id}}/{action}")(handler)


for _action in ("accept", "decline", "en_route", "on_scene", "done"):
    _offer_route(_action)


# -- policies -----------------------------------------------------------------------------


@routes.get("/api/v1/policies")
async def list_policies(request: web.Request) -> web.Response:
    require(principal(request), "policies.read")
    stmt = select(EscalationPolicy).order_by(EscalationPolicy.name, EscalationPolicy.version.desc())
    if name := request.query.get("name"):
        stmt = stmt.where(EscalationPolicy.name == name)
    return await listing(request, stmt, policy_view)


@routes.post("/api/v1/policies")
async def create_policy(request: web.Request) -> web.Response:
    """A new policy, or a new version of an existing one: running incidents keep their snapshot."""
    who = principal(request)
    require(who, "policies.write")
    b = v.obj(await body(request), POLICY_FIELDS)
    name = v.req_string(b, "name", max_len=64)
    try:
        tracks = parse_tracks(b.get("tracks"))
    except PolicyError as exc:
        raise ValidationError(str(exc), field="tracks") from exc
    types, severities = b.get("types", []), b.get("severities", [])
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise ValidationError("types must be a list of incident types", field="types")
    if not isinstance(severities, list) or any(s not in SEVERITIES for s in severities):
        raise ValidationError(f"severities must be a list of {', '.join(SEVERITIES)}", field="severities")
    async with request.app[SERVICES].sm() as session:
        try:
            async with session.begin():
                latest = await session.scalar(
                    select(func.max(EscalationPolicy.version)).where(EscalationPolicy.name == name)
                )
                policy = EscalationPolicy(
                    name=name,
                    version=(latest or 0) + 1,
                    description=v.string(b, "description", max_len=500, required=False) or "",
                    types=types,
                    severities=severities,
                    priority=v.integer(b, "priority", -1000, 1000, default=0),
                    tracks=tracks,
                    active=bool(b.get("active", True)),
                    created_by=who.user_id,
                )
                session.add(policy)
                await session.flush()
                audit(session, who, "policy.create", "policy", f"{name}@{policy.version}")
                out = policy_view(policy)
        except IntegrityError as exc:
            raise ConflictError(f"policy {name} was changed at the same time; retry") from exc
    if (dispatch := request.app[SERVICES].dispatch) is not None:
        dispatch.escalator.policies.invalidate()  # other instances follow within the book's TTL
    return json_response(out, status=201)
