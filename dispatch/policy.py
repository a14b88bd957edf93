"""Escalation policies as data: parsing, validation, the built-in defaults, and matching.

A policy is a set of *tracks* that run side by side, each a list of steps::

    {"name": "emergency", "types": ["sos", "fall"], "severities": [], "priority": 10,
     "tracks": [
       {"name": "acknowledge", "until": "acknowledged",
        "steps": [{"do": "wait", "seconds": 30},
                  {"do": "notify", "to": "role:supervisor", "message": "..."},
                  {"do": "repeat", "from": 0, "times": 20}]}]}

Steps: ``wait``, ``notify`` (``family``, ``role:<role>`` or ``user:<id>``), ``offer`` (to the
next provider), ``call`` (a number, through telephony), ``webhook`` (a URL), ``emergency``
(the deployment's configured emergency action) and ``repeat``. Any step may carry ``unless``
and a track may carry ``until``: a condition on the incident (``acknowledged``,
``dispatched``, ``accepted``, ``family_confirmed``) that skips the step or ends the track.

Policies are stored versioned; an incident keeps a snapshot of the one it started with.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.catalogue import SERVICES
from dispatch.errors import PolicyError
from hotline.storage.models import ROLES, EscalationPolicy

STEP_KINDS = ("wait", "notify", "offer", "call", "webhook", "emergency", "repeat")
CONDITIONS = ("acknowledged", "dispatched", "accepted", "family_confirmed")
MAX_STEPS = 50
MAX_TRACKS = 10


def _require(cond: bool, path: str, message: str) -> None:
    if not cond:
        raise PolicyError(f"{path}: {message}")


def _int(step: dict[str, Any], key: str, path: str, low: int, high: int, *, default: int | None = None) -> int:
    value = step.get(key, default)
    _require(
        isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
        f"{path}.{key}",
        f"must be an integer from {low} to {high}",
    )
    assert isinstance(value, int)
    return value


def _step(raw: Any, path: str, index: int) -> dict[str, Any]:
    _require(isinstance(raw, dict), path, "must be an object")
    do = raw.get("do")
    _require(do in STEP_KINDS, f"{path}.do", f"must be one of {', '.join(STEP_KINDS)}")
    out: dict[str, Any] = {"do": do}
    if "unless" in raw:
        _require(raw["unless"] in CONDITIONS, f"{path}.unless", f"must be one of {', '.join(CONDITIONS)}")
        out["unless"] = raw["unless"]
    if "message" in raw:
        _require(isinstance(raw["message"], str) and len(raw["message"]) <= 500, f"{path}.message", "must be text")
        out["message"] = raw["message"]
    if do == "wait":
        out["seconds"] = _int(raw, "seconds", path, 1, 7 * 86_400)
    elif do == "notify":
        to = raw.get("to")
        ok = isinstance(to, str) and (
            to == "family"
            or (to.startswith("role:") and to[5:] in ROLES)
            or (to.startswith("user:") and 0 < len(to) <= 45)
        )
        _require(ok, f"{path}.to", "must be 'family', 'role:<role>' or 'user:<id>'")
        out["to"] = to
    elif do == "offer":
        out["timeout_s"] = _int(raw, "timeout_s", path, 5, 86_400, default=60)
        if "service" in raw:
            _require(raw["service"] in SERVICES, f"{path}.service", "must be a catalogue code")
            out["service"] = raw["service"]
    elif do == "call":
        number = raw.get("number")
        _require(
            isinstance(number, str) and number.lstrip("+").isdigit() and 3 <= len(number) <= 20,
            f"{path}.number",
            "must be a phone number",
        )
        out["number"] = number
    elif do == "webhook":
        url = raw.get("url")
        _require(
            isinstance(url, str) and url.startswith(("http://", "https://")) and len(url) <= 500,
            f"{path}.url",
            "must be an http(s) URL",
        )
        out["url"] = url
    elif do == "repeat":
        out["from"] = _int(raw, "from", path, 0, MAX_STEPS)
        _require(out["from"] < index, f"{path}.from", "must point at an earlier step")
        out["times"] = _int(raw, "times", path, 1, 1000, default=1000)
    return out


def parse_tracks(raw: Any) -> list[dict[str, Any]]:
    """Validate a policy's tracks; raises :class:`PolicyError` naming the bad field's path."""
    _require(isinstance(raw, list) and 0 < len(raw) <= MAX_TRACKS, "tracks", f"must be a list of 1 to {MAX_TRACKS}")
    names: set[str] = set()
    out = []
    for t, track in enumerate(raw):
        path = f"tracks[{t}]"
        _require(isinstance(track, dict), path, "must be an object")
        name = track.get("name")
        _require(
            isinstance(name, str) and 0 < len(name) <= 32 and name not in names, f"{path}.name", "must be unique text"
        )
        names.add(name)
        steps = track.get("steps")
        _require(
            isinstance(steps, list) and 0 < len(steps) <= MAX_STEPS, f"{path}.steps", f"must list 1 to {MAX_STEPS}"
        )
        parsed: dict[str, Any] = {
            "name": name,
            "steps": [_step(s, f"{path}.steps[{i}]", i) for i, s in enumerate(steps)],
        }
        if "until" in track:
            _require(track["until"] in CONDITIONS, f"{path}.until", f"must be one of {', '.join(CONDITIONS)}")
            parsed["until"] = track["until"]
        # A repeat with no wait in its loop would spin inside one transaction.
        for i, s in enumerate(parsed["steps"]):
            if s["do"] == "repeat":
                loop = parsed["steps"][s["from"] : i]
                _require(any(x["do"] == "wait" for x in loop), f"{path}.steps[{i}]", "a repeated loop needs a wait")
        out.append(parsed)
    return out


def snapshot(name: str, version: int, tracks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "version": version, "tracks": tracks}


def matches(types: list[Any], severities: list[Any], type_: str, severity: str) -> bool:
    return (not types or type_ in types) and (not severities or severity in severities)


SUPERVISOR = "role:supervisor"

# The built-in policies, installed as version 1 when no policy of that name exists.
DEFAULT_POLICIES: list[dict[str, Any]] = [
    {
        "name": "emergency",
        "description": "SOS, fall and emergency calls: family at once, 30 s to acknowledge, 60 s per provider offer, "
        "the emergency action after 5 minutes without an accepted provider.",
        "types": ["sos", "fall", "emergency", "health"],
        "severities": [],
        "priority": 100,
        "tracks": [
            {
                "name": "family",
                "steps": [
                    {"do": "notify", "to": "family"},
                    {"do": "wait", "seconds": 180},
                    {
                        "do": "notify",
                        "to": "family",
                        "unless": "family_confirmed",
                        "message": "家属尚未确认，请尽快联系",
                    },
                ],
            },
            {
                "name": "acknowledge",
                "until": "acknowledged",
                "steps": [
                    {"do": "wait", "seconds": 30},
                    {"do": "notify", "to": SUPERVISOR, "message": "警情30秒内无人受理"},
                    {"do": "repeat", "from": 0, "times": 20},
                ],
            },
            {
                "name": "provider",
                "until": "accepted",
                "steps": [
                    {"do": "offer", "timeout_s": 60},
                    {"do": "wait", "seconds": 60},
                    {"do": "repeat", "from": 0, "times": 50},
                ],
            },
            {
                "name": "emergency",
                "until": "accepted",
                "steps": [
                    {"do": "wait", "seconds": 300},
                    {"do": "emergency"},
                    {"do": "notify", "to": SUPERVISOR, "message": "5分钟内无服务商接单，已启动紧急处置"},
                ],
            },
        ],
    },
    {
        "name": "device-condition",
        "description": "Device conditions (battery, power, geofence, heart rate, inactivity): family at once, "
        "supervisors if nobody acknowledges within 10 minutes.",
        "types": ["low_battery", "power_loss", "geofence_exit", "heart_rate_abnormal", "inactivity"],
        "severities": [],
        "priority": 50,
        "tracks": [
            {"name": "family", "steps": [{"do": "notify", "to": "family"}]},
            {
                "name": "acknowledge",
                "until": "acknowledged",
                "steps": [{"do": "wait", "seconds": 600}, {"do": "notify", "to": SUPERVISOR}],
            },
        ],
    },
    {
        "name": "device-offline",
        "description": "A silent device: supervisors if nobody acknowledges within 30 minutes; no family alarm.",
        "types": ["device_offline"],
        "severities": [],
        "priority": 50,
        "tracks": [
            {
                "name": "acknowledge",
                "until": "acknowledged",
                "steps": [{"do": "wait", "seconds": 1800}, {"do": "notify", "to": SUPERVISOR}],
            }
        ],
    },
    {
        "name": "service-request",
        "description": "A service request: offered to providers, 10 minutes each, supervisors after 30 minutes.",
        "types": ["service_request"],
        "severities": [],
        "priority": 50,
        "tracks": [
            {
                "name": "provider",
                "until": "accepted",
                "steps": [
                    {"do": "offer", "timeout_s": 600},
                    {"do": "wait", "seconds": 600},
                    {"do": "repeat", "from": 0, "times": 10},
                ],
            },
            {
                "name": "supervise",
                "until": "accepted",
                "steps": [{"do": "wait", "seconds": 1800}, {"do": "notify", "to": SUPERVISOR}],
            },
        ],
    },
]

for _p in DEFAULT_POLICIES:  # the defaults must pass the same checks as users' policies
    parse_tracks(_p["tracks"])


async def install_defaults(sm: async_sessionmaker[AsyncSession], *, actor: str = "system") -> int:
    """Store each built-in policy as version 1 unless a policy of that name exists. Returns how many."""
    added = 0
    for doc in DEFAULT_POLICIES:
        async with sm() as session:
            try:
                async with session.begin():
                    if await session.scalar(select(EscalationPolicy.id).where(EscalationPolicy.name == doc["name"])):
                        continue
                    session.add(
                        EscalationPolicy(
                            name=doc["name"],
                            version=1,
                            description=doc["description"],
                            types=doc["types"],
                            severities=doc["severities"],
                            priority=doc["priority"],
                            tracks=parse_tracks(doc["tracks"]),
                            active=True,
                            created_by=actor,
                        )
                    )
                added += 1
            except IntegrityError:
                continue  # another instance installed it first
    return added
