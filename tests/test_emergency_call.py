"""The emergency step must reach someone, even when the AMI link is down (issue 12, item 7).

- AMI down for good: the call is retried until its deadline, then the emergency webhook gets
  the incident and the supervisors are told it failed; they were told when it was started too.
- AMI back within the deadline: the call is placed, once, and no webhook goes out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from sqlalchemy import select

from hotline.api.keys import SERVICES
from hotline.core.targets import AmiTarget
from hotline.localsvc import free_port
from hotline.storage.models import Notification
from hotline.users import add_user
from simulators.asterisk import AsteriskSim
from simulators.family import FamilyReceiver
from tests import factories
from tests.conftest import Running, auth
from tests.helpers import Feed, eventually
from tests.test_api import ELDER, post


async def _emergency_world(
    start_backend: Callable[..., Awaitable[Running]], ami_port: int, hook: str, deadline_s: float
) -> tuple[Running, str, str]:
    running = await start_backend(
        ami=AmiTarget("127.0.0.1", ami_port, "hotline", "hotline"),
        emergency_webhook_url=hook,
        emergency_call_deadline_s=deadline_s,
    )
    op = await add_user(running.settings, "op", "operator")
    sup = await add_user(running.settings, "sup", "supervisor")
    async with running.app[SERVICES].sm() as session, session.begin():
        session.add(factories.policy([{"name": "emergency", "steps": [{"do": "emergency"}]}]))
    running.app[SERVICES].dispatch.escalator.policies.invalidate()  # type: ignore[union-attr]
    return running, op, sup


async def _voice(running: Running) -> Notification | None:
    async with running.app[SERVICES].sm() as session:
        return await session.scalar(select(Notification).where(Notification.channel == "voice"))


async def test_with_ami_down_the_emergency_falls_back_to_the_webhook_and_supervisors_hear_of_it(
    start_backend: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession, env: dict[str, str]
) -> None:
    receiver = FamilyReceiver([env["HOTLINE_WEBHOOK_SECRET"]])
    hook = await receiver.start()
    running, op, sup = await _emergency_world(start_backend, free_port(), hook, deadline_s=6)
    _, elder = await post(http, f"{running.url}/api/v1/elders", op, ELDER)
    async with http.ws_connect(f"{running.url}/api/v1/ws", headers=auth(sup)) as ws:
        feed = Feed(ws)
        await feed.wait_for("hello")
        _, incident = await post(http, f"{running.url}/api/v1/incidents", op, {"elder_id": elder["id"], "type": "sos"})
        started = await feed.wait_for("escalation.alert", timeout=10)
        assert "正在拨打 120" in started["message"] and started["incident_id"] == incident["id"]
        failed = await feed.wait_for("escalation.alert", timeout=30)
        assert "未能接通" in failed["message"] and "webhook" in failed["message"]

    async def posted() -> list[Any]:
        return [a for a in receiver.alerts if a.body["type"] == "incident.escalation"]

    (alert,) = await eventually(posted, timeout=10)
    assert alert.body["data"]["incident_id"] == incident["id"]
    voice = await _voice(running)
    assert voice is not None and voice.status == "failed" and voice.attempts >= 2  # retried, not left hanging
    assert "deadline" in (voice.last_error or "")
    await receiver.stop()


async def test_when_ami_returns_within_the_deadline_the_call_is_placed_once_and_no_webhook_goes(
    start_backend: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession, env: dict[str, str]
) -> None:
    receiver = FamilyReceiver([env["HOTLINE_WEBHOOK_SECRET"]])
    hook = await receiver.start()
    port = free_port()
    running, op, _ = await _emergency_world(start_backend, port, hook, deadline_s=60)
    _, elder = await post(http, f"{running.url}/api/v1/elders", op, ELDER)
    await post(http, f"{running.url}/api/v1/incidents", op, {"elder_id": elder["id"], "type": "sos"})

    async def tried() -> bool:
        voice = await _voice(running)
        return voice is not None and voice.attempts >= 1

    await eventually(tried, timeout=20)  # at least one attempt found the link down
    sim = AsteriskSim(speed=20.0, members=("op1001",))
    await sim.start(port=port)
    try:

        async def delivered() -> bool:
            voice = await _voice(running)
            return voice is not None and voice.status == "delivered"

        await eventually(delivered, timeout=40)
        assert [o["Channel"] for o in sim.originates] == ["PJSIP/120@pstn"]
        await asyncio.sleep(1)
        assert not [a for a in receiver.alerts if a.body["type"] == "incident.escalation"]
    finally:
        await sim.stop()
        await receiver.stop()
