"""Device credentials: a random secret per device, stored only as a hash the broker can check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def new_device_secret() -> str:
    return secrets.token_urlsafe(24)


def hash_device_secret(secret: str, *, salt: bytes | None = None, iterations: int = 1000) -> str:
    """PBKDF2-SHA512 in Mosquitto's ``$7$`` format, so the broker can check it directly.

    Device secrets are 192 random bits, not human passwords, so a low iteration count
    costs nothing in security and keeps registering a fleet fast.
    """
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_device_secret(secret: str, stored: str) -> bool:
    try:
        _, seven, iterations, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if seven != "7":
        return False
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), base64.b64decode(salt_b64), int(iterations))
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))
