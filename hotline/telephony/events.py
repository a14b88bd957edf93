"""Typed, frozen AMI events: the only shape the call tracker sees.

Conversion happens once, at the link's boundary. A field that does not parse (a non-numeric
HoldTime) becomes ``None`` rather than an exception: one odd frame from a PBX upgrade must
not stop the hotline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

UNKNOWN = "<unknown>"


def _s(h: Mapping[str, str], key: str) -> str:
    value = h.get(key, "")
    return "" if value == UNKNOWN else value


def _f(h: Mapping[str, str], key: str) -> float | None:
    try:
        return float(h[key])
    except (KeyError, ValueError):
        return None


def _i(h: Mapping[str, str], key: str) -> int | None:
    try:
        return int(h[key])
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class AmiEvent:
    name: str
    ts: float  # Asterisk's Timestamp; our receive time when the PBX does not send one
    ts_from_pbx: bool
    uniqueid: str
    linkedid: str
    channel: str
    caller_num: str
    caller_name: str
    action_id: str


@dataclass(frozen=True, slots=True)
class Newchannel(AmiEvent):
    exten: str
    context: str


@dataclass(frozen=True, slots=True)
class HangupRequest(AmiEvent):
    """HangupRequest or SoftHangupRequest; ``cause`` is the Q.850 cause when Asterisk gives one."""

    cause: int | None = None


@dataclass(frozen=True, slots=True)
class SoftHangupRequest(AmiEvent):
    """``cause`` here is Asterisk's soft-hangup flag, not a Q.850 cause: 4 is a shutdown."""

    cause: int | None = None


SOFTHANGUP_SHUTDOWN = 4


@dataclass(frozen=True, slots=True)
class Shutdown(AmiEvent):
    """Asterisk is stopping (``core stop``) or restarting (``core restart``)."""

    restart: bool = False


@dataclass(frozen=True, slots=True)
class Hangup(AmiEvent):
    cause: int | None


@dataclass(frozen=True, slots=True)
class QueueCallerJoin(AmiEvent):
    queue: str
    position: int | None


@dataclass(frozen=True, slots=True)
class QueueCallerLeave(AmiEvent):
    queue: str


@dataclass(frozen=True, slots=True)
class QueueCallerAbandon(AmiEvent):
    queue: str
    hold_time: int | None
    position: int | None
    original_position: int | None


@dataclass(frozen=True, slots=True)
class AgentEvent(AmiEvent):
    queue: str
    interface: str
    member_name: str
    dest_channel: str
    dest_uniqueid: str


@dataclass(frozen=True, slots=True)
class AgentCalled(AgentEvent):
    pass


@dataclass(frozen=True, slots=True)
class AgentRingNoAnswer(AgentEvent):
    ring_time_ms: int | None  # milliseconds, unlike every other AMI duration


@dataclass(frozen=True, slots=True)
class AgentConnect(AgentEvent):
    hold_time: int | None
    ring_time: int | None


@dataclass(frozen=True, slots=True)
class AgentComplete(AgentEvent):
    hold_time: int | None
    talk_time: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class DialEnd(AmiEvent):
    dest_channel: str
    dest_uniqueid: str
    dial_status: str


@dataclass(frozen=True, slots=True)
class Transfer(AmiEvent):
    """BlindTransfer or AttendedTransfer, reduced to what a call record needs."""

    result: str
    target: str


@dataclass(frozen=True, slots=True)
class OriginateResponse(AmiEvent):
    response: str
    reason: int | None


@dataclass(frozen=True, slots=True)
class QueueMember(AmiEvent):
    """A queue member's state: a ``QueueStatus`` list entry, or the live ``QueueMemberStatus``,
    ``QueueMemberPause`` (and Added/Removed) events, which carry the same fields."""

    queue: str
    member: str
    location: str
    in_call: bool
    status: int | None
    paused: bool = False
    paused_reason: str = ""
    last_pause: int | None = None  # epoch seconds; 0 when never paused
    calls_taken: int | None = None


@dataclass(frozen=True, slots=True)
class QueueEntry(AmiEvent):
    queue: str
    position: int | None
    wait: int | None


@dataclass(frozen=True, slots=True)
class CoreShowChannel(AmiEvent):
    application: str
    application_data: str
    duration_s: int | None
    bridge_id: str
    up: bool = False  # ChannelState 6: the channel is answered


#: The automated wellbeing check's dialplan context, and the UserEvent it reports the key with.
WELLBEING_CONTEXT = "hotline-wellbeing"
WELLBEING_EVENT = "HotlineWellbeing"


@dataclass(frozen=True, slots=True)
class UserEvent(AmiEvent):
    """A dialplan's ``UserEvent()``: the wellbeing check reports the key pressed with
    ``UserEvent(HotlineWellbeing,HotlineCallId: ...,Digit: ...)`` (deploy/asterisk)."""

    user_event: str
    call_id: str
    digit: str


@dataclass(frozen=True, slots=True)
class OtherEvent(AmiEvent):
    pass


def _hms(value: str) -> int | None:
    """CoreShowChannel's Duration is ``HH:MM:SS``."""
    try:
        h, m, s = (int(x) for x in value.split(":"))
    except ValueError:
        return None
    return h * 3600 + m * 60 + s


def _agent(h: Mapping[str, str]) -> dict[str, object]:
    return {
        "queue": h.get("Queue", ""),
        "interface": h.get("Interface", ""),
        "member_name": h.get("MemberName", ""),
        "dest_channel": h.get("DestChannel", ""),
        "dest_uniqueid": h.get("DestUniqueid", ""),
    }


