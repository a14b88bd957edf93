"""The 12349 line end to end: a real ``hotline serve`` process, the AMI simulator over TCP,
Redis, the database and operators' WebSockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from hotline.telephony.events import parse_event
from hotline.telephony.frames import FrameReader
from hotline.telephony.tracker import CallTracker
from simulators.asterisk import AsteriskSim
from tests.conftest import MQTT_PORT, auth
from tests.helpers import BackendProcess, DeviceClient, Feed, eventually
from tests.test_ami_link import FIXTURE
from tests.test_e2e import ELDER

pytestmark = pytest.mark.e2e
SPEED = 20.0  # PBX seconds per real second: Timestamps carry the scripted durations


@pytest.fixture
async def sim() -> AsyncIterator[AsteriskSim]:
    s = AsteriskSim(speed=SPEED, members=("op1001", "op1002", "op1003"))
    await s.start()
    yield s
    await s.stop()


async def _world(backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim) -> dict[str, Any]:
    backend.env["HOTLINE_AMI_URL"] = f"ami://hotline:hotline@127.0.0.1:{sim.port}"
    backend.cli("db", "upgrade")
    w: dict[str, Any] = {
        "op1": backend.cli("user", "add", "op1", "--role", "operator", "--extension", "op1001"),
        "op2": backend.cli("user", "add", "op2", "--role", "operator", "--extension", "op1002"),
        "sup": backend.cli("user", "add", "sup", "--role", "supervisor"),
        "admin": backend.cli("user", "add", "admin", "--role", "admin"),
    }
    await backend.start()
    contacts = [{"name": "张伟", "relation": "儿子", "phone": "139 1111 2222", "channel": "sms"}]
    body = {**ELDER, "phones": ["0574-62228888", "13800000001"], "contacts": contacts}
    async with http.post(f"{backend.url}/api/v1/elders", json=body, headers=auth(w["op1"])) as r:
        assert r.status == 201, await r.text()
        w["elder"] = await r.json()
    device = {
        "device_id": "YJT20000001",
        "kind": "one_touch_phone",
        "elder_id": w["elder"]["id"],
        "sim_number": "13700009999",
    }
    async with http.post(f"{backend.url}/api/v1/devices", json=device, headers=auth(w["admin"])) as r:
        assert r.status == 201, await r.text()
    return w


async def _feed(http: aiohttp.ClientSession, backend: BackendProcess, token: str) -> Feed:
    ws = await http.ws_connect(f"{backend.url}/api/v1/ws?token={token}")
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    return Feed(ws)


async def _calls(
    http: aiohttp.ClientSession, backend: BackendProcess, token: str, **query: str
) -> list[dict[str, Any]]:
    async with http.get(f"{backend.url}/api/v1/calls", params={"limit": "100", **query}, headers=auth(token)) as r:
        assert r.status == 200, await r.text()
        return list((await r.json())["items"])


def test_tracker_times_the_recorded_asterisk_call() -> None:
    """The raw stream from a real Asterisk 20: one answered call, timed from its Timestamps."""
    tracker = CallTracker(queues=frozenset({"12349"}))
    changes = [
        c for f in FrameReader().feed(FIXTURE.read_bytes()) if "Event" in f for c in tracker.feed(parse_event(f))
    ]
    assert [c.kind for c in changes] == ["joined", "ringing", "answered", "ended"]
    call = changes[-1].call
    assert (call.outcome, call.member, call.caller_name, call.end_reason) == ("answered", "op1002", "张三", "caller")
    assert call.hold_s == pytest.approx(1795352681.354460 - 1795352681.352311)
    assert call.ring_s == pytest.approx(1795352681.354460 - 1795352681.352350)
    assert call.talk_s == pytest.approx(1795352685.857336 - 1795352681.354460)


async def test_known_caller_pops_to_the_ringing_operator_with_frames_cut_anywhere(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim
) -> None:
    w = await _world(backend, http, sim)
    op1, op2, sup = [await _feed(http, backend, w[k]) for k in ("op1", "op2", "sup")]
    sim.chop = (1, 9)  # every frame reaches the backend in pieces, names cut mid-character
    gate = asyncio.Event()
    call = sim.spawn(sim.inbound_call("+86 138-0000-0001", "张三", rings=[["op1001"]], answer_gate=gate, talk_s=4.0))
    pop = await op1.wait_for("call.ringing", timeout=10)
    assert not gate.is_set() and sim.channels  # the phone is still ringing
    profile = pop["profile"]
    assert profile["elder"]["name"] == "张三" and profile["elder"]["medical_notes"] == "冠心病，服用阿司匹林"
    assert profile["elder"]["address"] == ELDER["address"]
    assert profile["matched_by"] == {"kind": "elder", "ref": None}
    assert [d["device_id"] for d in profile["devices"]] == ["YJT20000001"]
    assert [c["name"] for c in profile["elder"]["contacts"]] == ["张伟"]
    assert pop["call"]["caller_name"] == "张三" and pop["operator"]["member"] == "op1001"
    gate.set()
    linkedid = await call
    answered = await op1.wait_for("call.answered")
    ended = await op1.wait_for("call.ended")
    assert answered["call"]["linkedid"] == ended["call"]["linkedid"] == linkedid
    await op2.drain(0.3)
    assert op2.count("call.ringing") == 0  # nobody else sees the profile
    board = [await sup.wait_for("wallboard.call", change=k) for k in ("joined", "ringing", "answered", "ended")]
    assert board[-1]["call"]["outcome"] == "answered"
    assert sup.count("call.ringing") == 0

    async def stored() -> list[dict[str, Any]]:
        rows = await _calls(http, backend, w["sup"])
        return rows if rows and rows[0]["state"] == "ended" and rows[0]["operator_id"] else []

    (row,) = await eventually(stored)
    assert (row["outcome"], row["elder_id"], row["matched_by"], row["member"]) == (
        "answered",
        w["elder"]["id"],
        "elder",
        "op1001",
    )
    assert row["talk_s"] == pytest.approx(4.0, abs=0.6)
    async with http.get(f"{backend.url}/metrics") as r:
        text = await r.text()
    assert "hotline_screen_pops_total 1" in text and "hotline_ami_connected 1" in text
    assert "hotline_ami_pop_seconds_count 1.0" in text  # and the pop was timed


async def test_unknown_caller_pops_with_a_null_profile_and_the_call_opens_an_incident(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim
) -> None:
    w = await _world(backend, http, sim)
    op2 = await _feed(http, backend, w["op2"])
    contact_call = sim.spawn(sim.inbound_call("013911112222", "张伟", rings=[["op1002"]], ring_s=1, talk_s=1))
    pop = await op2.wait_for("call.ringing")
    assert pop["profile"]["matched_by"] == {
        "kind": "contact",
        "ref": pop["profile"]["matched_by"]["ref"],
        "name": "张伟",
        "relation": "儿子",
    }
    await contact_call
    await op2.wait_for("call.ended")
    stranger = sim.spawn(sim.inbound_call("62000000", "", rings=[["op1002"]], ring_s=1, talk_s=1))
    pop = await op2.wait_for("call.ringing")
    assert pop["profile"] is None and pop["call"]["caller_num"] == "62000000"
    await stranger
    (row,) = await eventually(lambda: _rows(http, backend, w["op2"], caller_num="62000000"))
    bad = {"type": "service_request", "service": "moon_landing"}
    async with http.post(f"{backend.url}/api/v1/calls/{row['id']}/incident", json=bad, headers=auth(w["op2"])) as r:
        assert r.status == 400 and (await r.json())["error"]["field"] == "service"
    req = {"type": "service_request", "service": "meals"}
    async with http.post(f"{backend.url}/api/v1/calls/{row['id']}/incident", json=req, headers=auth(w["op2"])) as r:
        assert r.status == 400 and (await r.json())["error"]["field"] == "elder_id"  # unknown caller: say who
    req["elder_id"] = w["elder"]["id"]
    async with http.post(f"{backend.url}/api/v1/calls/{row['id']}/incident", json=req, headers=auth(w["op2"])) as r:
        assert r.status == 201, await r.text()
        order = await r.json()
    # One record of a service request: the work order, linked to the call both ways.
    assert (order["service"], order["call_id"], order["elder_id"]) == ("meals", row["id"], w["elder"]["id"])
    assert order["timeline"][0]["kind"] == "requested"
    async with http.get(f"{backend.url}/api/v1/calls/{row['id']}", headers=auth(w["op2"])) as r:
        call = await r.json()
    assert (call["service_request_id"], call["incident_id"]) == (order["id"], None)
    async with http.post(f"{backend.url}/api/v1/calls/{row['id']}/incident", json=req, headers=auth(w["op2"])) as r:
        assert r.status == 400 and order["id"] in (await r.json())["error"]["message"]  # linked once


async def _rows(http: aiohttp.ClientSession, backend: BackendProcess, token: str, **match: Any) -> list[dict[str, Any]]:
    rows = [r for r in await _calls(http, backend, token) if all(r[k] == v for k, v in match.items())]
    return rows if rows and all(r["state"] == "ended" for r in rows) else []


async def test_outcomes_timings_and_service_level_of_a_scripted_set(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim
) -> None:
    w = await _world(backend, http, sim)
    since = time.time() - 5
    script = {
        "13000000001": {"rings": [["op1001"]], "ring_s": 5},  # answered after 5 s
        "13000000002": {"rings": [["op1001"], ["op1002"]], "ring_s": 15},  # ring-no-answer, then op1002
        "13000000003": {"rings": [["op1003"]], "ring_s": 5, "wait_before_ring_s": 100},  # answered after 105 s
        "13000000004": {"rings": [["op1001", "op1002"]], "ring_s": 25, "outcome": "abandoned"},
        "13000000005": {"rings": [["op1003"]], "ring_s": 40, "outcome": "timeout"},
    }
    await asyncio.gather(*(sim.inbound_call(n, "测试", talk_s=2.0, **kw) for n, kw in script.items()))
    rows = await eventually(lambda: _five(http, backend, w["sup"]), timeout=15)
    by = {r["caller_num"]: r for r in rows}
    assert [by[n]["outcome"] for n in script] == ["answered", "answered", "answered", "abandoned", "timeout"]
    assert [by[n]["hold_s"] for n in script] == pytest.approx([5, 30, 105, 25, 40], abs=1.0)
    rna = by["13000000002"]
    assert rna["member"] == "op1002" and rna["ring_s"] == pytest.approx(15, abs=1.0)
    assert [(a["member"], a["result"]) for a in rna["attempts"]] == [("op1001", "no_answer"), ("op1002", "answered")]
    assert rna["attempts"][0]["ring_s"] == pytest.approx(15, abs=1.0)  # from RingTime, in milliseconds
    assert {a["result"] for a in by["13000000004"]["attempts"]} == {"cancel"}
    assert by["13000000005"]["end_reason"] == "queue_timeout" and by["13000000004"]["end_reason"] == "caller"
    assert all(by[n]["talk_s"] == pytest.approx(2.0, abs=0.6) for n in list(script)[:3])

    period = {"since": _iso(since), "until": _iso(sim.now() + 5)}  # PBX time runs SPEED times faster
    async with http.get(f"{backend.url}/api/v1/stats/calls", params=period, headers=auth(w["sup"])) as r:
        assert r.status == 200, await r.text()
        stats = await r.json()
    assert (stats["offered"], stats["answered"], stats["abandoned"], stats["timeout"]) == (5, 3, 1, 1)
    assert stats["answered_within"] == {"20": 0.2, "60": 0.4, "180": 0.6}
    assert stats["avg_wait_s"] == pytest.approx(41, abs=1.0) and stats["max_wait_s"] == pytest.approx(105, abs=1.0)
    assert [t["met"] for t in stats["targets"]] == [False, False, False]
    ops = {o["member"]: o for o in stats["operators"]}
    assert ops["op1001"]["answered"] == 1 and ops["op1001"]["name"] == "op1"
    assert ops["op1003"]["operator_id"] is None  # a queue member no user is linked to
    async with http.get(f"{backend.url}/api/v1/stats/calls", params=period, headers=auth(w["op1"])) as r:
        assert r.status == 403
    async with http.get(
        f"{backend.url}/api/v1/stats/calls", params={"since": "yesterday"}, headers=auth(w["sup"])
    ) as r:
        assert r.status == 400 and (await r.json())["error"]["field"] == "since"


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


async def _five(http: aiohttp.ClientSession, backend: BackendProcess, token: str) -> list[dict[str, Any]]:
    rows = await _calls(http, backend, token, direction="inbound")
    return rows if len(rows) == 5 and all(r["outcome"] for r in rows) else []


async def test_a_dropped_connection_resynchronises_without_losing_or_doubling_calls(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim
) -> None:
    w = await _world(backend, http, sim)
    op1 = await _feed(http, backend, w["op1"])
    # A: answered before the drop, still talking after we are back.
    a = sim.spawn(sim.inbound_call("13100000001", "甲", rings=[["op1001"]], ring_s=1, talk_s=100))
    await op1.wait_for("call.answered")
    # B: answered before the drop, hangs up while we are away.
    b = sim.spawn(sim.inbound_call("13100000002", "乙", rings=[["op1002"]], ring_s=1, talk_s=20))
    await eventually(lambda: _true(sum(m.in_call for m in sim.members.values()) == 2))
    sim.refuse_logins = True
    sim.drop_connections()
    # C: joins the queue while we are away, still waiting when we are back.
    gate = asyncio.Event()
    c = sim.spawn(sim.inbound_call("13100000003", "丙", rings=[["op1001"]], answer_gate=gate, talk_s=1))
    await b
    sim.refuse_logins = False
    await eventually(lambda: _true(sim.connected == 1), timeout=15)
    await asyncio.sleep(0.5)
    gate.set()
    await asyncio.gather(a, c)
    rows = await eventually(lambda: _three(http, backend, w["sup"]), timeout=15)
    by = {r["caller_num"]: r for r in rows}
    assert (by["13100000001"]["outcome"], by["13100000001"]["end_reason"]) == ("answered", "caller")
    assert by["13100000001"]["talk_s"] == pytest.approx(100, abs=1.5)
    assert (by["13100000002"]["outcome"], by["13100000002"]["end_reason"]) == ("answered", "ended_while_disconnected")
    assert by["13100000002"]["inferred"]
    assert (by["13100000003"]["outcome"], by["13100000003"]["member"]) == ("answered", "op1001")
    assert op1.count("call.ringing") == 1  # A's pop; no second one after the resync
    async with http.get(f"{backend.url}/metrics") as r:
        assert "hotline_ami_logins_total 2" in await r.text()


async def test_times_unseen_while_away_are_not_made_up_and_stay_out_of_the_service_level(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim
) -> None:
    """Answered while AMI is away: CoreShowChannel's Duration is the agent leg's age since it
    began ringing (../shared/ami-live/README.md), so it cannot time the answer; AgentComplete's
    HoldTime and TalkTime can. Abandoned while away: nobody knows the wait."""
    w = await _world(backend, http, sim)
    op1, op2 = await _feed(http, backend, w["op1"]), await _feed(http, backend, w["op2"])
    since = sim.now() - 1
    x = sim.spawn(sim.inbound_call("13200000001", "戊", rings=[["op1001"]], ring_s=8, talk_s=200))
    y = sim.spawn(sim.inbound_call("13200000002", "己", rings=[["op1002"]], ring_s=10, outcome="abandoned"))
    await op1.wait_for("call.ringing")
    await op2.wait_for("call.ringing")
    sim.refuse_logins = True
    sim.drop_connections()
    await y  # the caller gives up while we are away
    await eventually(lambda: _true(sim.members["op1001"].in_call))  # and op1001 answers X, unseen
    sim.refuse_logins = False
    await eventually(lambda: _true(sim.connected == 1), timeout=15)
    await x
    rows = await eventually(lambda: _two_done(http, backend, w["sup"]), timeout=15)
    by = {r["caller_num"]: r for r in rows}
    answered, abandoned = by["13200000001"], by["13200000002"]
    assert (answered["outcome"], answered["member"], answered["inferred"]) == ("answered", "op1001", True)
    assert answered["hold_s"] == pytest.approx(8, abs=1.5)  # AgentComplete's HoldTime, not the ring leg's age
    assert answered["talk_s"] == pytest.approx(200, abs=1.5)
    assert (abandoned["end_reason"], abandoned["inferred"]) == ("ended_while_disconnected", True)
    assert abandoned["hold_s"] is None and abandoned["talk_s"] is None  # unknown, not invented
    period = {"since": _iso(since), "until": _iso(sim.now() + 5)}  # PBX time runs SPEED times faster
    async with http.get(f"{backend.url}/api/v1/stats/calls", params=period, headers=auth(w["sup"])) as r:
        stats = await r.json()
    assert (stats["offered"], stats["unmeasured"]) == (2, 1)
    assert stats["answered_within"]["20"] == 1.0  # over the one call whose wait is known


async def _two_done(http: aiohttp.ClientSession, backend: BackendProcess, token: str) -> list[dict[str, Any]]:
    rows = await _calls(http, backend, token, direction="inbound")
    done = len(rows) == 2 and all(r["outcome"] for r in rows)
    return rows if done and all(r["talk_s"] for r in rows if r["outcome"] == "answered") else []


async def _true(value: object) -> bool:
    return bool(value)


async def _three(http: aiohttp.ClientSession, backend: BackendProcess, token: str) -> list[dict[str, Any]]:
    rows = await _calls(http, backend, token, direction="inbound")
    return rows if len(rows) == 3 and all(r["outcome"] for r in rows) else []


async def test_an_alarm_is_called_back_once_and_its_outcome_recorded(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim, env: dict[str, str]
) -> None:
    w = await _world(backend, http, sim)
    device = await DeviceClient(
        MQTT_PORT, env["HOTLINE_MQTT_PREFIX"], "YJT20000001", asyncio.get_running_loop()
    ).ready()
    event = {"event_id": "sos-cb", "type": "sos", "ts": int(time.time() * 1000)}
    device.publish(event)
    ack = await device.next_ack()
    device.publish(event)  # the device did not hear the ack and sends again
    assert (await device.next_ack())["status"] == "duplicate"
    device.close()
    (row,) = await eventually(lambda: _rows(http, backend, w["sup"], direction="outbound"), timeout=15)
    assert (row["purpose"], row["incident_id"], row["caller_num"]) == (
        "alarm_callback",
        ack["incident_id"],
        "13700009999",
    )
    assert (row["outcome"], row["device_id"], row["elder_id"]) == ("answered", "YJT20000001", w["elder"]["id"])
    assert row["talk_s"] == pytest.approx(sim.originate_talk_s, abs=0.6)
    assert len(sim.originates) == 1 and sim.originates[0]["Channel"] == "PJSIP/13700009999@pstn"

    sim.originate_outcomes["13900000009"] = "busy"
    body = {"number": "13900000009", "purpose": "contact", "idempotency_key": "retry-me"}
    first = await _post_call(http, backend, w["op1"], body)
    again = await _post_call(http, backend, w["op1"], body)
    assert first["id"] == again["id"] and len(sim.originates) == 2
    busy = await eventually(lambda: _rows(http, backend, w["op1"], id=first["id"]))
    assert busy[0]["outcome"] == "busy"
    bad = await http.post(
        f"{backend.url}/api/v1/calls", json={"number": "138\r\nAction: Command"}, headers=auth(w["op1"])
    )
    assert bad.status == 400 and (await bad.json())["error"]["field"] == "number"


async def _post_call(
    http: aiohttp.ClientSession, backend: BackendProcess, token: str, body: dict[str, Any]
) -> dict[str, Any]:
    async with http.post(f"{backend.url}/api/v1/calls", json=body, headers=auth(token)) as r:
        assert r.status == 202, await r.text()
        return dict(await r.json())


async def test_click_to_call_is_answered_or_busy_by_the_far_end_not_by_the_operator_leg(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim
) -> None:
    """Issue 12, items 3 and 4, through a real backend: the operator's leg answering is not the call."""
    w = await _world(backend, http, sim)
    sim.originate_outcomes["13900000011"] = "busy"
    busy = await _post_call(http, backend, w["op1"], {"number": "13900000011", "idempotency_key": "ctc-busy"})
    answered = await _post_call(http, backend, w["op1"], {"number": "13900000012", "idempotency_key": "ctc-ok"})
    assert [o["Channel"] for o in sim.originates] == ["PJSIP/op1001", "PJSIP/op1001"]

    async def done(call_id: str) -> list[dict[str, Any]]:
        rows = await _rows(http, backend, w["op1"], id=call_id)
        return rows if rows and rows[0]["state"] == "ended" else []

    (b,) = await eventually(lambda: done(busy["id"]), timeout=15)
    (a,) = await eventually(lambda: done(answered["id"]), timeout=15)
    assert (b["outcome"], b["talk_s"]) == ("busy", None)
    assert a["outcome"] == "answered"
    assert a["talk_s"] == pytest.approx(sim.originate_talk_s, abs=0.6)


