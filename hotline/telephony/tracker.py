"""The call tracker: one state machine per call, keyed by Linkedid. Sans-IO.

Inbound queue calls go queued -> ringing (one or several members at once) -> answered ->
ended, or end abandoned (the caller hung up while waiting) or timeout (the queue gave up:
``QueueCallerAbandon`` without a hang-up of the caller before it). Outbound calls that we
originate go dialing -> answered -> ended, or end busy / no_answer / congestion / failed.

Every duration comes from the events' Timestamps, never from when we read them. Each
:meth:`CallTracker.feed` returns the changes it made; the service turns those into screen
pops and database writes. Late or repeated events for a finished call are absorbed: the
tracker remembers recently finished calls, so a snapshot taken during a reconnect cannot
bring one back to life.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from hotline.core.vocab import CallState as C
from hotline.telephony import events as ev
from hotline.telephony.lifecycle import CALL

ORIGINATE_OUTCOMES = {4: "answered", 5: "busy", 3: "no_answer", 8: "congestion"}
DIAL_OUTCOMES = {"BUSY": "busy", "NOANSWER": "no_answer", "CONGESTION": "congestion", "CHANUNAVAIL": "failed"}
HANGUP_OUTCOMES = {17: "busy", 19: "no_answer", 18: "no_answer", 21: "failed", 34: "congestion", 1: "failed"}


def interface_ext(interface: str) -> str:
    """``PJSIP/op1001`` -> ``op1001``; ``Local/op1001@agents/n`` -> ``op1001``."""
    tail = interface.split("/", 1)[-1]
    return tail.split("@", 1)[0]


def channel_interface(channel: str) -> str:
    """``SIP/op1002-00000003`` -> ``SIP/op1002``."""
    head, sep, _ = channel.rpartition("-")
    return head if sep else channel


@dataclass
class Call:
    linkedid: str
    direction: str  # inbound | outbound
    queue: str
    caller_num: str
    caller_name: str
    started_ts: float
    state: str  # queued | ringing | dialing | answered | ended
    queued_ts: float | None = None
    answered_ts: float | None = None
    ended_ts: float | None = None
    outcome: str | None = None
    member: str | None = None  # extension of the member who answered
    member_name: str | None = None
    hold_s: float | None = None
    ring_s: float | None = None
    talk_s: float | None = None
    end_reason: str | None = None
    transferred_to: str | None = None
    hangup_requested: bool = False
    inferred: bool = False  # some timings estimated after a reconnect
    # Answered while AMI was away: the answer time is unknown (CoreShowChannel's Duration is
    # the agent leg's age since it began *ringing*), until AgentComplete's HoldTime says it.
    answered_unseen: bool = False
    # An outbound call is tracked before its Originate goes out (the link may be down): until
    # then a resync must not finish it for having no channel.
    sent: bool = True
    ringing: dict[str, float] = field(default_factory=dict)  # member ext -> ring start
    leg_member: dict[str, str] = field(default_factory=dict)  # agent leg uniqueid -> member ext
    answering: str | None = None  # the member whose DialEnd ANSWER came; the others were answered elsewhere
    via_operator: bool = False  # click-to-call: the Originate rings the operator, who then dials out
    hangup_cause: int | None = None  # of the call's own channel, when Asterisk said one
    pbx_shutdown: bool = False  # cut by Asterisk stopping or restarting: not the caller's doing
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        return {
            "linkedid": self.linkedid,
            "direction": self.direction,
            "queue": self.queue,
            "caller_num": self.caller_num,
            "caller_name": self.caller_name,
            "state": self.state,
            "outcome": self.outcome,
            "member": self.member,
            "member_name": self.member_name,
            "started_ts": self.started_ts,
            "queued_ts": self.queued_ts,
            "answered_ts": self.answered_ts,
            "ended_ts": self.ended_ts,
            "hold_s": self.hold_s,
            "ring_s": self.ring_s,
            "talk_s": self.talk_s,
            "end_reason": self.end_reason,
            "transferred_to": self.transferred_to,
            "inferred": self.inferred,
            "attempts": [dict(a) for a in self.attempts],
            "ringing": sorted(self.ringing),
        }


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # joined | ringing | ring_stopped | answered | ended | updated
    call: Call
    member: str | None = None
    member_name: str | None = None
    reason: str | None = None


class CallTracker:
    def __init__(self, *, queues: frozenset[str] = frozenset(), remember_ended: int = 5000) -> None:
        self.queues = queues  # empty: every queue
        self.calls: dict[str, Call] = {}
        self._ended: OrderedDict[str, Call] = OrderedDict()
        self._remember = remember_ended
        self._origins: OrderedDict[str, tuple[float, str, str]] = OrderedDict()
        self._by_action: dict[str, str] = {}  # Originate ActionID -> linkedid
        self.ignored = 0

    # -- helpers -------------------------------------------------------------------

    def _live(self, linkedid: str) -> Call | None:
        return self.calls.get(linkedid)

    def _queue_call(self, e: ev.AmiEvent, queue: str) -> Call | None:
        """The call for a queue event, created on first sight (events can start mid-call)."""
        if self.queues and queue not in self.queues:
            return None
        call = self.calls.get(e.linkedid)
        if call is not None:
            return call
        if e.linkedid in self._ended or not e.linkedid:
            return None
        started, num, name = self._origins.pop(e.linkedid, (e.ts, e.caller_num, e.caller_name))
        call = Call(e.linkedid, "inbound", queue, num or e.caller_num, name or e.caller_name, started, C.QUEUED, e.ts)
        self.calls[e.linkedid] = call
        return call

    def _finish(self, call: Call, ts: float, outcome: str, reason: str | None = None) -> Change:
        if call.pbx_shutdown:
            # A restart is no abandon: kept out of the abandoned count and reported apart.
            reason = call.end_reason = "pbx_shutdown"
            if outcome != "answered":
                outcome = "pbx_shutdown"
        CALL.fire(call, "end")
        call.outcome, call.ended_ts = outcome, ts
        if call.end_reason is None:
            call.end_reason = reason
        if reason == "ended_while_disconnected":
            pass  # it ended at some unseen moment: no talk or hold time is made up from ``ts``
        elif call.answered_ts is not None:
            call.talk_s = max(0.0, ts - call.answered_ts)
        elif call.queued_ts is not None and call.hold_s is None and not call.answered_unseen:
            call.hold_s = max(0.0, ts - call.queued_ts)
        call.ringing.clear()
        self.calls.pop(call.linkedid, None)
        self._ended[call.linkedid] = call
        while len(self._ended) > self._remember:
            self._ended.popitem(last=False)
        return Change("ended", call, call.member, call.member_name, reason)

    def _stop_ring(self, call: Call, member: str, ts: float, result: str, ring_s: float | None = None) -> Change | None:
        start = call.ringing.pop(member, None)
        if start is None:
            return None
        call.attempts.append(
            {"member": member, "result": result, "ring_s": round(ring_s if ring_s is not None else ts - start, 3)}
        )
        if not call.ringing:
            CALL.fire_if_possible(call, "ring_stop")
        return Change("ring_stopped", call, member, reason=result)

    @staticmethod
    def _member(e: ev.AgentEvent) -> tuple[str, str]:
        ext = interface_ext(e.interface) if e.interface else e.member_name
        return ext, e.member_name or ext

    def adopt(self, calls: list[Call]) -> int:
        """Take over calls a previous process left unfinished in the database (it died, or
        restarted, mid-call): the resync that follows either finds their channels, and the
        events finish them, or finishes them as ended while we were away. Returns how many."""
        taken = 0
        for call in calls:
            if call.linkedid in self.calls or call.linkedid in self._ended:
                continue
            call.inferred = True
            self.calls[call.linkedid] = call
            taken += 1
        return taken

    # -- outbound --------------------------------------------------------------------

    def expect_outbound(
        self, channel_id: str, action_id: str, number: str, ts: float, queue: str = "", *, via_operator: bool = False
    ) -> Call:
        """Track an Originate we send. ``via_operator`` (click-to-call): its answer is the operator
        picking up; the call is answered, or busy, when the operator's leg dials the number."""
        call = Call(channel_id, "outbound", queue, number, "", ts, C.DIALING, via_operator=via_operator, sent=False)
        self.calls[channel_id] = call
        self._by_action[action_id] = channel_id
        return call

    def mark_sent(self, linkedid: str) -> None:
        """The Originate went out (whether or not its answer came back)."""
        if (call := self.calls.get(linkedid)) is not None:
            call.sent = True

    def forget(self, linkedid: str, action_id: str) -> None:
        """Drop an outbound call whose Originate was refused: no event will ever come for it."""
        self.calls.pop(linkedid, None)
        self._by_action.pop(action_id, None)

    # -- events ----------------------------------------------------------------------

    def feed(self, e: ev.AmiEvent) -> list[Change]:
        out: list[Change] = []
        if isinstance(e, ev.Newchannel):
            if e.uniqueid == e.linkedid and e.linkedid not in self.calls:
                self._origins[e.linkedid] = (e.ts, e.caller_num, e.caller_name)
                while len(self._origins) > self._remember:
                    self._origins.popitem(last=False)
            return out
        if isinstance(e, ev.QueueCallerJoin):
            known = e.linkedid in self.calls
            call = self._queue_call(e, e.queue)
            if call is not None and known and call.direction == "outbound" and CALL.can(call.state, "queue"):
                # A call-back (to an elder, or an alarm device's SIM) answered and put into the
                # 12349 queue: it now waits for an operator, who gets the pop like any caller's.
                # (On a real Asterisk the join can come before or after the OriginateResponse.)
                CALL.fire(call, "queue")
                call.queued_ts = e.ts
                out.append(Change("joined", call))
            elif call is not None and not known:
                out.append(Change("joined", call))
            return out
        if isinstance(e, ev.AgentCalled):
            known = e.linkedid in self.calls
            call = self._queue_call(e, e.queue)
            if call is None or call.state in ("answered", "ended"):
                return out
            if not known:
                out.append(Change("joined", call))
            ext, name = self._member(e)
            call.ringing[ext] = e.ts
            call.leg_member[e.dest_uniqueid] = ext
            CALL.fire(call, "ring")
            out.append(Change("ringing", call, ext, name))
            return out
        if isinstance(e, ev.AgentRingNoAnswer):
            call = self._live(e.linkedid)
            if call is not None:
                ext, _ = self._member(e)
                ms = e.ring_time_ms
                ch = self._stop_ring(call, ext, e.ts, "no_answer", ms / 1000 if ms is not None else None)
                out += [ch] if ch else []
            return out
        if isinstance(e, ev.DialEnd):
            call = self._live(e.linkedid)
            if call is None:
                return out
            member = call.leg_member.get(e.dest_uniqueid)
            if call.via_operator and member is None and e.uniqueid == call.linkedid != e.dest_uniqueid:
                return out + self._far_leg(call, e)
            if e.dial_status == "ANSWER":
                call.answering = member or call.answering
            elif member:
                # Ringall: the losers' DialEnd CANCEL comes (twice) before AgentConnect.
                lost = e.dial_status == "CANCEL" and call.answering not in (None, member)
                result = "answered_elsewhere" if lost else e.dial_status.lower() or "ended"
                ch = self._stop_ring(call, member, e.ts, result)
                out += [ch] if ch else []
            return out
        if isinstance(e, ev.AgentConnect):
            call = self._live(e.linkedid)
            if call is None or call.state in ("answered", "ended"):
                return out
            ext, name = self._member(e)
            start = call.ringing.pop(ext, e.ts)
            for other in list(call.ringing):
                ch = self._stop_ring(call, other, e.ts, "answered_elsewhere")
                out += [ch] if ch else []
            CALL.fire(call, "answer")
            call.answered_ts, call.member, call.member_name = e.ts, ext, name
            call.hold_s = max(0.0, e.ts - (call.queued_ts if call.queued_ts is not None else e.ts))
            call.ring_s = max(0.0, e.ts - start)
            call.attempts.append({"member": ext, "result": "answered", "ring_s": round(call.ring_s, 3)})
            out.append(Change("answered", call, ext, name))
            return out
        if isinstance(e, ev.AgentComplete):
            call = self._live(e.linkedid)
            corrected = self._complete_unseen(call or self._ended.get(e.linkedid), e)
            if call is not None and call.state == "answered":
                if e.reason == "transfer":
                    call.end_reason = "transfer"
                    out.append(Change("updated", call))
                else:
                    out.append(self._finish(call, e.ts, "answered", e.reason or "hangup"))
            elif (done := self._ended.get(e.linkedid)) is not None and (
                (done.end_reason == "hangup" and e.reason) or corrected
            ):
                if done.end_reason == "hangup" and e.reason:
                    done.end_reason = e.reason  # AgentComplete after the Hangup: the better reason
                out.append(Change("updated", done))
            return out
        if isinstance(e, ev.Transfer):
            call = self._live(e.linkedid)
            if call is not None:
                call.transferred_to = e.target or "unknown"
                out.append(Change("updated", call))
            return out
        if isinstance(e, ev.QueueCallerAbandon):
            call = self._live(e.linkedid)
            if call is not None and call.state in ("queued", "ringing"):
                for member in list(call.ringing):
                    ch = self._stop_ring(call, member, e.ts, "cancel")
                    out += [ch] if ch else []
                outcome = "abandoned" if call.hangup_requested else "timeout"
                out.append(self._finish(call, e.ts, outcome, "caller" if call.hangup_requested else "queue_timeout"))
            return out
        if isinstance(e, ev.SoftHangupRequest):
            call = self._live(e.linkedid)
            if call is not None and e.cause == ev.SOFTHANGUP_SHUTDOWN:
                call.pbx_shutdown = True
            elif call is not None and e.uniqueid == e.linkedid:
                call.hangup_requested = True
            return out
        if isinstance(e, ev.Shutdown):
            # Nothing more will come for the calls still live: end them now, as cut by the PBX.
            for call in list(self.calls.values()):
                call.pbx_shutdown = True
                out.append(self._finish(call, e.ts, "answered" if call.state == C.ANSWERED else "pbx_shutdown"))
            return out
        if isinstance(e, ev.HangupRequest):
            call = self._live(e.linkedid)
            if call is not None and e.uniqueid == e.linkedid:
                call.hangup_cause = e.cause if e.cause is not None else call.hangup_cause
                call.hangup_requested = True
                if call.state == "answered" and call.end_reason is None:
                    call.end_reason = "caller"
            return out
        if isinstance(e, ev.Hangup):
            return self._hangup(e)
        if isinstance(e, ev.OriginateResponse):
            linkedid = self._by_action.pop(e.action_id, "") or e.uniqueid
            call = self._live(linkedid)
            if call is None or call.direction != "outbound":
                return out
            if e.reason == 4 and call.queued_ts is not None:
                pass  # a call-back already waiting in the queue: an operator's answer will count
            elif e.reason == 4 and call.via_operator:
                call.ring_s = max(0.0, e.ts - call.started_ts)  # the operator picked up; now the number rings
            elif e.reason == 4:
                CALL.fire(call, "answer")
                call.answered_ts = e.ts
                call.ring_s = max(0.0, e.ts - call.started_ts)
                out.append(Change("answered", call))
            else:
                # A busy number gives Reason 0 on a real Asterisk: the busy is only in the Hangup cause.
                outcome = ORIGINATE_OUTCOMES.get(e.reason or 0) or HANGUP_OUTCOMES.get(call.hangup_cause or 0, "failed")
                out.append(self._finish(call, e.ts, outcome, "originate"))
            return out
        self.ignored += 1
        return out

    def _far_leg(self, call: Call, e: ev.DialEnd) -> list[Change]:
        """Click-to-call: the operator's leg dialled the number, and this is how that went."""
        if e.dial_status == "ANSWER":
            CALL.fire(call, "answer")
            call.answered_ts = e.ts
            return [Change("answered", call)]
        if e.dial_status in DIAL_OUTCOMES:
            return [self._finish(call, e.ts, DIAL_OUTCOMES[e.dial_status], "far_end")]
        return []

    def _hangup(self, e: ev.Hangup) -> list[Change]:
        self._origins.pop(e.uniqueid, None)
        call = self._live(e.linkedid)
        if call is None:
            return []
        if e.uniqueid != e.linkedid:  # an agent leg: stop its ring if no DialEnd said so
            member = call.leg_member.get(e.uniqueid)
            ch = self._stop_ring(call, member, e.ts, "hangup") if member else None
            return [ch] if ch else []
        if call.state == "answered":
            return [self._finish(call, e.ts, "answered", call.end_reason or "hangup")]
        if call.direction == "outbound":
            return [self._finish(call, e.ts, HANGUP_OUTCOMES.get(e.cause or 0, "failed"), "hangup")]
        # The caller's channel went before the queue said anything: an abandon.
        return [self._finish(call, e.ts, "abandoned", "caller")]

    # -- resynchronisation -----------------------------------------------------------

    def resync(
        self,
        entries: list[ev.QueueEntry],
        channels: list[ev.CoreShowChannel],
        now_ts: float,
    ) -> list[Change]:
        """Reconcile live calls with a ``QueueStatus`` + ``CoreShowChannels`` snapshot.

        Calls that ended while we were away are finished (``end_reason`` says so); calls
        that started or were answered while we were away are created or advanced, with
        ``inferred`` set because their times are estimated from ``Wait`` and ``Duration``.
        """
        out: list[Change] = []
        by_linked: dict[str, list[ev.CoreShowChannel]] = {}
        for c in channels:
            by_linked.setdefault(c.linkedid, []).append(c)
        waiting = {e.uniqueid: e for e in entries if not self.queues or e.queue in self.queues}
        for call in list(self.calls.values()):
            if not call.sent:
                continue  # still waiting for the link: nothing to reconcile yet
            chans = by_linked.get(call.linkedid)
            if not chans:
                call.inferred = True
                outcome = "answered" if call.state == "answered" else "unknown"
                out.append(self._finish(call, now_ts, outcome, "ended_while_disconnected"))
            elif call.direction == "inbound" and call.state in ("queued", "ringing") and call.linkedid not in waiting:
                agent = next((c for c in chans if c.application == "AppQueue"), None)
                if agent is not None:
                    out += self._answered_while_away(call, agent, now_ts)
            elif (
                call.direction == "outbound"
                and call.state == "dialing"
                and not call.via_operator
                and any(c.up and c.uniqueid == call.linkedid for c in chans)
            ):
                # Its OriginateResponse came while we were away (or before a restart wrote it):
                # an Up channel of ours is an answered call; when is not known.
                call.inferred = True
                CALL.fire(call, "answer")
                call.answered_unseen = True
                out.append(Change("answered", call))
        for uid, entry in waiting.items():
            chan = next((c for c in channels if c.uniqueid == uid), None)
            linkedid = chan.linkedid if chan is not None else uid
            if linkedid in self.calls or linkedid in self._ended:
                continue
            queued = now_ts - (entry.wait or 0)
            call = Call(linkedid, "inbound", entry.queue, entry.caller_num, entry.caller_name, queued, C.QUEUED, queued)
            call.inferred = True
            self.calls[linkedid] = call
            out.append(Change("joined", call))
        for linkedid, chans in by_linked.items():
            if linkedid in self.calls or linkedid in self._ended:
                continue
            caller = next((c for c in chans if c.uniqueid == linkedid and c.application == "Queue"), None)
            agent = next((c for c in chans if c.application == "AppQueue"), None)
            if caller is None or agent is None:
                continue
            queue = caller.application_data.split(",", 1)[0]
            if self.queues and queue not in self.queues:
                continue
            started = now_ts - (caller.duration_s or 0)
            call = Call(linkedid, "inbound", queue, caller.caller_num, caller.caller_name, started, C.QUEUED, started)
            call.inferred = True
            self.calls[linkedid] = call
            out.append(Change("joined", call))
            out += self._answered_while_away(call, agent, now_ts)
        return out

    def _answered_while_away(self, call: Call, agent: ev.CoreShowChannel, now_ts: float) -> list[Change]:
        """Answered while we were away: who answered is known, when is not. The hold and
        talk times stay unknown (and out of the service level) until AgentComplete."""
        ext = interface_ext(channel_interface(agent.channel))
        call.ringing.clear()
        call.inferred = True
        CALL.fire(call, "answer")
        call.member, call.member_name = ext, ext
        call.answered_unseen = True
        return [Change("answered", call, ext, ext)]

    @staticmethod
    def _complete_unseen(call: Call | None, e: ev.AgentComplete) -> bool:
        """AgentComplete carries Asterisk's own HoldTime and TalkTime: the figures a call
        answered while we were away lacks. True when it filled them in."""
        if call is None or not call.answered_unseen or e.hold_time is None:
            return False
        call.hold_s = float(e.hold_time)
        if e.talk_time is not None:
            call.talk_s = float(e.talk_time)
            call.answered_ts = e.ts - e.talk_time
        call.answered_unseen = False
        return True
