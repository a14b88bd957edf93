"""Telephony service: AMI events in; screen pops, call records and outbound calls out.

Data flow: :class:`AmiLink` -> typed event -> :class:`CallTracker` -> changes. A change
becomes (1) a console message on the Redis bus, addressed to the operator whose phone
rings (``to_user``) or to supervisors (``audience``), and (2) a dirty call snapshot that
one writer task upserts by Linkedid in batches. The pop never waits for the database
write: the caller's profile is looked up when the call joins the queue, so it is ready
by the time ``AgentCalled`` comes. Messages for one call are published in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from hotline.backoff import backoff_delay
from hotline.bus import EventBus
from hotline.core import wire
from hotline.core.targets import AmiTarget
from hotline.core.vocab import CONSOLE_ROLES, CallState
from hotline.errors import NotFoundError
from hotline.metrics import latency_histogram
from hotline.phones import normalise
from hotline.privacy import mask_phone
from hotline.storage.leases import LeaseLostError, Role
from hotline.storage.models import CallRecord, Device, Elder, Incident, PhoneEntry, User
from hotline.tasks import cancel_and_wait, raise_if_cancelling
from hotline.telephony import events as ev
from hotline.telephony.agents import Agent, AgentBoard
from hotline.telephony.errors import (
    AmiActionError,
    AmiNotConnectedError,
    AmiOutcomeUnknownError,
    TelephonyError,
)
from hotline.telephony.lifecycle import CALL
from hotline.telephony.link import AmiLink
from hotline.telephony.tracker import Call, CallTracker, Change

log = logging.getLogger(__name__)

MATCH_ORDER = {"elder": 0, "device": 1, "contact": 2}
SUPERVISORS = ["supervisor", "admin"]
OPERATOR_CACHE_S = 60.0
# A standby keeps at most this many call snapshots for a take-over; the holder writes them all.
STANDBY_DIRTY_MAX = 2000
# An outbound call asked for on an instance that has died unanswered is still placed this
# long after the request; older ones end failed, never dialled late.
PLACE_WITHIN_S = 30.0


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephonyConfig:
    """What telephony needs to know, given by the app (the names follow the HOTLINE_ variables)."""

    ami: AmiTarget
    ami_queue: str = "12349"
    ami_dial: str = "PJSIP/{number}@pstn"  # {number}: the number to call
    ami_operator_channel: str = "PJSIP/{extension}"  # {extension}: an operator's
    ami_alarm_callback: bool = True
    callback_number: str = "12349"
    phone_area_code: str = "0574"
    # Calls still live in the records after the PBX has been away this long are closed as
    # ``unknown``; a resync when it returns can still correct them.
    stale_s: float = 600.0


class TelephonyService:
    """Owns the AMI link, the tracker, the pop tasks and the call writer.

    With a ``role`` (several instances), every instance follows the PBX, so each knows the
    queue and the agents, but only the role's holder pops, publishes call changes, writes call
    records (fenced by the lease token) and places outbound calls; an instance without the role
    queues its outbound calls for the holder. Without one, this instance does everything.
    """

    def __init__(
        self,
        settings: TelephonyConfig,
        sm: async_sessionmaker[AsyncSession],
        bus: EventBus,
        *,
        link: AmiLink | None = None,
        role: Role | None = None,
    ) -> None:
        self.settings = settings
        self.sm = sm
        self.bus = bus
        self.role = role
        if role is not None:
            role.on_gain = self._on_gain
        self.link = link or AmiLink(settings.ami)
        self.tracker = CallTracker(queues=frozenset({settings.ami_queue}))
        self.agents = AgentBoard(queues=frozenset({settings.ami_queue}))
        self._agent_changed = asyncio.Event()
        self.link.subscribe(self._on_event)
        self.link.on_up(self.resync)
        self._profiles: dict[str, asyncio.Task[dict[str, Any] | None]] = {}
        self._meta: dict[str, dict[str, Any]] = {}  # linkedid -> elder_id, matched_by, operator_id
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._operators: dict[str, tuple[float, tuple[str, str] | None]] = {}
        self._dirty: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writer: asyncio.Task[None] | None = None
        self._adopted = False  # the previous holder's unfinished calls are taken over once per tenure
        self._placer_wake = asyncio.Event()
        self.pops = 0
        self.write_errors = 0
        self.pop_latency = latency_histogram(
            "hotline_ami_pop_seconds", "From the AMI event that rings an operator to the screen pop being published"
        )

    # -- lifecycle -------------------------------------------------------------------

    @property
    def holding(self) -> bool:
        """Whether this instance acts for the PBX now (always, without a role)."""
        return self.role is None or self.role.active

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="telephony.call_writer")
        self._spawn(self._stale_loop(), "telephony.stale_calls")
        if self.role is not None:
            self._spawn(self.role.run(), "telephony.ami_role")
            self._spawn(self._placer_loop(), "telephony.placer")
        self.link.start()

    def _on_gain(self, _token: int) -> None:
        self._spawn(self._take_over(), "telephony.take_over")

    async def _take_over(self) -> None:
        """Newly the holder: adopt what the last holder left unfinished, rebuild from the PBX
        (``QueueStatus``, ``CoreShowChannels``) and write what we saw while standing by. No
        call is popped again: the resync emits no ``ringing``."""
        self._adopted = False
        self._wake.set()
        if self.link.connected:
            try:
                await self.resync()
            except TelephonyError as exc:
                log.warning("take-over resync failed (%s); the next AMI login resyncs", exc)
        self._placer_wake.set()
        await self._pop_missed()

    async def _pop_missed(self) -> None:
        """Pop what is ringing now and was never popped: the last holder died between the ring
        and its pop. The console log in Redis says what it did pop, so nothing pops twice;
        without that log we cannot know, and pop nothing rather than twice."""
        ringing = [(c, m) for c in self.tracker.calls.values() if c.state == CallState.RINGING for m in c.ringing]
        if not ringing:
            return
        try:
            log_ = await self.bus.recent(limit=2000)
        except (RedisError, OSError) as exc:
            log.warning("take-over: the console log is not readable (%s); ringing calls are not popped again", exc)
            return
        popped = {
            (m["call"].get("linkedid"), (m.get("operator") or {}).get("member"))
            for m in log_
            if m.get("type") == "call.ringing" and isinstance(m.get("call"), dict)
        }
        missed = [(c, m) for c, m in ringing if (c.linkedid, m) not in popped]
        for call, member in missed:
            self._publish_in_order(
                call.linkedid, self._notify(Change("ringing", call, member, member), call.snapshot(), time.monotonic())
            )
        if missed:
            log.warning("take-over: popped %d ringing calls the last holder had not", len(missed))

    async def close(self, *, grace_s: float = 5.0) -> None:
        """Stop everything this service owns; every wait is bounded, and a second call is a no-op."""
        await self.link.close(grace_s=grace_s)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=grace_s)
            if stuck:
                log.error("telephony tasks did not stop: %s", ", ".join(t.get_name() for t in stuck))
        writer, self._writer = self._writer, None
        if writer is not None:
            await cancel_and_wait(writer, grace_s=grace_s)
        with contextlib.suppress(SQLAlchemyError, OSError, TimeoutError):
            async with asyncio.timeout(grace_s):
                await self._flush()  # what is still dirty goes out once more before we stop
        if self.role is not None:
            # Then at once, so a standby takes over now instead of when the lease expires.
            await self.role.release(within_s=min(2.0, grace_s))

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)

        def _done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("telephony task %s failed", name, exc_info=t.exception())

        task.add_done_callback(_done)
        return task

    # -- events ----------------------------------------------------------------------

    def _on_event(self, e: ev.AmiEvent) -> None:
        if isinstance(e, ev.UserEvent) and e.user_event == ev.WELLBEING_EVENT and e.call_id:
            self._spawn(self._record_digits(e.call_id, e.digit), f"telephony.digits[{e.call_id}]")
        for change in self.tracker.feed(e):
            self._apply(change)
        if (agent := self.agents.feed(e)) is not None:
            self._agent_changed.set()
            self._spawn(self._publish_agent(agent), f"telephony.agent[{agent.extension}]")

    async def resync(self) -> None:
        """Rebuild live state after a (re)connect: AMI does not replay what we missed."""
        status = await self.link.action(
            {"Action": "QueueStatus", "Queue": self.settings.ami_queue}, as_list=True, _during_login=True
        )
        chans = await self.link.action({"Action": "CoreShowChannels"}, as_list=True, _during_login=True)
        parsed = [ev.parse_event(dict(m.items())) for m in status]
        entries = [e for e in parsed if isinstance(e, ev.QueueEntry)]
        self.agents.replace([e for e in parsed if isinstance(e, ev.QueueMember)])
        for agent in self.agents.agents.values():
            self._spawn(self._publish_agent(agent), f"telephony.agent[{agent.extension}]")
        channels = [e for m in chans if isinstance(e := ev.parse_event(dict(m.items())), ev.CoreShowChannel)]
        # List events carry no Timestamp; the Ping answer does: "now" on the PBX's own clock.
        try:
            pong = await self.link.action({"Action": "Ping"}, _during_login=True)
            now_ts = float(pong.get("Timestamp", ""))
        except (AmiActionError, ValueError):  # an old PBX without the header, or one shutting down
            now_ts = time.time()
        if self.holding and not self._adopted:
            # Once per tenure: the calls an earlier holder was following when it stopped.
            self._adopted = True
            adopted = self.tracker.adopt(await self._unfinished_calls())
            if adopted:
                log.info("AMI resync: took over %d calls left unfinished by an earlier process", adopted)
        changes = self.tracker.resync(entries, channels, now_ts)
        log.info("AMI resync: %d waiting, %d channels, %d calls changed", len(entries), len(channels), len(changes))
        for change in changes:
            self._apply(change)
        # The calls the PBX still has are written again: a record closed as stale while it was
        # away (close_stale) is corrected by the call's own state.
        changed = {c.call.linkedid for c in changes}
        for lid, call in self.tracker.calls.items():
            if lid not in changed:
                self._mark_dirty(lid, call.snapshot())

    async def _unfinished_calls(self) -> list[Call]:
        """Calls of the last day whose record is not ended, as the tracker holds them."""
        since = datetime.now(UTC) - timedelta(days=1)
        async with self.sm() as session:
            rows = (
                await session.scalars(
                    select(CallRecord).where(
                        CallRecord.state.in_(("dialing", "queued", "ringing", "answered")),
                        CallRecord.started_at >= since,
                    )
                )
            ).all()
        out = []
        for r in rows:
            call = Call(
                r.linkedid,
                r.direction,
                r.queue,
                r.caller_num,
                r.caller_name,
                r.started_at.timestamp(),
                r.state,
                answered_ts=r.answered_at.timestamp() if r.answered_at else None,
                member=r.member,
                member_name=r.member,
            )
            if r.direction == "outbound":
                self._meta[r.linkedid] = {"elder_id": r.elder_id}
            out.append(call)
        return out

    def _apply(self, ch: Change) -> None:
        call = ch.call
        lid = call.linkedid
        if ch.kind == "joined":  # inbound, or a call-back entering the queue: look the number up
            self._meta.setdefault(lid, {})
            self._profiles[lid] = self._spawn(self._lookup(call), f"telephony.lookup[{lid}]")
        snapshot = call.snapshot()
        self._mark_dirty(lid, snapshot)
        self._publish_in_order(lid, self._notify(ch, snapshot, time.monotonic()))
        if ch.kind == "ended":
            self._profiles.pop(lid, None)

    def _publish_in_order(self, lid: str, coro: Coroutine[Any, Any, None]) -> None:
        prev = self._chains.get(lid)

        async def run() -> None:
            if prev is not None:
                with contextlib.suppress(Exception):
                    await prev
            await coro

        task = self._spawn(run(), f"telephony.notify[{lid}]")
        self._chains[lid] = task
        task.add_done_callback(lambda t: self._chains.pop(lid, None) if self._chains.get(lid) is t else None)

    async def _notify(self, ch: Change, snapshot: dict[str, Any], seen_at: float) -> None:
        lid = ch.call.linkedid
        meta = self._meta.get(lid, {})
        base = {"call": {**snapshot, **{k: meta.get(k) for k in ("elder_id", "matched_by", "operator_id")}}}
        user = await self._operator(ch.member, ch.member_name) if ch.member else None
        if ch.kind == "ringing":
            profile_task = self._profiles.get(lid)
            profile = await profile_task if profile_task is not None else None
            if user is not None and self.holding:
                self.pops += 1
                await self.bus.publish(
                    {
                        "type": "call.ringing",
                        "to_user": user[0],
                        "operator": {"id": user[0], "name": user[1], "member": ch.member},
                        "profile": profile,
                        **base,
                    }
                )
                self.pop_latency.observe(time.monotonic() - seen_at)
            log.info(
                "call ringing linkedid=%s caller=%s member=%s operator=%s",
                lid,
                mask_phone(ch.call.caller_num),
                ch.member,
                user[0] if user else "-",
            )
        elif ch.kind in ("answered", "ring_stopped") and user is not None:
            if ch.kind == "answered":
                meta["operator_id"] = user[0]
                base["call"]["operator_id"] = user[0]
                self._mark_dirty(lid, snapshot)
            await self._say({"type": f"call.{ch.kind}", "to_user": user[0], "reason": ch.reason, **base})
        elif ch.kind == "ended":
            rung = {a["member"] for a in snapshot["attempts"]} | ({ch.member} if ch.member else set())
            for member in sorted(m for m in rung if m):
                if (u := await self._operator(member, None)) is not None:
                    await self._say({"type": "call.ended", "to_user": u[0], **base})
            self._meta.pop(lid, None)
        await self._say({"type": "wallboard.call", "audience": SUPERVISORS, "change": ch.kind, **base})

    async def _say(self, message: dict[str, Any]) -> None:
        """Publish a call or agent change: the holder's job, so consoles hear it once."""
        if self.holding:
            await self.bus.publish(message)

    # -- agents --------------------------------------------------------------------

    async def agent_state(self, agent: Agent, now: float | None = None) -> wire.AgentState:
        user = await self._operator(agent.extension, agent.name)
        now = time.time() if now is None else now
        since = agent.paused_since
        return wire.AgentState(
            **{**dataclasses.asdict(agent), "paused_since": _dt(since)},
            state=agent.state,
            paused_for_s=round(max(0.0, now - since), 1) if since is not None else None,
            operator_id=user[0] if user else None,
            operator_name=user[1] if user else None,
        )

    async def list_agents(self) -> list[wire.AgentState]:
        agents = sorted(self.agents.agents.values(), key=lambda a: (a.queue, a.extension))
        return [await self.agent_state(a) for a in agents]

    async def _publish_agent(self, agent: Agent) -> None:
        if not self.holding:
            return
        state = await self.agent_state(agent)
        await self._say({"type": "wallboard.agent", "audience": SUPERVISORS, "agent": state.wire()})

    async def pause(self, extension: str, *, paused: bool, reason: str | None = None) -> wire.AgentState:
        """Pause or unpause a member of the 12349 queue (``QueuePause``), with a reason;
        returns the member's state once Asterisk's ``QueueMemberPause`` has said so."""
        agent = next((a for a in self.agents.agents.values() if a.extension == extension), None)
        if agent is None:
            raise NotFoundError(f"{extension} is not a member of queue {self.settings.ami_queue}")
        headers = {
            "Action": "QueuePause",
            "Interface": agent.interface,
            "Queue": agent.queue,
            "Paused": "true" if paused else "false",
        }
        if reason:
            headers["Reason"] = reason
        await self.link.action(headers, deadline_s=5.0)
        key = (agent.queue, agent.interface)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while True:
            self._agent_changed.clear()  # before the look, so a change in between is not missed
            current = self.agents.agents.get(key, agent)
            remaining = deadline - loop.time()
            if current.paused == paused or remaining <= 0:
                return await self.agent_state(current)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._agent_changed.wait(), remaining)

    async def _operator(self, member: str | None, member_name: str | None) -> tuple[str, str] | None:
        """The console user whose extension is this queue member's (cached a minute)."""
        if not member:
            return None
        hit = self._operators.get(member)
        if hit is not None and time.monotonic() - hit[0] < OPERATOR_CACHE_S:
            return hit[1]
        names = {member} | ({member_name} if member_name else set())
        async with self.sm() as session:
            user = await session.scalar(
                select(User)
                .where(
                    User.extension.in_(names), User.role.in_([str(r) for r in CONSOLE_ROLES]), User.disabled.is_(False)
                )
                .order_by(User.created_at)
                .limit(1)
            )
        found = (user.id, user.name) if user is not None else None
        self._operators[member] = (time.monotonic(), found)
        return found

    async def _lookup(self, call: Call) -> dict[str, Any] | None:
        profile = await self.profile_for(call.caller_num)
        if profile is not None:
            found = {"elder_id": profile["elder"]["id"], "matched_by": profile["matched_by"]["kind"]}
            meta = self._meta.get(call.linkedid)
            if meta is not None:  # still live; a call that already ended has no meta to keep
                meta.update(found)
            self._dirty[call.linkedid] = {**call.snapshot(), **(meta or {}), **found}
            self._wake.set()
        return profile

    async def profile_for(self, number: str) -> dict[str, Any] | None:
        """The screen-pop profile of whoever calls from ``number``, or ``None`` if unknown."""
        key = normalise(number, area_code=self.settings.phone_area_code)
        if key is None:
            return None
        async with self.sm() as session:
            entries = (await session.scalars(select(PhoneEntry).where(PhoneEntry.number == key))).all()
            if not entries:
                return None
            best = min(entries, key=lambda p: (MATCH_ORDER.get(p.kind, 9), p.elder_id))
            elder = await session.scalar(
                select(Elder)
                .where(Elder.id == best.elder_id)
                .options(selectinload(Elder.contacts), selectinload(Elder.devices))
            )
            if elder is None:
                return None
            recent = (
                await session.scalars(
                    select(Incident).where(Incident.elder_id == elder.id).order_by(Incident.created_at.desc()).limit(5)
                )
            ).all()
            matched: dict[str, Any] = {"kind": best.kind, "ref": best.ref}
            if best.kind == "contact":
                contact = next((c for c in elder.contacts if str(c.id) == best.ref), None)
                if contact is not None:
                    matched.update(name=contact.name, relation=contact.relation)
            return {
                "elder": wire.dump(wire.Elder, elder),
                "devices": [wire.dump(wire.Device, d) for d in elder.devices],
                "recent_incidents": [wire.dump(wire.Incident, i) for i in recent],
                "matched_by": matched,
                "other_elders": sorted({p.elder_id for p in entries} - {elder.id}),
            }

    # -- persistence -----------------------------------------------------------------

    def _mark_dirty(self, lid: str, snapshot: dict[str, Any]) -> None:
        self._dirty.pop(lid, None)  # re-inserted last: the dict's order is the order of change
        self._dirty[lid] = {**snapshot, **self._meta.get(lid, {})}
        if not self.holding:
            # A standby keeps the latest few for a take-over; the holder writes the rest.
            while len(self._dirty) > STANDBY_DIRTY_MAX:
                del self._dirty[next(iter(self._dirty))]
            return
        self._wake.set()

    async def _write_loop(self) -> None:
        attempt = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
                attempt = 0
            except (SQLAlchemyError, OSError) as exc:
                raise_if_cancelling()
                self.write_errors += 1
                delay = backoff_delay(attempt, cap_exp=5)
                attempt += 1
                log.warning("call records not written (%s); retry in %.1f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                self._wake.set()

    async def _flush(self) -> None:
        if not self.holding:
            return  # kept for a take-over; the holder writes these calls
        batch, self._dirty = self._dirty, {}
        if not batch:
            return
        try:
            try:
                await self._upsert(batch)
            except IntegrityError:
                await self._upsert(batch)  # another writer inserted one of these first: now it updates
        except LeaseLostError as exc:
            log.warning("call records not written: %s", exc)
            if self.role is not None:
                self.role.lost_by_write()
            for lid, snap in batch.items():
                self._dirty.setdefault(lid, snap)
        except BaseException:
            for lid, snap in batch.items():  # keep them for the retry, unless newer ones came
                self._dirty.setdefault(lid, snap)
            raise

    async def _fence(self, session: AsyncSession) -> None:
        """Inside a write: refuse it unless our lease token is still the current one."""
        if self.role is None:
            return
        token = self.role.token
        if token is None:
            raise LeaseLostError("this instance does not hold the AMI role")
        await self.role.lease.fence(session, token)

    async def _upsert(self, batch: dict[str, dict[str, Any]]) -> None:
        async with self.sm() as session, session.begin():
            await self._fence(session)
            rows = {
                r.linkedid: r
                for r in await session.scalars(select(CallRecord).where(CallRecord.linkedid.in_(list(batch))))
            }
            now = datetime.now(UTC)
            for lid, s in batch.items():
                row = rows.get(lid)
                if row is None:
                    row = CallRecord(linkedid=lid, direction=s["direction"], started_at=_dt(s["started_ts"]))
                    session.add(row)
                row.queue = s["queue"]
                row.caller_num = s["caller_num"] or row.caller_num or ""
                row.caller_name = (s["caller_name"] or row.caller_name or "")[:64]
                CALL.load(row, s["state"])
                row.outcome = s["outcome"]
                row.member = s["member"]
                row.answered_at = _dt(s["answered_ts"])
                row.ended_at = _dt(s["ended_ts"])
                row.hold_s, row.ring_s, row.talk_s = s["hold_s"], s["ring_s"], s["talk_s"]
                row.end_reason, row.transferred_to = s["end_reason"], s["transferred_to"]
                row.inferred = s["inferred"]
                row.attempts = s["attempts"]
                row.elder_id = s.get("elder_id") or row.elder_id
                row.matched_by = s.get("matched_by") or row.matched_by
                row.operator_id = s.get("operator_id") or row.operator_id
                row.updated_at = now

    # -- a PBX that does not come back ----------------------------------------------

    async def _stale_loop(self) -> None:
        """While the link is down, watch the clock; once it has been down ``stale_s``, close
        what the records still show live (once per outage)."""
        down_since: float | None = None
        closed = False
        every = min(30.0, max(0.2, self.settings.stale_s / 4))
        while True:
            await asyncio.sleep(every)
            if self.link.connected or not self.holding:  # a standby's records are the holder's to close
                down_since, closed = None, False
                continue
            down_since = down_since if down_since is not None else time.monotonic()
            if not closed and time.monotonic() - down_since >= self.settings.stale_s:
                try:
                    n = await self.close_stale(reason="pbx_lost")
                except (SQLAlchemyError, OSError, LeaseLostError) as exc:
                    raise_if_cancelling()
                    log.warning("stale calls not closed (%s); next look in %.0f s", type(exc).__name__, every)
                    continue
                closed = True
                log.warning("the PBX has been away %.0f s: %d live calls closed as unknown", self.settings.stale_s, n)

    async def close_stale(self, *, reason: str) -> int:
        """End every call the records show live, outcome ``unknown``: the PBX that knew how
        they ended is gone. The wallboard is told; the resync of a PBX that returns rewrites a
        call it still has."""
        now = datetime.now(UTC)
        closed: list[dict[str, Any]] = []
        async with self.sm() as session, session.begin():
            await self._fence(session)
            live = select(CallRecord).where(CallRecord.state.in_(CALL.from_states("end")))
            rows = (await session.scalars(live)).all()
            for row in rows:
                CALL.fire(row, "end")
                row.outcome = row.outcome or "unknown"
                row.end_reason = row.end_reason or reason
                row.ended_at = row.ended_at or now
                row.updated_at = now
                closed.append({"linkedid": row.linkedid, "state": row.state, "outcome": row.outcome, "id": row.id})
        for call in closed:
            self._meta.pop(call["linkedid"], None)
            await self._say({"type": "wallboard.call", "audience": SUPERVISORS, "change": "ended", "call": call})
        return len(closed)

    # -- outbound --------------------------------------------------------------------

    async def call_out(
        self,
        *,
        number: str,
        purpose: str,
        requested_by: str,
        idempotency_key: str | None = None,
        elder_id: str | None = None,
        incident_id: str | None = None,
        device_id: str | None = None,
        operator_extension: str | None = None,
        wait_s: float = 10.0,
        dialplan: str | None = None,
    ) -> dict[str, Any]:
        """Place a call with ``Originate`` (Async, with our ChannelId) and record it.

        ``wait_s``: how long to wait for the AMI link when it is down; then the call ends
        ``failed``, not placed, and a caller with a deadline may try again.

        A repeated ``idempotency_key`` returns the first call's record and dials nothing.
        Click-to-call (``operator_extension``) rings the operator first, then the number;
        ``dialplan="wellbeing"`` plays the automated check (press 1 if all is well) and reports
        the key with a UserEvent; the others ring the number and put the answered call into
        the 12349 queue.
        """
        s = self.settings
        chan_id = f"hl-{uuid.uuid4().hex}"
        if operator_extension:
            target = {
                "Channel": s.ami_operator_channel.format(extension=operator_extension),
                "Context": "hotline-outbound",
                "Exten": number,
            }
        elif dialplan == "wellbeing":
            target = {"Channel": s.ami_dial.format(number=number), "Context": ev.WELLBEING_CONTEXT, "Exten": "s"}
        else:
            target = {"Channel": s.ami_dial.format(number=number), "Context": "hotline-callback", "Exten": s.ami_queue}
        record = CallRecord(
            linkedid=chan_id,
            direction="outbound",
            queue=s.ami_queue,
            caller_num=number,
            state=CALL.initial,
            started_at=datetime.now(UTC),
            purpose=purpose,
            idempotency_key=idempotency_key or f"call:{chan_id}",
            elder_id=elder_id,
            incident_id=incident_id,
            device_id=device_id,
            requested_by=requested_by,
            attempts=[],
            dial_target=target,
        )
        async with self.sm() as session:
            try:
                async with session.begin():
                    session.add(record)
            except IntegrityError:
                existing = await session.scalar(
                    select(CallRecord).where(CallRecord.idempotency_key == record.idempotency_key)
                )
                if existing is None:
                    raise
                return wire.dump(wire.CallRecord, existing)
        if self.holding:
            try:
                return await self._place(record.id, wait_s=wait_s)
            except LeaseLostError:
                if self.role is not None:  # lost the role a moment ago: the new holder places it
                    self.role.lost_by_write()
        self._placer_wake.set()
        return await self._await_holder(record.id, wait_s=wait_s)

    async def _place(self, call_id: str, *, wait_s: float) -> dict[str, Any]:
        """Send the Originate of a requested call, once: the claim (``placed_token``, fenced by
        our lease) comes first, so of several instances only one ever dials it."""
        token = self.role.token if self.role is not None else 0
        async with self.sm() as session, session.begin():
            await self._fence(session)
            claimed = await session.execute(
                update(CallRecord)
                .where(
                    CallRecord.id == call_id,
                    CallRecord.placed_token.is_(None),
                    CallRecord.state == CallState.ORIGINATING,
                )
                .values(placed_token=token)
                .execution_options(synchronize_session=False)
            )
            record = await session.get(CallRecord, call_id)
            assert record is not None
            if getattr(claimed, "rowcount", 0) != 1:  # placed by another, or given up
                return wire.dump(wire.CallRecord, record)
            chan_id, number, target = record.linkedid, record.caller_num, dict(record.dial_target or {})
            purpose = record.purpose
        s = self.settings
        via_operator = target.get("Context") == "hotline-outbound"
        self.tracker.expect_outbound(
            chan_id, call_id, number, time.time(), queue=s.ami_queue, via_operator=via_operator
        )
        self._meta.setdefault(chan_id, {"elder_id": record.elder_id})
        headers = {
            "Action": "Originate",
            "ActionID": call_id,
            "ChannelId": chan_id,
            "Priority": "1",
            "Async": "true",
            "Timeout": "30000",
            "CallerID": f"12349 <{s.callback_number}>",
            "Variable": f"HOTLINE_CALL_ID={call_id}",
            **target,
        }
        detail: str | None = None
        try:
            await self.link.action(headers, idempotent=False, deadline_s=wait_s)
            state = "dialing"
            self.tracker.mark_sent(chan_id)
        except AmiOutcomeUnknownError as exc:
            # Never resent: the resync after the reconnect finds the channel, or finishes the call as unknown.
            state, detail = "originating", str(exc)
            self.tracker.mark_sent(chan_id)
        except (AmiActionError, AmiNotConnectedError) as exc:
            self.tracker.forget(chan_id, call_id)
            self._meta.pop(chan_id, None)
            state, detail = "ended", str(exc)
        log.info("originate call_id=%s purpose=%s number=%s state=%s", call_id, purpose, mask_phone(number), state)
        async with self.sm() as session, session.begin():
            row = await session.get(CallRecord, call_id)
            assert row is not None
            if row.state == CallState.ORIGINATING:  # events may already have moved it on
                if state == "dialing":
                    CALL.fire(row, "sent")
                elif state == "ended":
                    CALL.fire(row, "end")
                    row.outcome, row.ended_at = "failed", datetime.now(UTC)
            row.detail = detail
            return wire.dump(wire.CallRecord, row)

    async def _await_holder(self, call_id: str, *, wait_s: float) -> dict[str, Any]:
        """On a standby: wait for the holder to place the call; past ``wait_s`` with nobody
        having taken it, end it ``failed`` (atomically against a late claim), as a holder
        whose link stays down would."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait_s
        settle = give_up + wait_s  # a claimed call may wait for the holder's link as long again
        while True:
            async with self.sm() as session:
                row = await session.get(CallRecord, call_id)
                assert row is not None
                placed = row.placed_token is not None
                if (placed and row.state != CallState.ORIGINATING) or row.state == CallState.ENDED:
                    return wire.dump(wire.CallRecord, row)
                if placed and loop.time() >= settle:
                    return wire.dump(wire.CallRecord, row)
            if not placed and loop.time() >= give_up:
                async with self.sm() as session, session.begin():
                    await session.execute(
                        update(CallRecord)
                        # CALL's "end" from originating, as one conditional statement: it
                        # must not land on a call the holder claimed a moment before.
                        .where(
                            CallRecord.id == call_id,
                            CallRecord.placed_token.is_(None),
                            CallRecord.state == CallState.ORIGINATING,
                        )
                        .values(
                            state=CallState.ENDED,
                            outcome="failed",
                            ended_at=datetime.now(UTC),
                            detail="no instance holding the AMI role placed it in time",
                        )
                        .execution_options(synchronize_session=False)
                    )
                give_up = float("inf")  # read the row once more: placed, or ended
                continue
            await asyncio.sleep(0.1)

    async def _placer_loop(self) -> None:
        """The holder's side of :meth:`_await_holder`: place what other instances asked for."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._placer_wake.wait(), 0.5)
            self._placer_wake.clear()
            if not self.holding:
                continue
            since = datetime.now(UTC) - timedelta(seconds=PLACE_WITHIN_S)
            try:
                async with self.sm() as session:
                    due = (
                        await session.scalars(
                            select(CallRecord.id).where(
                                CallRecord.direction == "outbound",
                                CallRecord.placed_token.is_(None),
                                CallRecord.state == CallState.ORIGINATING,
                                CallRecord.started_at >= since,
                            )
                        )
                    ).all()
            except (SQLAlchemyError, OSError) as exc:
                raise_if_cancelling()
                log.warning("queued outbound calls not read (%s)", type(exc).__name__)
                continue
            for call_id in due:
                self._spawn(self._place_queued(call_id), f"telephony.place[{call_id}]")

    async def _place_queued(self, call_id: str) -> None:
        try:
            await self._place(call_id, wait_s=5.0)
        except (SQLAlchemyError, OSError, LeaseLostError) as exc:
            raise_if_cancelling()
            log.warning("queued call %s not placed (%s); it stays queued", call_id, exc)

    async def _record_digits(self, call_id: str, digits: str) -> None:
        """What the callee pressed in the automated wellbeing check, kept on the call record."""
        if not self.holding:
            return  # the holder records them
        async with self.sm() as session, session.begin():
            await self._fence(session)
            row = await session.get(CallRecord, call_id)
            if row is None:
                log.warning("wellbeing digits for an unknown call %s", call_id)
                return
            row.digits = (digits or "")[:16]
            row.updated_at = datetime.now(UTC)

    async def call_by_key(self, idempotency_key: str) -> dict[str, Any] | None:
        """The call placed under ``idempotency_key``, as the API shows it, or None."""
        async with self.sm() as session:
            row = await session.scalar(select(CallRecord).where(CallRecord.idempotency_key == idempotency_key))
            return wire.dump(wire.CallRecord, row) if row is not None else None

    async def alarm_callback(self, message: dict[str, Any]) -> None:
        """Call an alarm device's SIM back once per incident (the key makes every instance agree)."""
        incident = message.get("incident") or {}
        if incident.get("type") not in ("sos", "fall") or not incident.get("device_id"):
            return
        async with self.sm() as session:
            device = await session.get(Device, incident["device_id"])
        if device is None or not device.sim_number:
            return
        try:
            await self.call_out(
                number=device.sim_number,
                purpose="alarm_callback",
                requested_by="system",
                idempotency_key=f"alarm_callback:{incident['id']}",
                elder_id=device.elder_id,
                incident_id=incident["id"],
                device_id=device.device_id,
            )
        except TelephonyError as exc:
            log.warning("alarm call-back for incident %s not placed: %s", incident.get("id"), exc)

    def on_bus_message(self, message: dict[str, Any]) -> None:
        if self.settings.ami_alarm_callback and message.get("type") == "incident.created":
            self._spawn(self.alarm_callback(message), "telephony.alarm_callback")