async def test_a_pbx_restart_is_not_an_abandon(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim
) -> None:
    """Issue 12, item 2: SoftHangupRequest Cause 4 and Event: Shutdown, as a real Asterisk 20
    reports `core restart now`, modelled in the simulator after ../shared/ami-live/README.md."""
    w = await _world(backend, http, sim)
    sim.spawn(sim.inbound_call("13600000021", "周敏", rings=[["op1001"]], ring_s=600))
    sim.spawn(sim.inbound_call("13600000022", "郑强", rings=[["op1002"]], ring_s=1, talk_s=600))

    async def live_states() -> list[str]:
        rows = await _calls(http, backend, w["sup"], direction="inbound")
        states = sorted(r["state"] for r in rows)
        return states if states == ["answered", "ringing"] else []

    await eventually(live_states, timeout=15)
    await sim.shutdown(restart=True)

    async def ended() -> list[dict[str, Any]]:
        rows = await _calls(http, backend, w["sup"], direction="inbound")
        return rows if len(rows) == 2 and all(r["state"] == "ended" for r in rows) else []

    rows = {r["caller_num"]: r for r in await eventually(ended, timeout=15)}
    assert (rows["13600000021"]["outcome"], rows["13600000021"]["end_reason"]) == ("pbx_shutdown", "pbx_shutdown")
    assert (rows["13600000022"]["outcome"], rows["13600000022"]["end_reason"]) == ("answered", "pbx_shutdown")
    period = {"since": _iso(time.time() - 86_400), "until": _iso(time.time() + 86_400)}  # the sim runs fast
    async with http.get(f"{backend.url}/api/v1/stats/calls", params=period, headers=auth(w["sup"])) as r:
        stats = await r.json()
    assert (stats["abandoned"], stats["pbx_shutdown"], stats["offered"], stats["answered"]) == (0, 1, 1, 1)


