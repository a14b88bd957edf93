"""The async engine, sessions, and migrations (``hotline db upgrade``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from hotline import phones


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the console read while the gateway writes; foreign keys are off by
            # default in SQLite and we rely on them.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def make_sessionmaker(
    engine: AsyncEngine, *, phone_area_code: str = phones.DEFAULT_AREA_CODE
) -> async_sessionmaker[AsyncSession]:
    """Sessions for the app, the CLI and the tests. The phone index follows every write they
    make; ``phone_area_code`` (HOTLINE_PHONE_AREA_CODE) completes local landlines in it."""
    phones.install_phone_index()
    return async_sessionmaker(engine, expire_on_commit=False, info={phones.AREA_CODE_INFO: phone_area_code})


@asynccontextmanager
async def transaction(sm: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sm() as session, session.begin():
        yield session


# SQLSTATE classes that say the server is away or full, not that the statement is wrong:
# 08 connection exception, 53 insufficient resources (too many connections, disk full),
# 57 operator intervention (admin shutdown, crash shutdown, "the database system is starting up").
_AWAY_SQLSTATE_CLASSES = ("08", "53", "57")


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached now, rather than that the work is wrong.

    Work that failed this way is waited out and tried again, never parked or refused: the
    connection refused while PostgreSQL is down, the "starting up" answer as it comes back,
    a dropped connection, a full pool, SQLite's "database is locked".
    """
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError | DisconnectionError | OSError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # asyncpg's errors reach us wrapped (``orig``) or, from a few connect paths, bare.
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    state = getattr(orig, "sqlstate", None)
    return isinstance(state, str) and state[:2] in _AWAY_SQLSTATE_CLASSES


def reason(exc: BaseException) -> str:
    """An error's type and the driver's own message, never SQLAlchemy's text, which carries the
    statement's parameters (phones, names) into the log."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    return f"{type(exc).__name__}: {orig}"


def log_failure(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """Log a background cycle's failure: one line when the database is away (``/readyz`` says
    so too, and a traceback per cycle would bury everything else), the traceback otherwise."""
    if unavailable(exc):
        logger.warning("%s failed: the database is unavailable (%s); retrying", what, reason(exc))
    else:
        logger.error("%s failed; retrying", what, exc_info=exc)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("hotline") / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Run migrations synchronously (Alembic drives its own event loop in env.py)."""
    command.upgrade(alembic_config(url), revision)
