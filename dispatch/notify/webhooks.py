"""Standard Webhooks signing and verification (pure; shared by sender and receivers).

Signature: ``v1,<base64 HMAC-SHA256(key, f"{id}.{timestamp}.{body}")>``. A sender that
holds several secrets (during rotation) signs with each, space-separated, and a receiver
accepts the message when any one verifies with a secret it knows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping

from dispatch.errors import SignatureError

TOLERANCE_S = 300


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets_),
        "content-type": "application/json",
    }


def verify(secrets_: Iterable[str], hdrs: Mapping[str, str], body: bytes, *, now: float) -> str:
    """Return the verified ``webhook-id``, or raise :class:`SignatureError`."""
    msg_id = hdrs.get("webhook-id")
    ts_text = hdrs.get("webhook-timestamp")
    sig_text = hdrs.get("webhook-signature")
    if not msg_id or not ts_text or not sig_text:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(ts_text)
    except ValueError as exc:
        raise SignatureError("webhook-timestamp is not an integer") from exc
    if abs(now - timestamp) > TOLERANCE_S:
        raise SignatureError("webhook-timestamp is outside the tolerance window")
    offered = [part.split(",", 1)[1] for part in sig_text.split() if part.startswith("v1,")]
    for secret in secrets_:
        expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return msg_id
    raise SignatureError("no signature matches")
