"""Escalation timers against real process death: SIGKILL mid-escalation, and three
instances with one killed. Real ``hotline serve`` processes, a real database and Redis."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.config import Settings
from hotline.localsvc import free_port
from hotline.storage.models import EscalationTimer, IncidentEvent, Notification
from hotline.users import add_user
from tests import factories
from tests.conftest import REDIS_URL, auth
from tests.factories import elder as make_elder
from tests.helpers import BackendProcess, eventually


def ladder(*waits: int) -> list[dict[str, Any]]:
    """One track: wait, notify, wait, notify ... with the supervisors told at each rung."""
    steps: list[dict[str, Any]] = []
    for n, seconds in enumerate(waits, 1):
        steps += [{"do": "wait", "seconds": seconds}, {"do": "notify", "to": "role:supervisor", "message": f"rung {n}"}]
    return [{"name": "ladder", "steps": steps}]


async def prepare(sm: async_sessionmaker[AsyncSession], tracks: list[dict[str, Any]], elders: int) -> list[str]:
    async with sm() as s, s.begin():
        # Version 2 outranks the built-in version 1 that each instance installs at start.
        s.add(factories.policy(tracks))
        rows = [make_elder(name=f"老人{n}") for n in range(elders)]
        s.add_all(rows)
    return [e.id for e in rows]


async def open_sos(http: aiohttp.ClientSession, url: str, token: str, elder_id: str) -> str:
    async with http.post(
        f"{url}/api/v1/incidents", json={"elder_id": elder_id, "type": "sos"}, headers=auth(token)
    ) as r:
        body = await r.json()
        assert r.status == 201, body
        return str(body["id"])


async def ladder_steps(sm: async_sessionmaker[AsyncSession], incident_id: str) -> list[dict[str, Any]]:
    async with sm() as s:
        rows = (
            await s.scalars(
                select(IncidentEvent)
                .where(IncidentEvent.incident_id == incident_id, IncidentEvent.kind == "escalation.step")
                .order_by(IncidentEvent.id)
            )
        ).all()
    return [e.data for e in rows if e.data["track"] == "ladder"]


async def all_done(sm: async_sessionmaker[AsyncSession], incident_ids: list[str]) -> bool:
    async with sm() as s:
        states = (
            await s.scalars(
                select(EscalationTimer.state).where(
                    EscalationTimer.incident_id.in_(incident_ids), EscalationTimer.track == "ladder"
                )
            )
        ).all()
    return len(states) == len(incident_ids) and set(states) == {"done"}


def late_s(step: dict[str, Any]) -> float:
    return (datetime.fromisoformat(step["fired_at"]) - datetime.fromisoformat(step["due_at"])).total_seconds()


async def test_sigkill_mid_escalation_the_rest_fires_on_time_and_once(
    sm: async_sessionmaker[AsyncSession], env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    kept, lost = await prepare(sm, ladder(3, 9, 3), elders=2)
    token = await add_user(settings, "op", "operator")
    backend = BackendProcess(env, tmp_path / "backend.log")
    redis = aioredis.from_url(REDIS_URL)
    try:
        await backend.start()
        async with aiohttp.ClientSession() as http:
            a = await open_sos(http, backend.url, token, kept)
            b = await open_sos(http, backend.url, token, lost)

        async def first_rungs() -> bool:
            return [len(await ladder_steps(sm, i)) for i in (a, b)] == [1, 1]

        await eventually(first_rungs, timeout=10)
        key = f"{env['HOTLINE_REDIS_PREFIX']}:timers"

        async def both_scheduled() -> list[str]:
            # The wake-ups are written after the commit, so they can trail the rows a moment.
            members = [m.decode() for m in await redis.zrange(key, 0, -1)]
            ok = all(any(m.endswith(f"|{i}") for m in members) for i in (a, b))
            return members if ok else []

        members = await eventually(both_scheduled, timeout=5)
        backend.kill()  # rung 2 is due about 9 s after rung 1
        # Redis keeps incident a's wake-up; incident b's is lost, so only the database sweep can find it.
        await redis.zrem(key, *[m for m in members if m.endswith(f"|{b}")])
        await backend.start()
        await eventually(lambda: all_done(sm, [a, b]), timeout=30)
    finally:
        backend.stop()
        await redis.aclose()
    for incident_id in (a, b):
        steps = await ladder_steps(sm, incident_id)
        assert [s["run"] for s in steps] == [1, 2, 3], steps  # each rung exactly once
        for s in steps[1:]:  # the rungs that fell due after the restart
            assert 0 <= late_s(s) <= 2.0, s
        async with sm() as s:
            alerts = (
                await s.scalars(
                    select(Notification.payload).where(
                        Notification.incident_id == incident_id, Notification.target == "role:supervisor"
                    )
                )
            ).all()
        assert sorted(p["message"] for p in alerts) == ["rung 1", "rung 2", "rung 3"]


async def test_three_instances_one_killed_no_step_lost_or_doubled(
    sm: async_sessionmaker[AsyncSession], env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    elders = await prepare(sm, ladder(2, 2, 2, 2), elders=12)
    token = await add_user(settings, "op", "operator")
    backends = []
    for n in range(3):
        e = {
            **env,
            "HOTLINE_HTTP_PORT": str(free_port()),
            "HOTLINE_MQTT_CLIENT_ID": f"{env['HOTLINE_MQTT_CLIENT_ID']}-{n}",
            "HOTLINE_MQTT_SHARED_GROUP": "backends",
        }
        backends.append(BackendProcess(e, tmp_path / f"backend{n}.log"))
    try:
        await asyncio.gather(*(b.start() for b in backends))
        async with aiohttp.ClientSession() as http:
            incidents = [
                await open_sos(http, backends[n % 3].url, token, elder_id) for n, elder_id in enumerate(elders)
            ]
        await asyncio.sleep(3.0)  # the first rungs have fired; the second are due within a second
        backends[1].kill()
        await eventually(lambda: all_done(sm, incidents), timeout=40)
    finally:
        for b in backends:
            b.stop()
    fired: Counter[tuple[str, int]] = Counter()
    for incident_id in incidents:
        for step in await ladder_steps(sm, incident_id):
            fired[(incident_id, step["run"])] += 1
    assert set(fired) == {(i, run) for i in incidents for run in (1, 2, 3, 4)}  # none lost
    assert set(fired.values()) == {1}  # none doubled
    async with sm() as s:
        alerts = (
            await s.scalars(select(Notification.incident_id).where(Notification.target == "role:supervisor"))
        ).all()
    assert Counter(alerts) == dict.fromkeys(incidents, 4)
