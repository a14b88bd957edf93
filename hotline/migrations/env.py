"""Alembic environment: runs migrations over the async engine."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from hotline.storage.db import make_engine
from hotline.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        async with engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                # Batch mode rebuilds tables that others reference; SQLite only lets that
                # happen with foreign keys off, and the pragma only works outside a transaction.
                await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                await conn.commit()  # SQLAlchemy began a transaction around the pragma; end it
            async with conn.begin():
                await conn.run_sync(_run)
                if sqlite and (broken := (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()):
                    raise RuntimeError(f"foreign keys broken by the migration: {broken[:5]}")
            if sqlite:
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                await conn.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_main())
