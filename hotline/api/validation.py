"""Request-body validation helpers: each raises ValidationError naming the field."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

from hotline.errors import ValidationError

MAX_OFFSET = 1_000_000_000  # databases take 64-bit offsets; past this it is a mistake, not a page
PHONE_RE = re.compile(r"^\+?[0-9][0-9 ()-]{2,30}$")


def obj(body: Any, fields: Collection[str], *, where: str = "") -> Mapping[str, Any]:
    """``body`` as an object with only ``fields``: one rule for the whole API, an unknown
    field is refused and named (a typo must not be ignored in silence)."""
    if not isinstance(body, dict):
        raise ValidationError(f"{where or 'request body'} must be a JSON object", field=where or None)
    if unknown := sorted(set(body) - set(fields)):
        name = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ValidationError(f"unknown field {name} (known: {', '.join(sorted(fields))})", field=name)
    return body


def string(
    body: Mapping[str, Any],
    key: str,
    *,
    max_len: int = 255,
    required: bool = True,
    pattern: re.Pattern[str] | None = None,
) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ValidationError(f"{key} is required", field=key)
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{key} must be a non-empty string", field=key)
    value = value.strip()
    if len(value) > max_len:
        raise ValidationError(f"{key} must be at most {max_len} characters", field=key)
    if pattern is not None and not pattern.match(value):
        raise ValidationError(f"{key} has an invalid format", field=key)
    return value


def req_string(body: Mapping[str, Any], key: str, **kw: Any) -> str:
    value = string(body, key, required=True, **kw)
    assert value is not None
    return value


def choice(body: Mapping[str, Any], key: str, options: Collection[str], *, default: str | None = None) -> str:
    value = body.get(key, default)
    if value not in options:
        raise ValidationError(f"{key} must be one of {', '.join(options)}", field=key)
    return str(value)


def number(body: Mapping[str, Any], key: str, low: float, high: float, *, default: float | None = None) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{key} must be a number", field=key)
    if not low <= value <= high:
        raise ValidationError(f"{key} must be between {low} and {high}", field=key)
    return float(value)


def integer(body: Mapping[str, Any], key: str, low: int, high: int, *, default: int | None = None) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{key} must be an integer", field=key)
    if not low <= value <= high:
        raise ValidationError(f"{key} must be between {low} and {high}", field=key)
    return value


def birth_date(body: Mapping[str, Any], key: str) -> date:
    value = req_string(body, key, max_len=10)
    try:
        parsed = date.fromisoformat(value)
    except ValueError as exc:
        raise ValidationError(f"{key} must be a date like 1941-05-03", field=key) from exc
    today = datetime.now(UTC).date()
    if parsed > today or today.year - parsed.year > 130:
        raise ValidationError(f"{key} is not a plausible birth date", field=key)
    return parsed


def phone(value: Any, key: str) -> str:
    if not isinstance(value, str) or not PHONE_RE.match(value.strip()):
        raise ValidationError(f"{key} must be a phone number", field=key)
    return value.strip()


def http_url(value: Any, key: str) -> str:
    if not isinstance(value, str) or len(value) > 500:
        raise ValidationError(f"{key} must be an http(s) URL", field=key)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"{key} must be an http(s) URL", field=key)
    return value


def paging(query: Mapping[str, str]) -> tuple[int, int]:
    try:
        limit = int(query.get("limit", "50"))
        offset = int(query.get("offset", "0"))
    except ValueError as exc:
        raise ValidationError("limit and offset must be integers") from exc
    if not 1 <= limit <= 500:
        raise ValidationError("limit must be between 1 and 500", field="limit")
    if not 0 <= offset <= MAX_OFFSET:
        raise ValidationError(f"offset must be between 0 and {MAX_OFFSET}", field="offset")
    return limit, offset


def when(query: Mapping[str, str], key: str, default: datetime) -> datetime:
    """An ISO 8601 time from the query string (UTC when it names no offset)."""
    raw = query.get(key)
    if raw is None:
        return default
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(f"{key} must be an ISO 8601 time such as 2026-11-22T08:00:00Z", field=key) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)
