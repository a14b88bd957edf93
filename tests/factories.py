"""Small builders for test rows, so each test states only what matters to it."""

from __future__ import annotations

from datetime import date
from typing import Any

from hotline.storage.models import Elder, EscalationPolicy


def elder(**over: Any) -> Elder:
    fields: dict[str, Any] = {
        "name": "孙阿林",
        "gender": "M",
        "birth_date": date(1940, 1, 1),
        "address": "浙江省余姚市阳明街道",
        "lat": 30.0,
        "lon": 121.1,
        "phones": [],
        "care_level": "mild",
        "economic_category": "none",
        "living_situation": "alone",
    }
    fields.update(over)
    return Elder(**fields)


def policy(tracks: list[dict[str, Any]], *, name: str = "emergency", version: int = 2, **over: Any) -> EscalationPolicy:
    """A policy version that outranks the built-in version 1 of the same name."""
    fields: dict[str, Any] = {"types": ["sos"], "severities": [], "priority": 100, "created_by": "test"}
    fields.update(over)
    return EscalationPolicy(name=name, version=version, tracks=tracks, **fields)
