"""Lifecycles are transition tables, and nothing writes a status around them (issue 11, item 3).

Also: every closed vocabulary is defined once and the other copies agree with it (item 2).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import aiohttp
import pytest

from devices import contract
from dispatch.catalogue import SERVICES
from dispatch.lifecycle import INCIDENT, OFFER, TIMER
from hotline.care import lifecycle as care_lc
from hotline.core import vocab
from hotline.core.lifecycle import Lifecycle, TransitionError, table
from hotline.storage import models
from hotline.telephony.lifecycle import CALL
from hotline.users import add_user
from tests.conftest import Running, auth

ROOT = Path(__file__).resolve().parents[1]
LIFECYCLE_MODULES = {
    "hotline/core/lifecycle.py",
    "dispatch/lifecycle.py",
    "hotline/telephony/lifecycle.py",
    "hotline/care/lifecycle.py",
}
GOVERNED = {
    "Incident",
    "Offer",
    "EscalationTimer",
    "CallRecord",
    "Call",
    "ServiceRequest",
    "FollowUp",
    "Complaint",
    "Referral",
    "CampaignTarget",
    "CampaignRun",
    "CareTimer",
}
CARE = [care_lc.SERVICE_REQUEST, care_lc.FOLLOW_UP, care_lc.COMPLAINT, care_lc.REFERRAL, care_lc.CAMPAIGN_TARGET]


def _status_writes(path: Path) -> list[str]:
    """``x.status = ...``, ``x.state = ...`` and ``Governed(status="...")`` in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            for t in target.elts if isinstance(target, ast.Tuple) else [target]:
                if isinstance(t, ast.Attribute) and t.attr in ("status", "state"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} assigns .{t.attr}")
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            for kw in node.keywords:
                if name in GOVERNED and kw.arg in ("status", "state") and isinstance(kw.value, ast.Constant):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} builds {name}({kw.arg}=...)")
    return found


