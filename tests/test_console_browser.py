"""The console in a real headless Chromium (Debian's ``chromium``), driven by Playwright, against
a real ``hotline serve`` with the AMI simulator, Mosquitto, Redis and the database.

Each test signs in through the page as a user would. Screenshots land in docs/screenshots/
(the README links them), so a run leaves a picture of what it saw.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from hotline.config import load_settings
from hotline.users import add_user
from simulators.asterisk import AsteriskSim
from tests.conftest import MQTT_PORT, auth
from tests.helpers import BackendProcess, DeviceClient, eventually
from tests.test_api import ELDER as OTHER_ELDER
from tests.test_dispatch_api import STATION
from tests.test_e2e import ELDER

# The page is what is tested here; the API under it runs on both databases in the other tests.
pytestmark = [pytest.mark.e2e, pytest.mark.one_database]
ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "console-test-12349"
# Without the background-networking switches Chromium keeps dialling Google's hosts, which a
# closed network refuses; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: ./dev test installs it (apt-get install chromium)")
    if not (ROOT / "hotline" / "static" / "console" / "index.html").exists():
        pytest.fail("the console is not built: run ./dev console")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        await b.close()


@pytest.fixture
async def sim() -> AsyncIterator[AsteriskSim]:
    # Five PBX seconds a second, on a clock started ten minutes back: the call records' times
    # stay behind the host's for the length of a test, so "today until now" holds them all.
    s = AsteriskSim(speed=5.0, members=("op1001", "op1002", "op1003"), epoch=time.time() - 600)
    await s.start()
    yield s
    await s.stop()


async def _post(http: aiohttp.ClientSession, url: str, token: str, body: Any) -> Any:
    async with http.post(url, json=body, headers=auth(token)) as r:
        assert r.status in (200, 201, 202), await r.text()
        return await r.json()


async def _get(http: aiohttp.ClientSession, url: str, token: str) -> Any:
    async with http.get(url, headers=auth(token)) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def _world(backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim) -> dict[str, Any]:
    """Two operators, a supervisor, an admin, two elders (one with a one-touch phone), a service
    station with its app account, and a family account for the first elder."""
    backend.env["HOTLINE_AMI_URL"] = f"ami://hotline:hotline@127.0.0.1:{sim.port}"
    backend.cli("db", "upgrade")
    settings = load_settings(backend.env)

    async def user(name: str, role: str, **extra: str) -> str:
        # In this process: `hotline user add --password` is tested in test_signin.py.
        return await add_user(settings, name, role, password=PASSWORD, **extra)

    w: dict[str, Any] = {
        "op1": await user("op1", "operator", extension="op1001"),
        "op2": await user("op2", "operator", extension="op1002"),
        "sup": await user("sup", "supervisor"),
        "admin": await user("admin", "admin"),
        "user": user,
    }
    await backend.start()
    api = f"{backend.url}/api/v1"
    contacts = [{"name": "张伟", "relation": "儿子", "phone": "13911112222", "channel": "sms"}]
    w["elder"] = await _post(
        http, f"{api}/elders", w["op1"], {**ELDER, "phones": ["0574-62228888", "13800000001"], "contacts": contacts}
    )
    w["other"] = await _post(http, f"{api}/elders", w["op1"], OTHER_ELDER)
    device = {"device_id": "YJT30000001", "kind": "one_touch_phone", "elder_id": w["elder"]["id"]}
    await _post(http, f"{api}/devices", w["admin"], device)
    w["device_id"] = device["device_id"]
    w["provider"] = await _post(http, f"{api}/providers", w["sup"], {**STATION, "lat": 30.052, "lon": 121.162})
    w["pro"] = await user("station", "provider", provider_id=w["provider"]["id"])
    w["fam"] = await user("son", "family", elder_id=w["elder"]["id"])

    async def ami_up() -> bool:
        async with http.get(f"{backend.url}/readyz") as r:
            return bool((await r.json())["checks"].get("ami") == "ok")

    await eventually(ami_up)  # calls placed before the AMI login would go unseen
    return w


async def _sign_in(browser: Browser, url: str, name: str, *, mobile: bool = False) -> Page:
    viewport = {"width": 412, "height": 860} if mobile else {"width": 1440, "height": 900}
    ctx = await browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", viewport=viewport)
    page = await ctx.new_page()
    await page.goto(f"{url}/console/")
    await page.get_by_test_id("login-username").fill(name)
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("login-submit")).to_have_count(0)
    return page


async def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"))


async def _sos(backend: BackendProcess, device_id: str, event_id: str) -> DeviceClient:
    device = await DeviceClient(
        MQTT_PORT, backend.env["HOTLINE_MQTT_PREFIX"], device_id, asyncio.get_running_loop()
    ).ready()
    device.publish({"event_id": event_id, "type": "sos", "ts": int(time.time() * 1000)})
    ack = await device.next_ack()
    assert ack["event_id"] == event_id
    return device


async def test_sign_in_works_a_wrong_password_is_refused_and_the_language_switches(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim, browser: Browser
) -> None:
    await _world(backend, http, sim)
    ctx = await browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai")
    page = await ctx.new_page()
    await page.goto(f"{backend.url}/console/incidents/x")  # a deep link asks for sign-in first
    await page.get_by_test_id("login-username").fill("op1")
    await page.get_by_test_id("login-password").fill("not the password")
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("login-error")).to_contain_text("用户名或密码错误")
    assert await ctx.cookies() == []  # nothing was set

    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    await expect(page).to_have_url(f"{backend.url}/console/incidents/x")  # back to the deep link
    await expect(page.get_by_test_id("incident-error")).to_be_visible()  # which names no incident
    await page.get_by_role("link", name="接警台").click()
    await expect(page.get_by_test_id("agent-state")).to_be_visible()  # the operator's own view
    cookie = next(c for c in await ctx.cookies() if c["name"] == "hotline_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # The token never shows in the address bar, and scripts cannot read the cookie.
    assert "token" not in page.url and "hotline_session" not in await page.evaluate("document.cookie")
    await expect(page.locator("header")).to_contain_text("接警台")

    await page.get_by_test_id("lang-switch").click()
    await expect(page.locator("header")).to_contain_text("Alarms")
    await page.reload()  # the choice is kept
    await expect(page.locator("header")).to_contain_text("Alarms")
    await page.get_by_test_id("lang-switch").click()
    await expect(page.locator("header")).to_contain_text("接警台")
    # An operator cannot open the supervisors' wallboard: the console sends them home.
    await page.goto(f"{backend.url}/console/wallboard")
    await expect(page.get_by_test_id("agent-state")).to_be_visible()
    assert page.url.rstrip("/").endswith("/console")


async def test_a_known_callers_profile_pops_within_a_second_on_the_ringing_operators_console_only(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim, browser: Browser
) -> None:
    w = await _world(backend, http, sim)
    op1 = await _sign_in(browser, backend.url, "op1")
    op2 = await _sign_in(browser, backend.url, "op2")
    for page in (op1, op2):
        await expect(page.locator("header")).to_contain_text("实时")  # the feed is connected

    gate = asyncio.Event()
    call = sim.spawn(sim.inbound_call("13800000001", "张三", rings=[["op1001"]], answer_gate=gate, talk_s=2.0))

    async def ringing() -> bool:
        return any(c.state == "Ringing" for c in sim.channels.values())

    await eventually(ringing, timeout=10, every=0.01)
    rang = time.monotonic()
    pop = op1.get_by_test_id("call-pop")
    await expect(pop).to_be_visible(timeout=1000)
    popped_s = time.monotonic() - rang
    assert not gate.is_set()  # still ringing
    await expect(pop).to_have_attribute("data-state", "ringing")
    await expect(op1.get_by_test_id("pop-name")).to_contain_text("张三")
    await expect(pop).to_contain_text("冠心病")  # medical notes
    await expect(pop).to_contain_text("张伟")  # the contact
    await expect(pop).to_contain_text("139 1111 2222")  # grouped the local way
    await expect(pop).to_contain_text("YJT30000001")  # the device
    await expect(op1.get_by_test_id("pop-balance")).to_be_visible()  # this month's entitlement
    await _shot(op1, "call-pop")
    linkedid = await pop.get_attribute("data-call-id")
    assert linkedid and linkedid in {c.linkedid for c in sim.channels.values()}
    # One click makes an incident from the call.
    await op1.get_by_test_id("pop-incident").click()

    async def linked() -> list[dict[str, Any]]:
        rows = (await _get(http, f"{backend.url}/api/v1/calls?linkedid={linkedid}", w["sup"]))["items"]
        return rows if rows and rows[0]["incident_id"] else []

    (row,) = await eventually(linked)
    assert (await _get(http, f"{backend.url}/api/v1/incidents/{row['incident_id']}", w["sup"]))["elder_id"] == w[
        "elder"
    ]["id"]
    await asyncio.sleep(0.3)
    await expect(op2.get_by_test_id("call-pop")).to_have_count(0)  # the other operator saw nothing
    gate.set()
    await call
    print(f"pop visible {popped_s * 1000:.0f} ms after the simulator rang op1001")


async def test_an_unknown_caller_gets_the_quick_create_form(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim, browser: Browser
) -> None:
    w = await _world(backend, http, sim)
    op1 = await _sign_in(browser, backend.url, "op1")
    await expect(op1.locator("header")).to_contain_text("实时")
    gate = asyncio.Event()
    call = sim.spawn(sim.inbound_call("13977776666", "", rings=[["op1001"]], answer_gate=gate, talk_s=5.0))
    await expect(op1.get_by_test_id("pop-unknown")).to_contain_text("未知来电")
    await op1.get_by_test_id("quick-name").fill("李四")
    await op1.get_by_label("地址").fill("余姚市凤山街道1号")
    await op1.get_by_role("button", name="保存").click()
    await expect(op1.get_by_test_id("call-pop")).to_contain_text("已建档")

    async def registered() -> list[dict[str, Any]]:
        page = await _get(http, f"{backend.url}/api/v1/elders?limit=10", w["op1"])
        return [e for e in page["items"] if e["name"] == "李四"]

    (elder,) = await eventually(registered)
    assert elder["phones"] == ["13977776666"]
    gate.set()
    await call


async def test_an_sos_reaches_the_board_and_acknowledging_in_the_page_stops_the_acknowledgement_track(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim, browser: Browser
) -> None:
    w = await _world(backend, http, sim)
    op1 = await _sign_in(browser, backend.url, "op1")
    await expect(op1.locator("header")).to_contain_text("实时")
    device = await _sos(backend, w["device_id"], "sos-browser-1")
    row = op1.get_by_test_id("alarm-row")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("紧急呼救")
    await expect(row).to_contain_text("张三")  # a name, not an id
    # The policy offers the job at once; the acknowledgement clock runs beside it.
    await expect(row).to_have_attribute("data-status", "dispatched")
    await expect(row.get_by_test_id("alarm-next")).to_contain_text("受理 #")  # the next step, counting down
    await _shot(op1, "alarm-board")
    incident_id = await row.get_attribute("data-incident-id")
    url = f"{backend.url}/api/v1/incidents/{incident_id}"
    before = (await _get(http, url, w["sup"]))["escalation"]
    assert any(s["track"] == "acknowledge" and s["state"] == "pending" for s in before)

    await row.get_by_test_id("ack").click()
    await expect(row.get_by_test_id("ack")).to_have_count(0)

    async def stopped() -> list[dict[str, Any]]:
        steps = (await _get(http, url, w["sup"]))["escalation"]
        ack = [s for s in steps if s["track"] == "acknowledge"]
        return ack if ack and all(s["state"] != "pending" for s in ack) else []

    ack_steps = await eventually(stopped)
    # Finished where it stood, the 30-second wait never ran out: nothing of it fired.
    waiting = next(s for s in before if s["track"] == "acknowledge" and s["state"] == "pending")
    assert [(s["step"], s["state"]) for s in ack_steps] == [(waiting["step"], "done")]
    detail = await _get(http, url, w["sup"])
    fired = [e for e in detail["timeline"] if e["kind"] == "escalation.step"]
    assert not [e for e in fired if e["data"]["track"] == "acknowledge"], fired
    assert detail["acknowledged_by"] == (await _get(http, f"{backend.url}/api/v1/auth/me", w["op1"]))["user"]["id"]
    device.close()


async def test_dispatching_from_the_board_reaches_the_provider_whose_acceptance_shows_on_the_board(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim, browser: Browser
) -> None:
    w = await _world(backend, http, sim)
    # A second station, a little further: the policy's own offer goes to the nearer one, and the
    # operator chooses this one from the ranked list.
    second = {**STATION, "name": "梨洲街道居家养老服务站", "lat": 30.058, "lon": 121.168}
    chosen = await _post(http, f"{backend.url}/api/v1/providers", w["sup"], second)
    await w["user"]("second", "provider", provider_id=chosen["id"])
    op1 = await _sign_in(browser, backend.url, "op1")
    provider = await _sign_in(browser, backend.url, "second", mobile=True)
    await expect(op1.locator("header")).to_contain_text("实时")
    device = await _sos(backend, w["device_id"], "sos-browser-2")
    row = op1.get_by_test_id("alarm-row")
    await expect(row).to_have_attribute("data-status", "dispatched")
    await expect(provider.get_by_test_id("offer-row")).to_have_count(0)  # the policy offered the nearer one
    incident_id = await row.get_attribute("data-incident-id")
    await row.get_by_role("button", name="选择服务商").click()
    await op1.get_by_role("menuitem", name=second["name"]).click()

    offer = provider.get_by_test_id("offer-row")
    await expect(offer).to_have_count(1, timeout=10_000)
    assert await offer.get_attribute("data-incident-id") == incident_id
    await expect(offer.get_by_test_id("offer-address")).to_have_text(ELDER["address"])  # where to go
    await expect(offer).not_to_contain_text("冠心病")  # and not the medical file
    await _shot(provider, "provider-view")
    await offer.get_by_test_id("offer-accept").click()
    await expect(provider.get_by_test_id("job-row")).to_have_attribute("data-status", "accepted")
    await expect(row).to_have_attribute("data-status", "accepted")
    await expect(row).to_contain_text(second["name"])

    # The incident view: its timeline and its map, with the stored ranking.
    await row.get_by_test_id("open-incident").click()
    await expect(op1.get_by_test_id("incident-timeline").locator('[data-kind="offer.accepted"]')).to_have_count(1)
    await expect(op1.get_by_test_id("incident-map").get_by_test_id("map-provider")).to_have_count(2)
    await expect(op1.get_by_test_id("ranking")).to_contain_text(second["name"])
    # En route from the phone: the map follows the provider.
    ctx = provider.context
    await ctx.grant_permissions(["geolocation"])
    await ctx.set_geolocation({"latitude": 30.054, "longitude": 121.164})
    await provider.get_by_role("button", name="出发").click()
    await expect(provider.get_by_test_id("job-row")).to_have_attribute("data-status", "en_route")
    await expect(op1.get_by_test_id("map-enroute")).to_have_count(1, timeout=10_000)
    await _shot(op1, "incident-map")
    device.close()


async def test_the_wallboard_shows_the_service_level_the_api_reports(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim, browser: Browser
) -> None:
    w = await _world(backend, http, sim)
    # Three answered at once, one answered after 30 PBX seconds, one abandoned.
    await asyncio.gather(
        *(sim.inbound_call(f"1380000000{n}", "", rings=[["op1001"]], ring_s=1.0, talk_s=2.0) for n in range(3)),
        sim.inbound_call("13800000009", "", rings=[["op1002"]], ring_s=1.0, wait_before_ring_s=30.0, talk_s=1.0),
        sim.inbound_call("13800000008", "", rings=[["op1003"]], outcome="abandoned", ring_s=4.0),
    )

    async def settled() -> dict[str, Any] | None:
        stats = await _get(http, f"{backend.url}/api/v1/stats/calls", w["sup"])
        return stats if stats["offered"] == 5 and stats["in_progress"] == 0 else None

    await eventually(settled, timeout=20)
    # A work order, so the board beside it is not empty in the screenshot.
    await _post(
        http,
        f"{backend.url}/api/v1/service-requests",
        w["op1"],
        {"elder_id": w["elder"]["id"], "service": "meals", "quantity": 1},
    )
    sup = await _sign_in(browser, backend.url, "sup")
    board = sup.get_by_test_id("wallboard")
    await expect(board).to_be_visible()
    since = await board.get_attribute("data-since")
    async with http.get(f"{backend.url}/api/v1/stats/calls", params={"since": since}, headers=auth(w["sup"])) as r:
        stats = await r.json()
    for s in ("20", "60", "180"):
        share = stats["answered_within"][s]
        await expect(sup.get_by_test_id(f"sl-{s}")).to_have_text(f"{share * 100:.1f}%")
    assert stats["answered_within"]["20"] < stats["answered_within"]["180"]  # the slow call tells them apart
    await expect(sup.get_by_test_id("calls-waiting")).to_have_text("0")
    await expect(sup.get_by_test_id("abandoned")).to_have_text(str(stats["abandoned"]))
    await expect(sup.get_by_test_id("wall-agent")).to_have_count(3)
    await _shot(sup, "wallboard")

    # A caller waits: the wallboard counts them live, without a reload.
    gate = asyncio.Event()
    waiting = sim.spawn(
        sim.inbound_call("13800000007", "", rings=[["op1001"]], wait_before_ring_s=30.0, answer_gate=gate)
    )
    await expect(sup.get_by_test_id("calls-waiting")).to_have_text("1")
    gate.set()
    await waiting

    await sup.goto(f"{backend.url}/console/orders")
    await expect(sup.get_by_test_id("order-row")).to_have_count(1)
    await expect(sup.get_by_test_id("order-row")).to_contain_text("助餐 · 张三")  # words and names, not codes and ids
    await _shot(sup, "work-order-board")


async def test_a_family_sees_only_its_own_elder_and_can_say_it_is_on_its_way(
    backend: BackendProcess, http: aiohttp.ClientSession, sim: AsteriskSim, browser: Browser
) -> None:
    w = await _world(backend, http, sim)
    api = f"{backend.url}/api/v1"
    earlier = await _post(http, f"{api}/incidents", w["op1"], {"elder_id": w["elder"]["id"], "type": "fall"})
    await _post(http, f"{api}/incidents/{earlier['id']}/cancel", w["op1"], {"note": "误报"})
    other = await _post(http, f"{api}/incidents", w["op1"], {"elder_id": w["other"]["id"], "type": "sos"})
    family = await _sign_in(browser, backend.url, "son", mobile=True)
    alerts = family.get_by_test_id("family-alert")
    await expect(alerts).to_have_count(1)
    assert await alerts.get_attribute("data-incident-id") == earlier["id"]
    await expect(family.locator("body")).not_to_contain_text(OTHER_ELDER["name"])
    await expect(family.locator("header")).to_have_count(0)  # a phone view, no staff navigation
    # A new alarm for their elder arrives live; one for someone else never does.
    device = await _sos(backend, w["device_id"], "sos-family-1")
    await _post(http, f"{api}/incidents", w["op1"], {"elder_id": w["other"]["id"], "type": "fall"})
    await expect(alerts).to_have_count(2)
    await asyncio.sleep(0.5)
    ids = {await a.get_attribute("data-incident-id") for a in await alerts.all()}
    assert other["id"] not in ids and earlier["id"] in ids and len(ids) == 2
    (live,) = ids - {earlier["id"]}
    await _shot(family, "family-view")

    card = family.locator(f'[data-incident-id="{live}"]')
    await card.get_by_test_id("family-confirm").click()
    await expect(card.get_by_test_id("family-confirmed")).to_be_visible()
    detail = await _get(http, f"{api}/incidents/{live}", w["sup"])
    assert detail["family_confirmed_at"] and detail["family_confirmed_by"]
    # The family cannot open a staff view, and the API refuses it what the page would not show.
    await family.goto(f"{backend.url}/console/wallboard")
    await expect(family.get_by_test_id("family-alert").first).to_be_visible()
    assert family.url.endswith("/console/family")
    cookies = {c["name"]: c["value"] for c in await family.context.cookies()}
    jar = {"Cookie": f"hotline_session={cookies['hotline_session']}"}
    async with http.get(f"{api}/elders/{w['other']['id']}", headers=jar) as r:
        assert r.status in (403, 404)
    async with http.get(f"{api}/stats/calls", headers=jar) as r:
        assert r.status == 403
    device.close()
