"""The OpenAPI 3.1 document served at /api/v1/openapi.json (kept beside the routes)."""

from __future__ import annotations

from typing import Any

from hotline import __version__
from hotline.storage.models import (
    CARE_LEVELS,
    CONTACT_CHANNELS,
    DEVICE_KINDS,
    ECONOMIC_CATEGORIES,
    LIVING_SITUATIONS,
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
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
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
            "answered_within": {"type": "object", "properties": dict.fromkeys(("20", "60", "180"), share)},
            "abandon_rate": share,
            "avg_wait_s": share,
            "max_wait_s": share,
            "targets": {"type": "array", "items": {"type": "object"}},
            "operators": {"type": "array", "items": {"type": "object"}},
        },
    }
    return call, call_in, call_incident_in, stats


def spec() -> dict[str, Any]:
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
                }
            },
            "/api/v1/incidents/{id}": {
                "get": {
                    "summary": "One incident with its timeline and notifications",
                    "parameters": _ID,
                    "responses": {**_ok({"$ref": "#/components/schemas/Incident"}), "404": _ERR},
                }
            },
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
            },
        },
    }
