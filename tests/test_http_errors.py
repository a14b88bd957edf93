"""The HTTP API keeps its JSON error format for every bad input and every bug (issue 10, items 5 and 9)."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest

from hotline.core import wire
from hotline.users import add_user
from tests.conftest import Running, auth

ELDER = {
    "name": "周兰英",
    "gender": "F",
    "birth_date": "1942-04-04",
    "address": "余姚市低塘街道",
    "lat": 30.03,
    "lon": 121.15,
    "care_level": "mild",
    "living_situation": "alone",
}


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, token: str, **kw: Any
) -> tuple[int, str, dict[str, Any]]:
    headers = {**auth(token), **kw.pop("headers", {})}
    async with http.request(method, url, headers=headers, **kw) as r:
        return r.status, r.content_type, await r.json(content_type=None)


@pytest.fixture
async def admin(running: Running) -> str:
    return await add_user(running.settings, "admin", "admin")


async def test_a_deeply_nested_body_is_400_json(running: Running, http: aiohttp.ClientSession, admin: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000  # 200 KB: json.loads would raise RecursionError
    status, ctype, body = await _call(
        http, "POST", f"{running.url}/api/v1/elders", admin, data=deep, headers={"Content-Type": "application/json"}
    )
    assert (status, ctype) == (400, "application/json")
    assert "nested deeper" in body["error"]["message"]


async def test_an_oversized_body_is_413_json(running: Running, http: aiohttp.ClientSession, admin: str) -> None:
    status, ctype, body = await _call(
        http, "POST", f"{running.url}/api/v1/elders", admin, data=b'{"name":"' + b"x" * (2 * 1024**2) + b'"}'
    )
    assert (status, ctype) == (413, "application/json")
    assert body["error"]["code"] == "http"


async def test_a_huge_offset_is_400_naming_the_field(running: Running, http: aiohttp.ClientSession, admin: str) -> None:
    for path in ("incidents", "elders", "devices", "providers", "calls"):
        status, _, body = await _call(
            http, "GET", f"{running.url}/api/v1/{path}?offset=5280472780757121630208&limit=157", admin
        )
        assert status == 400, (path, body)
        assert body["error"]["field"] == "offset"


async def test_a_command_for_an_unknown_incident_is_400(
    running: Running, http: aiohttp.ClientSession, admin: str
) -> None:
    status, _, elder = await _call(http, "POST", f"{running.url}/api/v1/elders", admin, json=ELDER)
    assert status == 201
    status, _, _ = await _call(
        http,
        "POST",
        f"{running.url}/api/v1/devices",
        admin,
        json={"device_id": "YJT500001", "kind": "one_touch_phone", "elder_id": elder["id"]},
    )
    assert status == 201
    status, _, body = await _call(
        http,
        "POST",
        f"{running.url}/api/v1/devices/YJT500001/commands",
        admin,
        json={"type": "locate", "incident_id": "inc_does_not_exist"},
    )
    assert status == 400 and body["error"]["field"] == "incident_id"


async def test_services_that_are_not_codes_are_400(running: Running, http: aiohttp.ClientSession, admin: str) -> None:
    provider = {
        "name": "凤山服务站",
        "kind": "service_station",
        "services": [{}],
        "lat": 30.03,
        "lon": 121.15,
        "address": "余姚市凤山街道",
    }
    status, _, body = await _call(http, "POST", f"{running.url}/api/v1/providers", admin, json=provider)
    assert status == 400 and body["error"]["field"] == "services"
    status, _, created = await _call(
        http, "POST", f"{running.url}/api/v1/providers", admin, json={**provider, "services": ["meals"]}
    )
    assert status == 201, created
    status, _, body = await _call(
        http, "PATCH", f"{running.url}/api/v1/providers/{created['id']}", admin, json={"services": [{}]}
    )
    assert status == 400 and body["error"]["field"] == "services"


async def test_an_unexpected_error_is_json_500_with_a_logged_reference(
    running: Running,
    http: aiohttp.ClientSession,
    admin: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(_elder: Any) -> dict[str, Any]:
        raise RuntimeError("a bug in a view")

    status, _, _ = await _call(http, "POST", f"{running.url}/api/v1/elders", admin, json=ELDER)
    assert status == 201
    monkeypatch.setattr(wire.Elder, "model_validate", broken)  # a bug in a serialiser
    with caplog.at_level(logging.ERROR, logger="hotline.app"):
        status, ctype, body = await _call(http, "GET", f"{running.url}/api/v1/elders", admin)
    assert (status, ctype) == (500, "application/json")
    assert body["error"]["code"] == "internal" and "RuntimeError" not in body["error"]["message"]
    error_id = body["error"]["error_id"]
    assert error_id in body["error"]["message"]
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records)


async def test_a_wrong_method_is_405_with_allow(running: Running, http: aiohttp.ClientSession, admin: str) -> None:
    async with http.delete(f"{running.url}/api/v1/elders", headers=auth(admin)) as r:
        assert r.status == 405 and r.content_type == "application/json"
        assert "GET" in r.headers["Allow"] and "POST" in r.headers["Allow"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("devices", {"device_id": "YJT500002", "kind": "one_touch_phone", "elder_id": "x", "bogus": 1}, "bogus"),
        ("elders", {**ELDER, "bogus": 1}, "bogus"),
        (
            "elders",
            {**ELDER, "contacts": [{"name": "周强", "relation": "儿子", "phone": "13900001111", "fax": "1"}]},
            "contacts[].fax",
        ),
        ("providers", {"name": "站", "kind": "service_station", "services": ["meals"], "extra": 1}, "extra"),
        ("incidents", {"type": "sos", "elder_id": "x", "colour": "red"}, "colour"),
    ],
)
async def test_unknown_fields_are_refused_and_named_everywhere(
    running: Running, http: aiohttp.ClientSession, admin: str, path: str, body: dict[str, Any], field: str
) -> None:
    status, _, out = await _call(http, "POST", f"{running.url}/api/v1/{path}", admin, json=body)
    assert status == 400, out
    assert out["error"]["field"] == field
    assert "unknown field" in out["error"]["message"]


async def test_a_database_that_does_not_answer_is_503_with_retry_after(
    running: Running, http: aiohttp.ClientSession, admin: str
) -> None:
    """A PostgreSQL that is not there (nothing listens on the port): a clear 503, not a 500 or a hang."""
    from hotline.api.keys import SERVICES
    from hotline.localsvc import free_port
    from hotline.storage.db import make_engine, make_sessionmaker

    svc = running.app[SERVICES]
    gone = make_engine(f"postgresql+asyncpg://hotline:hotline@127.0.0.1:{free_port()}/hotline")
    real, svc.sm = svc.sm, make_sessionmaker(gone)
    try:
        async with http.get(f"{running.url}/api/v1/elders", headers=auth(admin)) as r:
            body = await r.json()
            assert r.status == 503 and r.headers["Retry-After"] == "5"
        assert body["error"]["code"] == "unavailable" and "database" in body["error"]["message"]
    finally:
        svc.sm = real
        await gone.dispose()
    async with http.get(f"{running.url}/api/v1/elders", headers=auth(admin)) as r:
        assert r.status == 200  # and back as soon as it answers
