"""The service loop over HTTP (issue 13): the catalogue, eligibility on the elder, rule
versions by month, entitlements by role, a work order from request to settlement with a
provider account, and the reports as JSON, CSV and XLSX."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from openpyxl import load_workbook

from dispatch.ranking import LOCAL_TZ
from hotline.api.keys import SERVICES
from hotline.care.builtin import HONGGU
from hotline.storage.models import CallRecord
from hotline.users import add_user
from tests.conftest import Running, auth
from tests.test_e2e import ELDER


async def _json(r: aiohttp.ClientResponse, status: int) -> Any:
    assert r.status == status, await r.text()
    return await r.json()


def _month(delta_months: int = 0) -> str:
    now = datetime.now(LOCAL_TZ)
    y, m = divmod(now.month - 1 + delta_months, 12)
    return f"{now.year + y}-{m + 1:02d}"


async def test_catalogue_eligibility_rule_versions_and_entitlements_by_role(running: Running) -> None:
    url, s = running.url, running.settings
    sup = await add_user(s, "sup", "supervisor")
    op = await add_user(s, "op", "operator")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/api/v1/services?limit=100", headers=auth(op)) as r:
            services = {x["code"]: x for x in (await _json(r, 200))["items"]}
        assert len(services) == 14 and services["visit"]["name_zh"] == "巡访上门"
        assert services["home_adaptation"]["needs_assessment"] and services["bathing"]["unit"] == "hour"
        async with http.patch(f"{url}/api/v1/services/bathing", json={"price_yuan": 70}, headers=auth(op)) as r:
            assert r.status == 403  # operators do not set prices
        async with http.patch(f"{url}/api/v1/services/bathing", json={"price_yuan": 70}, headers=auth(sup)) as r:
            assert (await _json(r, 200))["price_yuan"] == 70
        # Born so that the elder is 82 whatever the month: honggu's subsidy needs 80 or a disability.
        birth = (datetime.now(UTC) - timedelta(days=82 * 366)).date().isoformat()
        body = {
            **ELDER,
            "birth_date": birth,
            "care_level": "self_care",
            "economic_category": "dibao",
            "region": "honggu",
        }
        async with http.post(f"{url}/api/v1/elders", json=body, headers=auth(op)) as r:
            elder = await _json(r, 201)
        assert elder["region"] == "honggu"
        assert elder["eligibility"]["categories"] == ["dibao"]  # derived from the economic category
        assert elder["eligibility"]["disability"] == "none"
        async with http.get(f"{url}/api/v1/elders/{elder['id']}/entitlements", headers=auth(op)) as r:
            ent = await _json(r, 200)
        assert (ent["subsidy_yuan"], ent["rules_version"], ent["month"]) == (100, 1, _month())
        assert {g["payer"]: g["amount"] for g in ent["grants"]} == {"province_city": 70, "district": 30}
        # A new version from next month: this month keeps version 1.
        v2 = {**HONGGU, "effective_from": _month(1), "description": "150 元"}
        v2["rules"] = [{**HONGGU["rules"][0], "amount": 150}]
        async with http.post(f"{url}/api/v1/entitlement-rules", json=v2, headers=auth(op)) as r:
            assert r.status == 403
        async with http.post(f"{url}/api/v1/entitlement-rules", json=v2, headers=auth(sup)) as r:
            assert (await _json(r, 201))["version"] == 2
        for month, yuan, version in ((_month(), 100, 1), (_month(1), 150, 2)):
            async with http.get(
                f"{url}/api/v1/elders/{elder['id']}/entitlements", params={"month": month}, headers=auth(op)
            ) as r:
                got = await _json(r, 200)
            assert (got["subsidy_yuan"], got["rules_version"]) == (yuan, version)
        bad = {**v2, "rules": [{**v2["rules"][0], "when": {"age_at_least": 80, "flag": "resident"}}]}
        async with http.post(f"{url}/api/v1/entitlement-rules", json=bad, headers=auth(sup)) as r:
            err = (await _json(r, 400))["error"]
        assert "exactly one test" in err["message"] and err["field"].startswith("rules[0].when")
        # PATCH the eligibility: a yuyao elder with a severe disability in a dibao family.
        patch = {
            "region": "yuyao",
            "eligibility": {"categories": ["dibao"], "disability": "severe", "disability_nursing_subsidy": False},
        }
        async with http.patch(f"{url}/api/v1/elders/{elder['id']}", json=patch, headers=auth(op)) as r:
            assert (await _json(r, 200))["eligibility"]["disability"] == "severe"
        async with http.patch(f"{url}/api/v1/elders/{elder['id']}", json={"bogus": 1}, headers=auth(op)) as r:
            assert (await _json(r, 400))["error"]["field"] == "bogus"
        async with http.get(f"{url}/api/v1/elders/{elder['id']}/entitlements", headers=auth(op)) as r:
            ent = await _json(r, 200)
        assert ent["home_care_hours"] == 45 and ent["free_one_touch_phone"]
        # A family sees its own elder's entitlements and nobody else's.
        async with http.post(f"{url}/api/v1/elders", json={**ELDER, "name": "别家老人"}, headers=auth(op)) as r:
            other = await _json(r, 201)
        family = await add_user(s, "fam", "family", elder_id=elder["id"])
        async with http.get(f"{url}/api/v1/elders/{elder['id']}/entitlements", headers=auth(family)) as r:
            assert (await _json(r, 200))["home_care_hours"] == 45
        async with http.get(f"{url}/api/v1/elders/{other['id']}/entitlements", headers=auth(family)) as r:
            assert r.status == 404


async def test_a_request_from_a_call_to_completion_deducts_the_hours(running: Running) -> None:
    url, s = running.url, running.settings
    op = await add_user(s, "op", "operator")
    sup = await add_user(s, "sup", "supervisor")
    async with aiohttp.ClientSession() as http:
        here = {"lat": ELDER["lat"], "lon": ELDER["lon"]}
        station = {"name": "站", "kind": "service_station", "services": ["cleaning"], **here}
        async with http.post(f"{url}/api/v1/providers", json=station, headers=auth(sup)) as r:
            prv = await _json(r, 201)
        app = await add_user(s, "app", "provider", provider_id=prv["id"])
        async with http.post(f"{url}/api/v1/elders", json=ELDER, headers=auth(op)) as r:
            elder = await _json(r, 201)
        # The call as telephony records it: an answered inbound 12349 call from the elder.
        async with running.app[SERVICES].sm() as session, session.begin():
            call = CallRecord(
                linkedid="1733000000.42",
                direction="inbound",
                queue="12349",
                caller_num="057462228888",
                state="ended",
                outcome="answered",
                elder_id=elder["id"],
                started_at=datetime.now(UTC),
            )
            session.add(call)
        body = {"type": "service_request", "service": "cleaning", "note": "打扫卫生两小时"}
        async with http.post(f"{url}/api/v1/calls/{call.id}/incident", json=body, headers=auth(op)) as r:
            order = await _json(r, 201)
        assert (order["call_id"], order["payer"], order["status"]) == (call.id, "subsidy_hours", "dispatched")
        async with http.get(f"{url}/api/v1/provider/offers", headers=auth(app)) as r:
            (offer,) = (await _json(r, 200))["items"]
        async with http.post(f"{url}/api/v1/offers/{offer['id']}/accept", headers=auth(app)) as r:
            assert r.status == 200
        for step, extra in (("check-in", {}), ("check-out", {"quantity": 1})):
            path = f"{url}/api/v1/service-requests/{order['id']}/{step}"
            async with http.post(path, json={**here, **extra}, headers=auth(app)) as r:
                done = await _json(r, 200)
        assert done["status"] == "completed" and done["call_id"] == call.id
        async with http.get(f"{url}/api/v1/elders/{elder['id']}/entitlements", headers=auth(op)) as r:
            ent = await _json(r, 200)
        assert (ent["used"]["home_care_hours"], ent["remaining"]["home_care_hours"]) == (1, 2)


async def test_a_work_order_through_the_api_with_a_provider_account(running: Running) -> None:
    url, s = running.url, running.settings
    op = await add_user(s, "op", "operator")
    sup = await add_user(s, "sup", "supervisor")
    async with aiohttp.ClientSession() as http:
        provider = {
            "name": "梨洲居家养老服务站",
            "kind": "service_station",
            "services": ["bathing", "cleaning"],
            "lat": ELDER["lat"] + 0.002,
            "lon": ELDER["lon"],
        }
        async with http.post(f"{url}/api/v1/providers", json=provider, headers=auth(sup)) as r:
            prv = await _json(r, 201)
        app = await add_user(s, "app", "provider", provider_id=prv["id"])
        async with http.post(f"{url}/api/v1/elders", json=ELDER, headers=auth(op)) as r:
            elder = await _json(r, 201)  # 85: 3 free hours in yuyao
        bad = {"elder_id": elder["id"], "service": "bathing", "quantity": 0}
        async with http.post(f"{url}/api/v1/service-requests", json=bad, headers=auth(op)) as r:
            assert (await _json(r, 400))["error"]["field"] == "quantity"
        req = {"elder_id": elder["id"], "service": "bathing", "quantity": 2, "note": "周三上午"}
        async with http.post(f"{url}/api/v1/service-requests", json=req, headers=auth(op)) as r:
            order = await _json(r, 201)
        assert (order["status"], order["payer"]) == ("dispatched", "subsidy_hours")
        async with http.post(
            f"{url}/api/v1/incidents",
            json={"elder_id": elder["id"], "type": "service_request", "service": "bathing"},
            headers=auth(op),
        ) as r:
            assert "service-requests" in (await _json(r, 400))["error"]["message"]  # one record, not two
        async with http.get(f"{url}/api/v1/provider/offers", headers=auth(app)) as r:
            (offer,) = (await _json(r, 200))["items"]
        assert offer["service_request_id"] == order["id"] and offer["incident_id"] is None
        async with http.post(f"{url}/api/v1/offers/{offer['id']}/en_route", headers=auth(app)) as r:
            assert r.status == 409  # a work order moves by check-in and check-out
        async with http.post(f"{url}/api/v1/offers/{offer['id']}/accept", headers=auth(app)) as r:
            answer = await _json(r, 200)
        assert answer["service_request"] == {"id": order["id"], "status": "scheduled"} and answer["incident"] is None
        spot = {"lat": ELDER["lat"], "lon": ELDER["lon"]}
        async with http.post(f"{url}/api/v1/service-requests/{order['id']}/check-in", json=spot, headers=auth(op)) as r:
            assert r.status == 403  # the provider checks in, at the door
        async with http.post(
            f"{url}/api/v1/service-requests/{order['id']}/check-in", json=spot, headers=auth(app)
        ) as r:
            assert (await _json(r, 200))["status"] == "started"
        out = {**spot, "quantity": 2}
        async with http.post(
            f"{url}/api/v1/service-requests/{order['id']}/check-out", json=out, headers=auth(app)
        ) as r:
            done = await _json(r, 200)
        assert done["status"] == "completed"
        assert [(x["payer"], x["hours"]) for x in done["settlement"]] == [("subsidy_hours", 2.0)]
        async with http.get(f"{url}/api/v1/follow-ups", params={"status": "due"}, headers=auth(op)) as r:
            (fu,) = (await _json(r, 200))["items"]
        async with http.post(
            f"{url}/api/v1/follow-ups/{fu['id']}/result", json={"reached": True}, headers=auth(op)
        ) as r:
            assert (await _json(r, 400))["error"]["field"] == "score"
        result = {"reached": True, "score": 5, "comment": "很满意"}
        async with http.post(f"{url}/api/v1/follow-ups/{fu['id']}/result", json=result, headers=auth(op)) as r:
            assert (await _json(r, 200))["status"] == "done"
        async with http.post(f"{url}/api/v1/providers/ratings/recompute", headers=auth(sup)) as r:
            assert (await _json(r, 200))["providers"] == 1
        async with http.get(f"{url}/api/v1/providers/{prv['id']}/rating", headers=auth(op)) as r:
            rating = await _json(r, 200)
        assert set(rating["components"]) == {"satisfaction", "punctuality", "completion", "complaints"}
        assert abs(sum(c["points"] for c in rating["components"].values()) - rating["score"]) < 1e-3
        month = _month()
        async with http.get(f"{url}/api/v1/reports/settlement", params={"month": month}, headers=auth(op)) as r:
            assert r.status == 403  # reports are for supervisors
        async with http.get(f"{url}/api/v1/reports/settlement", params={"month": month}, headers=auth(sup)) as r:
            report = await _json(r, 200)
        assert report["rows"] == [[prv["id"], provider["name"], "subsidy_hours", "government", 1, 2.0, 2.0, 120.0]]
        params = {"month": month, "format": "csv"}
        async with http.get(f"{url}/api/v1/reports/settlement", params=params, headers=auth(sup)) as r:
            assert r.headers["Content-Type"].startswith("text/csv")
            raw = await r.read()
        assert raw.startswith(b"\xef\xbb\xbf") and provider["name"] in raw.decode("utf-8-sig")
        params["format"] = "xlsx"
        async with http.get(f"{url}/api/v1/reports/settlement", params=params, headers=auth(sup)) as r:
            sheet = load_workbook(io.BytesIO(await r.read())).active
        assert sheet is not None and [c.value for c in sheet[2]][1] == provider["name"]
        async with http.get(f"{url}/api/v1/reports/nonsense", params={"month": month}, headers=auth(sup)) as r:
            assert r.status == 404
        async with http.get(f"{url}/api/v1/reports/settlement", params={"month": "2026-13"}, headers=auth(sup)) as r:
            assert (await _json(r, 400))["error"]["field"] == "month"
