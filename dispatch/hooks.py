"""After-commit sinks: let Redis follow the rows a transaction committed, whoever wrote them.

A model is watched with a snapshot function. During each flush, snapshots of new and
changed rows are collected on the session; after the commit they go to the sinks named in
the session's ``info`` (set on the sessionmaker), and after a rollback they are dropped.
So a timer is scheduled in Redis, and a provider re-indexed, only once its row is durable,
and no call site can forget to do it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

SINKS = "dispatch.sinks"
_PENDING = "dispatch.pending"

Sink = Callable[[list[Any]], None]
_WATCHED: dict[type, tuple[str, Callable[[Any], Any]]] = {}


def watch(model: type, name: str, snapshot: Callable[[Any], Any]) -> None:
    _WATCHED[model] = (name, snapshot)


def install(sm: async_sessionmaker[AsyncSession], **sinks: Sink) -> None:
    """Route this sessionmaker's committed snapshots to ``sinks`` (by watched name)."""
    current = dict(sm.kw.get("info", {}).get(SINKS, {}))
    current.update(sinks)
    sm.configure(info={**sm.kw.get("info", {}), SINKS: current})


def _after_flush(session: Session, _ctx: object) -> None:
    sinks = session.info.get(SINKS)
    if not sinks:
        return
    pending: dict[str, dict[Any, Any]] = session.info.setdefault(_PENDING, {})
    for obj in (*session.new, *session.dirty):
        entry = _WATCHED.get(type(obj))
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


event.listen(Session, "after_flush", _after_flush)
event.listen(Session, "after_commit", _after_commit)
event.listen(Session, "after_rollback", _after_rollback)
