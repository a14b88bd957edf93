"""The OpenAPI 3.1 document served at /api/v1/openapi.json (kept beside the routes)."""

from __future__ import annotations

from typing import Any

from dispatch.catalogue import SERVICES
from dispatch.routing import AVAILABILITY
from hotline import __version__
from hotline.storage.models import (
    CARE_LEVELS,
    CONTACT_CHANNELS,
    DEVICE_KINDS,
    ECONOMIC_CATEGORIES,
    LIVING_SITUATIONS,
    PROVIDER_KINDS,
)

_ERR = {"$ref": "#/components/responses/Error"}


def _list_of(ref: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "total"],
        "properties": {"items": {"type": "array", "items": {"$ref": ref}}, "total": {"type": "integer"}},
    }


def _ok(schema: dict[str, Any], code: str = "200") -> dict[str, Any]:
    return {
        code: {"description": "OK", "content": {"application/json": {"schema": schema}}},
        "400": _ERR,
        "401": _ERR,
        "403": _ERR,
    }


_PAGING = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000000000, "default": 0}},
]
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]


def _calls() -> tuple[dict[str, Any], ...]:
    num = {"type": ["number", "null"]}
    text = {"type": ["string", "null"]}
    call = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "linkedid": {"type": "string", "description": "Asterisk Linkedid (our ChannelId when we called out)"},
            "direction": {"enum": ["inbound", "outbound"]},
            "state": {"enum": ["originating", "dialing", "queued", "ringing", "answered", "ended"]},
            "outcome": {
                "enum": [
                    "answered",
                    "abandoned",
                    "timeout",
                    "busy",
                    "no_answer",
                    "congestion",
                    "failed",
                    "unknown",
                    None,
                ]
            },
            "caller_num": {"type": "string"},
            "caller_name": {"type": "string"},
            "elder_id": text,
            "matched_by": {"enum": ["elder", "device", "contact", None]},
            "operator_id": text,
            "member": text,
            "started_at": {"type": "string", "format": "date-time"},
            "answered_at": text,
            "ended_at": text,
            "hold_s": num,
            "ring_s": num,
            "talk_s": num,
            "end_reason": text,
            "transferred_to": text,
            "inferred": {"type": "boolean", "description": "timings estimated after an AMI reconnect"},
            "attempts": {"type": "array", "items": {"type": "object"}},
            "purpose": text,
            "incident_id": text,
            "device_id": text,
        },
    }
    call_in = {
        "type": "object",
        "properties": {
            "number": {"type": "string"},
            "elder_id": {"type": "string"},
            "contact_id": {"type": "integer"},
            "device_id": {"type": "string"},
            "purpose": {"enum": ["click_to_call", "elder", "contact", "alarm_callback", "wellbeing"]},
            "incident_id": {"type": "string"},
            "idempotency_key": {"type": "string", "maxLength": 200},
        },
    }
    call_incident_in = {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {
                "enum": ["emergency", "health", "service_request", "consultation", "complaint", "referral", "follow_up"]
            },
            "severity": {"enum": ["low", "medium", "high", "critical"]},
            "service": {"type": "string", "description": "catalogue code, required for service_request"},
            "elder_id": {"type": "string", "description": "required when the caller was not recognised"},
            "note": {"type": "string", "maxLength": 1000},
        },
    }
    share = {"type": ["number", "null"]}
    stats = {
        "type": "object",
        "properties": {
            "offered": {"type": "integer"},
            "answered": {"type": "integer"},
            "abandoned": {"type": "integer"},
            "timeout": {"type": "integer"},
            "other": {"type": "integer"},
            "in_progress": {"type": "integer"},
            "pbx_shutdown": {
                "type": "integer",
                "description": "calls cut by an Asterisk stop or restart: not offered, not abandoned",
            },
            "answered_within": {"type": "object", "properties": dict.fromkeys(("20", "60", "180"), share)},
            "abandon_rate": share,
            "avg_wait_s": share,
            "max_wait_s": share,
            "targets": {"type": "array", "items": {"type": "object"}},
            "operators": {"type": "array", "items": {"type": "object"}},
        },
    }
    return call, call_in, call_incident_in, stats


