"""Presence, sans-IO: flap damping for online/offline notifications.

Route-flap damping, as BGP does it: each transition to offline adds a penalty that decays
exponentially. While the penalty is above ``suppress`` the device's online/offline changes
are still tracked but not announced; announcing resumes when it decays below ``reuse``. A
watch on a weak cellular link that drops every minute then produces one ``device.flapping``
instead of a hundred alerts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DampingPolicy:
    penalty: float = 1000.0
    suppress: float = 2500.0
    reuse: float = 750.0
    half_life_s: float = 900.0


@dataclass(frozen=True, slots=True)
class Damping:
    penalty: float = 0.0
    at: float = 0.0
    suppressed: bool = False

    def decayed(self, now: float, policy: DampingPolicy) -> float:
        return float(self.penalty * 0.5 ** (max(0.0, now - self.at) / policy.half_life_s))

    def on_offline(self, now: float, policy: DampingPolicy) -> tuple[Damping, bool]:
        """Record a drop; returns the new state and whether it *started* suppression."""
        penalty = self.decayed(now, policy) + policy.penalty
        suppressed = self.suppressed or penalty >= policy.suppress
        return Damping(penalty, now, suppressed), suppressed and not self.suppressed

    def check(self, now: float, policy: DampingPolicy) -> Damping:
        """Lift suppression once the penalty has decayed below ``reuse``."""
        penalty = self.decayed(now, policy)
        return Damping(penalty, now, self.suppressed and penalty >= policy.reuse)

    def encode(self) -> str:
        return f"{self.penalty:.1f},{self.at:.3f},{int(self.suppressed)}"

    @classmethod
    def decode(cls, raw: str | bytes | None) -> Damping:
        if not raw:
            return cls()
        text = raw.decode() if isinstance(raw, bytes) else raw
        penalty, at, suppressed = text.split(",")
        return cls(float(penalty), float(at), suppressed == "1")
