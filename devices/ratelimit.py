"""Per-device token buckets (pure; the clock is passed in) against a device that floods."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, *, rate_per_s: float, burst: float, max_keys: int = 500_000) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, key: str, now: float) -> bool:
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.max_keys:
                self.prune(now)
            b = self._buckets[key] = _Bucket(self.burst, now)
        b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
        b.at = now
        if b.tokens >= 1:
            b.tokens -= 1
            return True
        return False

    def prune(self, now: float) -> None:
        """Drop buckets that are full again: they carry no information."""
        full_after = self.burst / self.rate
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.at < full_after}


@dataclass(slots=True)
class _Paced:
    tokens: float
    at: float
    next_slot: float  # when the next deferred message may come back


class EventPacer:
    """A token bucket that defers instead of refusing: over the limit, :meth:`admit` says
    when to send again. Deferred messages are given slots one interval apart, so a device
    that flushes a backlog and follows the hints comes back at the refill rate instead of
    all at once."""

    def __init__(self, *, rate_per_s: float, burst: float, max_keys: int = 500_000) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, _Paced] = {}

    def admit(self, key: str, now: float) -> float:
        """0.0 when the message may be handled now; otherwise the seconds to wait first."""
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.max_keys:
                self.prune(now)
            b = self._buckets[key] = _Paced(self.burst, now, now)
        b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
        b.at = now
        if b.tokens >= 1 - 1e-9:  # a device that comes back exactly at its slot is admitted
            b.tokens = max(0.0, b.tokens - 1)
            return 0.0
        slot = max(b.next_slot, now + (1 - b.tokens) / self.rate)
        b.next_slot = slot + 1 / self.rate
        return slot - now

    def prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.at < full_after or b.next_slot > now}
