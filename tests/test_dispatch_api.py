"""Dispatch through the HTTP API of a running backend: providers, incidents, the
provider-app simulator, family confirmation, policies, and a signed emergency webhook."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy import select

from hotline.api.keys import SERVICES
from hotline.storage.models import AuditEntry, Notification
from hotline.users import add_user
from simulators.family import FamilyReceiver
from simulators.provider_app import Behaviour, ProviderApp
from tests.conftest import Running, auth
from tests.helpers import eventually
from tests.test_api import ELDER, get, post

STATION = {
    "name": "阳明街道居家养老服务站",
    "kind": "service_station",
    "services": ["emergency_rescue", "daily_care", "meals"],
    "lat": 30.045,
    "lon": 121.15,
    "capacity": 3,
    "rating": 4.6,
    "working_hours": {},
}


async def patch(http: aiohttp.ClientSession, url: str, token: str, body: Any) -> tuple[int, Any]:
    async with http.patch(url, json=body, headers=auth(token)) as r:
        return r.status, await r.json()


async def setup(running: Running, http: aiohttp.ClientSession) -> dict[str, Any]:
    s = running.settings
    op = await add_user(s, "op", "operator")
    sup = await add_user(s, "sup", "supervisor")
    status, elder = await post(http, f"{running.url}/api/v1/elders", op, ELDER)
    assert status == 201
    status, provider = await post(http, f"{running.url}/api/v1/providers", sup, STATION)
    assert status == 201, provider
    pro = await add_user(s, "station", "provider", provider_id=provider["id"])
    fam = await add_user(s, "son", "family", elder_id=elder["id"])
    return {"op": op, "sup": sup, "pro": pro, "fam": fam, "elder": elder, "provider": provider}


async def test_providers_are_managed_and_checked(running: Running, http: aiohttp.ClientSession) -> None:
    w = await setup(running, http)
    base = f"{running.url}/api/v1/providers"
    status, page = await get(http, f"{base}?service=emergency_rescue", w["op"])
    assert status == 200 and [p["id"] for p in page["items"]] == [w["provider"]["id"]]
    assert (await get(http, f"{base}?service=bathing", w["op"]))[1]["total"] == 0
    # Bad input gets a clear error that names the field.
    for bad, field in (
        ({**STATION, "kind": "hospital"}, "kind"),
        ({**STATION, "services": ["flying"]}, "services"),
        ({**STATION, "working_hours": {"someday": "8-18"}}, "working_hours"),
        ({**STATION, "rating": 7}, "rating"),
    ):
        status, body = await post(http, base, w["sup"], bad)
        assert status == 400 and body["error"]["field"] == field, body
    # Roles: an operator may read but not register; a family may not even read.
    assert (await post(http, base, w["op"], STATION))[0] == 403
    assert (await get(http, base, w["fam"]))[0] == 403
    # A provider may change its own availability and position, and nothing else, and no one else's.
    own = f"{base}/{w['provider']['id']}"
    status, body = await patch(http, own, w["pro"], {"availability": "busy", "lat": 30.046})
    assert status == 200 and body["availability"] == "busy" and body["lat"] == 30.046
    status, body = await patch(http, own, w["pro"], {"rating": 5})
    assert status == 400 and body["error"]["field"] == "rating"
    status, other = await post(http, base, w["sup"], {**STATION, "name": "另一站"})
    assert (await patch(http, f"{base}/{other['id']}", w["pro"], {"availability": "offline"}))[0] == 403
    assert (await patch(http, own, w["sup"], {"capacity": 0}))[0] == 400


async def test_an_operator_incident_offered_accepted_and_finished_by_the_provider_app(
    running: Running, http: aiohttp.ClientSession
) -> None:
    w = await setup(running, http)
    url = running.url
    status, incident = await post(
        http, f"{url}/api/v1/incidents", w["op"], {"elder_id": w["elder"]["id"], "type": "fall"}
    )
    assert status == 201 and incident["policy"] == {"name": "emergency", "version": 1}
    # A 12349 call about the same elder a moment later joins it.
    status, again = await post(
        http, f"{url}/api/v1/incidents", w["op"], {"elder_id": w["elder"]["id"], "type": "emergency", "note": "来电"}
    )
    assert status == 200 and again["merged"] and again["id"] == incident["id"]
    iid = incident["id"]
    status, _ = await post(http, f"{url}/api/v1/incidents/{iid}/acknowledge", w["op"], {})
    assert status == 200

    app = ProviderApp(url, w["pro"], Behaviour(accept=1, decline=0, delay_s=(0.05, 0.1), travel_s=0.2, work_s=0.2))
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(until=stop))

    async def resolved() -> dict[str, Any] | None:
        _, body = await get(http, f"{url}/api/v1/incidents/{iid}", w["op"])
        return body if body["status"] == "resolved" else None

    detail = await eventually(resolved, timeout=20)
    stop.set()
    await task
    assert app.errors == [] and len(app.finished) == 1
    kinds = [e["kind"] for e in detail["timeline"]]
    expected = "opened signal.merged acknowledged offer.sent offer.accepted provider.en_route provider.on_scene"
    for k in [*expected.split(), "provider.done", "resolved"]:
        assert k in kinds, k
    assert detail["offers"][0]["status"] == "done" and detail["offers"][0]["location"]["lat"] == 30.0
    assert detail["provider_id"] == w["provider"]["id"]
    assert {t["state"] for t in detail["escalation"]} <= {"done", "cancelled"}
    _, provider = await get(http, f"{url}/api/v1/providers/{w['provider']['id']}", w["op"])
    assert provider["current_load"] == 0
    _, decisions = await get(http, f"{url}/api/v1/incidents/{iid}/decisions", w["op"])
    assert decisions["items"][0]["chosen_provider_id"] == w["provider"]["id"]
    assert decisions["items"][0]["candidates"][0]["reasons"]
    # The audit log has every transition with its actor.
    async with running.app[SERVICES].sm() as s:
        actions = (await s.scalars(select(AuditEntry.action).where(AuditEntry.target_id == iid))).all()
    for a in ("incident.open", "incident.merge", "incident.acknowledge", "offer.accept", "offer.done"):
        assert a in actions, a
    # A closed incident cannot move again, and the error says why.
    status, body = await post(http, f"{url}/api/v1/incidents/{iid}/cancel", w["op"], {"note": "误报"})
    assert status == 409 and "resolved" in body["error"]["message"]


async def test_bad_transitions_and_roles_are_refused(running: Running, http: aiohttp.ClientSession) -> None:
    w = await setup(running, http)
    url = running.url
    async with http.ws_connect(f"{url}/api/v1/ws", headers=auth(w["pro"])) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        _, incident = await post(
            http, f"{url}/api/v1/incidents", w["op"], {"elder_id": w["elder"]["id"], "type": "sos"}
        )
        # The provider's app hears of its offer, with an address but no medical file, and of nothing else.
        pushed = await ws.receive_json(timeout=5)
        assert pushed["type"] == "offer.created" and pushed["to_provider"] == w["provider"]["id"]
        assert pushed["incident"]["address"] == ELDER["address"] and "medical_notes" not in str(pushed)
        with contextlib.suppress(TimeoutError):
            extra = await ws.receive_json(timeout=0.5)
            raise AssertionError(f"the provider saw {extra['type']}")
    iid = incident["id"]
    assert (await post(http, f"{url}/api/v1/incidents", w["op"], {"elder_id": "eld_nope", "type": "sos"}))[0] == 409
    assert (await post(http, f"{url}/api/v1/incidents", w["op"], {"elder_id": w["elder"]["id"], "type": "x"}))[0] == 400
    status, body = await post(http, f"{url}/api/v1/incidents/{iid}/cancel", w["op"], {})
    assert status == 400 and body["error"]["field"] == "note"
    # Providers and families cannot act as operators; a provider cannot take another's offer.
    assert (await post(http, f"{url}/api/v1/incidents/{iid}/acknowledge", w["pro"], {}))[0] == 403
    assert (await post(http, f"{url}/api/v1/incidents/{iid}/acknowledge", w["fam"], {}))[0] == 403
    _, offers = await get(http, f"{url}/api/v1/provider/offers", w["pro"])
    offer_id = offers["items"][0]["id"]
    _, rival = await post(http, f"{url}/api/v1/providers", w["sup"], {**STATION, "name": "另一站"})
    stranger = await add_user(running.settings, "stranger", "provider", provider_id=rival["id"])
    assert (await post(http, f"{url}/api/v1/offers/{offer_id}/accept", stranger, {}))[0] == 404
    assert (await post(http, f"{url}/api/v1/offers/{offer_id}/done", w["pro"], {}))[0] == 409
    assert (await post(http, f"{url}/api/v1/offers/{offer_id}/accept", w["pro"], {}))[0] == 200
    assert (await post(http, f"{url}/api/v1/offers/{offer_id}/accept", w["pro"], {}))[0] == 409
    # Resolving frees the provider's slot.
    assert (await post(http, f"{url}/api/v1/incidents/{iid}/resolve", w["op"], {"note": "已处置"}))[0] == 200
    _, provider = await get(http, f"{url}/api/v1/providers/{w['provider']['id']}", w["op"])
    assert provider["current_load"] == 0


async def test_a_relative_confirms_through_the_signed_link_or_the_api(
    running: Running, http: aiohttp.ClientSession
) -> None:
    w = await setup(running, http)
    url = running.url
    _, incident = await post(http, f"{url}/api/v1/incidents", w["op"], {"elder_id": w["elder"]["id"], "type": "sos"})
    async with running.app[SERVICES].sm() as s:
        alert = (
            await s.scalars(
                select(Notification).where(Notification.incident_id == incident["id"], Notification.channel == "sms")
            )
        ).one()
    link = urlsplit(alert.payload["data"]["confirm_url"])
    assert link.path == "/api/v1/family/confirm"
    confirm = f"{url}{link.path}?{link.query}"
    # Opening the link (or a messenger's preview of it) changes nothing; the button does.
    async with http.get(confirm) as r:
        assert r.status == 200 and "我正在赶往" in await r.text()
    async with http.post(confirm.replace("&s=", "&s=x")) as r:
        assert r.status == 403
    async with http.post(confirm) as r:
        body = await r.json()
        assert r.status == 200 and body["family_confirmed_at"]
    _, detail = await get(http, f"{url}/api/v1/incidents/{incident['id']}", w["fam"])
    assert detail["family_confirmed_by"].startswith("contact:")
    assert "escalation" not in detail  # a family sees what happens, not the machinery
    # The family account may confirm for its own elder only.
    assert (await post(http, f"{url}/api/v1/incidents/{incident['id']}/family/confirm", w["fam"], {}))[0] == 200
    _, other = await post(http, f"{url}/api/v1/elders", w["op"], {**ELDER, "name": "李四"})
    _, theirs = await post(http, f"{url}/api/v1/incidents", w["op"], {"elder_id": other["id"], "type": "sos"})
    assert (await post(http, f"{url}/api/v1/incidents/{theirs['id']}/family/confirm", w["fam"], {}))[0] == 404
    assert (await get(http, f"{url}/api/v1/incidents/{theirs['id']}", w["fam"]))[0] == 404


async def test_the_emergency_webhook_survives_a_failing_receiver_and_verifies(
    start_backend: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession
) -> None:
    receiver = FamilyReceiver([], fail_first=2)
    hook = await receiver.start()
    running = await start_backend(emergency_webhook_url=hook)
    receiver.secrets = running.settings.webhook_secrets
    w = await setup(running, http)
    # A new version of the emergency policy with a short fuse; the provider is away.
    policy = {
        "name": "emergency",
        "types": ["sos"],
        "priority": 100,
        "tracks": [
            {"name": "emergency", "until": "accepted", "steps": [{"do": "wait", "seconds": 1}, {"do": "emergency"}]}
        ],
    }
    status, created = await post(http, f"{running.url}/api/v1/policies", w["sup"], policy)
    assert status == 201 and created["version"] == 2
    bad = {**policy, "tracks": [{"name": "t", "steps": [{"do": "wait", "seconds": 1}, {"do": "repeat", "from": 5}]}]}
    status, body = await post(http, f"{running.url}/api/v1/policies", w["sup"], bad)
    assert status == 400 and "tracks[0].steps[1].from" in body["error"]["message"]
    _, incident = await post(
        http, f"{running.url}/api/v1/incidents", w["op"], {"elder_id": w["elder"]["id"], "type": "sos"}
    )
    await eventually(lambda: _delivered(receiver), timeout=20)
    assert receiver.attempts == 3 and receiver.bad_signatures == 0
    body = receiver.alerts[0].body
    assert body["type"] == "incident.escalation" and body["data"]["incident_id"] == incident["id"]
    _, detail = await get(http, f"{running.url}/api/v1/incidents/{incident['id']}", w["op"])
    sent = [n for n in detail["notifications"] if n["channel"] == "webhook"]
    assert [(n["status"], n["attempts"]) for n in sent] == [("delivered", 3)]
    async with http.get(f"{running.url}/metrics") as r:
        fired = next(
            line for line in (await r.text()).splitlines() if line.startswith("hotline_escalation_fired_total")
        )
    assert float(fired.split()[1]) >= 1  # the wait, then the emergency step, fired by the engine
    await receiver.stop()


async def _delivered(receiver: FamilyReceiver) -> bool:
    return len(receiver.alerts) == 1


async def test_an_operators_chosen_provider_keeps_the_offer_until_it_runs_out(
    running: Running, http: aiohttp.ClientSession
) -> None:
    """The operator's dispatch used to make the provider track due at once, which withdrew the
    chosen provider's offer and offered the policy's own first choice again."""
    w = await setup(running, http)
    url = running.url
    second = {**STATION, "name": "梨洲街道居家养老服务站", "lat": 30.05, "lon": 121.16}
    status, chosen = await post(http, f"{url}/api/v1/providers", w["sup"], second)
    assert status == 201
    status, incident = await post(
        http, f"{url}/api/v1/incidents", w["op"], {"elder_id": w["elder"]["id"], "type": "sos"}
    )
    assert status == 201
    iid = incident["id"]

    async def first_offer() -> list[dict[str, Any]]:
        return list((await get(http, f"{url}/api/v1/incidents/{iid}", w["op"]))[1]["offers"])

    await eventually(first_offer)
    body = {"provider_id": chosen["id"], "timeout_s": 90}
    status, out = await post(http, f"{url}/api/v1/incidents/{iid}/dispatch", w["op"], body)
    assert status == 200, out
    await asyncio.sleep(2.5)  # two sweeps of the timer loop
    detail = (await get(http, f"{url}/api/v1/incidents/{iid}", w["op"]))[1]
    live = [o for o in detail["offers"] if o["status"] == "offered"]
    assert [o["provider_id"] for o in live] == [chosen["id"]], detail["offers"]
    (track,) = [s for s in detail["escalation"] if s["track"] == "provider" and s["state"] == "pending"]
    due = datetime.fromisoformat(track["due_at"])
    assert due - datetime.fromisoformat(detail["updated_at"]) >= timedelta(seconds=85)
