"""Where the backend's outside servers are: value types the domains take as arguments.

Configuration loading (:mod:`hotline.config`) builds them; the domains never read settings.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MqttTarget:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


@dataclass(frozen=True, slots=True)
class AmiTarget:
    host: str
    port: int
    username: str
    secret: str
