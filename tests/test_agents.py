"""Queue members' state for the wallboard, and pausing them through QueuePause."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from hotline.telephony import events as ev
from hotline.telephony.agents import AgentBoard
from hotline.telephony.frames import FrameReader
from simulators.asterisk import AsteriskSim
from tests.conftest import auth
from tests.helpers import BackendProcess
from tests.test_telephony import _feed, _world, sim  # noqa: F401  (the simulator fixture)

LIVE = Path(__file__).parent / "fixtures" / "ami-live"  # copies of ../shared/ami-live (test_live_recordings)


def _events(name: str) -> list[ev.AmiEvent]:
    frames = FrameReader().feed((LIVE / name).read_bytes())
    return [ev.parse_event(f) for f in frames if "Event" in f]


def test_the_board_follows_a_real_asterisk_queue() -> None:
    events = _events("ami_tcp_kill_while_ringing.part2.server.ami")
    board = AgentBoard(queues=frozenset({"12349"}))
    board.replace([e for e in events if isinstance(e, ev.QueueMember) and e.name == "QueueMember"])
    assert {a.extension: a.state for a in board.agents.values()} == {
        "op1001": "ringing",
        "op1002": "ringing",
        "op1003": "offline",  # Status 5: unavailable, its phone is not registered
    }
    live = [e for e in events if isinstance(e, ev.QueueMember) and e.name == "QueueMemberStatus"]
    changed = [a for e in live if (a := board.feed(e)) is not None]
    assert [(a.extension, a.state) for a in changed] == [("op1001", "on_call"), ("op1002", "free"), ("op1001", "free")]
    assert board.agents[("12349", "PJSIP/op1001")].calls_taken == 14


async def test_a_pause_with_its_reason_reaches_asterisk_and_the_wallboard(
    backend: BackendProcess,
    http: aiohttp.ClientSession,
    sim: AsteriskSim,  # noqa: F811
) -> None:
    w = await _world(backend, http, sim)
    board = await _feed(http, backend, w["sup"])
    url = f"{backend.url}/api/v1/agents"
    async with http.get(url, headers=auth(w["sup"])) as r:
        assert r.status == 200, await r.text()
        agents = {a["extension"]: a for a in (await r.json())["items"]}
    assert set(agents) == {"op1001", "op1002", "op1003"}
    assert agents["op1001"]["state"] == "free" and agents["op1001"]["operator_name"] == "op1"

    async with http.post(f"{url}/op1001/pause", json={"reason": "午餐"}, headers=auth(w["op1"])) as r:
        assert r.status == 200, await r.text()
        paused = await r.json()
    assert (paused["state"], paused["paused_reason"]) == ("paused", "午餐")
    assert paused["paused_since"] is not None and paused["paused_for_s"] >= 0
    assert sim.members["op1001"].paused and sim.members["op1001"].paused_reason == "午餐"
    sent = [a for a in sim.actions if a.get("Action") == "QueuePause"]
    assert sent[-1]["Interface"] == sim.members["op1001"].interface and sent[-1]["Paused"] == "true"
    seen = await board.wait_for("wallboard.agent", timeout=5)
    while seen["agent"]["extension"] != "op1001" or not seen["agent"]["paused"]:
        seen = await board.wait_for("wallboard.agent", timeout=5)
    assert seen["agent"]["paused_reason"] == "午餐"

    async with http.post(f"{url}/op1002/pause", json={}, headers=auth(w["op1"])) as r:
        assert r.status == 403  # an operator pauses only themselves
    async with http.post(f"{url}/op9999/pause", headers=auth(w["sup"])) as r:
        assert r.status == 404
    async with http.post(f"{url}/op1001/unpause", headers=auth(w["sup"])) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["state"] == "free"
    assert not sim.members["op1001"].paused
    async with http.get(url, headers=auth(w["sup"])) as r:
        assert {a["extension"]: a["paused"] for a in (await r.json())["items"]}["op1001"] is False


# Recorded from Asterisk 20.20.1 with deploy/asterisk/, answering QueuePause (op1002, 培训) and its undo.
PAUSE = Path(__file__).parent / "fixtures" / "queue_pause.asterisk-20.20.1.ami"


def test_a_real_queue_member_pause_reads_with_its_reason_and_start() -> None:
    frames = [f for f in FrameReader().feed(PAUSE.read_bytes()) if "Event" in f]
    board = AgentBoard(queues=frozenset({"12349"}))
    paused = board.feed(ev.parse_event(frames[0]))
    assert paused is not None and (paused.state, paused.paused_reason) == ("paused", "培训")
    assert paused.paused_since == 1796196394.0  # LastPause: when the pause began
    back = board.feed(ev.parse_event(frames[1]))
    assert back is not None and (back.state, back.paused_reason, back.paused_since) == ("offline", "", None)


def test_the_simulator_pauses_with_the_fields_asterisk_sends() -> None:
    recorded = next(f for f in FrameReader().feed(PAUSE.read_bytes()) if "Event" in f)
    pbx = AsteriskSim(members=("op1002",))
    simulated = dict(pbx.member_pairs(pbx.members["op1002"]))
    assert list(simulated) == [k for k in recorded if k not in ("Event", "Privilege", "Timestamp")]
