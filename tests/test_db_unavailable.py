"""Telling "the database is away" from "this work is wrong", on errors the real drivers raise.

Work that fails the first way is waited out and retried (the gateway never parks an alarm for
it, the API answers 503); work that fails the second way is refused or parked. The errors here
come from a real PostgreSQL (a refused port, a backend terminated under a live connection) and
a real SQLite file, not from exceptions built by hand.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from hotline.localsvc import free_port
from hotline.storage.db import log_failure, reason, unavailable
from tests.conftest import PG_ADMIN_URL


async def _error_of(url: str, *statements: str, isolation_level: str | None = None) -> BaseException:
    engine = create_async_engine(url, **({"isolation_level": isolation_level} if isolation_level else {}))
    try:
        async with engine.connect() as conn:
            for sql in statements:
                await conn.execute(text(sql))
    except Exception as exc:
        return exc
    finally:
        await engine.dispose()
    raise AssertionError(f"{statements} did not fail")


async def test_a_refused_connection_is_the_database_away() -> None:
    exc = await _error_of(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test", "SELECT 1")
    assert unavailable(exc), repr(exc)


async def test_a_backend_terminated_under_a_live_connection_is_the_database_away() -> None:
    # What PostgreSQL's fast shutdown does to every session: FATAL 57P01, then the socket closes.
    exc = await _error_of(
        PG_ADMIN_URL, "SELECT pg_terminate_backend(pg_backend_pid())", "SELECT 1", isolation_level="AUTOCOMMIT"
    )
    assert unavailable(exc), repr(exc)


async def test_a_statement_at_fault_is_not() -> None:
    dup = await _error_of(
        PG_ADMIN_URL,
        "CREATE TEMP TABLE t (k int PRIMARY KEY)",
        "INSERT INTO t VALUES (1)",
        "INSERT INTO t VALUES (1)",
    )
    syntax = await _error_of(PG_ADMIN_URL, "SELEC 1")
    by_zero = await _error_of(PG_ADMIN_URL, "SELECT 1 / 0")
    assert not unavailable(dup) and not unavailable(syntax) and not unavailable(by_zero)
    assert not unavailable(ValueError("bad payload")) and not unavailable(KeyError("elder"))


async def test_sqlite_busy_is_the_database_away_and_its_constraint_is_not(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    locked_holder = create_async_engine(url, connect_args={"timeout": 0.1})
    other = create_async_engine(url, connect_args={"timeout": 0.1})
    try:
        async with locked_holder.connect() as conn:
            await conn.execute(text("CREATE TABLE t (k int PRIMARY KEY)"))
            await conn.commit()
            await conn.execute(text("BEGIN EXCLUSIVE"))
            busy: BaseException | None = None
            try:
                async with other.connect() as c2:
                    await c2.execute(text("INSERT INTO t VALUES (1)"))
            except Exception as exc:
                busy = exc
            await conn.rollback()
        assert busy is not None and unavailable(busy) and "locked" in str(busy)
        dup = await _error_of(url, "INSERT INTO t VALUES (2)", "INSERT INTO t VALUES (2)")
        assert not unavailable(dup), repr(dup)
    finally:
        await locked_holder.dispose()
        await other.dispose()


async def test_the_log_says_one_line_with_the_drivers_words_and_never_the_parameters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exc = await _error_of(PG_ADMIN_URL, "SELECT pg_terminate_backend(pg_backend_pid())", "SELECT '13900002222'")
    log = logging.getLogger("tests.db_unavailable")
    with caplog.at_level(logging.WARNING, logger=log.name):
        log_failure(log, "a cycle", exc)
        log_failure(log, "a cycle", ZeroDivisionError("a bug"))
    away, bug = caplog.records
    assert away.levelno == logging.WARNING and away.exc_info is None and "unavailable" in away.getMessage()
    assert "13900002222" not in away.getMessage() and "13900002222" not in reason(exc)
    assert bug.levelno == logging.ERROR and bug.exc_info is not None
