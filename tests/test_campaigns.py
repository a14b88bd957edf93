"""Wellbeing campaigns against the AMI simulator through a real ``hotline serve`` (issue 13,
item 8): the automated check (press 1 or 2), no answer after every attempt, the visit order,
the family notice after runs unanswered in a row, and a SIGKILL mid-run that calls nobody twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.ranking import LOCAL_TZ
from hotline.care.campaigns import in_hours, latest_due, occurrences, parse_hours
from hotline.storage.models import Notification, ServiceRequest
from simulators.asterisk import AsteriskSim
from tests.conftest import auth
from tests.helpers import BackendProcess, eventually
from tests.test_e2e import ELDER

pytestmark = pytest.mark.e2e
NUMBERS = {"ok": "13800000011", "need": "13800000012", "silent": "13800000013"}


@pytest.fixture
async def sim() -> AsyncIterator[AsteriskSim]:
    s = AsteriskSim(speed=20.0, members=("op1001",))
    s.wellbeing_digits[NUMBERS["need"]] = "2"
    s.originate_outcomes[NUMBERS["silent"]] = "noanswer"
    await s.start()
    yield s
    await s.stop()


async def _setup(backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim) -> dict[str, Any]:
    backend.env.update(
        {
            "HOTLINE_AMI_URL": f"ami://hotline:hotline@127.0.0.1:{sim.port}",
            "HOTLINE_CAMPAIGN_TICK_S": "0.2",
            "HOTLINE_UNANSWERED_ALERT": "2",
            "HOTLINE_AMI_ALARM_CALLBACK": "false",
        }
    )
    backend.cli("db", "upgrade")
    w: dict[str, Any] = {"sup": backend.cli("user", "add", "sup", "--role", "supervisor")}
    await backend.start()
    w["elders"] = {}
    for name, number in NUMBERS.items():
        body = {
            **ELDER,
            "name": f"独居{name}",
            "phones": [number],
            "living_situation": "alone",
            "contacts": [{"name": "女儿", "relation": "女儿", "phone": "13900000000", "channel": "sms"}],
        }
        async with http.post(f"{backend.url}/api/v1/elders", json=body, headers=auth(w["sup"])) as r:
            assert r.status == 201, await r.text()
            w["elders"][name] = (await r.json())["id"]
    return w


async def _campaign(http: aiohttp.ClientSession, backend: BackendProcess, token: str, **over: Any) -> str:
    body = {
        "name": "独居老人每周关怀",
        "target": {"living_situation": ["alone"], "min_age": 60},
        "rrule": "FREQ=WEEKLY;BYDAY=MO",
        "dtstart": (datetime.now(UTC) + timedelta(days=30)).isoformat(),  # only the runs started by hand
        "calling_hours": "00:00-23:59",
        "max_concurrent_calls": 2,
        "attempts": 2,
        "retry_after_min": 0.02,
        "mode": "ivr",
        **over,
    }
    async with http.post(f"{backend.url}/api/v1/campaigns", json=body, headers=auth(token)) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["id"])


async def _run(http: aiohttp.ClientSession, backend: BackendProcess, token: str, campaign: str) -> dict[str, Any]:
    async with http.post(f"{backend.url}/api/v1/campaigns/{campaign}/runs", headers=auth(token)) as r:
        assert r.status == 201, await r.text()
        run = await r.json()

    async def finished() -> dict[str, Any] | None:
        async with http.get(f"{backend.url}/api/v1/campaigns/{campaign}/runs/{run['id']}", headers=auth(token)) as r:
            out: dict[str, Any] = await r.json()
        return out if out["status"] == "done" else None

    return await eventually(finished, timeout=30)


async def test_a_campaign_run_records_each_outcome_opens_visits_and_tells_the_family(
    backend: BackendProcess,
    http: aiohttp.ClientSession,
    sim: AsteriskSim,
    sm: async_sessionmaker[AsyncSession],
) -> None:
    w = await _setup(backend, http, sim)
    campaign = await _campaign(http, backend, w["sup"])
    run = await _run(http, backend, w["sup"], campaign)
    by_elder = {t["elder_id"]: t for t in run["targets"]}
    e = w["elders"]
    assert {k: by_elder[v]["outcome"] for k, v in e.items()} == {
        "ok": "answered_ok",
        "need": "answered_need",
        "silent": "no_answer",
    }
    assert by_elder[e["silent"]]["attempts"] == 2  # every attempt, then the outcome
    assert by_elder[e["ok"]]["attempts"] == 1
    visit = by_elder[e["silent"]]["visit_request_id"]
    assert visit is not None and by_elder[e["ok"]]["visit_request_id"] is None
    async with http.get(f"{backend.url}/api/v1/service-requests/{visit}", headers=auth(w["sup"])) as r:
        order = await r.json()
    assert (order["service"], order["elder_id"], order["payer"]) == ("visit", e["silent"], "charity")
    dialled = Counter(a["Channel"].split("/")[1].split("@")[0] for a in sim.originates)
    assert dialled == {NUMBERS["ok"]: 1, NUMBERS["need"]: 1, NUMBERS["silent"]: 2}
    assert all(a["Context"] == "hotline-wellbeing" for a in sim.originates)
    async with sm() as s:
        first = (await s.scalars(select(Notification).where(Notification.event_type == "wellbeing.unanswered"))).all()
    assert first == []  # one unanswered run is not yet a pattern
    second = await _run(http, backend, w["sup"], campaign)
    assert {t["elder_id"]: t["family_notified"] for t in second["targets"]}[e["silent"]] is True
    async with sm() as s:
        notices = (await s.scalars(select(Notification).where(Notification.event_type == "wellbeing.unanswered"))).all()
        visits = (await s.scalars(select(ServiceRequest).where(ServiceRequest.service == "visit"))).all()
    assert [(n.elder_id, n.channel, n.target) for n in notices] == [(e["silent"], "sms", "13900000000")]
    assert len(visits) == 2
    async with http.get(
        f"{backend.url}/api/v1/reports/campaign-coverage",
        params={"month": datetime.now(LOCAL_TZ).strftime("%Y-%m")},
        headers=auth(w["sup"]),
    ) as r:
        report = await r.json()
    (row,) = report["rows"]
    assert row[2:] == [6, 4, 2, 2]  # targeted, reached, unanswered, visits opened


async def test_a_restart_mid_run_calls_nobody_twice_and_skips_nobody(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim
) -> None:
    w = await _setup(backend, http, sim)
    campaign = await _campaign(http, backend, w["sup"], max_concurrent_calls=1, attempts=1)
    # Targets are called in the order the elders were registered: the first call lasts 10 s, so
    # the backend dies and comes back while it is up; the others are quick.
    sim.talk_s_by_number[NUMBERS["ok"]] = 200.0
    async with http.post(f"{backend.url}/api/v1/campaigns/{campaign}/runs", headers=auth(w["sup"])) as r:
        run = await r.json()

    async def dialled_once() -> bool:
        return len(sim.originates) == 1

    await eventually(dialled_once)
    assert NUMBERS["ok"] in sim.originates[0]["Channel"]
    backend.kill()  # SIGKILL, one call in flight
    await backend.start()

    async def finished() -> dict[str, Any] | None:
        async with http.get(f"{backend.url}/api/v1/campaigns/{campaign}/runs/{run['id']}", headers=auth(w["sup"])) as r:
            out: dict[str, Any] = await r.json()
        return out if out["status"] == "done" else None

    # Up to LOST_CALL_S (60 s) when the kill lands between a claim and its call record.
    done = await eventually(finished, timeout=90)
    dialled = Counter(a["Channel"].split("/")[1].split("@")[0] for a in sim.originates)
    assert dialled == dict.fromkeys(NUMBERS.values(), 1)  # each elder once: no double, no gap
    assert all(t["outcome"] is not None for t in done["targets"])
    # The call in flight was taken over after the restart and finished by its own events.
    first = next(t for t in done["targets"] if t["elder_id"] == w["elders"]["ok"])
    assert first["outcome"] in ("answered_ok", "answered_need")


def test_schedules_are_rrules_in_local_time_and_calling_hours_are_local() -> None:
    start = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)  # Monday 09:00 in UTC+8
    nxt = occurrences("FREQ=WEEKLY;BYDAY=MO", start, after=start, count=2)
    assert [d.isoformat() for d in nxt] == ["2026-12-07T01:00:00+00:00", "2026-12-14T01:00:00+00:00"]
    assert latest_due("FREQ=WEEKLY;BYDAY=MO", start, start + timedelta(days=3)) == start
    assert latest_due("FREQ=WEEKLY;BYDAY=MO", start, start - timedelta(hours=1)) is None
    assert in_hours("09:00-11:30,14:00-17:30", start)  # 09:00 local
    assert not in_hours("09:00-11:30,14:00-17:30", start + timedelta(hours=3))  # 12:00 local
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        parse_hours("9 to 5")
    with pytest.raises(ValueError, match="ends before"):
        parse_hours("17:00-09:00")
