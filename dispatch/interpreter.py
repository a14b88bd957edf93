"""The escalation step interpreter: pure, no database, no Redis, no clock of its own.

Given a track of a policy snapshot, where the timer stands in it, the incident's facts and
the time, :func:`advance` says what to do next: run a step, skip one, wait until a time, or
stop. The engine (:mod:`dispatch.escalation`) applies the answer to the timer row, performs
the step in the transaction, and asks again with the facts as the step left them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from dispatch.policy import CONDITIONS
from hotline.core.vocab import ACCEPTED_INCIDENT_STATUSES, OPEN_INCIDENT_STATUSES, IncidentStatus

ACCEPTED = frozenset({*ACCEPTED_INCIDENT_STATUSES, IncidentStatus.RESOLVED})
DISPATCHED = frozenset({IncidentStatus.DISPATCHED, *ACCEPTED})


class _IncidentLike(Protocol):
    status: str
    acknowledged_at: datetime | None
    family_confirmed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Facts:
    """What the conditions of a policy (``until``, ``unless``) can ask about an incident."""

    open: bool
    acknowledged: bool
    dispatched: bool
    accepted: bool
    family_confirmed: bool

    @classmethod
    def of(cls, incident: _IncidentLike) -> Facts:
        return cls(
            open=incident.status in OPEN_INCIDENT_STATUSES,
            acknowledged=incident.acknowledged_at is not None,
            dispatched=incident.status in DISPATCHED,
            accepted=incident.status in ACCEPTED,
            family_confirmed=incident.family_confirmed_at is not None,
        )

    def holds(self, condition: str) -> bool:
        if condition not in CONDITIONS:
            raise ValueError(condition)
        return bool(getattr(self, condition))


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a timer stands in its track: the next step, the repeats taken, the steps run."""

    step: int
    repeats: Mapping[str, int]
    runs: int


@dataclass(frozen=True, slots=True)
class Act:
    """Run ``step`` (index ``index``); ``run`` numbers it for idempotency keys."""

    cursor: Cursor
    index: int
    step: Mapping[str, Any]
    run: int


@dataclass(frozen=True, slots=True)
class Skip(Act):
    """The step's ``unless`` holds: it counts as run, and does nothing."""

    unless: str


@dataclass(frozen=True, slots=True)
class Wait:
    cursor: Cursor
    until: datetime


@dataclass(frozen=True, slots=True)
class Stop:
    """The track is over: ``finish`` (done, or its ``until`` holds) or ``cancel`` (the
    incident is closed, or the track is gone from the snapshot)."""

    cursor: Cursor
    event: str


Intent = Act | Wait | Stop  # a Skip is an Act the engine does not perform


def advance(track: Mapping[str, Any] | None, cursor: Cursor, facts: Facts, now: datetime) -> Intent:
    """The next thing to do on ``track`` from ``cursor``. Repeats are followed here; the
    policy parser guarantees every repeated loop holds a wait, so this ends."""
    if track is None or not facts.open:
        return Stop(cursor, "cancel")
    steps = track["steps"]
    while True:
        if (until := track.get("until")) and facts.holds(until):
            return Stop(cursor, "finish")
        if cursor.step >= len(steps):
            return Stop(cursor, "finish")
        index = cursor.step
        step = steps[index]
        if step["do"] == "wait":
            return Wait(replace(cursor, step=index + 1), now + timedelta(seconds=step["seconds"]))
        if step["do"] == "repeat":
            taken = int(cursor.repeats.get(str(index), 0))
            if taken < step["times"]:
                cursor = replace(cursor, step=step["from"], repeats={**cursor.repeats, str(index): taken + 1})
            else:
                cursor = replace(cursor, step=index + 1)
            continue
        moved = replace(cursor, step=index + 1, runs=cursor.runs + 1)
        if (unless := step.get("unless")) and facts.holds(unless):
            return Skip(moved, index, step, moved.runs, unless)
        return Act(moved, index, step, moved.runs)