def test_no_status_is_written_outside_its_lifecycle_module() -> None:
    offenders: list[str] = []
    # Not simulators/: the AMI simulator plays Asterisk's own channel states, which are not ours.
    for package in ("hotline", "devices", "dispatch"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if str(path.relative_to(ROOT)) in LIFECYCLE_MODULES or "migrations" in path.parts:
                continue
            offenders += _status_writes(path)
    assert offenders == []


def test_the_scan_finds_a_status_write() -> None:
    sample = ROOT / "tests" / "fixtures" / "status_write_sample.py"
    assert len(_status_writes(sample)) == 3  # the check above cannot pass by finding nothing


# Not the care timer: it is re-armed by design (a follow-up re-scheduled, the nightly ratings run).
@pytest.mark.parametrize("machine", [INCIDENT, OFFER, TIMER, CALL, *CARE, care_lc.CAMPAIGN_RUN], ids=lambda m: m.name)
def test_every_state_is_reachable_from_the_initial_one_or_an_entry(machine: Lifecycle) -> None:
    entries = {machine.initial} | ({vocab.CallState.QUEUED, vocab.CallState.DIALING} if machine is CALL else set())
    seen, frontier = set(entries), list(entries)
    while frontier:
        for target in machine.table.get(frontier.pop(), {}).values():
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == machine.states
    assert machine.terminal  # every lifecycle ends


def test_the_incident_table() -> None:
    assert INCIDENT.next_state("open", "acknowledge") == "acknowledged"
    assert INCIDENT.next_state("dispatched", "acknowledge") == "dispatched"
    assert INCIDENT.next_state("acknowledged", "offer") == "dispatched"
    assert INCIDENT.next_state("dispatched", "accept") == "accepted"
    assert INCIDENT.next_state("accepted", "on_scene") == "on_scene"
    assert INCIDENT.terminal == {"resolved", "cancelled"}
    with pytest.raises(TransitionError) as caught:
        INCIDENT.next_state("resolved", "cancel", subject="inc_1")
    assert (caught.value.from_state, caught.value.event) == ("resolved", "cancel")
    assert "incident inc_1 cannot cancel from resolved" in str(caught.value)
    with pytest.raises(TransitionError):
        INCIDENT.next_state("accepted", "offer")


def test_a_guard_refuses_an_expired_offer() -> None:
    from datetime import UTC, datetime, timedelta

    class Row:
        id = "ofr_1"
        status = "offered"
        expires_at = datetime(2026, 12, 1, tzinfo=UTC)

    row = Row()
    with pytest.raises(TransitionError, match="expired"):
        OFFER.fire(row, "accept", row.expires_at + timedelta(seconds=1))
    assert row.status == "offered"  # a refused move changes nothing
    assert OFFER.fire(row, "accept", row.expires_at - timedelta(seconds=1)) == "accepted"
    with pytest.raises(TransitionError):
        OFFER.load(row, "teleported")


def test_a_table_with_two_rows_for_one_move_is_refused() -> None:
    with pytest.raises(ValueError, match="two rows"):
        table([("a", "go", "b"), (("a", "c"), "go", "d")])


def test_every_vocabulary_agrees_with_its_other_copies() -> None:
    schemas = ROOT / "devices" / "schemas"
    event_enum = json.loads((schemas / "event.json").read_text())["properties"]["type"]["enum"]
    assert set(event_enum) == set(vocab.values(vocab.DeviceEventType)) == contract.EVENT_TYPES
    command_enum = json.loads((schemas / "command.json").read_text())["properties"]["type"]["enum"]
    assert tuple(command_enum) == contract.COMMAND_TYPES == vocab.values(vocab.CommandType)
    assert tuple(SERVICES) == vocab.values(vocab.ServiceCode)
    assert vocab.values(vocab.IncidentStatus) == models.INCIDENT_STATUSES
    assert INCIDENT.states == set(vocab.values(vocab.IncidentStatus))
    assert OFFER.states == set(vocab.values(vocab.OfferStatus))
    assert TIMER.states == set(vocab.values(vocab.TimerState))
    assert CALL.states == set(vocab.values(vocab.CallState))
    assert set(models.OPEN_STATUSES) == INCIDENT.states - INCIDENT.terminal
    assert care_lc.SERVICE_REQUEST.states == set(vocab.values(vocab.ServiceRequestStatus))
    assert care_lc.FOLLOW_UP.states == set(vocab.values(vocab.FollowUpStatus))
    assert care_lc.COMPLAINT.states == set(vocab.values(vocab.ComplaintStatus))
    assert care_lc.REFERRAL.states == set(vocab.values(vocab.ReferralStatus))
    assert care_lc.CAMPAIGN_TARGET.states == set(vocab.values(vocab.TargetState))
    assert care_lc.CARE_TIMER.states == set(vocab.values(vocab.TimerState))


def test_the_work_order_table() -> None:
    s = care_lc.SERVICE_REQUEST

    class Order:
        id = "wo_1"
        status = "requested"

    order = Order()
    with pytest.raises(TransitionError, match="assessment"):
        s.fire(order, "offer", True)  # a home adaptation waits for its assessment
    assert s.fire(order, "offer", False) == "dispatched"
    assert s.next_state("scheduled", "no_show") == "dispatched"  # a no-show goes to the next provider
    assert s.next_state("scheduled", "check_in") == "started"
    assert s.next_state("started", "check_out") == "completed"
    assert s.terminal == {"completed", "cancelled", "referred"}
    with pytest.raises(TransitionError):
        s.next_state("completed", "check_out")  # settled once


async def test_the_api_answers_an_illegal_move_with_409_naming_the_state_and_event(running: Running) -> None:
    url = running.url
    token = await add_user(running.settings, "sup", "supervisor")
    elder = {
        "name": "吴桂芳",
        "gender": "F",
        "birth_date": "1943-06-06",
        "address": "余姚市朗霞街道",
        "lat": 30.05,
        "lon": 121.16,
        "care_level": "mild",
        "living_situation": "alone",
    }
    async with aiohttp.ClientSession(headers=auth(token)) as http:
        async with http.post(f"{url}/api/v1/elders", json=elder) as r:
            elder_id = (await r.json())["id"]
        async with http.post(
            f"{url}/api/v1/incidents", json={"elder_id": elder_id, "type": "consultation", "note": "问询"}
        ) as r:
            assert r.status == 201, await r.text()
            incident_id = (await r.json())["id"]
        async with http.post(f"{url}/api/v1/incidents/{incident_id}/resolve", json={}) as r:
            assert r.status == 200
        async with http.post(f"{url}/api/v1/incidents/{incident_id}/cancel", json={"note": "误报"}) as r:
            body = await r.json()
    assert r.status == 409
    assert (body["error"]["from_state"], body["error"]["event"]) == ("resolved", "cancel")
    assert body["error"]["code"] == "transition"