def _dispatch() -> tuple[dict[str, Any], dict[str, Any]]:
    """Paths and schemas of providers, incident actions, offers, policies and family confirmation."""
    text = {"type": ["string", "null"]}
    services = {"type": "array", "items": {"enum": list(SERVICES)}}
    provider = {
        "type": "object",
        "required": ["name", "kind", "services", "lat", "lon"],
        "properties": {
            "id": {"type": "string", "readOnly": True},
            "name": {"type": "string"},
            "kind": {"enum": list(PROVIDER_KINDS)},
            "services": services,
            "lat": {"type": "number"},
            "lon": {"type": "number"},
            "address": {"type": "string"},
            "phone": text,
            "service_radius_m": {"type": "integer", "minimum": 100},
            "working_hours": {
                "type": "object",
                "description": 'day ranges to spans in UTC+8, e.g. {"mon-fri": "08:00-18:00", "sat": ["09:00-12:00"]};'
                " empty means always",
            },
            "capacity": {"type": "integer", "minimum": 1},
            "current_load": {"type": "integer", "readOnly": True},
            "availability": {"enum": list(AVAILABILITY)},
            "rating": {"type": "number", "minimum": 0, "maximum": 5},
            "last_offered_at": {**text, "readOnly": True},
        },
    }
    offer = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "incident_id": {"type": "string"},
            "provider_id": {"type": "string"},
            "rank": {"type": "integer"},
            "eta_min": {"type": "number"},
            "status": {
                "enum": ["offered", "accepted", "declined", "expired", "withdrawn", "en_route", "on_scene", "done"]
            },
            "offered_at": {"type": "string", "format": "date-time"},
            "expires_at": {"type": "string", "format": "date-time"},
            "responded_at": text,
            "reason": text,
            "location": {"type": ["object", "null"]},
            "decision_id": {"type": ["integer", "null"]},
        },
    }
    decision = {
        "type": "object",
        "description": "A stored ranking. Each candidate has its sort keys (eta_band, specialist, availability, "
        "load_band, rating_band, last_offered_at) and readable reasons; excluded providers have a reason.",
        "properties": {
            "id": {"type": "integer"},
            "service": {"type": "string"},
            "estimator": {"type": "string"},
            "source": {"enum": ["redis", "database"]},
            "chosen_provider_id": text,
            "reachable_in_time": {"type": "boolean"},
            "candidates": {"type": "array", "items": {"type": "object"}},
            "excluded": {"type": "array", "items": {"type": "object"}},
        },
    }
    policy = {
        "type": "object",
        "required": ["name", "tracks"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "integer", "readOnly": True},
            "description": {"type": "string"},
            "types": {"type": "array", "items": {"type": "string"}},
            "severities": {"type": "array", "items": {"enum": ["low", "medium", "high", "critical"]}},
            "priority": {"type": "integer"},
            "active": {"type": "boolean"},
            "tracks": {
                "type": "array",
                "description": "Tracks run side by side. Steps: wait{seconds}, notify{to: family|role:R|user:ID}, "
                "offer{timeout_s, service?}, call{number}, webhook{url}, emergency, repeat{from, times}; any step may "
                "have unless, a track until: acknowledged|dispatched|accepted|family_confirmed.",
                "items": {"type": "object"},
            },
        },
    }
    note = {"type": "object", "properties": {"note": {"type": "string"}}}
    where = {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}}
    inc = {"$ref": "#/components/schemas/Incident"}
    detail = {**_ok(inc), "404": _ERR, "409": _ERR}

    def action(summary: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        op: dict[str, Any] = {"summary": summary, "parameters": _ID, "responses": detail}
        if schema is not None:
            op["requestBody"] = {"content": {"application/json": {"schema": schema}}}
        return {"post": op}

    offer_result = {
        "type": "object",
        "properties": {"offer": {"$ref": "#/components/schemas/Offer"}, "incident": {"type": "object"}},
    }
    paths: dict[str, Any] = {
        "/api/v1/providers": {
            "get": {
                "summary": "Providers (staff)",
                "parameters": [
                    *_PAGING,
                    *(
                        {"name": n, "in": "query", "schema": {"type": "string"}}
                        for n in ("kind", "service", "availability")
                    ),
                ],
                "responses": _ok(_list_of("#/components/schemas/Provider")),
            },
            "post": {
                "summary": "Register a provider (dispatchers, supervisors, admins); it enters the GEO index on commit",
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Provider"}}}},
                "responses": _ok({"$ref": "#/components/schemas/Provider"}, "201"),
            },
        },
        "/api/v1/providers/{id}": {
            "get": {
                "summary": "One provider",
                "parameters": _ID,
                "responses": {**_ok({"$ref": "#/components/schemas/Provider"}), "404": _ERR},
            },
            "patch": {
                "summary": "Change a provider; a provider account may change only its own availability, lat and lon",
                "parameters": _ID,
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Provider"}}}},
                "responses": {**_ok({"$ref": "#/components/schemas/Provider"}), "404": _ERR},
            },
        },
        "/api/v1/incidents/{id}/acknowledge": action("An operator picks the incident up (idempotent)"),
        "/api/v1/incidents/{id}/dispatch": action(
            "Offer to the best candidate, or to provider_id when it passes the same filters",
            {
                "type": "object",
                "properties": {
                    "provider_id": {"type": "string"},
                    "service": {"enum": list(SERVICES)},
                    "timeout_s": {"type": "integer"},
                },
            },
        ),
        "/api/v1/incidents/{id}/resolve": action("Close as resolved", note),
        "/api/v1/incidents/{id}/cancel": action("Close as cancelled (a false alarm); note is required", note),
        "/api/v1/incidents/{id}/decisions": {
            "get": {
                "summary": "Every stored ranking for the incident, with reasons",
                "parameters": [*_ID, *_PAGING],
                "responses": _ok(_list_of("#/components/schemas/RoutingDecision")),
            }
        },
        "/api/v1/incidents/{id}/family/confirm": action("A family account says I'm on my way (own elder only)"),
        "/api/v1/family/confirm": {
            "get": {
                "summary": "The signed link from a family alert: a page with a confirm button (no token; i, c, e, s)",
                "parameters": [
                    {"name": n, "in": "query", "required": True, "schema": {"type": "string"}} for n in "icse"
                ],
                "responses": {"200": {"description": "HTML page"}, "403": _ERR},
            },
            "post": {
                "summary": "Confirm I'm on my way through the signed link (query or form fields i, c, e, s)",
                "responses": {**_ok({"type": "object"}), "403": _ERR, "409": _ERR},
            },
        },
        "/api/v1/provider/offers": {
            "get": {
                "summary": "The calling provider's offers; status=offered (default), a comma list, or all",
                "parameters": [*_PAGING, {"name": "status", "in": "query", "schema": {"type": "string"}}],
                "responses": _ok(_list_of("#/components/schemas/Offer")),
            }
        },
        "/api/v1/policies": {
            "get": {
                "summary": "Escalation policies, every version",
                "parameters": [*_PAGING, {"name": "name", "in": "query", "schema": {"type": "string"}}],
                "responses": _ok(_list_of("#/components/schemas/Policy")),
            },
            "post": {
                "summary": "A new policy or a new version of one; running incidents keep their snapshot",
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Policy"}}}},
                "responses": _ok({"$ref": "#/components/schemas/Policy"}, "201"),
            },
        },
    }
    for step, body in (
        ("accept", {"type": "object", "properties": {"reason": {"type": "string"}}}),
        ("decline", {"type": "object", "properties": {"reason": {"type": "string"}}}),
        ("en_route", where),
        ("on_scene", where),
        ("done", where),
    ):
        paths[f"/api/v1/offers/{{id}}/{step}"] = {
            "post": {
                "summary": f"Provider app: {step.replace('_', ' ')}",
                "parameters": _ID,
                "requestBody": {"content": {"application/json": {"schema": body}}},
                "responses": {**_ok(offer_result), "404": _ERR, "409": _ERR},
            }
        }
    schemas = {"Provider": provider, "Offer": offer, "RoutingDecision": decision, "Policy": policy}
    return paths, schemas


def _dead_letters() -> tuple[dict[str, Any], dict[str, Any]]:
    when = {"type": ["string", "null"], "format": "date-time"}
    letter = {
        "type": "object",
        "required": ["id", "received_at", "topic", "reason", "disposition", "size", "attempts", "replayable"],
        "properties": {
            "id": {"type": "integer"},
            "received_at": {"type": "string", "format": "date-time"},
            "topic": {"type": "string"},
            "device_id": {"type": ["string", "null"]},
            "event_id": {"type": ["string", "null"]},
            "reason": {"type": "string"},
            "disposition": {"enum": ["rejected", "accepted_with_warning", "parked"]},
            "size": {"type": "integer"},
            "attempts": {"type": "integer"},
            "replayable": {"type": "boolean"},
            "replay_requested_at": when,
            "replayed_at": when,
            "replay_result": {"type": ["string", "null"]},
            "payload": {"type": "string", "description": "detail only"},
            "error": {"type": ["string", "null"], "description": "detail only: the traceback of a parked message"},
        },
    }
    query = [
        {"name": name, "in": "query", "schema": schema}
        for name, schema in (
            ("device_id", {"type": "string"}),
            ("reason", {"type": "string"}),
            ("disposition", {"enum": ["rejected", "accepted_with_warning", "parked"]}),
            ("since", {"type": "string", "format": "date-time"}),
            ("until", {"type": "string", "format": "date-time"}),
        )
    ]
    ref = {"$ref": "#/components/schemas/DeadLetter"}
    paths = {
        "/api/v1/dead-letters": {
            "get": {
                "summary": "Messages the device gateway refused or parked, newest first (supervisor, admin)",
                "parameters": [*_PAGING, *query],
                "responses": {**_ok(_list_of("#/components/schemas/DeadLetter")), "400": _ERR, "403": _ERR},
            }
        },
        "/api/v1/dead-letters/{id}": {
            "get": {
                "summary": "One dead letter with its payload and error",
                "parameters": _ID,
                "responses": {**_ok(ref), "404": _ERR},
            }
        },
        "/api/v1/dead-letters/{id}/replay": {
            "post": {
                "summary": "Run the stored bytes through the gateway's normal path again (idempotent)",
                "parameters": _ID,
                "responses": {
                    **_ok(
                        {
                            "type": "object",
                            "required": ["id", "result"],
                            "properties": {"id": {"type": "integer"}, "result": {"type": "string"}},
                        }
                    ),
                    "400": _ERR,
                    "404": _ERR,
                },
            }
        },
    }
    return paths, {"DeadLetter": letter}


def spec() -> dict[str, Any]:
    dispatch_paths, dispatch_schemas = _dispatch()
    dead_letter_paths, dead_letter_schemas = _dead_letters()
    call, call_in, call_incident_in, stats = _calls()
    contact = {
        "type": "object",
        "required": ["name", "relation", "phone"],
        "properties": {
            "name": {"type": "string"},
            "relation": {"type": "string"},
            "phone": {"type": "string"},
            "channel": {"enum": list(CONTACT_CHANNELS)},
            "webhook_url": {"type": "string", "format": "uri"},
            "priority": {"type": "integer"},
        },
    }
    elder_in = {
        "type": "object",
        "required": ["name", "gender", "birth_date", "address", "lat", "lon", "care_level", "living_situation"],
        "properties": {
            "name": {"type": "string", "maxLength": 64},
            "gender": {"enum": ["F", "M"]},
            "birth_date": {"type": "string", "format": "date"},
            "address": {"type": "string"},
            "district": {"type": "string"},
            "lat": {"type": "number"},
            "lon": {"type": "number"},
            "phones": {"type": "array", "items": {"type": "string"}},
            "medical_notes": {"type": "string"},
            "care_level": {"enum": list(CARE_LEVELS)},
            "economic_category": {"enum": list(ECONOMIC_CATEGORIES)},
            "living_situation": {"enum": list(LIVING_SITUATIONS)},
            "home_radius_m": {"type": "integer"},
            "contacts": {"type": "array", "items": {"$ref": "#/components/schemas/Contact"}},
        },
    }
    elder = {
        "allOf": [
            {"$ref": "#/components/schemas/ElderInput"},
            {"type": "object", "properties": {"id": {"type": "string"}, "age": {"type": "integer"}}},
        ]
    }
    device_in = {
        "type": "object",
        "required": ["device_id", "kind", "elder_id"],
        "properties": {
            "device_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
            "kind": {"enum": list(DEVICE_KINDS)},
            "elder_id": {"type": "string"},
            "sim_number": {"type": "string"},
            "vendor": {"type": "string"},
            "model": {"type": "string"},
            "heartbeat_interval_s": {"type": "integer", "minimum": 1},
        },
    }
    device = {
        "allOf": [
            {"$ref": "#/components/schemas/DeviceInput"},
            {"type": "object", "properties": {"created_at": {"type": "string", "format": "date-time"}}},
        ]
    }
    device_created = {
        "allOf": [
            {"$ref": "#/components/schemas/Device"},
            {
                "type": "object",
                "required": ["credentials"],
                "properties": {
                    "credentials": {
                        "type": "object",
                        "description": "MQTT credentials, returned only once",
                        "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
                    }
                },
            },
        ]
    }
    incident = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "elder_id": {"type": "string"},
            "device_id": {"type": ["string", "null"]},
            "type": {"type": "string"},
            "severity": {"type": "string"},
            "status": {"type": "string"},
            "source": {"type": "string"},
            "location": {"type": ["object", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "12349 hotline backend",
            "version": __version__,
            "description": "All /api/v1 calls need `Authorization: Bearer <token>` (the WebSocket also takes ?token=).",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {
                "get": {"security": [], "summary": "Liveness", "responses": {"200": {"description": "alive"}}}
            },
            "/readyz": {
                "get": {
                    "security": [],
                    "summary": "Readiness of each dependency",
                    "responses": {"200": {"description": "ready"}, "503": {"description": "a dependency is down"}},
                }
            },
            "/api/v1/elders": {
                "get": {
                    "summary": "List elders (a family sees only its own)",
                    "parameters": [*_PAGING, {"name": "q", "in": "query", "schema": {"type": "string"}}],
                    "responses": _ok(_list_of("#/components/schemas/Elder")),
                },
                "post": {
                    "summary": "Register an elder",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ElderInput"}}},
                    },
                    "responses": _ok({"$ref": "#/components/schemas/Elder"}, "201"),
                },
            },
            "/api/v1/elders/{id}": {
                "get": {
                    "summary": "One elder with contacts and devices (audited)",
                    "parameters": _ID,
                    "responses": {**_ok({"$ref": "#/components/schemas/Elder"}), "404": _ERR},
                }
            },
            "/api/v1/devices": {
                "get": {
                    "summary": "List devices",
                    "parameters": [*_PAGING, {"name": "elder_id", "in": "query", "schema": {"type": "string"}}],
                    "responses": _ok(_list_of("#/components/schemas/Device")),
                },
                "post": {
                    "summary": "Register a device; returns its MQTT credentials once",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DeviceInput"}}},
                    },
                    "responses": {**_ok({"$ref": "#/components/schemas/DeviceCreated"}, "201"), "409": _ERR},
                },
            },
            "/api/v1/devices/{id}": {
                "get": {
                    "summary": "One device with presence, last telemetry and conditions",
                    "parameters": _ID,
                    "responses": {**_ok({"$ref": "#/components/schemas/Device"}), "404": _ERR},
                }
            },
            "/api/v1/devices/{id}/commands": {
                "get": {
                    "summary": "Commands sent to the device, newest first",
                    "parameters": [*_ID, *_PAGING],
                    "responses": _ok(_list_of("#/components/schemas/Command")),
                },
                "post": {
                    "summary": "Send a command to the device (its result or expiry is tracked)",
                    "parameters": _ID,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["type"],
                                    "properties": {
                                        "type": {
                                            "enum": [
                                                "call_back",
                                                "locate",
                                                "play_message",
                                                "set_heartbeat_interval",
                                                "silence_alarm",
                                            ]
                                        },
                                        "params": {"type": "object"},
                                        "ttl_s": {"type": "integer", "minimum": 5, "maximum": 86400},
                                        "incident_id": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {**_ok({"$ref": "#/components/schemas/Command"}, "201"), "404": _ERR},
                },
            },
            "/api/v1/commands/{id}": {
                "get": {
                    "summary": "One command and its outcome",
                    "parameters": _ID,
                    "responses": {**_ok({"$ref": "#/components/schemas/Command"}), "404": _ERR},
                }
            },
            "/metrics": {
                "get": {
                    "security": [],
                    "summary": "Prometheus counters (no personal data)",
                    "responses": {"200": {"description": "text/plain exposition format"}},
                }
            },
            "/api/v1/incidents": {
                "get": {
                    "summary": "List incidents, newest first",
                    "parameters": [
                        *_PAGING,
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "comma-separated",
                        },
                        {"name": "elder_id", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": _ok(_list_of("#/components/schemas/Incident")),
                },
                "post": {
                    "summary": "An operator-created incident; inside the merge window an emergency joins the elder's "
                    "open incident (200, merged: true) instead",
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["elder_id", "type"],
                                    "properties": {
                                        "elder_id": {"type": "string"},
                                        "type": {"type": "string"},
                                        "severity": {"enum": ["low", "medium", "high", "critical"]},
                                        "service": {"type": "string", "description": "catalogue code"},
                                        "location": {"type": "object"},
                                        "note": {"type": "string"},
                                    },
                                }
                            }
                        }
                    },
                    "responses": {**_ok({"$ref": "#/components/schemas/Incident"}, "201"), "409": _ERR},
                },
            },
            "/api/v1/incidents/{id}": {
                "get": {
                    "summary": "One incident with its timeline, notifications, offers and (staff) escalation timers",
                    "parameters": _ID,
                    "responses": {**_ok({"$ref": "#/components/schemas/Incident"}), "404": _ERR},
                }
            },
            **dispatch_paths,
            **dead_letter_paths,
            "/api/v1/calls": {
                "get": {
                    "summary": "Calls on the 12349 line, newest first (inbound and outbound)",
                    "parameters": [
                        *_PAGING,
                        *(
                            {"name": n, "in": "query", "schema": {"type": "string"}, "description": "comma-separated"}
                            for n in ("direction", "outcome", "state", "elder_id", "operator_id")
                        ),
                        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                        {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                    ],
                    "responses": _ok(_list_of("#/components/schemas/Call")),
                },
                "post": {
                    "summary": "Call out through Asterisk (Originate, Async, with our ChannelId)",
                    "description": "Give one of number, elder_id, contact_id or device_id. click_to_call rings the "
                    "caller's own extension first. A repeated idempotency_key returns the first call and dials "
                    "nothing. 503 when this instance has no AMI link.",
                    "requestBody": {"content": {"application/json": {"schema": call_in}}},
                    "responses": {**_ok({"$ref": "#/components/schemas/Call"}, "202"), "503": _ERR},
                },
            },
            "/api/v1/calls/{id}": {
                "get": {
                    "summary": "One call with its timings and ring attempts",
                    "parameters": _ID,
                    "responses": {**_ok({"$ref": "#/components/schemas/Call"}), "404": _ERR},
                }
            },
            "/api/v1/calls/{id}/incident": {
                "post": {
                    "summary": "Open an incident or service request from a call, linked to it",
                    "parameters": _ID,
                    "requestBody": {"content": {"application/json": {"schema": call_incident_in}}},
                    "responses": {**_ok({"$ref": "#/components/schemas/Incident"}, "201"), "404": _ERR},
                }
            },
            "/api/v1/stats/calls": {
                "get": {
                    "summary": "Service level of the inbound queue for calls that joined it in [since, until)",
                    "description": "Shares are of offered (finished) calls. targets reports the telecare targets "
                    "(97.5 % within 60 s, 99 % within 180 s) and the older 98.5 % within 60 s. Supervisors, "
                    "dispatchers and admins only.",
                    "parameters": [
                        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                        {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                    ],
                    "responses": _ok({"$ref": "#/components/schemas/CallStats"}),
                }
            },
            "/api/v1/ws": {
                "get": {
                    "summary": "Console WebSocket: hello, incident.created, call.ringing, call.answered, "
                    "call.ring_stopped, call.ended (to the operator concerned), wallboard.call (supervisors), pong",
                    "parameters": [{"name": "token", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"101": {"description": "switching protocols"}, "401": _ERR},
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "error",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "error": {
                                        "type": "object",
                                        "properties": {
                                            "code": {"type": "string"},
                                            "message": {"type": "string"},
                                            "field": {"type": ["string", "null"]},
                                            "error_id": {"type": "string", "description": "500 only"},
                                        },
                                    }
                                },
                            }
                        }
                    },
                }
            },
            "schemas": {
                "Contact": contact,
                "ElderInput": elder_in,
                "Elder": elder,
                "DeviceInput": device_in,
                "Device": device,
                "DeviceCreated": device_created,
                "Incident": incident,
                "Call": call,
                "CallStats": stats,
                **dispatch_schemas,
                **dead_letter_schemas,
            },
        },
    }
