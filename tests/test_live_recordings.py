"""Streams recorded from a real Asterisk 20.20.1 with PJSIP (issue 12), replayed into the tracker.

Each recording is cut at random byte boundaries (several seeds), framed, parsed and fed to a
:class:`CallTracker`, exactly as the link does with bytes from the socket. The copies in
``tests/fixtures/ami-live/`` are byte-identical to ``../shared/ami-live/`` (checked when the
brief is beside the checkout).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from hotline.telephony import events as ev
from hotline.telephony.frames import FrameReader
from hotline.telephony.tracker import CallTracker, Change

FIXTURES = Path(__file__).parent / "fixtures" / "ami-live"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "ami-live"


def replay(name: str, seed: int, tracker: CallTracker | None = None) -> tuple[CallTracker, list[Change]]:
    data = (FIXTURES / f"{name}.part1.server.ami").read_bytes()
    rng = random.Random(seed)
    tracker = tracker or CallTracker(queues=frozenset({"12349"}))
    reader = FrameReader()
    changes: list[Change] = []
    i = 0
    while i < len(data):
        n = rng.randint(1, 64)
        for headers in reader.feed(data[i : i + n]):
            changes += tracker.feed(ev.parse_event(headers))
        i += n
    return tracker, changes


def originate(name: str) -> tuple[str, str, str]:
    """The recorded Originate's ChannelId, ActionID and dialled number, from the client side."""
    text = (FIXTURES / f"{name}.part1.client.ami").read_text()
    block = text[text.index("Action: Originate") :].split("\r\n\r\n", 1)[0]
    field = dict(re.findall(r"^([A-Za-z]+): (.*?)\r?$", block, re.M))
    return field["ChannelId"], field["ActionID"], field.get("Exten", "")


def ended(changes: list[Change]) -> list[Change]:
    return [c for c in changes if c.kind == "ended"]


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.ami")))
def test_the_fixtures_are_the_recordings(name: str) -> None:
    if not SHARED.exists():
        pytest.skip("the shared brief is not beside this checkout")
    assert (FIXTURES / name).read_bytes() == (SHARED / name).read_bytes()


@pytest.mark.parametrize("seed", range(5))
def test_ringall_the_member_who_did_not_answer_is_answered_elsewhere(seed: int) -> None:
    _, changes = replay("answered", seed)
    [end] = ended(changes)
    call = end.call
    assert (call.outcome, call.member) == ("answered", "op1001")
    results = {a["member"]: a["result"] for a in call.attempts}
    # On a real Asterisk the loser's DialEnd CANCEL comes, twice, before AgentConnect.
    assert results == {"op1001": "answered", "op1002": "answered_elsewhere"}
    stopped = [c for c in changes if c.kind == "ring_stopped"]
    assert [(c.member, c.reason) for c in stopped] == [("op1002", "answered_elsewhere")]


@pytest.mark.parametrize("seed", range(5))
def test_an_abandon_still_reads_as_cancel_for_every_ringing_member(seed: int) -> None:
    _, changes = replay("abandoned", seed)
    [end] = ended(changes)
    assert end.call.outcome == "abandoned"
    assert {a["result"] for a in end.call.attempts} == {"cancel"}


@pytest.mark.parametrize("seed", range(5))
def test_an_originate_to_a_busy_number_is_busy_not_failed(seed: int) -> None:
    channel_id, action_id, _ = originate("originate_far_busy")
    tracker = CallTracker(queues=frozenset({"12349"}))
    tracker.expect_outbound(channel_id, action_id, "13900139000", 0.0, queue="12349")
    _, changes = replay("originate_far_busy", seed, tracker)
    [end] = ended(changes)
    # OriginateResponse says Failure with Reason 0; the busy is only in the Hangup Cause 17.
    assert end.call.outcome == "busy"


@pytest.mark.parametrize("seed", range(5))
def test_a_click_to_call_whose_far_end_is_busy_is_busy_not_answered(seed: int) -> None:
    channel_id, action_id, number = originate("click_to_call_far_busy")
    tracker = CallTracker(queues=frozenset({"12349"}))
    tracker.expect_outbound(channel_id, action_id, number, 0.0, queue="12349", via_operator=True)
    _, changes = replay("click_to_call_far_busy", seed, tracker)
    [end] = ended(changes)
    assert end.call.outcome == "busy"
    assert end.call.talk_s is None
    assert not [c for c in changes if c.kind == "answered"]  # the operator's leg answering is not the call


@pytest.mark.parametrize("name", ["elder_callback", "sos_alarm_callback"])
@pytest.mark.parametrize("seed", range(3))
def test_a_call_back_through_the_queue_keeps_its_operator(name: str, seed: int) -> None:
    """Issue 12, item 5: the answered call-back joins queue 12349; the operator who answers it
    gets the pop (a ringing change with the member) and is on the record."""
    channel_id, action_id, _ = originate(name)
    tracker = CallTracker(queues=frozenset({"12349"}))
    tracker.expect_outbound(channel_id, action_id, "13800138000", 0.0, queue="12349")
    _, changes = replay(name, seed, tracker)
    assert {c.member for c in changes if c.kind == "ringing"} >= {"op1001"}
    answered = [c for c in changes if c.kind == "answered" and c.member]
    assert answered and answered[-1].member == "op1001"
    [end] = ended(changes)
    assert (end.call.outcome, end.call.member) == ("answered", "op1001")


def test_the_wellbeing_check_reports_its_key_as_a_real_asterisk_sends_it() -> None:
    """Captured from Asterisk 20.20.1 running deploy/asterisk (hotline-wellbeing, no key pressed)."""
    raw = (Path(__file__).parent / "fixtures" / "wellbeing_userevent.asterisk-20.20.1.ami").read_bytes()
    frames = FrameReader().feed(raw)
    (frame,) = [f for f in frames if f.get("Event") == "UserEvent"]
    assert frame["Privilege"] == "user,all"  # manager.conf must read the user class
    event = ev.parse_event(frame)
    assert isinstance(event, ev.UserEvent)
    assert (event.user_event, event.call_id, event.digit) == (ev.WELLBEING_EVENT, "call_capture_1", "")
