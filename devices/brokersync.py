"""Keeps the broker's password file and ACL in step with the device registry.

With ``HOTLINE_BROKER_AUTH_DIR`` set, every instance watches a cheap fingerprint of the
registry (active devices, and the latest credential change) and rewrites ``passwd``, ``acl``
and ``mosquitto-auth.conf`` there when it moves: at once for a change made through this
instance's API, within a third of ``HOTLINE_BROKER_AUTH_SYNC_S`` for another instance's. The
broker is reloaded by whoever watches the files (``deploy/mosquitto/run-with-reload.sh``
sends it SIGHUP when their contents change), so a new device connects, and a retired or
rotated credential is refused, within the sync time and without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices.brokerauth import AuthFiles, write_auth_files
from hotline.storage.models import Device
from hotline.tasks import raise_if_cancelling

log = logging.getLogger(__name__)


async def active_credentials(sm: async_sessionmaker[AsyncSession]) -> list[tuple[str, str]]:
    """(device_id, credential hash) of every device that is not retired."""
    async with sm() as session:
        rows = await session.execute(
            select(Device.device_id, Device.credential_hash)
            .where(Device.retired_at.is_(None))
            .order_by(Device.device_id)
        )
        return [(d, h) for d, h in rows.all()]


@dataclass(frozen=True, slots=True)
class BrokerUser:
    prefix: str
    username: str
    password: str


class BrokerAuthSync:
    def __init__(
        self, sm: async_sessionmaker[AsyncSession], out: Path, backend: BrokerUser, *, sync_s: float = 30.0
    ) -> None:
        self.sm = sm
        self.out = out
        self.backend = backend
        self.every_s = sync_s / 3
        self._wake = asyncio.Event()
        self._written: tuple[object, ...] | None = None
        self.writes = 0

    def wake(self) -> None:
        """A device was registered, rotated or retired here: write the files now."""
        self._wake.set()

    async def _fingerprint(self) -> tuple[object, ...]:
        async with self.sm() as session:
            row = (
                await session.execute(
                    select(
                        func.count(Device.device_id).filter(Device.retired_at.is_(None)),
                        func.max(Device.credentials_changed_at),
                    )
                )
            ).one()
        return tuple(row)

    async def sync_once(self) -> AuthFiles | None:
        """Rewrite the files if the registry moved since the last write; what was written."""
        seen = await self._fingerprint()
        if seen == self._written:
            return None
        devices = await active_credentials(self.sm)
        files = await asyncio.to_thread(
            write_auth_files,
            self.out,
            prefix=self.backend.prefix,
            backend_user=self.backend.username,
            backend_password=self.backend.password,
            devices=devices,
        )
        self._written = seen
        self.writes += 1
        log.info("broker auth files written: %d devices in %s", files.devices, self.out)
        return files

    async def run(self) -> None:
        while True:
            self._wake.clear()  # before the look: a change made during it wakes the next one
            try:
                await self.sync_once()
            except (SQLAlchemyError, OSError, ValueError) as exc:
                raise_if_cancelling()
                log.warning("broker auth files not written (%s); next try in %.0f s", exc, self.every_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.every_s)
