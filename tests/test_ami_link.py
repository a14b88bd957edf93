"""panoramisk 1.4's defects, each shown on the bare library and then fixed in our link.

Every pair runs against the AMI simulator over TCP. The ``upstream_`` test asserts the
defect (so we notice if a panoramisk release fixes it); the ``link_`` test is the one
that failed before :mod:`hotline.telephony.link` existed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from panoramisk import Manager

from hotline.core.targets import AmiTarget
from hotline.localsvc import free_port
from hotline.telephony import events as ev
from hotline.telephony.errors import AmiFrameError, AmiNotConnectedError, AmiOutcomeUnknownError
from hotline.telephony.frames import FrameReader, encode_frame
from hotline.telephony.link import AmiLink
from simulators.asterisk import AsteriskSim
from tests.helpers import eventually

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "ami-samples" / "answered-call.ami"
FIXTURE = Path(__file__).parent / "fixtures" / "answered-call.ami"
NAME_FRAME = encode_frame(
    [
        ("Event", "Newchannel"),
        ("Timestamp", "1795352680.850213"),
        ("Channel", "SIP/trunk-00000002"),
        ("CallerIDNum", "13800000001"),
        ("CallerIDName", "张三"),
        ("Uniqueid", "1.2"),
        ("Linkedid", "1.2"),
    ]
)
SPLIT_AT = NAME_FRAME.index("张".encode()) + 1  # inside the first character's three bytes
ORIGINATE = {
    "Action": "Originate",
    "Channel": "PJSIP/13900000002@pstn",
    "Context": "hotline-callback",
    "Exten": "12349",
    "Priority": "1",
}


@pytest.fixture
async def sim() -> AsyncIterator[AsteriskSim]:
    s = AsteriskSim(speed=20)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def link(sim: AsteriskSim) -> AsyncIterator[AmiLink]:
    lk = AmiLink(AmiTarget("127.0.0.1", sim.port, "hotline", "hotline"), ping_interval_s=0.5, ping_timeout_s=0.5)
    lk.start()
    await lk.wait_ready(5)
    yield lk
    await lk.close()


async def _bare_manager(sim: AsteriskSim, **config: Any) -> Manager:
    """A logged-in panoramisk Manager as upstream ships it; ``m.lost`` collects its disconnects."""
    lost: list[Any] = []
    m = Manager(
        loop=asyncio.get_running_loop(),
        host="127.0.0.1",
        port=sim.port,
        username="hotline",
        secret="hotline",
        reconnect_timeout=1,
        on_disconnect=lambda _m, exc: lost.append(exc),
        **config,
    )
    m.lost = lost
    await m.connect()
    await eventually(lambda: _true(m.authenticated), timeout=5)
    return m


@pytest.fixture
async def upstream(sim: AsteriskSim) -> AsyncIterator[Manager]:
    m = await _bare_manager(sim, ping_delay=3600)
    yield m
    m.close()


async def _true(value: object) -> bool:
    return bool(value)


def _frames(data: bytes) -> list[dict[str, str]]:
    return FrameReader().feed(data)


# -- framing -----------------------------------------------------------------------------


def test_fixture_is_the_brief_sample() -> None:
    if not SAMPLE.exists():
        pytest.skip("the shared brief is not beside this checkout")
    assert FIXTURE.read_bytes() == SAMPLE.read_bytes()


def test_any_split_of_the_recorded_call_gives_the_same_frames() -> None:
    data = FIXTURE.read_bytes()
    whole = _frames(data)
    assert len(whole) == 32 and whole[2]["CallerIDName"] == "张三"
    rng = random.Random(7)
    for _ in range(50):
        reader = FrameReader()
        got: list[dict[str, str]] = []
        i = 0
        while i < len(data):
            n = rng.randint(1, 40)
            got += reader.feed(data[i : i + n])
            i += n
        assert got == whole


def test_garbage_lines_are_counted_not_fatal() -> None:
    reader = FrameReader()
    frames = reader.feed(b"Asterisk Call Manager/9.0.0\r\nthis is no header\r\n\xff\xfe\r\n\r\n" + NAME_FRAME)
    assert [f["CallerIDName"] for f in frames] == ["张三"]
    assert reader.garbage_lines == 2


def test_an_unterminated_flood_is_dropped() -> None:
    reader = FrameReader(max_frame=1024)
    assert reader.feed(b"Asterisk Call Manager/9.0.0\r\n" + b"x" * 5000) == []
    assert reader.garbage_frames == 1
    assert [f["Event"] for f in reader.feed(NAME_FRAME)] == ["Newchannel"]


def test_header_injection_is_refused() -> None:
    with pytest.raises(AmiFrameError):
        encode_frame([("Action", "Originate"), ("Exten", "12349\r\nAction: Command")])


def test_events_are_typed_and_frozen() -> None:
    frames = _frames(FIXTURE.read_bytes())
    typed = [ev.parse_event(f) for f in frames if "Event" in f]
    called = next(e for e in typed if isinstance(e, ev.AgentCalled))
    assert (called.member_name, called.interface, called.caller_name) == ("op1002", "SIP/op1002", "张三")
    assert called.ts == pytest.approx(1795352681.352350) and called.ts_from_pbx
    with pytest.raises(AttributeError):
        called.member_name = "x"  # type: ignore[misc]
    odd = ev.parse_event({"Event": "AgentConnect", "HoldTime": "soon", "Linkedid": "1"})
    assert isinstance(odd, ev.AgentConnect) and odd.hold_time is None and not odd.ts_from_pbx


# -- defect 1: UTF-8 split across reads ----------------------------------------------------


async def test_upstream_loses_a_name_split_across_reads(sim: AsteriskSim, upstream: Manager) -> None:
    names: list[str] = []
    upstream.register_event("Newchannel", lambda _m, e: names.append(e["CallerIDName"]))
    await sim.send_raw(NAME_FRAME, pause_at=SPLIT_AT)
    await eventually(lambda: _true(names), timeout=3)
    assert names[0] != "张三"


async def test_link_keeps_a_name_split_across_reads(sim: AsteriskSim, link: AmiLink) -> None:
    names: list[str] = []
    link.subscribe(lambda e: names.append(e.caller_name))
    await sim.send_raw(NAME_FRAME, pause_at=SPLIT_AT)
    await eventually(lambda: _true(names), timeout=3)
    assert names == ["张三"]


# -- defect 2: Originate without Async -------------------------------------------------------


async def test_upstream_drops_the_connection_on_originate_without_async(sim: AsteriskSim, upstream: Manager) -> None:
    upstream.send_action(dict(ORIGINATE))
    await eventually(lambda: _true(upstream.lost), timeout=5)


async def test_link_sends_originate_async_and_keeps_the_connection(sim: AsteriskSim, link: AmiLink) -> None:
    answer = await link.action(dict(ORIGINATE), idempotent=False)
    assert answer["Response"] == "Success"
    assert sim.originates[-1]["Async"] == "true"
    await asyncio.sleep(0.3)
    assert link.connected and link.connects == 1


# -- defect 3: a handler that raises -------------------------------------------------------


async def test_upstream_handler_error_kills_the_connection(sim: AsteriskSim, upstream: Manager) -> None:
    upstream.register_event("Newchannel", lambda _m, _e: 1 / 0)
    await sim.send_raw(NAME_FRAME)
    await eventually(lambda: _true(upstream.lost), timeout=3)  # raised out of data_received: transport closed


async def test_link_survives_a_raising_handler(sim: AsteriskSim, link: AmiLink) -> None:
    seen: list[str] = []
    link.subscribe(lambda _e: 1 / 0)
    link.subscribe(lambda e: seen.append(e.name))
    await sim.send_raw(NAME_FRAME + NAME_FRAME)
    await eventually(lambda: _true(len(seen) == 2), timeout=3)
    assert link.handler_errors == 2 and link.connected and link.connects == 1


# -- defect 4: actions lost during a reconnect, and a resent Originate ----------------------


async def test_upstream_loses_an_action_sent_while_reconnecting(sim: AsteriskSim, upstream: Manager) -> None:
    """Upstream parks most unanswered actions and resends them after FullyBooted (the Originate
    hazard below), but it drops its "forgettable" ones: a Ping asked for now never completes."""
    sim.drop_connections()
    await eventually(lambda: _true(upstream.lost), timeout=3)
    future = upstream.send_action({"Action": "Ping"})
    await eventually(lambda: _true(sim.logins == 2), timeout=5)
    await asyncio.sleep(1.0)
    assert not future.done()
    assert not any(a.get("Action") == "Ping" for a in sim.actions)


async def test_link_delivers_an_action_asked_for_while_reconnecting(sim: AsteriskSim, link: AmiLink) -> None:
    sim.drop_connections()
    await eventually(lambda: _true(not link.connected), timeout=3)
    answer = await link.action({"Action": "QueueStatus"}, as_list=True, deadline_s=10)
    assert answer[-1]["Event"] == "QueueStatusComplete"
    pong = await link.action({"Action": "Ping"}, deadline_s=5)
    assert pong["Ping"] == "Pong"
    assert link.connects == 2
    assert sum(a.get("Action") == "QueueStatus" for a in sim.actions) == 1


async def test_upstream_places_an_originate_twice_after_a_drop(sim: AsteriskSim, upstream: Manager) -> None:
    sim.drop_after.add("originate")
    upstream.send_action({**ORIGINATE, "Async": "true", "ChannelId": "hl-dup"})
    await eventually(lambda: _true(len(sim.originates) == 2), timeout=6)
    assert sim.originates[0]["ActionID"] == sim.originates[1]["ActionID"]


async def test_link_never_resends_an_originate(sim: AsteriskSim, link: AmiLink) -> None:
    sim.drop_after.add("originate")
    with pytest.raises(AmiOutcomeUnknownError):
        await link.action({**ORIGINATE, "ChannelId": "hl-once"}, idempotent=False)
    await link.wait_ready(5)
    await asyncio.sleep(1.0)
    assert len(sim.originates) == 1


# -- defect 5: OriginateResponse swallowed by the pending action -----------------------------


async def test_upstream_hides_originate_response_from_handlers(sim: AsteriskSim, upstream: Manager) -> None:
    seen: list[Any] = []
    upstream.register_event("OriginateResponse", lambda _m, e: seen.append(e))
    answer = await asyncio.wait_for(upstream.send_action({**ORIGINATE, "Async": "true"}), 5)
    assert any(m.get("Event") == "OriginateResponse" for m in answer)  # it went to the action...
    await asyncio.sleep(0.5)
    assert seen == []  # ...and never to the handler


async def test_link_dispatches_originate_response(sim: AsteriskSim, link: AmiLink) -> None:
    seen: list[ev.OriginateResponse] = []
    link.subscribe(lambda e: seen.append(e) if isinstance(e, ev.OriginateResponse) else None)
    await link.action({**ORIGINATE, "ChannelId": "hl-resp", "ActionID": "call_1"}, idempotent=False)
    await eventually(lambda: _true(seen), timeout=5)
    assert (seen[0].uniqueid, seen[0].action_id, seen[0].reason) == ("hl-resp", "call_1", 4)


# -- defect 6: ping replies never checked ------------------------------------------------------


async def test_upstream_does_not_notice_a_half_open_connection(sim: AsteriskSim) -> None:
    m = await _bare_manager(sim, ping_delay=1, ping_interval=1)
    sim.stall()
    await asyncio.sleep(3.5)  # three unanswered pings
    assert m._connected and sim.logins == 1
    m.close()


async def test_link_reconnects_from_a_half_open_connection(sim: AsteriskSim, link: AmiLink) -> None:
    sim.stall()
    await eventually(lambda: _true(sim.logins == 2 and link.connected), timeout=5)
    assert link.connects == 2


# -- garbage from the PBX ----------------------------------------------------------------------


async def test_link_counts_garbage_and_keeps_going(sim: AsteriskSim, link: AmiLink) -> None:
    seen: list[str] = []
    link.subscribe(lambda e: seen.append(e.caller_name))
    await sim.send_raw(b"garbage without a colon\r\nmore\r\n\r\n\x00\x01\x02: \r\n\r\n" + NAME_FRAME)
    await eventually(lambda: _true(seen), timeout=3)
    assert seen == ["张三"] and link.garbage >= 2 and link.connects == 1


# -- closing from any state (issue 10, item 4) -------------------------------------------------


async def test_close_is_not_swallowed_while_the_old_watchdog_winds_down(
    sim: AsteriskSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race behind the teardown hang: close() lands while the run loop, its connection just
    lost, waits in ``finally`` for the old watchdog. That cancellation was swallowed, and the
    loop reconnected forever."""

    async def slow_watchdog(self: AmiLink) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)  # a cleanup that takes a moment
            raise

    monkeypatch.setattr(AmiLink, "_watchdog", slow_watchdog)
    lk = AmiLink(AmiTarget("127.0.0.1", sim.port, "hotline", "hotline"), ping_interval_s=0.5, ping_timeout_s=0.5)
    lk.start()
    await lk.wait_ready(5)
    sim.drop_connections()
    await asyncio.sleep(0.1)  # the loop is now in its finally, awaiting the watchdog
    started = time.monotonic()
    await asyncio.wait_for(lk.close(grace_s=5), 4)
    assert time.monotonic() - started < 2
    assert lk._task is None
    logins = sim.logins
    await asyncio.sleep(1.5)
    assert sim.logins == logins  # and it does not come back


