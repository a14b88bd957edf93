"""An Asterisk 20 stand-in speaking AMI over TCP, for tests, the demo and benchmarks.

It keeps a small model of a PBX (channels, one queue, its members) and plays the event
sequences of the product brief: answered, abandoned, timed-out and ring-no-answer queue
calls, and originates. Frames come from :mod:`hotline.telephony.frames`, the code the
backend parses them with. Faults on demand: writes cut at random byte boundaries, a
dropped or stalled (half-open) connection, a connection dropped right after an action.

``python -m simulators.asterisk --port 5038 --load 2 --operators 8`` runs it standalone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from hotline.telephony.events import WELLBEING_CONTEXT, WELLBEING_EVENT
from hotline.telephony.frames import FrameReader, encode_frame

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/9.0.0\r\n"
ORIGINATE_REASONS = {"answer": 4, "busy": 5, "noanswer": 3, "congestion": 8}
CHINESE_NAMES = ("张三", "李秀英", "王建国", "刘桂兰", "陈志强", "杨淑珍", "赵德明", "黄美华", "周玉梅", "吴国庆")


@dataclass
class Chan:
    name: str
    uniqueid: str
    linkedid: str
    caller_num: str
    caller_name: str
    context: str
    exten: str
    created: float
    state: str = "Down"
    connected_num: str = ""
    connected_name: str = ""
    application: str = ""
    application_data: str = ""
    bridge: str = ""
    priority: int = 1


@dataclass
class Member:
    name: str
    interface: str
    in_call: bool = False
    calls_taken: int = 0
    paused: bool = False
    paused_reason: str = ""
    last_pause: int = 0  # epoch seconds of the pause's start, as Asterisk reports LastPause


@dataclass(eq=False)
class _Session:
    writer: asyncio.StreamWriter
    logged_in: bool = False
    stalled: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_STATE_CODES = {"Down": 0, "Ring": 4, "Ringing": 5, "Up": 6}


def _bridge(bridge_id: str, channels: int) -> list[tuple[str, object]]:
    """A basic two-party bridge's fields, as Asterisk 20 sends them in every Bridge* event."""
    return [
        ("BridgeUniqueid", bridge_id),
        ("BridgeType", "basic"),
        ("BridgeTechnology", "simple_bridge"),
        ("BridgeCreator", "<unknown>"),
        ("BridgeName", "<unknown>"),
        ("BridgeNumChannels", channels),
        ("BridgeVideoSourceMode", "none"),
    ]


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class AsteriskSim:
    """The server plus the PBX model. Durations are PBX seconds; ``speed`` compresses them in
    real time while Timestamps keep the scripted values, so timings stay exact in tests."""

    def __init__(
        self,
        *,
        username: str = "hotline",
        secret: str = "hotline",  # noqa: S107 - a simulator's well-known test login
        queue: str = "12349",
        members: Sequence[str] = ("op1001", "op1002", "op1003"),
        tech: str = "SIP",
        speed: float = 1.0,
        trunk: str = "trunk",
        epoch: float | None = None,
    ) -> None:
        """``epoch``: the PBX clock's reading at start (default the host's). An accelerated run
        that must stay behind the host's clock (a wallboard asking for "until now") starts it
        in the past."""
        self.username, self.secret, self.queue, self.tech, self.speed, self.trunk = (
            username,
            secret,
            queue,
            tech,
            speed,
            trunk,
        )
        self.members: dict[str, Member] = {m: Member(m, f"{tech}/{m}") for m in members}
        self.channels: dict[str, Chan] = {}
        self.waiting: list[str] = []  # caller uniqueids in queue order
        self.sessions: set[_Session] = set()
        self.chop: tuple[int, int] | None = None
        self.drop_after: set[str] = set()  # action names (lower case) answered by a dropped connection
        self.originate_outcomes: dict[str, str] = {}  # dialled number -> answer|busy|noanswer|congestion
        # dialled number -> the key its elder presses in the wellbeing check ("" presses none)
        self.wellbeing_digits: dict[str, str] = {}
        self.originate_talk_s = 3.0
        self.talk_s_by_number: dict[str, float] = {}  # dialled number -> its own talk time
        self.originates: list[dict[str, str]] = []
        self.actions: list[dict[str, str]] = []
        self.on_emit: Callable[[str, dict[str, str]], None] | None = None
        self.logins = 0
        self.refuse_logins = False  # keeps clients out, as a PBX restarting would
        self._seq = itertools.count(2)
        self._t0 = time.time() if epoch is None else epoch
        self._m0 = time.monotonic()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: set[asyncio.Task[object]] = set()
        self._rng = random.Random(12349)
        self.port = 0

    # -- server ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.drop_connections()
        if self._handlers:  # let each connection handler see its socket close and return
            await asyncio.wait(self._handlers, timeout=2)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a scenario in the background; :meth:`stop` cancels what is left."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def drop_connections(self) -> None:
        for s in list(self.sessions):
            s.writer.transport.abort()
        self.sessions.clear()

    def stall(self) -> None:
        """Keep every current TCP connection open but never write to it again (half-open)."""
        for s in self.sessions:
            s.stalled = True

    @property
    def connected(self) -> int:
        return sum(1 for s in self.sessions if s.logged_in and not s.stalled)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(writer)
        self.sessions.add(session)
        me = asyncio.current_task()
        if me is not None:
            self._handlers.add(me)
            me.add_done_callback(self._handlers.discard)
        frames = FrameReader(expect_banner=False)
        try:
            await self._write(session, BANNER)
            while data := await reader.read(65536):
                for action in frames.feed(data):
                    if session.stalled:
                        continue
                    await self._on_action(session, action)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.sessions.discard(session)
            writer.transport.abort()

    async def _write(self, session: _Session, data: bytes) -> None:
        if session.stalled or session.writer.transport.is_closing():
            return
        async with session.lock:  # a chopped frame must not interleave with another
            if self.chop is None:
                session.writer.write(data)
                return
            lo, hi = self.chop
            i = 0
            while i < len(data):
                n = self._rng.randint(lo, hi)
                session.writer.write(data[i : i + n])
                i += n
                await session.writer.drain()
                await asyncio.sleep(0)

    async def send_raw(self, data: bytes, *, pause_at: int | None = None) -> None:
        """Write bytes as they are to every logged-in session (garbage, split frames)."""
        for s in list(self.sessions):
            if not s.logged_in:
                continue
            if pause_at is None:
                await self._write(s, data)
            else:
                await self._write(s, data[:pause_at])
                await s.writer.drain()
                await asyncio.sleep(0.05)  # so the two halves arrive as separate reads
                await self._write(s, data[pause_at:])

    async def _respond(self, session: _Session, action: dict[str, str], pairs: list[tuple[str, object]]) -> None:
        if "ActionID" in action:
            pairs.insert(1, ("ActionID", action["ActionID"]))
        await self._write(session, encode_frame(pairs))

    async def _on_action(self, session: _Session, action: dict[str, str]) -> None:
        name = action.get("Action", "").lower()
        self.actions.append(action)
        if name in self.drop_after:
            self.drop_after.discard(name)
            if name == "originate":
                self.originates.append(action)
            session.writer.transport.abort()
            return
        if name == "login":
            good = action.get("Username") == self.username and action.get("Secret") == self.secret
            if good and not self.refuse_logins:
                session.logged_in = True
                self.logins += 1
                await self._respond(session, action, [("Response", "Success"), ("Message", "Authentication accepted")])
                await self._write(
                    session,
                    encode_frame(
                        [
                            ("Event", "FullyBooted"),
                            ("Privilege", "system,all"),
                            ("Uptime", int(self.now() - self._t0)),
                            ("LastReload", int(self.now() - self._t0)),
                            ("Status", "Fully Booted"),
                        ]
                    ),
                )
            else:
                await self._respond(session, action, [("Response", "Error"), ("Message", "Authentication failed")])
            return
        if not session.logged_in:
            await self._respond(session, action, [("Response", "Error"), ("Message", "Permission denied")])
            return
        if name == "ping":
            await self._respond(
                session, action, [("Response", "Success"), ("Ping", "Pong"), ("Timestamp", f"{self.now():.6f}")]
            )
        elif name == "logoff":
            await self._respond(session, action, [("Response", "Goodbye"), ("Message", "Thanks for all the fish.")])
            session.writer.close()
        elif name == "queuestatus":
            await self._queue_status(session, action)
        elif name == "coreshowchannels":
            await self._core_show_channels(session, action)
        elif name == "originate":
            await self._originate(session, action)
        elif name == "queuepause":
            await self._queue_pause(session, action)
        else:
            await self._respond(session, action, [("Response", "Error"), ("Message", "Invalid/unknown command")])

    def member_pairs(self, m: Member, *, listing: bool = False) -> list[tuple[str, object]]:
        """A member's fields as Asterisk 20 sends them: in QueueMemberStatus and
        QueueMemberPause, or (``listing``) in a QueueStatus answer, which names two of them
        differently and has no Ringinuse."""
        pairs: list[tuple[str, object]] = [
            ("Queue", self.queue),
            ("Name" if listing else "MemberName", m.name),
            ("Location" if listing else "Interface", m.interface),
            ("StateInterface", m.interface),
            ("Membership", "static"),
            ("Penalty", 0),
            ("CallsTaken", m.calls_taken),
            ("LastCall", 0),
            ("LastPause", m.last_pause),
            ("LoginTime", int(self._t0)),
            ("InCall", int(m.in_call)),
            ("Status", 2 if m.in_call else 1),
            ("Paused", int(m.paused)),
            ("PausedReason", m.paused_reason),
            ("Ringinuse", 0),
            ("Wrapuptime", 0),
        ]
        return [p for p in pairs if not (listing and p[0] == "Ringinuse")]

    async def _queue_pause(self, session: _Session, action: dict[str, str]) -> None:
        """``QueuePause``: Interface, Paused (true/false), optional Queue and Reason."""
        m = next((x for x in self.members.values() if x.interface == action.get("Interface")), None)
        if m is None or action.get("Queue", self.queue) != self.queue:
            await self._respond(session, action, [("Response", "Error"), ("Message", "Interface not found")])
            return
        paused = action.get("Paused", "").lower() in ("true", "yes", "1", "on")
        m.paused, m.paused_reason = paused, action.get("Reason", "") if paused else ""
        m.last_pause = int(self.now()) if paused else m.last_pause
        word = "paused" if paused else "unpaused"
        await self._respond(session, action, [("Response", "Success"), ("Message", f"Interface {word} successfully")])
        await self.emit("QueueMemberPause", self.member_pairs(m))

    # -- events ------------------------------------------------------------------------

    def now(self) -> float:
        return self._t0 + (time.monotonic() - self._m0) * self.speed

    async def sleep(self, pbx_seconds: float) -> None:
        await asyncio.sleep(pbx_seconds / self.speed)

    async def emit(self, event: str, pairs: list[tuple[str, object]]) -> None:
        # Queue and agent events are in Asterisk's agent class, a dialplan's UserEvent in user
        # (main/stasis.c), the rest in call (as recorded).
        privilege = "agent,all" if event.startswith(("Agent", "QueueMember", "QueueCaller")) else "call,all"
        if event == "UserEvent":
            privilege = "user,all"
        frame = encode_frame([("Event", event), ("Privilege", privilege), ("Timestamp", f"{self.now():.6f}"), *pairs])
        for s in list(self.sessions):
            if s.logged_in:
                await self._write(s, frame)
        if self.on_emit is not None:
            self.on_emit(event, {k: str(v) for k, v in pairs})

    @staticmethod
    def chan_headers(c: Chan, prefix: str = "") -> list[tuple[str, object]]:
        return [
            (prefix + "Channel", c.name),
            (prefix + "ChannelState", _STATE_CODES.get(c.state, 0)),
            (prefix + "ChannelStateDesc", c.state),
            (prefix + "CallerIDNum", c.caller_num or "<unknown>"),
            (prefix + "CallerIDName", c.caller_name or "<unknown>"),
            (prefix + "ConnectedLineNum", c.connected_num or "<unknown>"),
            (prefix + "ConnectedLineName", c.connected_name or "<unknown>"),
            (prefix + "Language", "en"),
            (prefix + "AccountCode", ""),
            (prefix + "Context", c.context),
            (prefix + "Exten", c.exten),
            (prefix + "Priority", c.priority),
            (prefix + "Uniqueid", c.uniqueid),
            (prefix + "Linkedid", c.linkedid),
        ]

    def new_chan(self, tech_name: str, *, linkedid: str | None = None, uniqueid: str | None = None, **kw: str) -> Chan:
        seq = next(self._seq)
        uid = uniqueid or f"{self.now():.0f}.{seq}"
        chan = Chan(
            name=f"{tech_name}-{seq:08x}",
            uniqueid=uid,
            linkedid=linkedid or uid,
            caller_num=kw.get("caller_num", ""),
            caller_name=kw.get("caller_name", ""),
            context=kw.get("context", "from-pstn"),
            exten=kw.get("exten", self.queue),
            created=self.now(),
        )
        self.channels[uid] = chan
        return chan

    async def _hangup(self, c: Chan, cause: int = 16) -> None:
        self.channels.pop(c.uniqueid, None)
        text = {16: "Normal Clearing", 17: "User busy", 19: "No answer", 34: "Circuit/channel congestion"}
        tech = [("TechCause", 486)] if cause == 17 else []  # SIP 486 Busy Here, as PJSIP reports it
        await self.emit("Hangup", [*self.chan_headers(c), ("Cause", cause), ("Cause-txt", text.get(cause, "")), *tech])

    def _queue_pairs(self, caller: Chan) -> list[tuple[str, object]]:
        return [*self.chan_headers(caller), ("Queue", self.queue)]

    def _member_pairs(self, caller: Chan, agent: Chan, m: Member) -> list[tuple[str, object]]:
        return [
            *self.chan_headers(caller),
            *self.chan_headers(agent, "Dest"),
            ("Queue", self.queue),
            ("Interface", m.interface),
            ("MemberName", m.name),
        ]

    async def inbound_call(
        self,
        caller_num: str,
        caller_name: str = "",
        *,
        rings: Sequence[Sequence[str]] = (("op1001",),),
        ring_s: float = 2.0,
        outcome: str = "answered",
        talk_s: float = 4.0,
        wait_before_ring_s: float = 0.0,
        answer_gate: asyncio.Event | None = None,
    ) -> str:
        """Play one queue call and return its Linkedid.

        ``rings`` lists the ring attempts, each a set of members rung at once; all but the
        last end in ring-no-answer. The last ends by ``outcome``: ``answered`` (by its
        first member), ``abandoned`` (the caller hangs up), ``timeout`` (the queue gives up)
        or ``transfer`` (answered, then blind-transferred to 8000).
        """
        caller = self.new_chan(f"{self.tech}/{self.trunk}", caller_num=caller_num, caller_name=caller_name)
        await self.emit("Newchannel", self.chan_headers(caller))
        caller.state, caller.priority = "Up", 3
        caller.application, caller.application_data = "Queue", f"{self.queue},r,,,120"
        await self.emit("Newstate", self.chan_headers(caller))
        self.waiting.append(caller.uniqueid)
        await self.emit(
            "QueueCallerJoin",
            [*self._queue_pairs(caller), ("Position", len(self.waiting)), ("Count", len(self.waiting))],
        )
        joined = self.now()
        await self.sleep(wait_before_ring_s)
        for n, group in enumerate(rings):
            last = n == len(rings) - 1
            legs: list[tuple[Member, Chan]] = []
            for name in group:
                m = self.members[name]
                agent = self.new_chan(m.interface, linkedid=caller.linkedid, context="agents", exten="s")
                agent.connected_num, agent.connected_name = caller.caller_num, caller.caller_name
                legs.append((m, agent))
                await self.emit("Newchannel", self.chan_headers(agent))
                await self.emit("AgentCalled", self._member_pairs(caller, agent, m))
                await self.emit(
                    "DialBegin", [*self.chan_headers(caller), *self.chan_headers(agent, "Dest"), ("DialString", name)]
                )
                agent.state = "Ringing"
                await self.emit(
                    "DialState",
                    [*self.chan_headers(caller), *self.chan_headers(agent, "Dest"), ("DialStatus", "RINGING")],
                )
            ring_started = self.now()
            if last and answer_gate is not None and outcome in ("answered", "transfer"):
                await answer_gate.wait()
            else:
                await self.sleep(ring_s)
            if not last:
                for m, agent in legs:
                    ring_ms = int((self.now() - ring_started) * 1000)
                    await self.emit("AgentRingNoAnswer", [*self._member_pairs(caller, agent, m), ("RingTime", ring_ms)])
                    await self.emit(
                        "DialEnd",
                        [*self.chan_headers(caller), *self.chan_headers(agent, "Dest"), ("DialStatus", "NOANSWER")],
                    )
                    await self._hangup(agent, 19)
                continue
            if outcome in ("answered", "transfer"):
                await self._answer(caller, legs, joined, ring_started, talk_s, transfer=outcome == "transfer")
            elif outcome == "abandoned":
                await self.emit("HangupRequest", self.chan_headers(caller))
                await self._cancel(caller, legs)
                await self._leave(caller, "QueueCallerAbandon", joined)
                await self._hangup(caller)
            else:  # timeout: the queue gives up, the dialplan goes on (a voicemail prompt)
                await self._cancel(caller, legs)
                await self._leave(caller, "QueueCallerAbandon", joined)
                caller.application, caller.application_data = "Playback", "vm-goodbye"
                await self.sleep(1.0)
                await self._hangup(caller)
        return caller.linkedid

    async def _cancel(self, caller: Chan, legs: list[tuple[Member, Chan]]) -> None:
        for _m, agent in legs:
            await self.emit(
                "DialEnd", [*self.chan_headers(caller), *self.chan_headers(agent, "Dest"), ("DialStatus", "CANCEL")]
            )
            await self._hangup(agent)

    async def _leave(self, caller: Chan, event: str, joined: float) -> None:
        position = self.waiting.index(caller.uniqueid) + 1 if caller.uniqueid in self.waiting else 1
        if caller.uniqueid in self.waiting:
            self.waiting.remove(caller.uniqueid)
        if event == "QueueCallerAbandon":
            await self.emit(
                event,
                [
                    *self._queue_pairs(caller),
                    ("Position", position),
                    ("OriginalPosition", position),
                    ("HoldTime", int(self.now() - joined)),
                ],
            )
        await self.emit(
            "QueueCallerLeave", [*self._queue_pairs(caller), ("Position", position), ("Count", len(self.waiting))]
        )

    async def _answer(
        self,
        caller: Chan,
        legs: list[tuple[Member, Chan]],
        joined: float,
        ring_started: float,
        talk_s: float,
        *,
        transfer: bool,
    ) -> None:
        (m, agent), others = legs[0], legs[1:]
        agent.state = "Up"
        await self.emit(
            "DialEnd", [*self.chan_headers(caller), *self.chan_headers(agent, "Dest"), ("DialStatus", "ANSWER")]
        )
        await self._cancel(caller, others)
        await self._leave(caller, "QueueCallerLeave", joined)
        m.in_call = True
        agent.application, agent.application_data = "AppQueue", "(Outgoing Line)"
        await self.emit(
            "AgentConnect",
            [
                *self._member_pairs(caller, agent, m),
                ("HoldTime", int(self.now() - joined)),
                ("RingTime", int(self.now() - ring_started)),
            ],
        )
        answered = self.now()
        bridge = f"bridge-{caller.uniqueid}"
        caller.bridge = agent.bridge = bridge
        await self.emit("BridgeCreate", _bridge(bridge, 0))
        await self.emit("BridgeEnter", [*_bridge(bridge, 1), *self.chan_headers(agent)])
        await self.emit("BridgeEnter", [*_bridge(bridge, 2), *self.chan_headers(caller)])
        await self.emit("QueueMemberStatus", self.member_pairs(m))
        await self.sleep(talk_s)
        m.in_call = False
        m.calls_taken += 1
        if transfer:
            await self.emit(
                "BlindTransfer",
                [
                    ("Result", "Success"),
                    *self.chan_headers(agent, "Transferer"),
                    *self.chan_headers(caller, "Transferee"),
                    ("IsExternal", "No"),
                    ("Context", "internal"),
                    ("Extension", "8000"),
                ],
            )
            await self._complete(caller=caller, agent=agent, m=m, joined=joined, answered=answered, reason="transfer")
            await self._hangup(agent)
            await self.sleep(1.0)
            await self._hangup(caller)
            return
        await self.emit("HangupRequest", self.chan_headers(caller))
        await self.emit("BridgeLeave", [*_bridge(bridge, 1), *self.chan_headers(caller)])
        await self._complete(caller=caller, agent=agent, m=m, joined=joined, answered=answered, reason="caller")
        await self.emit("BridgeLeave", [*_bridge(bridge, 0), *self.chan_headers(agent)])
        await self.emit("BridgeDestroy", _bridge(bridge, 0))
        await self.emit("QueueMemberStatus", self.member_pairs(m))
        await self._hangup(caller)
        await self._hangup(agent)

    async def _complete(
        self, *, caller: Chan, agent: Chan, m: Member, joined: float, answered: float, reason: str
    ) -> None:
        await self.emit(
            "AgentComplete",
            [
                *self._member_pairs(caller, agent, m),
                ("HoldTime", int(answered - joined)),
                ("TalkTime", int(self.now() - answered)),
                ("Reason", reason),
            ],
        )

    # -- actions -----------------------------------------------------------------------

    async def _queue_status(self, session: _Session, action: dict[str, str]) -> None:
        await self._respond(
            session, action, [("Response", "Success"), ("EventList", "start"), ("Message", "Queue status will follow")]
        )
        aid = action.get("ActionID", "")
        items: list[list[tuple[str, object]]] = [
            [
                ("Event", "QueueParams"),
                ("Queue", self.queue),
                ("Max", 0),
                ("Strategy", "ringall"),
                ("Calls", len(self.waiting)),
                ("Holdtime", 0),
                ("TalkTime", 0),
                ("Completed", sum(m.calls_taken for m in self.members.values())),
                ("Abandoned", 0),
                ("ServiceLevel", 60),
                ("ServicelevelPerf", 100.0),
                ("ServicelevelPerf2", 100.0),
                ("Weight", 0),
            ]
        ]
        for m in self.members.values():
            items.append([("Event", "QueueMember"), *self.member_pairs(m, listing=True)])
        for pos, uid in enumerate(self.waiting, 1):
            c = self.channels[uid]
            items.append(
                [
                    ("Event", "QueueEntry"),
                    ("Queue", self.queue),
                    ("Position", pos),
                    ("Channel", c.name),
                    ("Uniqueid", c.uniqueid),
                    ("CallerIDNum", c.caller_num),
                    ("CallerIDName", c.caller_name),
                    ("ConnectedLineNum", "unknown"),  # so, without angle brackets, in a real QueueEntry
                    ("ConnectedLineName", "unknown"),
                    ("Wait", int(self.now() - c.created)),
                    ("Priority", 0),
                ]
            )
        for pairs in items:
            await self._write(
                # Response-list events carry no Timestamp and no Privilege (../shared/ami-live/README.md).
                session,
                encode_frame([*pairs, ("ActionID", aid)]),
            )
        await self._write(
            session,
            encode_frame(
                [
                    ("Event", "QueueStatusComplete"),
                    ("ActionID", aid),
                    ("EventList", "Complete"),
                    ("ListItems", len(items)),
                ]
            ),
        )

    async def _core_show_channels(self, session: _Session, action: dict[str, str]) -> None:
        await self._respond(
            session, action, [("Response", "Success"), ("EventList", "start"), ("Message", "Channels will follow")]
        )
        aid = action.get("ActionID", "")
        for c in list(self.channels.values()):
            await self._write(
                session,
                encode_frame(
                    [
                        ("Event", "CoreShowChannel"),
                        ("ActionID", aid),
                        *self.chan_headers(c),
                        ("BridgeId", c.bridge),
                        ("Application", c.application),
                        ("ApplicationData", c.application_data),
                        ("Duration", _hms(self.now() - c.created)),
                    ]
                ),
            )
        await self._write(
            session,
            encode_frame(
                [
                    ("Event", "CoreShowChannelsComplete"),
                    ("ActionID", aid),
                    ("EventList", "Complete"),
                    ("ListItems", len(self.channels)),
                ]
            ),
        )

    async def _originate(self, session: _Session, action: dict[str, str]) -> None:
        self.originates.append(action)
        chan_id = action.get("ChannelId", "")
        if chan_id and chan_id in self.channels:
            await self._respond(session, action, [("Response", "Error"), ("Message", "Originate failed")])
            return
        if action.get("Async", "false").lower() in ("true", "yes", "1"):
            await self._respond(
                session, action, [("Response", "Success"), ("Message", "Originate successfully queued")]
            )
            self.spawn(self._place(action, None))
        else:  # Asterisk answers a synchronous Originate only when the call is up, or failed
            self.spawn(self._place(action, session))

    async def _place(self, action: dict[str, str], sync_session: _Session | None) -> None:
        """An Originate, as a real Asterisk 20 answers it (``../shared/ami-live/``):

        - answered: ``OriginateResponse`` Success, Reason 4, Uniqueid = our ChannelId;
        - busy: ``HangupRequest`` Cause 17 and ``DialEnd BUSY`` first, then ``OriginateResponse``
          Failure with **Reason 0** (the busy is only in the cause), then ``Hangup`` Cause 17;
        - click-to-call (context ``hotline-outbound``): the operator's leg answers (Reason 4), then
          it dials the number: ``DialBegin``/``DialEnd`` with our channel as Uniqueid, ``BUSY`` or
          ``ANSWER`` as that number's outcome says.
        """
        dial = action.get("Channel", "")
        number = dial.split("/", 1)[-1].split("@", 1)[0]
        outcome = self.originate_outcomes.get(number, "answer")
        chan = self.new_chan(
            dial.split("@", 1)[0],
            uniqueid=action.get("ChannelId") or None,
            caller_num=number,
            context=action.get("Context", ""),
            exten=action.get("Exten", ""),
        )
        await self.emit("Newchannel", self.chan_headers(chan))
        await self.sleep(1.0)
        reason = ORIGINATE_REASONS[outcome]
        ok = outcome == "answer"
        cause = {4: 16, 5: 17, 3: 19, 8: 34}[reason]
        if ok:
            chan.state = "Up"
            await self.emit("Newstate", self.chan_headers(chan))
        elif outcome == "busy":
            await self.emit("HangupRequest", [*self.chan_headers(chan), ("Cause", 17), ("TechCause", 486)])
            await self.emit("DialEnd", [*self.chan_headers(chan, "Dest"), ("DialStatus", "BUSY")])
            reason = 0
        if sync_session is not None:
            await self._respond(
                sync_session,
                action,
                [
                    ("Response", "Success" if ok else "Error"),
                    ("Message", "Originate successfully queued" if ok else "Originate failed"),
                ],
            )
        else:
            await self.emit(
                "OriginateResponse",
                [
                    ("ActionID", action.get("ActionID", "")),
                    ("Response", "Success" if ok else "Failure"),
                    ("Channel", chan.name),
                    ("Context", chan.context),
                    ("Exten", chan.exten),
                    ("Reason", reason),
                    ("Uniqueid", chan.uniqueid),
                    ("CallerIDNum", number),
                    ("CallerIDName", "<unknown>"),
                ],
            )
        if ok and chan.context == "hotline-outbound":
            cause = await self._dial_far_end(chan, chan.exten)
        elif ok and chan.context == WELLBEING_CONTEXT:
            await self._wellbeing_check(chan, action, number)
        elif ok:
            await self.sleep(self.talk_s_by_number.get(number, self.originate_talk_s))
        await self._hangup(chan, cause)

    async def _wellbeing_check(self, chan: Chan, action: dict[str, str], number: str) -> None:
        """The ``hotline-wellbeing`` dialplan: Read() one key, then ``UserEvent(HotlineWellbeing,
        HotlineCallId: <the Originate's HOTLINE_CALL_ID>, Digit: <key>)``; no key is an empty Digit."""
        variables = dict(v.partition("=")[::2] for v in action.get("Variable", "").split(",") if "=" in v)
        talk_s = self.talk_s_by_number.get(number, self.originate_talk_s)
        await self.sleep(talk_s / 2)
        await self.emit(
            "UserEvent",
            [
                *self.chan_headers(chan),
                ("UserEvent", WELLBEING_EVENT),
                ("HotlineCallId", variables.get("HOTLINE_CALL_ID", "")),
                ("Digit", self.wellbeing_digits.get(number, "1")),
            ],
        )
        await self.sleep(talk_s / 2)

    async def _dial_far_end(self, operator_leg: Chan, number: str) -> int:
        """Click-to-call's second leg; returns the cause the operator's channel hangs up with."""
        far = self.new_chan(f"{self.tech}/{self.trunk}", linkedid=operator_leg.linkedid, caller_num=number)
        outcome = self.originate_outcomes.get(number, "answer")
        await self.emit("Newchannel", self.chan_headers(far))
        await self.emit("DialBegin", [*self.chan_headers(operator_leg), *self.chan_headers(far, "Dest")])
        await self.sleep(1.0)
        status = {"answer": "ANSWER", "busy": "BUSY", "noanswer": "NOANSWER", "congestion": "CONGESTION"}[outcome]
        if status == "BUSY":
            await self.emit("HangupRequest", [*self.chan_headers(far), ("Cause", 17), ("TechCause", 486)])
        await self.emit(
            "DialEnd", [*self.chan_headers(operator_leg), *self.chan_headers(far, "Dest"), ("DialStatus", status)]
        )
        if status == "ANSWER":
            await self.sleep(self.originate_talk_s)
            await self._hangup(far, 16)
            return 16
        cause = {"BUSY": 17, "NOANSWER": 19, "CONGESTION": 34}[status]
        await self._hangup(far, cause)
        return cause

    async def shutdown(self, *, restart: bool = True) -> None:
        """``core restart now`` as a real Asterisk 20 reports it (``../shared/ami-live/README.md``):
        SoftHangupRequest Cause 4 on every channel, the rings ended NOANSWER, the waiting callers
        QueueCallerAbandon, then ``Event: Shutdown``; then the connections close."""
        for task in list(self._tasks):  # the scripted calls stop where they are
            task.cancel()
        for chan in list(self.channels.values()):
            await self.emit("SoftHangupRequest", [*self.chan_headers(chan), ("Cause", 4)])
        for chan in list(self.channels.values()):
            caller = self.channels.get(chan.linkedid)
            if caller is not None and chan is not caller and chan.state != "Up":
                await self.emit(
                    "DialEnd",
                    [*self.chan_headers(caller), *self.chan_headers(chan, "Dest"), ("DialStatus", "NOANSWER")],
                )
        for uid in list(self.waiting):
            if (caller := self.channels.get(uid)) is not None:
                await self.emit("QueueCallerAbandon", [*self.chan_headers(caller), ("Queue", self.queue)])
        self.waiting.clear()
        await self.emit("Shutdown", [("Shutdown", "Cleanly"), ("Restart", "True" if restart else "False")])
        self.channels.clear()
        self.drop_connections()

    # -- load --------------------------------------------------------------------------

    async def call_traffic(
        self,
        callers: Sequence[tuple[str, str]],
        *,
        every_s: float,
        until: asyncio.Event,
        unknown_share: float = 0.2,
        abandon_share: float = 0.1,
        ring_s: float = 6.0,
        talk_s: float = 60.0,
    ) -> int:
        """Calls from ``callers`` (number, name) and some unknown numbers, about one every
        ``every_s`` real seconds until ``until`` is set: the demo's live queue. Durations are
        PBX seconds. Each rings one member, or two at once now and then; returns the count."""
        members = list(self.members)
        n = 0
        while not until.is_set():
            if callers and self._rng.random() >= unknown_share:
                number, name = self._rng.choice(list(callers))
            else:
                number, name = f"139{self._rng.randrange(10**8):08d}", self._rng.choice(CHINESE_NAMES)
            ring = self._rng.sample(members, k=min(len(members), 2 if self._rng.random() < 0.3 else 1))
            outcome = "abandoned" if self._rng.random() < abandon_share else "answered"
            self.spawn(
                self.inbound_call(
                    number,
                    name,
                    rings=(tuple(ring),),
                    ring_s=ring_s * (0.5 + self._rng.random()),
                    outcome=outcome,
                    talk_s=talk_s * (0.5 + self._rng.random()),
                    wait_before_ring_s=self._rng.random() * ring_s,
                )
            )
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), every_s * (0.5 + self._rng.random()))
        return n

    async def run_load(
        self,
        calls_per_s: float,
        *,
        duration_s: float,
        ring_s: float = 1.0,
        talk_s: float = 5.0,
        abandon_share: float = 0.1,
    ) -> int:
        """N answered (or abandoned) calls per second over the members, for ``duration_s`` real seconds."""
        members = list(self.members)
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < duration_s:
            member = members[n % len(members)]
            outcome = "abandoned" if self._rng.random() < abandon_share else "answered"
            number = f"138{self._rng.randrange(10**8):08d}"
            self.spawn(
                self.inbound_call(
                    number,
                    self._rng.choice(CHINESE_NAMES),
                    rings=((member,),),
                    ring_s=ring_s,
                    talk_s=talk_s,
                    outcome=outcome,
                )
            )
            n += 1
            await asyncio.sleep(1.0 / calls_per_s)
        return n

    async def run_noise(self, events_per_s: float, *, duration_s: float) -> int:
        """Events the tracker must read and ignore (dialplan chatter), ``events_per_s`` of them."""
        chan = self.new_chan(f"{self.tech}/ivr", caller_num="057400000000", context="ivr", exten="s")
        self.channels.pop(chan.uniqueid, None)
        started = time.monotonic()
        n = 0
        batch = max(1, int(events_per_s / 100))
        while time.monotonic() - started < duration_s:
            for _ in range(batch):
                await self.emit("VarSet", [*self.chan_headers(chan), ("Variable", "HOTLINE_NOISE"), ("Value", str(n))])
                n += 1
            await asyncio.sleep(batch / events_per_s)
        return n


async def _main(args: argparse.Namespace) -> None:
    sim = AsteriskSim(
        username=args.user,
        secret=args.secret,
        members=[f"op{1001 + i}" for i in range(args.operators)],
        speed=args.speed,
    )
    port = await sim.start(args.host, args.port)
    print(f"AMI simulator on {args.host}:{port} (user {args.user})", flush=True)
    try:
        if args.load:
            n = await sim.run_load(args.load, duration_s=args.duration or 3600)
            print(f"placed {n} calls", flush=True)
        else:
            await asyncio.Event().wait()
    finally:
        await sim.stop()


def main() -> None:
    p = argparse.ArgumentParser(description="Asterisk AMI simulator for the 12349 queue")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5038)
    p.add_argument("--user", default="hotline")
    p.add_argument("--secret", default="hotline")
    p.add_argument("--operators", type=int, default=3)
    p.add_argument("--load", type=float, default=0.0, help="calls per second (0: serve actions only)")
    p.add_argument("--duration", type=float, default=0.0, help="seconds of load")
    p.add_argument("--speed", type=float, default=1.0, help="PBX seconds per real second")
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    main()
