"""After-commit sinks: let Redis follow the rows a transaction committed, whoever wrote them.

A model is watched with a snapshot function. During each flush, snapshots of new and
changed rows are collected on the session; after the commit they go to the sinks named in
the session's ``info`` (set on the sessionmaker), and after a rollback they are dropped.
So a timer is scheduled in Redis, and a provider re-indexed, only once its row is durable,
and no call site can forget to do it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

SINKS = "dispatch.sinks"
_PENDING = "dispatch.pending"

_WATCHED = "dispatch.watched"

Sink = Callable[[list[Any]], None]
#: A watched model: the sink name its snapshots go to, and how to snapshot a row.
Watches = Mapping[type, tuple[str, Callable[[Any], Any]]]


def install(sm: async_sessionmaker[AsyncSession], watches: Watches, **sinks: Sink) -> None:
    """Route this sessionmaker's committed snapshots of ``watches`` to ``sinks`` (by name).

    Called by whoever assembles the app: importing this module registers nothing that acts.
    """
    info = dict(sm.kw.get("info", {}))
    current = dict(info.get(SINKS, {}))
    current.update(sinks)
    watched = dict(info.get(_WATCHED, {}))
    watched.update(watches)
    sm.configure(info={**info, SINKS: current, _WATCHED: watched})
    for name, listener in (
        ("after_flush", _after_flush),
        ("after_commit", _after_commit),
        ("after_rollback", _after_rollback),
    ):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)


def _after_flush(session: Session, _ctx: object) -> None:
    sinks = session.info.get(SINKS)
    if not sinks:
        return
    pending: dict[str, dict[Any, Any]] = session.info.setdefault(_PENDING, {})
    watched = session.info.get(_WATCHED, {})
    for obj in (*session.new, *session.dirty):
        entry = watched.get(type(obj))
        if entry is not None and entry[0] in sinks:
            pending.setdefault(entry[0], {})[obj.id] = entry[1](obj)


def _after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    sinks = session.info.get(SINKS, {})
    for name, items in pending.items():
        sinks[name](list(items.values()))


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
