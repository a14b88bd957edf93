"""Bearer tokens and role checks.

Tokens are random; only their SHA-256 is stored, so a leaked database does not leak
working credentials. Permissions are a plain table from action to roles, so an auditor
can read who may do what in one place.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Protocol

from hotline.core import vocab
from hotline.errors import ForbiddenError

CONSOLE_ROLES = frozenset(str(r) for r in vocab.CONSOLE_ROLES)

PERMISSIONS: dict[str, frozenset[str]] = {
    "elders.read": CONSOLE_ROLES | {"family"},
    "elders.write": frozenset({"operator", "supervisor", "admin"}),
    "devices.read": CONSOLE_ROLES | {"vendor"},
    "devices.write": frozenset({"supervisor", "admin", "vendor"}),
    "commands.write": CONSOLE_ROLES,
    "incidents.read": CONSOLE_ROLES | {"family"},
    "ws.connect": CONSOLE_ROLES | {"family", "provider"},
    "audit.read": frozenset({"supervisor", "admin"}),
    "deadletters.read": frozenset({"supervisor", "admin"}),
    "deadletters.replay": frozenset({"supervisor", "admin"}),
    "calls.read": CONSOLE_ROLES,
    "calls.write": CONSOLE_ROLES,
    "calls.stats": frozenset({"dispatcher", "supervisor", "admin"}),
    "agents.read": CONSOLE_ROLES,
    # An operator may pause and unpause their own extension; supervisors anyone's.
    "agents.pause": frozenset({"operator", "supervisor", "admin"}),
    "incidents.write": CONSOLE_ROLES,
    "decisions.read": CONSOLE_ROLES,
    "providers.read": CONSOLE_ROLES,
    "providers.write": frozenset({"dispatcher", "supervisor", "admin"}),
    "offers.respond": frozenset({"provider"}),
    "policies.read": CONSOLE_ROLES,
    "policies.write": frozenset({"supervisor", "admin"}),
    "family.confirm": frozenset({"family"}),
    # the service loop
    "services.read": CONSOLE_ROLES | {"provider"},
    "services.write": frozenset({"supervisor", "admin"}),
    "rules.read": CONSOLE_ROLES,
    "rules.write": frozenset({"supervisor", "admin"}),
    "entitlements.read": CONSOLE_ROLES | {"family"},
    "orders.read": CONSOLE_ROLES | {"provider"},
    "orders.write": CONSOLE_ROLES,
    "orders.visit": frozenset({"provider"}),
    "followups.read": CONSOLE_ROLES,
    "followups.write": CONSOLE_ROLES,
    "complaints.read": CONSOLE_ROLES,
    "complaints.write": CONSOLE_ROLES,
    "referrals.read": CONSOLE_ROLES,
    "referrals.write": CONSOLE_ROLES,
    "ratings.read": CONSOLE_ROLES,
    "ratings.write": frozenset({"supervisor", "admin"}),
    "providers.credit": frozenset({"supervisor", "admin"}),
    "campaigns.read": CONSOLE_ROLES,
    "campaigns.write": frozenset({"supervisor", "admin"}),
    "campaigns.record": CONSOLE_ROLES,
    "consultations.write": CONSOLE_ROLES,
    "reports.read": frozenset({"supervisor", "admin"}),
}


class UserLike(Protocol):
    id: str
    name: str
    role: str
    elder_id: str | None
    provider_id: str | None
    extension: str | None


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    name: str
    role: str
    elder_id: str | None = None
    provider_id: str | None = None
    extension: str | None = None

    @classmethod
    def of(cls, user: UserLike) -> Principal:
        return cls(
            user_id=user.id,
            name=user.name,
            role=user.role,
            elder_id=user.elder_id,
            provider_id=user.provider_id,
            extension=user.extension,
        )

    @property
    def is_console(self) -> bool:
        return self.role in CONSOLE_ROLES

    def can_see_elder(self, elder_id: str) -> bool:
        """Console staff see every elder; a family sees only its own."""
        return self.is_console or (self.role == "family" and self.elder_id == elder_id)


def new_token() -> str:
    return "hl_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def require(principal: Principal, action: str) -> None:
    if principal.role not in PERMISSIONS[action]:
        raise ForbiddenError(f"role {principal.role!r} may not {action}")