async def test_calls_left_live_by_a_vanished_pbx_are_closed_as_unknown_and_a_resync_corrects_them(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim
) -> None:
    backend.env["HOTLINE_AMI_STALE_S"] = "1"
    w = await _world(backend, http, sim)
    op1 = await _feed(http, backend, w["op1"])
    call = sim.spawn(sim.inbound_call("13800000001", "张三", rings=[["op1001"]], talk_s=3600.0))
    await op1.wait_for("call.answered")

    async def row(state: str) -> dict[str, Any] | None:
        rows = await _calls(http, backend, w["sup"])
        return rows[0] if rows and rows[0]["state"] == state else None

    live = await eventually(lambda: row("answered"))
    port = sim.port
    call.cancel()
    await sim.stop()  # the PBX is gone, mid-call, and does not come back
    closed = await eventually(lambda: row("ended"), timeout=15)
    assert (closed["outcome"], closed["end_reason"]) == ("unknown", "pbx_lost")
    assert closed["linkedid"] == live["linkedid"]

    # It comes back after all, with the call still up: the resync rewrites the record.
    back = AsteriskSim(speed=SPEED, members=("op1001", "op1002", "op1003"))
    await back.start("127.0.0.1", port)
    try:
        lid = live["linkedid"]
        caller = back.new_chan("SIP/trunk", linkedid=lid, uniqueid=lid, caller_num="13800000001")
        caller.state, caller.application, caller.application_data = "Up", "Queue", "12349,r,,,120"
        agent = back.new_chan("SIP/op1001", linkedid=lid)
        agent.state, agent.application = "Up", "AppQueue"
        corrected = await eventually(lambda: row("answered"), timeout=40)
        assert corrected["outcome"] is None and corrected["end_reason"] is None
    finally:
        await back.stop()
