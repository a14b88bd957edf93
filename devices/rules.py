"""What each device message means for the elder, as pure functions.

A *condition* is a problem with a beginning and an end: a low battery, power lost, outside
the home fence, an abnormal heart rate, no movement. Rules say which message opens or clears
which condition; the adapter (:mod:`devices.conditions`) turns an *open* into one incident
and one family alert per episode, however many messages repeat it.

Thresholds have hysteresis (low battery opens at 15 %, clears at 30 %) so a value hovering
at the limit does not flap.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import asin, cos, radians, sin, sqrt
from typing import Literal

from devices.contract import DeviceEvent, Location, Telemetry

Condition = Literal["low_battery", "power_loss", "geofence", "heart_rate", "inactivity", "offline"]

LOW_BATTERY_OPEN = 15
LOW_BATTERY_CLEAR = 30
DEFAULT_HR_LOW = 45
DEFAULT_HR_HIGH = 130
DEFAULT_INACTIVITY_HOURS = 12.0
#: Default heartbeat interval by device kind, in seconds.
HEARTBEAT_INTERVAL_S = {"one_touch_phone": 300, "watch": 300, "pendant": 600, "sensor": 900}


@dataclass(frozen=True, slots=True)
class ElderProfile:
    elder_id: str
    lat: float
    lon: float
    home_radius_m: int
    hr_low: int
    hr_high: int
    lives_alone: bool
    inactivity_hours: float


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device_id: str
    kind: str
    elder: ElderProfile
    heartbeat_interval_s: int

    def heartbeat_timeout_s(self, misses: int) -> float:
        return float(self.heartbeat_interval_s * misses)


@dataclass(frozen=True, slots=True)
class Change:
    condition: Condition
    open: bool
    detail: dict[str, object]


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), in metres."""
    p1, p2 = radians(lat1), radians(lat2)
    dp, dl = p2 - p1, radians(lon2 - lon1)
    a = sin(dp / 2) ** 2 + cos(p1) * cos(p2) * sin(dl / 2) ** 2
    return 2 * 6_371_000 * asin(sqrt(a))


def _fence(loc: Location, elder: ElderProfile) -> Change | None:
    d = distance_m(elder.lat, elder.lon, loc.lat, loc.lon)
    slack = loc.accuracy_m or 0.0
    # Only certain exits open, and only certain returns clear: a 300 m LBS fix near the
    # fence says nothing either way.
    if d - slack > elder.home_radius_m:
        return Change("geofence", True, {"distance_m": round(d), "radius_m": elder.home_radius_m, "source": "computed"})
    if d + slack <= elder.home_radius_m:
        return Change("geofence", False, {"distance_m": round(d), "source": "computed"})
    return None


def _heart(rate: float, elder: ElderProfile, source: str) -> Change:
    outside = rate < elder.hr_low or rate > elder.hr_high
    detail: dict[str, object] = {"heart_rate": rate, "low": elder.hr_low, "high": elder.hr_high, "source": source}
    return Change("heart_rate", outside, detail)


def from_event(event: DeviceEvent, info: DeviceInfo) -> list[Change]:
    """Conditions a device event opens or clears (emergencies are handled apart)."""
    elder = info.elder
    match event.type:
        case "low_battery":
            return [Change("low_battery", True, {"battery_pct": event.battery_pct, "source": "device"})]
        case "power_loss":
            return [Change("power_loss", True, {"source": "device"})]
        case "geofence_exit":
            return [Change("geofence", True, {"source": "device"})]
        case "geofence_enter":
            return [Change("geofence", False, {"source": "device"})]
        case "heart_rate_abnormal":
            if event.heart_rate is not None:
                return [_heart(event.heart_rate, elder, "device")]
            return [Change("heart_rate", True, {"source": "device"})]
        case "inactivity":
            return [Change("inactivity", True, {"source": "device"})]
        case "sos" | "fall" | "test":
            # A button press or a fall is a sign of life: it ends an inactivity episode.
            return [Change("inactivity", False, {"source": event.type})]
    return []


def from_telemetry(t: Telemetry, info: DeviceInfo, *, moved: bool) -> list[Change]:
    """Conditions a telemetry sample opens or clears; ``moved``: steps went up since last time."""
    changes: list[Change] = []
    if t.battery_pct is not None:
        if t.battery_pct <= LOW_BATTERY_OPEN and not t.charging:
            changes.append(Change("low_battery", True, {"battery_pct": t.battery_pct, "source": "computed"}))
        elif t.battery_pct >= LOW_BATTERY_CLEAR or t.charging:
            changes.append(Change("low_battery", False, {"battery_pct": t.battery_pct}))
    elif t.charging:
        changes.append(Change("low_battery", False, {"charging": True}))
    if t.power == "battery" and info.kind == "one_touch_phone":
        changes.append(Change("power_loss", True, {"source": "computed"}))
    elif t.power == "mains":
        changes.append(Change("power_loss", False, {}))
    if t.location is not None and info.kind != "one_touch_phone":
        fence = _fence(t.location, info.elder)
        if fence is not None:
            changes.append(fence)
    if t.heart_rate is not None and t.worn is not False:
        changes.append(_heart(t.heart_rate, info.elder, "computed"))
    if moved:
        changes.append(Change("inactivity", False, {"source": "steps"}))
    return changes


@dataclass(frozen=True, slots=True)
class ConditionPolicy:
    incident_type: str
    severity: str
    notify_family: bool


POLICIES: dict[Condition, ConditionPolicy] = {
    "low_battery": ConditionPolicy("low_battery", "low", notify_family=True),
    "power_loss": ConditionPolicy("power_loss", "low", notify_family=True),
    "geofence": ConditionPolicy("geofence_exit", "high", notify_family=True),
    "heart_rate": ConditionPolicy("heart_rate_abnormal", "high", notify_family=True),
    "inactivity": ConditionPolicy("inactivity", "high", notify_family=True),
    "offline": ConditionPolicy("device_offline", "low", notify_family=False),
}