_Builder = Callable[[Mapping[str, str]], dict[str, object]]


def _member(h: Mapping[str, str]) -> dict[str, object]:
    return {
        "queue": h.get("Queue", ""),
        "member": h.get("Name") or h.get("MemberName", ""),
        "location": h.get("Location") or h.get("Interface", ""),
        "in_call": h.get("InCall") == "1",
        "status": _i(h, "Status"),
        "paused": h.get("Paused") == "1",
        # Asterisk 13 renamed Reason to PausedReason; older list answers still say Reason.
        "paused_reason": h.get("PausedReason") or h.get("Reason") or "",
        "last_pause": _i(h, "LastPause"),
        "calls_taken": _i(h, "CallsTaken"),
    }


_BUILDERS: dict[str, tuple[type[AmiEvent], _Builder]] = {
    "Newchannel": (Newchannel, lambda h: {"exten": h.get("Exten", ""), "context": h.get("Context", "")}),
    "HangupRequest": (HangupRequest, lambda h: {"cause": _i(h, "Cause")}),
    "SoftHangupRequest": (SoftHangupRequest, lambda h: {"cause": _i(h, "Cause")}),
    "Shutdown": (Shutdown, lambda h: {"restart": h.get("Restart", "").lower() == "true"}),
    "Hangup": (Hangup, lambda h: {"cause": _i(h, "Cause")}),
    "QueueCallerJoin": (QueueCallerJoin, lambda h: {"queue": h.get("Queue", ""), "position": _i(h, "Position")}),
    "QueueCallerLeave": (QueueCallerLeave, lambda h: {"queue": h.get("Queue", "")}),
    "QueueCallerAbandon": (
        QueueCallerAbandon,
        lambda h: {
            "queue": h.get("Queue", ""),
            "hold_time": _i(h, "HoldTime"),
            "position": _i(h, "Position"),
            "original_position": _i(h, "OriginalPosition"),
        },
    ),
    "AgentCalled": (AgentCalled, _agent),
    "AgentRingNoAnswer": (AgentRingNoAnswer, lambda h: {**_agent(h), "ring_time_ms": _i(h, "RingTime")}),
    "AgentConnect": (
        AgentConnect,
        lambda h: {**_agent(h), "hold_time": _i(h, "HoldTime"), "ring_time": _i(h, "RingTime")},
    ),
    "AgentComplete": (
        AgentComplete,
        lambda h: {
            **_agent(h),
            "hold_time": _i(h, "HoldTime"),
            "talk_time": _i(h, "TalkTime"),
            "reason": h.get("Reason", ""),
        },
    ),
    "DialEnd": (
        DialEnd,
        lambda h: {
            "dest_channel": h.get("DestChannel", ""),
            "dest_uniqueid": h.get("DestUniqueid", ""),
            "dial_status": h.get("DialStatus", ""),
        },
    ),
    "BlindTransfer": (Transfer, lambda h: {"result": h.get("Result", ""), "target": h.get("Extension", "")}),
    "AttendedTransfer": (
        Transfer,
        lambda h: {"result": h.get("Result", ""), "target": _s(h, "SecondTransfererConnectedLineNum")},
    ),
    "OriginateResponse": (OriginateResponse, lambda h: {"response": h.get("Response", ""), "reason": _i(h, "Reason")}),
    **dict.fromkeys(
        ("QueueMember", "QueueMemberStatus", "QueueMemberPause", "QueueMemberAdded", "QueueMemberRemoved"),
        (QueueMember, _member),
    ),
    "QueueEntry": (
        QueueEntry,
        lambda h: {"queue": h.get("Queue", ""), "position": _i(h, "Position"), "wait": _i(h, "Wait")},
    ),
    "UserEvent": (
        UserEvent,
        lambda h: {
            "user_event": h.get("UserEvent", ""),
            "call_id": h.get("HotlineCallId", ""),
            "digit": h.get("Digit", ""),
        },
    ),
    "CoreShowChannel": (
        CoreShowChannel,
        lambda h: {
            "application": h.get("Application", ""),
            "application_data": h.get("ApplicationData", ""),
            "duration_s": _hms(h.get("Duration", "")),
            "bridge_id": h.get("BridgeId", ""),
            "up": h.get("ChannelState") == "6",
        },
    ),
}

# Transfers name the transferee's channel with a prefix, not the plain Channel headers.
_TRANSFER_PREFIX = {"BlindTransfer": "Transferee", "AttendedTransfer": "OrigTransferer"}


def parse_event(h: Mapping[str, str], *, now: Callable[[], float] = time.time) -> AmiEvent:
    name = h.get("Event", "")
    ts = _f(h, "Timestamp")
    cls, build = _BUILDERS.get(name, (OtherEvent, lambda _h: {}))
    p = _TRANSFER_PREFIX.get(name, "")
    event: AmiEvent = cls(
        name=name,
        ts=ts if ts is not None else now(),
        ts_from_pbx=ts is not None,
        uniqueid=h.get(p + "Uniqueid") or h.get("UniqueID", ""),
        linkedid=h.get(p + "Linkedid", ""),
        channel=h.get(p + "Channel", ""),
        caller_num=_s(h, p + "CallerIDNum"),
        caller_name=_s(h, p + "CallerIDName"),
        action_id=h.get("ActionID", ""),
        **build(h),
    )
    return event
