"""Queue members as the wallboard shows them: free, ringing, on a call or paused, with the
pause reason and since when. Sans-IO: fed ``QueueStatus`` answers and the live
``QueueMemberStatus`` / ``QueueMemberPause`` events; it only remembers.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotline.telephony import events as ev
from hotline.telephony.tracker import interface_ext

# Asterisk's device states (AST_DEVICE_*), as QueueMember's Status reports them.
DEVICE_STATES = {
    0: "unknown",
    1: "not_in_use",
    2: "in_use",
    3: "busy",
    4: "invalid",
    5: "unavailable",
    6: "ringing",
    7: "ringing",  # ringing while in use
    8: "on_hold",
}


@dataclass(frozen=True, slots=True)
class Agent:
    queue: str
    extension: str
    interface: str
    name: str
    device_state: str
    in_call: bool
    paused: bool
    paused_reason: str
    paused_since: float | None  # epoch seconds
    calls_taken: int | None

    @property
    def state(self) -> str:
        """One word for the board: paused, on_call, ringing, free or offline."""
        if self.paused:
            return "paused"
        if self.in_call or self.device_state in ("in_use", "busy", "on_hold"):
            return "on_call"
        if self.device_state == "ringing":
            return "ringing"
        if self.device_state in ("unavailable", "invalid", "unknown"):
            return "offline"
        return "free"


class AgentBoard:
    """Members of the queues we follow, keyed by (queue, interface)."""

    def __init__(self, queues: frozenset[str] = frozenset()) -> None:
        self.queues = queues
        self.agents: dict[tuple[str, str], Agent] = {}

    def feed(self, e: ev.AmiEvent) -> Agent | None:
        """Apply a member event; the member's new state when it changed, else None."""
        if not isinstance(e, ev.QueueMember) or (self.queues and e.queue not in self.queues):
            return None
        key = (e.queue, e.location)
        if e.name == "QueueMemberRemoved":
            self.agents.pop(key, None)
            return None
        old = self.agents.get(key)
        since: float | None = None
        if e.paused:
            # LastPause is when the pause began; the live Pause event is itself that moment.
            since = float(e.last_pause) if e.last_pause else (old.paused_since if old and old.paused else None)
            if since is None and e.name == "QueueMemberPause":
                since = e.ts
        agent = Agent(
            queue=e.queue,
            extension=interface_ext(e.location) or e.member,
            interface=e.location,
            name=e.member,
            device_state=DEVICE_STATES.get(e.status if e.status is not None else 0, "unknown"),
            in_call=e.in_call,
            paused=e.paused,
            paused_reason=e.paused_reason if e.paused else "",
            paused_since=since,
            calls_taken=e.calls_taken,
        )
        self.agents[key] = agent
        return agent if agent != old else None

    def replace(self, members: list[ev.QueueMember]) -> None:
        """A fresh ``QueueStatus`` answer: members it does not list are gone."""
        listed = {(m.queue, m.location) for m in members if not self.queues or m.queue in self.queues}
        for key in set(self.agents) - listed:
            del self.agents[key]
        for m in members:
            self.feed(m)
