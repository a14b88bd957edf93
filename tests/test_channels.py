"""Notification channels besides webhooks, over real sockets: the SMS gateway adapter (HTTP),
voice through telephony (AMI against the simulator), and the console (WebSocket)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.notify.channels import SmsGatewaySender
from dispatch.notify.outbox import OutboxWorker, enqueue
from hotline.api.keys import SERVICES
from hotline.core.targets import AmiTarget
from hotline.storage.models import Notification
from hotline.users import add_user
from simulators.asterisk import AsteriskSim
from tests import factories
from tests.conftest import Running, auth
from tests.helpers import eventually
from tests.test_api import ELDER, post


class SmsGateway:
    """A stand-in SMS platform relay: answers 503 to the first ``fail_first`` posts."""

    def __init__(self, fail_first: int = 0, status_after: int = 200) -> None:
        self.fail_first = fail_first
        self.status_after = status_after
        self.posts: list[tuple[dict[str, str], dict[str, Any]]] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/send", self._send)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}/send"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _send(self, request: web.Request) -> web.Response:
        self.posts.append((dict(request.headers), await request.json()))
        status = 503 if len(self.posts) <= self.fail_first else self.status_after
        return web.json_response({"ok": status == 200}, status=status)


async def _queue_sms(sm: async_sessionmaker[AsyncSession], key: str) -> None:
    now = datetime.now(UTC)
    async with sm() as s, s.begin():
        await enqueue(
            s,
            key=key,
            channel="sms",
            target="13900001111",
            event_type="incident.created",
            payload={
                "type": "incident.created",
                "data": {
                    "incident_type": "sos",
                    "elder": {"name": "王秀英", "address": "阳明西路12号"},
                    "confirm_url": "http://h/api/v1/family/confirm?i=inc_1&c=1&e=1&s=x",
                },
            },
            now=now,
        )


async def _statuses(sm: async_sessionmaker[AsyncSession]) -> list[tuple[str, int, str | None]]:
    async with sm() as s:
        rows = (await s.scalars(select(Notification).order_by(Notification.created_at))).all()
    return [(n.status, n.attempts, n.last_error) for n in rows]


async def _deliver_until(sm: async_sessionmaker[AsyncSession], url: str, status: str, token: str | None = None) -> None:
    """Run an outbox worker with the SMS adapter until the one queued message reaches ``status``."""
    async with aiohttp.ClientSession() as http:
        worker = OutboxWorker(sm, {"sms": SmsGatewaySender(http, url, token=token)}, poll_s=0.05)
        task = asyncio.create_task(worker.run())

        async def reached() -> bool:
            return [s for s, _, _ in await _statuses(sm)] == [status]

        try:
            await eventually(reached, timeout=20)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_the_sms_gateway_gets_the_text_and_retries_survive_its_failures(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    gateway = SmsGateway(fail_first=2)
    url = await gateway.start()
    await _queue_sms(sm, "sms-1")
    await _deliver_until(sm, url, "delivered", token="tok-123")
    assert (await _statuses(sm))[0][:2] == ("delivered", 3)
    headers, body = gateway.posts[-1]
    assert headers["Authorization"] == "Bearer tok-123"
    assert body["to"] == "13900001111" and headers["idempotency-key"] == body["id"]
    assert "王秀英" in body["text"] and "紧急呼救" in body["text"] and "confirm?i=inc_1" in body["text"]
    assert len({b["id"] for _, b in gateway.posts}) == 1  # one message id across the retries
    await gateway.stop()


async def test_a_gateway_that_refuses_the_message_fails_it_for_good(sm: async_sessionmaker[AsyncSession]) -> None:
    gateway = SmsGateway(status_after=400)
    url = await gateway.start()
    await _queue_sms(sm, "sms-2")
    await _deliver_until(sm, url, "failed")
    assert await _statuses(sm) == [("failed", 1, "SMS gateway answered HTTP 400")]
    await gateway.stop()


async def test_the_emergency_step_calls_120_through_telephony_and_supervisors_see_the_alert(
    start_backend: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession
) -> None:
    sim = AsteriskSim(speed=20.0, members=("op1001",))
    await sim.start()
    try:
        running = await start_backend(ami=AmiTarget("127.0.0.1", sim.port, "hotline", "hotline"))
        s = running.settings
        op = await add_user(s, "op", "operator")
        sup = await add_user(s, "sup", "supervisor")
        async with running.app[SERVICES].sm() as session, session.begin():
            steps = [
                {"do": "wait", "seconds": 1},
                {"do": "emergency"},
                {"do": "notify", "to": "role:supervisor", "message": "已呼叫120"},
            ]
            session.add(factories.policy([{"name": "emergency", "steps": steps}]))
        running.app[SERVICES].dispatch.escalator.policies.invalidate()  # type: ignore[union-attr]
        _, elder = await post(http, f"{running.url}/api/v1/elders", op, ELDER)
        async with http.ws_connect(f"{running.url}/api/v1/ws", headers=auth(sup)) as ws:
            await ws.receive_json(timeout=5)  # hello
            _, incident = await post(
                http, f"{running.url}/api/v1/incidents", op, {"elder_id": elder["id"], "type": "sos"}
            )

            async def alert() -> dict[str, Any] | None:
                while True:
                    message = await ws.receive_json(timeout=10)
                    if message["type"] == "escalation.alert" and message["message"] == "已呼叫120":
                        return dict(message)

            pushed = await asyncio.wait_for(alert(), 15)
        assert pushed["incident_id"] == incident["id"] and pushed["audience"] == ["supervisor"]
        await eventually(lambda: _originated(sim), timeout=10)
        originate = sim.originates[0]
        assert originate["Channel"] == "PJSIP/120@pstn" and originate["Async"] == "true"
        async with running.app[SERVICES].sm() as session:
            voice = (await session.scalars(select(Notification).where(Notification.channel == "voice"))).one()
        assert voice.target == "120" and voice.payload["purpose"] == "emergency"
        await eventually(lambda: _voice_delivered(running), timeout=10)
        assert len(sim.originates) == 1  # one call, however the outbox retried
        assert json.dumps(pushed, ensure_ascii=False).count("王秀英") == 0  # an alert names no one
    finally:
        await sim.stop()


async def _originated(sim: AsteriskSim) -> bool:
    return len(sim.originates) >= 1


async def _voice_delivered(running: Running) -> bool:
    async with running.app[SERVICES].sm() as session:
        status = await session.scalar(select(Notification.status).where(Notification.channel == "voice"))
    return status == "delivered"


class _Placer:
    """Telephony as VoiceSender sees it: the records of earlier attempts, and what it dials."""

    def __init__(self, previous: dict[str, Any] | None) -> None:
        self.previous = previous
        self.dialled: list[str] = []

    async def call_out(self, *, number: str, idempotency_key: str | None = None, **_: Any) -> dict[str, Any]:
        self.dialled.append(idempotency_key or "")
        return {"state": "dialing"}

    async def call_by_key(self, idempotency_key: str) -> dict[str, Any] | None:
        return self.previous


@pytest.mark.parametrize(
    ("previous", "dials"),
    [
        ({"state": "originating"}, False),  # sent, answer lost: the PBX may be dialling already
        ({"state": "dialing"}, False),  # it got through
        ({"state": "ended", "outcome": "failed"}, True),  # never placed: try again
        (None, True),
    ],
)
async def test_an_emergency_call_whose_outcome_is_unknown_is_not_dialled_twice(
    previous: dict[str, Any] | None, dials: bool
) -> None:
    from dispatch.errors import DeliveryError
    from dispatch.notify.channels import VoiceSender
    from hotline.storage.models import Notification

    n = Notification(
        id="msg_1", channel="voice", target="120", attempts=1, payload={"deadline": "2999-01-01T00:00:00Z"}
    )
    placer = _Placer(previous)
    sender = VoiceSender(placer)  # type: ignore[arg-type]
    if previous is not None and previous["state"] == "originating":
        with pytest.raises(DeliveryError, match="not known yet"):
            await sender(n)
    else:
        await sender(n)
    assert bool(placer.dialled) is dials
