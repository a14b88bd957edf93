"""One device's bad messages must never stop another device's alarm (issue 10, items 1, 2, 7).

Against the real broker and database: nested-JSON poison (live and already queued in our
persistent session), a handler that fails unexpectedly (parked, then replayed through the
API and the command line), bad-message throttling, and a 500-event flush that follows
``retry_after_s`` and loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from hotline.api.keys import SERVICES
from hotline.config import load_settings
from hotline.storage.models import DeadLetter, DeviceEventRecord
from hotline.users import add_user
from tests.conftest import MQTT_PORT, Running, auth
from tests.helpers import BackendProcess, DeviceClient, eventually

HOME = (30.0372, 121.1546)


def nested(event_id: str, depth: int = 3000) -> bytes:
    """A 6 KB event whose ``extra`` nests ``depth`` levels: json.loads raises RecursionError on it."""
    head = json.dumps({"event_id": event_id, "type": "test", "ts": int(time.time() * 1000)})[:-1]
    return f'{head},"extra":{{"x":{"[" * depth}{"]" * depth}}}}}'.encode()


def event(event_id: str, type_: str = "sos") -> dict[str, Any]:
    return {"event_id": event_id, "type": type_, "ts": int(time.time() * 1000)}


@dataclass
class Site:
    url: str
    admin: str
    supervisor: str
    elder_id: str
    http: aiohttp.ClientSession

    async def device(self, device_id: str, prefix: str) -> DeviceClient:
        async with self.http.post(
            f"{self.url}/api/v1/devices",
            headers=auth(self.admin),
            json={"device_id": device_id, "kind": "watch", "elder_id": self.elder_id},
        ) as r:
            assert r.status == 201, await r.text()
        return await DeviceClient(MQTT_PORT, prefix, device_id, asyncio.get_running_loop()).ready()

    async def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        async with self.http.request(
            method, f"{self.url}{path}", json=body, headers=auth(token or self.supervisor)
        ) as r:
            return r.status, await r.json()


async def make_site(url: str, settings: Any, http: aiohttp.ClientSession) -> Site:
    admin = await add_user(settings, "admin", "admin")
    supervisor = await add_user(settings, "sup", "supervisor")
    elder = {
        "name": "钱秀兰",
        "gender": "F",
        "birth_date": "1941-03-03",
        "address": "余姚市梨洲街道",
        "lat": HOME[0],
        "lon": HOME[1],
        "care_level": "mild",
        "living_situation": "alone",
    }
    async with http.post(f"{url}/api/v1/elders", json=elder, headers=auth(admin)) as r:
        assert r.status == 201, await r.text()
        elder_id = (await r.json())["id"]
    return Site(url, admin, supervisor, elder_id, http)


@pytest.fixture
async def site(start_backend: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession) -> tuple[Running, Site]:
    backend = await start_backend()
    return backend, await make_site(backend.url, backend.settings, http)


async def _ack(device: DeviceClient, event_id: str, timeout: float) -> tuple[float, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        at, ack = await asyncio.wait_for(device.acks.get(), max(0.01, deadline - time.monotonic()))
        if ack["event_id"] == event_id:
            return at, ack


async def _acks(device: DeviceClient, event_ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """The latest ack of each of ``event_ids``, in whatever order they come."""
    deadline = time.monotonic() + timeout
    got: dict[str, dict[str, Any]] = {}
    while not set(event_ids) <= set(got):
        _, ack = await asyncio.wait_for(device.acks.get(), max(0.01, deadline - time.monotonic()))
        got[ack["event_id"]] = ack
    return got


async def test_nested_json_from_one_device_does_not_block_another_devices_sos(site: tuple[Running, Site]) -> None:
    backend, s = site
    prefix = backend.settings.mqtt_prefix
    poison = await s.device("WCH700001", prefix)
    victim = await s.device("WCH700002", prefix)
    for n in range(120):  # more than the whole in-flight window (Receive Maximum 100)
        poison.client.publish(f"{poison.base}/events", nested(f"deep-{n}"), qos=1)
    await asyncio.sleep(0.5)
    sent = time.monotonic()
    victim.publish(event("help-1"))
    arrived, ack = await _ack(victim, "help-1", 5)
    assert ack["status"] == "accepted"
    assert arrived - sent < 1.0
    # Every poison message was refused with its reason, and told so.
    acks = await _acks(poison, [f"deep-{n}" for n in range(120)], 10)
    assert {a["status"] for a in acks.values()} == {"rejected"}
    assert "nested deeper" in acks["deep-0"]["reason"]
    poison.close()
    victim.close()


async def test_poison_already_queued_in_our_session_does_not_block_an_sos(
    env: dict[str, str], backend: BackendProcess, http: aiohttp.ClientSession
) -> None:
    await backend.start()
    s = await make_site(backend.url, load_settings(env), http)
    prefix = env["HOTLINE_MQTT_PREFIX"]
    poison = await s.device("WCH700011", prefix)
    victim = await s.device("WCH700012", prefix)
    backend.stop()  # a clean stop: the broker keeps our persistent session and queues for it
    for n in range(120):
        poison.client.publish(f"{poison.base}/events", nested(f"q-{n}"), qos=1)
    victim.publish(event("queued-help"))
    await backend.start()
    ready = time.monotonic()
    arrived, ack = await _ack(victim, "queued-help", 10)
    assert ack["status"] == "accepted"
    assert arrived - ready < 1.0  # at the latest a second after /readyz first said ready
    acks = await _acks(poison, [f"q-{n}" for n in range(120)], 10)
    assert {a["status"] for a in acks.values()} == {"rejected"}
    # They were acknowledged, so a restart brings none of them back.
    backend.stop()
    await backend.start()
    await asyncio.sleep(2)
    assert poison.acks.empty()
    poison.close()
    victim.close()


async def test_an_unexpected_handler_error_parks_the_message_and_replay_stores_it(
    site: tuple[Running, Site], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, s = site
    gateway = backend.app[SERVICES].gateway
    assert gateway is not None
    prefix = backend.settings.mqtt_prefix
    broken = await s.device("WCH700021", prefix)
    other = await s.device("WCH700022", prefix)
    real_store = gateway.store
    calls: list[str] = []

    async def failing_store(device_id: str, ev: Any) -> Any:
        if device_id == "WCH700021":
            calls.append(ev.event_id)
            raise RuntimeError("boom: a bug in a handler")
        return await real_store(device_id, ev)

    monkeypatch.setattr(gateway, "store", failing_store)
    broken.publish(event("parked-sos"))
    other.publish(event("fine-sos"))
    assert (await _ack(other, "fine-sos", 5))[1]["status"] == "accepted"
    _, ack = await _ack(broken, "parked-sos", 10)
    assert ack["status"] == "rejected" and "kept for replay" in ack["reason"]
    assert calls == ["parked-sos"] * 3  # bounded retries, then parked

    status, page = await s.api("GET", "/api/v1/dead-letters?device_id=WCH700021&disposition=parked")
    assert status == 200 and page["total"] == 1
    letter = page["items"][0]
    assert (letter["event_id"], letter["attempts"], letter["replayable"]) == ("parked-sos", 3, True)
    status, detail = await s.api("GET", f"/api/v1/dead-letters/{letter['id']}")
    assert status == 200 and "RuntimeError: boom" in detail["error"] and "parked-sos" in detail["payload"]

    monkeypatch.setattr(gateway, "store", real_store)  # the bug is fixed
    status, out = await s.api("POST", f"/api/v1/dead-letters/{letter['id']}/replay")
    assert status == 200 and out["result"].startswith("accepted incident=")
    assert (await _ack(broken, "parked-sos", 5))[1]["status"] == "accepted"
    status, again = await s.api("POST", f"/api/v1/dead-letters/{letter['id']}/replay")
    assert status == 200 and again["result"].startswith("duplicate")
    async with backend.app[SERVICES].sm() as session:
        stored = await session.scalar(
            select(func.count()).select_from(DeviceEventRecord).where(DeviceEventRecord.event_id == "parked-sos")
        )
    assert stored == 1

    # The command line asks the running gateway through the database, and waits for its answer.
    out_cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "hotline", "deadletters", "replay", str(letter["id"]), "--wait", "10"],
        env={**os.environ, **env},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert out_cli.returncode == 0, out_cli.stderr.decode()
    assert "replayed: duplicate" in out_cli.stdout.decode()
    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "hotline", "deadletters", "list", "--device", "WCH700021", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        timeout=60,
        check=True,
    )
    rows = [json.loads(line) for line in listed.stdout.decode().splitlines()]
    assert [r["id"] for r in rows] == [letter["id"]] and rows[0]["replay_result"].startswith("duplicate")
    broken.close()
    other.close()


async def test_dead_letters_are_for_supervisors_and_filter_by_reason_and_time(site: tuple[Running, Site]) -> None:
    backend, s = site
    device = await s.device("WCH700031", backend.settings.mqtt_prefix)
    device.publish(b"{not json")
    device.publish({**event("bad-type"), "type": "explode"})
    await eventually(lambda: _total(s, "/api/v1/dead-letters?device_id=WCH700031", 2))
    status, page = await s.api("GET", "/api/v1/dead-letters?device_id=WCH700031&reason=not%20JSON")
    assert status == 200 and page["total"] == 1 and page["items"][0]["disposition"] == "rejected"
    status, page = await s.api("GET", "/api/v1/dead-letters?device_id=WCH700031&since=2999-01-01T00:00:00Z")
    assert status == 200 and page["total"] == 0
    status, err = await s.api("GET", "/api/v1/dead-letters?since=yesterday")
    assert status == 400 and err["error"]["field"] == "since"
    operator = await add_user(backend.settings, "op", "operator")
    status, _ = await s.api("GET", "/api/v1/dead-letters", token=operator)
    assert status == 403
    status, _ = await s.api("POST", "/api/v1/dead-letters/1/replay", token=operator)
    assert status == 403
    status, _ = await s.api("GET", "/api/v1/dead-letters/999999")
    assert status == 404
    device.close()


async def _total(s: Site, path: str, want: int) -> bool:
    status, page = await s.api("GET", path)
    return status == 200 and page["total"] == want


async def test_a_device_sending_many_bad_messages_is_throttled_on_those_only(site: tuple[Running, Site]) -> None:
    backend, s = site
    device = await s.device("WCH700041", backend.settings.mqtt_prefix)
    for n in range(60):
        device.client.publish(f"{device.base}/events", json.dumps({**event(f"bad-{n}"), "type": "explode"}), qos=1)
    acks = await _acks(device, [f"bad-{n}" for n in range(60)], 10)
    assert {a["status"] for a in acks.values()} == {"rejected"}  # each is still answered
    device.publish(event("good-after-bad"))
    assert (await _ack(device, "good-after-bad", 5))[1]["status"] == "accepted"
    async with backend.app[SERVICES].sm() as session:
        letters = await session.scalar(
            select(func.count()).select_from(DeadLetter).where(DeadLetter.device_id == "WCH700041")
        )
    # The first 20 (the allowance) are kept one by one; past it, one sample a minute.
    assert letters is not None and 20 <= letters <= 22
    gateway = backend.app[SERVICES].gateway
    assert gateway is not None and gateway.metrics["bad_throttled"] >= 38
    device.close()


async def test_a_500_event_flush_that_follows_retry_after_loses_nothing(
    start_backend: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession
) -> None:
    backend = await start_backend(device_event_rate=50.0, device_event_burst=100)
    s = await make_site(backend.url, backend.settings, http)
    device = await s.device("WCH700051", backend.settings.mqtt_prefix)
    loop = asyncio.get_running_loop()
    safety = {f"buf-{n}" for n in range(0, 500, 50)}  # a `removed` every 50 events
    bodies = {
        f"buf-{n}": json.dumps(event(f"buf-{n}", "removed" if f"buf-{n}" in safety else "test")) for n in range(500)
    }
    flushed = time.monotonic()
    for body in bodies.values():  # a day without coverage, flushed at once
        device.client.publish(f"{device.base}/events", body, qos=1)
    stored: set[str] = set()
    retried: dict[str, int] = {}
    first: set[str] = set()
    first_pass_s = 0.0
    deadline = time.monotonic() + 90
    while len(stored) < 500:
        _, ack = await asyncio.wait_for(device.acks.get(), max(0.01, deadline - time.monotonic()))
        event_id = ack["event_id"]
        first.add(event_id)
        if len(first) == 500 and not first_pass_s:
            first_pass_s = time.monotonic() - flushed
        if ack["status"] in ("accepted", "duplicate"):
            stored.add(event_id)
        else:
            assert ack["status"] == "retry", ack  # never refused for its rate
            assert event_id not in safety  # alarms and safety events are always stored at once
            retried[event_id] = retried.get(event_id, 0) + 1
            loop.call_later(
                ack["retry_after_s"],
                lambda e=event_id: device.client.publish(f"{device.base}/events", bodies[e], qos=1),
            )
    # The burst is 100 and the rate 50 a second; safety events are never paced: all the others had
    # to come back. The bound follows the first pass's measured time, so a slow machine does not
    # make it a timing test.
    assert len(retried) >= 500 - 100 - len(safety) - 50 * first_pass_s - 1, (len(retried), first_pass_s)
    async with backend.app[SERVICES].sm() as session:
        rows = await session.scalar(
            select(func.count()).select_from(DeviceEventRecord).where(DeviceEventRecord.device_id == "WCH700051")
        )
    assert rows == 500
    device.close()
