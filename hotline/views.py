"""Model -> JSON views shared by the API, the WebSocket feed and notifications.

Pure functions: no session, no I/O. Relationship attributes must be loaded by the caller.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from hotline.storage.models import (
    CallRecord,
    DeadLetter,
    Device,
    Elder,
    EmergencyContact,
    EscalationPolicy,
    Incident,
    IncidentEvent,
    Notification,
    Offer,
    Provider,
    RoutingDecision,
)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def age(birth: date, today: date | None = None) -> int:
    today = today or datetime.now(UTC).date()
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def contact_view(c: EmergencyContact) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "relation": c.relation,
        "phone": c.phone,
        "channel": c.channel,
        "webhook_url": c.webhook_url,
        "priority": c.priority,
    }


def elder_view(e: Elder, *, with_contacts: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": e.id,
        "name": e.name,
        "gender": e.gender,
        "birth_date": e.birth_date.isoformat(),
        "age": age(e.birth_date),
        "address": e.address,
        "district": e.district,
        "lat": e.lat,
        "lon": e.lon,
        "phones": list(e.phones),
        "medical_notes": e.medical_notes,
        "care_level": e.care_level,
        "economic_category": e.economic_category,
        "living_situation": e.living_situation,
        "home_radius_m": e.home_radius_m,
        "hr_low": e.hr_low,
        "hr_high": e.hr_high,
        "inactivity_hours": e.inactivity_hours,
        "created_at": iso(e.created_at),
    }
    if with_contacts:
        out["contacts"] = [contact_view(c) for c in e.contacts]
    return out


def elder_summary(e: Elder) -> dict[str, Any]:
    """What an operator needs at a glance when an alarm pops."""
    return {
        "id": e.id,
        "name": e.name,
        "gender": e.gender,
        "age": age(e.birth_date),
        "address": e.address,
        "phones": list(e.phones),
        "medical_notes": e.medical_notes,
        "care_level": e.care_level,
        "economic_category": e.economic_category,
        "living_situation": e.living_situation,
        "contacts": [{"name": c.name, "relation": c.relation, "phone": c.phone} for c in e.contacts],
    }


def device_view(d: Device) -> dict[str, Any]:
    return {
        "device_id": d.device_id,
        "kind": d.kind,
        "elder_id": d.elder_id,
        "sim_number": d.sim_number,
        "vendor": d.vendor,
        "model": d.model,
        "created_at": iso(d.created_at),
    }


def incident_view(i: Incident) -> dict[str, Any]:
    return {
        "id": i.id,
        "elder_id": i.elder_id,
        "device_id": i.device_id,
        "type": i.type,
        "severity": i.severity,
        "status": i.status,
        "source": i.source,
        "location": i.location,
        "signals": list(i.signals or []),
        "service": i.service,
        "provider_id": i.provider_id,
        "acknowledged_at": iso(i.acknowledged_at),
        "acknowledged_by": i.acknowledged_by,
        "family_confirmed_at": iso(i.family_confirmed_at),
        "family_confirmed_by": i.family_confirmed_by,
        "policy": {"name": i.policy["name"], "version": i.policy["version"]} if i.policy else None,
        "created_at": iso(i.created_at),
        "updated_at": iso(i.updated_at),
        "closed_at": iso(i.closed_at),
    }


def timeline_view(ev: IncidentEvent) -> dict[str, Any]:
    return {"at": iso(ev.at), "kind": ev.kind, "actor": ev.actor, "data": ev.data}


def dead_letter_view(d: DeadLetter, *, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id,
        "received_at": iso(d.received_at),
        "topic": d.topic,
        "device_id": d.device_id,
        "event_id": d.event_id,
        "reason": d.reason,
        "disposition": d.disposition,
        "size": d.size,
        "attempts": d.attempts,
        "replayable": d.raw is not None,
        "replay_requested_at": iso(d.replay_requested_at),
        "replayed_at": iso(d.replayed_at),
        "replay_result": d.replay_result,
    }
    if detail:
        out["payload"] = d.payload
        out["error"] = d.error
    return out


def notification_view(n: Notification) -> dict[str, Any]:
    return {
        "id": n.id,
        "channel": n.channel,
        "event_type": n.event_type,
        "status": n.status,
        "attempts": n.attempts,
        "last_error": n.last_error,
        "created_at": iso(n.created_at),
        "delivered_at": iso(n.delivered_at),
    }


def provider_view(p: Provider) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "kind": p.kind,
        "services": list(p.services),
        "lat": p.lat,
        "lon": p.lon,
        "address": p.address,
        "service_radius_m": p.service_radius_m,
        "capacity": p.capacity,
        "current_load": p.current_load,
        "availability": p.availability,
        "rating": p.rating,
        "phone": p.phone,
        "working_hours": p.working_hours,
        "last_offered_at": iso(p.last_offered_at),
        "updated_at": iso(p.updated_at),
    }


def call_record_view(c: CallRecord) -> dict[str, Any]:
    return {
        "id": c.id,
        "linkedid": c.linkedid,
        "direction": c.direction,
        "queue": c.queue,
        "caller_num": c.caller_num,
        "caller_name": c.caller_name,
        "state": c.state,
        "outcome": c.outcome,
        "elder_id": c.elder_id,
        "matched_by": c.matched_by,
        "operator_id": c.operator_id,
        "member": c.member,
        "started_at": iso(c.started_at),
        "answered_at": iso(c.answered_at),
        "ended_at": iso(c.ended_at),
        "hold_s": c.hold_s,
        "ring_s": c.ring_s,
        "talk_s": c.talk_s,
        "end_reason": c.end_reason,
        "transferred_to": c.transferred_to,
        "inferred": c.inferred,
        "attempts": c.attempts,
        "purpose": c.purpose,
        "incident_id": c.incident_id,
        "device_id": c.device_id,
        "requested_by": c.requested_by,
        "detail": c.detail,
    }


def offer_view(o: Offer) -> dict[str, Any]:
    return {
        "id": o.id,
        "incident_id": o.incident_id,
        "provider_id": o.provider_id,
        "rank": o.rank,
        "eta_min": o.eta_min,
        "status": o.status,
        "offered_at": iso(o.offered_at),
        "expires_at": iso(o.expires_at),
        "responded_at": iso(o.responded_at),
        "reason": o.reason,
        "location": o.location,
        "decision_id": o.decision_id,
    }


def decision_view(d: RoutingDecision) -> dict[str, Any]:
    return {
        "id": d.id,
        "incident_id": d.incident_id,
        "at": iso(d.at),
        "service": d.service,
        "origin": d.origin,
        "estimator": d.estimator,
        "source": d.source,
        "chosen_provider_id": d.chosen_provider_id,
        "reachable_in_time": d.reachable_in_time,
        "candidates": d.candidates,
        "excluded": d.excluded,
    }


def policy_view(p: EscalationPolicy) -> dict[str, Any]:
    return {
        "name": p.name,
        "version": p.version,
        "description": p.description,
        "types": p.types,
        "severities": p.severities,
        "priority": p.priority,
        "active": p.active,
        "tracks": p.tracks,
        "created_by": p.created_by,
        "created_at": iso(p.created_at),
    }
