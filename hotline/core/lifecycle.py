"""Lifecycles as explicit state machines, in the manner of h11's ``_state.py``.

A :class:`Lifecycle` is a transition table ``{state: {event: new_state}}`` plus optional
guards per event. Every status change of the thing it governs goes through :meth:`fire`;
a move the table lacks, or a guard refuses, raises :class:`TransitionError`, which the API
answers with 409 naming the from-state and the event. ``tests/test_lifecycles.py`` fails if a
status is assigned anywhere else.

Domain modules declare their machines (``dispatch/lifecycle.py``,
``hotline/telephony/lifecycle.py``); this module knows no domain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hotline.errors import ConflictError

#: A guard gets the object and the caller's context, and returns why the move is refused, or None.
Guard = Callable[[Any, Any], str | None]


class TransitionError(ConflictError):
    """A lifecycle cannot make the requested move from its current state."""

    def __init__(self, machine: str, from_state: str, event: str, *, subject: str = "", why: str = "") -> None:
        what = f"{machine} {subject}".strip()
        reason = f": {why}" if why else ""
        super().__init__(f"{what} cannot {event} from {from_state}{reason}")
        self.machine = machine
        self.from_state = from_state
        self.event = event


@dataclass(frozen=True)
class Lifecycle:
    """One state machine. ``attr`` is the attribute that holds the state on governed objects."""

    name: str
    initial: str
    table: Mapping[str, Mapping[str, str]]
    attr: str = "status"
    guards: Mapping[str, Guard] = field(default_factory=dict)
    states: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        states = set(self.table) | {s for moves in self.table.values() for s in moves.values()} | {self.initial}
        object.__setattr__(self, "states", frozenset(states))

    @property
    def events(self) -> frozenset[str]:
        return frozenset(e for moves in self.table.values() for e in moves)

    @property
    def terminal(self) -> frozenset[str]:
        return frozenset(s for s in self.states if not self.table.get(s))

    def can(self, state: str, event: str) -> bool:
        return event in self.table.get(state, {})

    def next_state(self, state: str, event: str, *, subject: str = "") -> str:
        try:
            return self.table[state][event]
        except KeyError:
            raise TransitionError(self.name, state, event, subject=subject) from None

    def fire(self, obj: Any, event: str, context: Any = None) -> str:
        """Move ``obj`` by ``event``; returns the new state. Raises :class:`TransitionError`."""
        state = getattr(obj, self.attr)
        subject = str(getattr(obj, "id", "") or "")
        new = self.next_state(state, event, subject=subject)
        guard = self.guards.get(event)
        if guard is not None and (why := guard(obj, context)) is not None:
            raise TransitionError(self.name, state, event, subject=subject, why=why)
        setattr(obj, self.attr, new)
        return new

    def fire_if_possible(self, obj: Any, event: str, context: Any = None) -> bool:
        """Fire when the table allows it from the current state; otherwise leave ``obj`` as it is."""
        if not self.can(getattr(obj, self.attr), event):
            return False
        self.fire(obj, event, context)
        return True

    def load(self, obj: Any, state: str) -> None:
        """Set a state read from elsewhere (a snapshot being persisted): checked, not a move."""
        if state not in self.states:
            raise TransitionError(self.name, str(getattr(obj, self.attr, "?")), f"load {state!r}")
        setattr(obj, self.attr, state)

    def from_states(self, event: str) -> frozenset[str]:
        """The states ``event`` may be fired from (for queries: ``status IN (...)``)."""
        return frozenset(s for s, moves in self.table.items() if event in moves)


def table(rows: Iterable[tuple[Iterable[str] | str, str, str]]) -> dict[str, dict[str, str]]:
    """Build a table from ``(from_states, event, to_state)`` rows, so one row can cover several states."""
    out: dict[str, dict[str, str]] = {}
    for sources, event, target in rows:
        for source in [sources] if isinstance(sources, str) else sources:
            if event in out.setdefault(source, {}):
                raise ValueError(f"two rows for ({source}, {event})")
            out[source][event] = target
    return out