async def test_close_is_bounded_and_idempotent_in_every_state() -> None:
    silent_port = free_port()
    held: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)  # no banner, no answer to Login: the link sits in its login wait

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", silent_port)
    dead_port = free_port()  # nothing listens: the link sits in its back-off
    try:
        for port in (silent_port, dead_port):
            lk = AmiLink(AmiTarget("127.0.0.1", port, "u", "s"), login_timeout_s=30)
            lk.start()
            await asyncio.sleep(0.5)
            started = time.monotonic()
            await asyncio.wait_for(lk.close(), 3)
            await asyncio.wait_for(lk.close(), 1)  # twice is fine
            assert time.monotonic() - started < 1.5
            with pytest.raises(AmiNotConnectedError):
                await lk.action({"Action": "Ping"}, deadline_s=0.2)
        never_started = AmiLink(AmiTarget("127.0.0.1", dead_port, "u", "s"))
        await asyncio.wait_for(never_started.close(), 1)
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def test_a_reset_before_the_banner_is_noticed_at_once_not_at_the_login_timeout() -> None:
    """Issue 12, item 8."""
    port = free_port()

    async def reset(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.transport.abort()  # RST before any banner

    server = await asyncio.start_server(reset, "127.0.0.1", port)
    lk = AmiLink(AmiTarget("127.0.0.1", port, "u", "s"), login_timeout_s=5)
    started = time.monotonic()
    lk.start()
    try:
        await eventually(lambda: _true("closed before" in (lk.last_error or "")), timeout=2)
        assert time.monotonic() - started < 2
    finally:
        await lk.close()
        server.close()
        await server.wait_closed()


async def test_a_lost_connection_is_logged_as_a_warning(
    sim: AsteriskSim, link: AmiLink, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12, item 9: not only "AMI reconnect in ..." at INFO."""
    caplog.set_level(logging.INFO, logger="hotline.telephony.link")
    sim.drop_connections()
    await eventually(lambda: _true(not link.connected), timeout=5)
    await link.wait_ready(10)
    lost = [r for r in caplog.records if "lost" in r.getMessage()]
    assert lost and all(r.levelno == logging.WARNING for r in lost)
