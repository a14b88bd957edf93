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


def spec() -> dict[str, Any]:
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
            "/api/v1/ws": {
                "get": {
                    "summary": "Console WebSocket: hello, incident.created, pong",
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
            },
        },
    }
