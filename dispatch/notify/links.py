"""Signed "I'm on my way" links for family members who have no account.

A link names the incident and the contact and expires; its signature is an HMAC under a
server secret, so it cannot be forged or moved to another incident, and it needs no login:
a relative taps it in the SMS or the app that received the alert.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta
from urllib.parse import urlencode

from dispatch.errors import SignatureError

PATH = "/api/v1/family/confirm"


class FamilyLinks:
    def __init__(self, secret: bytes, base_url: str, *, ttl: timedelta = timedelta(hours=24)) -> None:
        if len(secret) < 16:
            raise ValueError("the link secret must be at least 16 bytes")
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl

    def _sign(self, incident_id: str, contact_id: int, expires: int) -> str:
        mac = hmac.new(self._secret, f"{incident_id}.{contact_id}.{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def params(self, incident_id: str, contact_id: int, *, now: datetime) -> dict[str, str]:
        expires = int((now + self.ttl).timestamp())
        return {
            "i": incident_id,
            "c": str(contact_id),
            "e": str(expires),
            "s": self._sign(incident_id, contact_id, expires),
        }

    def url(self, incident_id: str, contact_id: int, *, now: datetime) -> str:
        return f"{self.base_url}{PATH}?{urlencode(self.params(incident_id, contact_id, now=now))}"

    def verify(self, query: Mapping[str, str], *, now: datetime) -> tuple[str, int]:
        """Return ``(incident_id, contact_id)`` from a link's query, or raise :class:`SignatureError`."""
        try:
            incident_id, contact_id, expires, sig = query["i"], int(query["c"]), int(query["e"]), query["s"]
        except (KeyError, ValueError) as exc:
            raise SignatureError("the link is incomplete") from exc
        if not hmac.compare_digest(self._sign(incident_id, contact_id, expires), sig):
            raise SignatureError("the link's signature does not match")
        if now.timestamp() > expires:
            raise SignatureError("the link has expired")
        return incident_id, contact_id
