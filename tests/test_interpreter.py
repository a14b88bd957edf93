"""The pure escalation interpreter: intents from a track, a cursor, the facts and the time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dispatch.interpreter import Act, Cursor, Facts, Skip, Stop, Wait, advance
from dispatch.policy import parse_tracks

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
OPEN = Facts(open=True, acknowledged=False, dispatched=False, accepted=False, family_confirmed=False)
START = Cursor(step=0, repeats={}, runs=0)
TRACK = parse_tracks(
    [
        {
            "name": "main",
            "until": "accepted",
            "steps": [
                {"do": "notify", "to": "role:operator"},
                {"do": "offer", "timeout_s": 60, "unless": "dispatched"},
                {"do": "wait", "seconds": 60},
                {"do": "repeat", "from": 1, "times": 2},
                {"do": "notify", "to": "role:supervisor"},
            ],
        }
    ]
)[0]


def run_to_wait(cursor: Cursor, facts: Facts) -> tuple[list[str], Wait | Stop]:
    """Follow intents as the engine does; the names of the steps acted or skipped on the way."""
    seen: list[str] = []
    for _ in range(50):
        intent = advance(TRACK, cursor, facts, NOW)
        cursor = intent.cursor
        if isinstance(intent, Wait | Stop):
            return seen, intent
        label = intent.step.get("to") or intent.step["do"]
        seen.append(f"skip {label}" if isinstance(intent, Skip) else str(label))
    raise AssertionError("no wait and no end")


def test_steps_run_up_to_the_first_wait_then_resume_and_repeat() -> None:
    seen, wait = run_to_wait(START, OPEN)
    assert seen == ["role:operator", "offer"]
    assert isinstance(wait, Wait) and wait.until == NOW + timedelta(seconds=60)
    assert wait.cursor == Cursor(step=3, repeats={}, runs=2)
    # The repeat goes back to the offer twice, then the track goes on to the supervisors.
    seen, wait = run_to_wait(wait.cursor, OPEN)
    assert seen == ["offer"] and isinstance(wait, Wait) and wait.cursor.repeats == {"3": 1}
    seen, wait = run_to_wait(wait.cursor, OPEN)
    assert seen == ["offer"] and isinstance(wait, Wait) and wait.cursor.repeats == {"3": 2}
    seen, end = run_to_wait(wait.cursor, OPEN)
    assert seen == ["role:supervisor"] and isinstance(end, Stop) and end.event == "finish"
    assert end.cursor.runs == 5  # every step that ran (or was skipped) is counted once


def test_unless_skips_a_step_and_until_ends_the_track() -> None:
    dispatched = Facts(open=True, acknowledged=True, dispatched=True, accepted=False, family_confirmed=False)
    seen, _ = run_to_wait(START, dispatched)
    assert seen == ["role:operator", "skip offer"]
    accepted = Facts(open=True, acknowledged=True, dispatched=True, accepted=True, family_confirmed=False)
    intent = advance(TRACK, Cursor(step=1, repeats={}, runs=1), accepted, NOW)
    assert isinstance(intent, Stop) and intent.event == "finish"


@pytest.mark.parametrize("track", [TRACK, None])
def test_a_closed_incident_or_a_vanished_track_cancels(track: dict[str, object] | None) -> None:
    closed = Facts(open=False, acknowledged=True, dispatched=True, accepted=True, family_confirmed=False)
    facts = closed if track is not None else OPEN
    intent = advance(track, START, facts, NOW)
    assert isinstance(intent, Stop) and intent.event == "cancel" and intent.cursor == START


def test_an_act_names_its_run_for_idempotency_keys() -> None:
    intent = advance(TRACK, START, OPEN, NOW)
    assert isinstance(intent, Act) and (intent.index, intent.run) == (0, 1) and intent.cursor.step == 1


def test_facts_refuse_an_unknown_condition() -> None:
    with pytest.raises(ValueError, match="weather"):
        OPEN.holds("weather")
