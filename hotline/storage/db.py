"""The async engine, sessions, and migrations (``hotline db upgrade``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
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


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("hotline") / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Run migrations synchronously (Alembic drives its own event loop in env.py)."""
    command.upgrade(alembic_config(url), revision)
