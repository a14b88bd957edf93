"""The HTTP API: auth, roles, validation, paging, privacy and the OpenAPI document."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices.credentials import verify_device_secret
from hotline.storage.models import AuditEntry, Device
from hotline.users import add_user
from tests.conftest import Running, auth

ELDER: dict[str, Any] = {
    "name": "王秀英",
    "gender": "F",
    "birth_date": "1938-04-12",
    "address": "浙江省余姚市阳明街道舜水社区阳明西路12号3幢1单元502室",
    "lat": 30.04,
    "lon": 121.15,
    "phones": ["0574-62341234", "13812345678"],
    "medical_notes": "高血压；青霉素过敏",
    "care_level": "moderate",
    "economic_category": "dibao",
    "living_situation": "alone",
    "contacts": [{"name": "王伟", "relation": "儿子", "phone": "13900001111", "channel": "sms"}],
}


async def post(http: aiohttp.ClientSession, url: str, token: str, body: Any) -> tuple[int, Any]:
    async with http.post(url, json=body, headers=auth(token)) as r:
        return r.status, await r.json()


async def get(http: aiohttp.ClientSession, url: str, token: str | None) -> tuple[int, Any]:
    async with http.get(url, headers=auth(token) if token else {}) as r:
        return r.status, await r.json()


async def test_calls_without_or_with_a_bad_token_are_refused(running: Running, http: aiohttp.ClientSession) -> None:
    assert (await get(http, f"{running.url}/api/v1/elders", None))[0] == 401
    status, body = await get(http, f"{running.url}/api/v1/elders", "hl_forged")
    assert status == 401 and body["error"]["code"] == "auth"


async def test_health_and_readiness_report_each_dependency(running: Running, http: aiohttp.ClientSession) -> None:
    assert await get(http, f"{running.url}/healthz", None) == (200, {"status": "ok"})
    async with http.get(f"{running.url}/readyz") as r:
        body = await r.json()
    assert body["checks"]["database"] == "ok" and body["checks"]["redis"] == "ok"
    assert body["checks"]["ami"] == "disabled"
    assert body["checks"]["mqtt"] in ("ok", "down")


async def test_elder_create_read_list_and_paging(
    running: Running, http: aiohttp.ClientSession, sm: async_sessionmaker[AsyncSession]
) -> None:
    op = await add_user(running.settings, "op", "operator")
    ids = []
    for n in range(3):
        status, created = await post(http, f"{running.url}/api/v1/elders", op, {**ELDER, "name": f"王秀英{n}"})
        assert status == 201, created
        ids.append(created["id"])
    assert created["contacts"][0]["relation"] == "儿子" and created["age"] >= 88
    status, one = await get(http, f"{running.url}/api/v1/elders/{ids[0]}", op)
    assert status == 200 and one["name"] == "王秀英0" and one["devices"] == []
    status, page = await get(http, f"{running.url}/api/v1/elders?limit=2&offset=1", op)
    assert status == 200 and page["total"] == 3 and [e["id"] for e in page["items"]] == ids[1:]
    assert (await get(http, f"{running.url}/api/v1/elders/eld_nope", op))[0] == 404
    async with sm() as s:
        reads = (await s.scalars(select(AuditEntry).where(AuditEntry.action == "elder.read"))).all()
    assert [r.target_id for r in reads] == [ids[0]]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"gender": "X"}, "gender"),
        ({"birth_date": "1938-13-01"}, "birth_date"),
        ({"birth_date": "2999-01-01"}, "birth_date"),
        ({"lat": "north"}, "lat"),
        ({"lat": 91}, "lat"),
        ({"care_level": "fine"}, "care_level"),
        ({"phones": ["call me"]}, "phones"),
        (
            {"contacts": [{"name": "a", "relation": "b", "phone": "13900001111", "channel": "webhook"}]},
            "contacts[0].webhook_url",
        ),
    ],
)
async def test_invalid_elder_bodies_get_400_naming_the_field(
    running: Running, http: aiohttp.ClientSession, change: dict[str, Any], field: str
) -> None:
    op = await add_user(running.settings, "op", "operator")
    status, body = await post(http, f"{running.url}/api/v1/elders", op, {**ELDER, **change})
    assert status == 400
    assert body["error"]["field"] == field


async def test_malformed_json_and_bad_paging_are_400(running: Running, http: aiohttp.ClientSession) -> None:
    op = await add_user(running.settings, "op", "operator")
    async with http.post(f"{running.url}/api/v1/elders", data=b"{oops", headers=auth(op)) as r:
        assert r.status == 400 and "JSON" in (await r.json())["error"]["message"]
    assert (await get(http, f"{running.url}/api/v1/elders?limit=0", op))[0] == 400
    assert (await get(http, f"{running.url}/api/v1/elders?offset=-1", op))[0] == 400


async def test_device_registration_returns_credentials_once_and_stores_only_a_hash(
    running: Running, http: aiohttp.ClientSession, sm: async_sessionmaker[AsyncSession]
) -> None:
    op = await add_user(running.settings, "op", "operator")
    admin = await add_user(running.settings, "admin", "admin")
    _, elder = await post(http, f"{running.url}/api/v1/elders", op, ELDER)
    body = {"device_id": "YJT00000001", "kind": "one_touch_phone", "elder_id": elder["id"], "sim_number": "13700001234"}
    status, created = await post(http, f"{running.url}/api/v1/devices", op, body)
    assert status == 403  # operators do not register hardware
    status, created = await post(http, f"{running.url}/api/v1/devices", admin, body)
    assert status == 201
    password = created["credentials"]["password"]
    async with sm() as s:
        device = await s.get(Device, "YJT00000001")
    assert device is not None and password not in device.credential_hash
    assert verify_device_secret(password, device.credential_hash)
    status, listed = await get(http, f"{running.url}/api/v1/devices", op)
    assert listed["total"] == 1 and listed["items"][0]["elder_id"] == elder["id"]
    assert "credentials" not in listed["items"][0]
    assert (await post(http, f"{running.url}/api/v1/devices", admin, body))[0] == 409
    status, err = await post(
        http, f"{running.url}/api/v1/devices", admin, {**body, "device_id": "X2", "elder_id": "eld_no"}
    )
    assert status == 400 and err["error"]["field"] == "elder_id"
    status, err = await post(http, f"{running.url}/api/v1/devices", admin, {**body, "device_id": "bad id/#"})
    assert status == 400 and err["error"]["field"] == "device_id"


async def test_a_family_sees_only_its_own_elder(running: Running, http: aiohttp.ClientSession) -> None:
    op = await add_user(running.settings, "op", "operator")
    _, mine = await post(http, f"{running.url}/api/v1/elders", op, ELDER)
    _, other = await post(http, f"{running.url}/api/v1/elders", op, {**ELDER, "name": "李建国", "gender": "M"})
    fam = await add_user(running.settings, "fam", "family", elder_id=mine["id"])
    status, page = await get(http, f"{running.url}/api/v1/elders", fam)
    assert status == 200 and [e["id"] for e in page["items"]] == [mine["id"]]
    assert (await get(http, f"{running.url}/api/v1/elders/{mine['id']}", fam))[0] == 200
    assert (await get(http, f"{running.url}/api/v1/elders/{other['id']}", fam))[0] == 404
    assert (await post(http, f"{running.url}/api/v1/elders", fam, ELDER))[0] == 403
    assert (await get(http, f"{running.url}/api/v1/devices", fam))[0] == 403


async def test_vendor_and_provider_roles_cannot_read_elders(running: Running, http: aiohttp.ClientSession) -> None:
    vendor = await add_user(running.settings, "vendor", "vendor")
    assert (await get(http, f"{running.url}/api/v1/elders", vendor))[0] == 403
    assert (await get(http, f"{running.url}/api/v1/incidents", vendor))[0] == 403
    assert (await get(http, f"{running.url}/api/v1/devices", vendor))[0] == 200


async def test_openapi_document_describes_every_route(running: Running, http: aiohttp.ClientSession) -> None:
    status, doc = await get(http, f"{running.url}/api/v1/openapi.json", None)
    assert status == 200 and doc["openapi"].startswith("3.1")
    served = {r.resource.canonical for r in running.app.router.routes() if r.resource is not None}
    documented = set(doc["paths"])
    missing = {p for p in served if p.startswith("/api/v1/") and p != "/api/v1/openapi.json"} - documented
    assert not missing, missing
