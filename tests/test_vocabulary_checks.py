"""The database holds every vocabulary column to its vocabulary (migration 0006), and the
migration keeps the rows a running deployment already has."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.storage.db import make_engine, upgrade
from hotline.storage.models import Incident
from tests import factories


async def test_a_value_outside_its_vocabulary_is_refused_by_the_database(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    async with sm() as s, s.begin():
        elder = factories.elder()
        s.add(elder)
    for bad in ({"status": "closed"}, {"severity": "urgent"}, {"type": "alarm"}):
        fields = {"type": "sos", "severity": "high", "status": "open", **bad}
        with pytest.raises(IntegrityError, match="ck_incidents_"):
            async with sm() as s, s.begin():
                s.add(Incident(elder_id=elder.id, source="device", **fields))
    async with sm() as s, s.begin():  # a good one still goes in
        s.add(Incident(elder_id=elder.id, source="device", type="sos", severity="high", status="open"))


async def test_the_migration_keeps_existing_rows_and_their_references(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    await asyncio.to_thread(upgrade, url, "0005")
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO elders (id, name, gender, birth_date, address, lat, lon, phones, medical_notes,"
                    " care_level, economic_category, living_situation, home_radius_m, created_at)"
                    " VALUES ('eld_1', '王', 'F', '1938-03-01', '余姚', 30, 121, '[]', '', 'mild', 'none', 'alone',"
                    " 500, '2026-12-01 00:00:00')"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO incidents (id, elder_id, type, severity, status, source, signals, created_at,"
                    " updated_at) VALUES ('inc_1', 'eld_1', 'sos', 'high', 'open', 'device', '[]',"
                    " '2026-12-01 00:00:00', '2026-12-01 00:00:00')"
                )
            )
        await asyncio.to_thread(upgrade, url)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT elder_id FROM incidents"))).scalar_one() == "eld_1"
            assert (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all() == []
            with pytest.raises(IntegrityError, match="ck_elders_gender"):
                await conn.execute(text("UPDATE elders SET gender = 'X'"))
    finally:
        await engine.dispose()
