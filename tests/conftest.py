"""Fixtures. The database is SQLite unless HOTLINE_TEST_DB=postgres; Redis and Mosquitto
are the real local servers (./dev test starts them when they are not running).

Every test gets its own MQTT topic prefix, Redis key prefix and MQTT client id, so tests
never see each other's traffic on the shared servers.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from hotline.config import Settings, load_settings
from hotline.localsvc import free_port
from hotline.storage.db import make_engine, make_sessionmaker, upgrade
from hotline.storage.models import Base
from tests.helpers import BackendProcess, stop_leftover_backends

TEST_DB = os.environ.get("HOTLINE_TEST_DB", "sqlite")
PG_ADMIN_URL = os.environ.get("HOTLINE_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HOTLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MQTT_PORT = int(os.environ.get("HOTLINE_TEST_MQTT_PORT", "1883"))


@pytest.fixture(autouse=True)
def _no_backend_outlives_its_test() -> Iterator[None]:
    yield
    stop_leftover_backends()


def pytest_report_header() -> str:
    return f"hotline test database: {TEST_DB}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The PostgreSQL pass (./dev test runs SQLite, then PostgreSQL) is there for the database:
    it skips the tests that never touch the suite's database (no ``db_url``: parsers, config,
    protocol links) and those marked ``one_database`` (their own PostgreSQL, or the browser),
    which the SQLite pass has run. Both passes run everything else."""
    if TEST_DB != "postgres":
        return
    skip = pytest.mark.skip(reason="the same on either database; the SQLite pass runs it")
    for item in items:
        if "db_url" not in getattr(item, "fixturenames", ()) or item.get_closest_marker("one_database"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    """One PostgreSQL database for the session, migrated once and dropped at the end."""
    if TEST_DB != "postgres":
        yield None
        return
    name = f"hotline_test_{os.getpid()}"

    async def admin(sql: str) -> None:
        engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(sql))
        await engine.dispose()

    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def db_url(pg_database: str | None, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated, empty database for this test."""
    if pg_database is None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"
        await asyncio.to_thread(upgrade, url)
        yield url
        return
    engine = create_async_engine(pg_database)
    async with engine.begin() as conn:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()
    yield pg_database


@pytest.fixture
async def sm(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def ns() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def env(db_url: str, ns: str) -> dict[str, str]:
    return {
        "HOTLINE_DATABASE_URL": db_url,
        "HOTLINE_REDIS_URL": REDIS_URL,
        "HOTLINE_REDIS_PREFIX": f"test-{ns}",
        "HOTLINE_MQTT_URL": f"mqtt://127.0.0.1:{MQTT_PORT}",
        "HOTLINE_MQTT_PREFIX": f"test-{ns}/v1",
        "HOTLINE_MQTT_CLIENT_ID": f"backend-{ns}",
        "HOTLINE_HTTP_HOST": "127.0.0.1",
        "HOTLINE_HTTP_PORT": str(free_port()),
        "HOTLINE_WEBHOOK_SECRET": "whsec_dGVzdC1zZWNyZXQtZm9yLWhvdGxpbmUtdGVzdHM=",
        "HOTLINE_LOG_LEVEL": "INFO",
        # Every console message the suite makes must match its model in hotline.core.messages.
        "HOTLINE_STRICT_MESSAGES": "true",
    }


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings(env)


@pytest.fixture
async def backend(env: dict[str, str], tmp_path: Path) -> AsyncIterator[BackendProcess]:
    proc = BackendProcess(env, tmp_path / "backend.log")
    yield proc
    proc.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def auth(token: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}"}


class Running:
    def __init__(self, app: Any, url: str, settings: Settings) -> None:
        self.app = app
        self.url = url
        self.settings = settings


@pytest.fixture
async def start_backend(settings: Settings) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    """Start the backend in this process (same code as ``hotline serve``) on a free port,
    with settings overridden per test; every one started is stopped at the end."""
    import dataclasses

    from hotline.app import serve

    started: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(**overrides: Any) -> Running:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[tuple[Any, int]] = loop.create_future()
        stop = asyncio.Event()
        s = dataclasses.replace(settings, http_port=0, **overrides)
        task = asyncio.create_task(serve(s, shutdown=stop, on_ready=lambda app, port: ready.set_result((app, port))))
        started.append((stop, task))
        app, port = await asyncio.wait_for(ready, 20)
        return Running(app, f"http://127.0.0.1:{port}", s)

    yield start
    for stop, task in reversed(started):
        stop.set()
        await asyncio.wait_for(task, 20)


@pytest.fixture
async def running(start_backend: Callable[..., Awaitable[Running]]) -> Running:
    return await start_backend()
