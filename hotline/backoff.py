"""Jittered exponential back-off shared by every reconnecting link (Redis, MQTT, AMI)."""

import random


def backoff_delay(attempt: int, *, base: float = 1.5, cap_exp: int = 10, floor: float = 0.05) -> float:
    """Seconds to wait before reconnect attempt number ``attempt`` (0-based).

    Full jitter (uniform in ``[floor, base**min(cap_exp, attempt)]``) spreads a herd of
    clients that all lost the same broker at the same moment.
    """
    ceiling = base ** min(cap_exp, max(0, attempt))
    return random.uniform(floor, max(floor, ceiling))
