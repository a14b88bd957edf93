"""Console sign-in: argon2 passwords, the session cookie, CSRF, the failed-login limit, logout,
the feed over the cookie, and the CLI that sets passwords."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import aiohttp
import pytest
import yarl
from sqlalchemy import select

from hotline.signin import SESSION_COOKIE, verify_password
from hotline.storage.models import User, WebSession
from hotline.users import add_user
from tests.conftest import Running, auth
from tests.test_api import ELDER

PASSWORD = "correct horse 12349"


async def _login(http: aiohttp.ClientSession, url: str, username: str, password: str) -> tuple[int, Any]:
    async with http.post(f"{url}/api/v1/auth/login", json={"username": username, "password": password}) as r:
        return r.status, await r.json()


async def test_sign_in_sets_a_strict_httponly_cookie_that_the_api_accepts(running: Running, sm: Any) -> None:
    await add_user(running.settings, "op", "operator", extension="op1001", password=PASSWORD)
    async with sm() as session:
        user = await session.scalar(select(User).where(User.name == "op"))
    assert user.password_hash.startswith("$argon2id$")  # never the password itself
    assert verify_password(user.password_hash, PASSWORD) and not verify_password(user.password_hash, "x" * 12)

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{running.url}/api/v1/auth/login", json={"username": "op", "password": PASSWORD}) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
            cookie = r.headers["Set-Cookie"]
        assert body["user"]["role"] == "operator" and body["user"]["extension"] == "op1001"
        assert body["home"] == "/console/" and len(body["csrf_token"]) == 64
        assert f"{SESSION_COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain http here; HOTLINE_COOKIE_SECURE or https adds it

        async with http.get(f"{running.url}/api/v1/auth/me") as r:
            me = await r.json()
            assert r.status == 200 and me["user"]["name"] == "op" and me["csrf_token"] == body["csrf_token"]
        async with http.get(f"{running.url}/api/v1/elders") as r:
            assert r.status == 200

        # A write with the cookie needs the CSRF token: a forged cross-site form has none.
        async with http.post(f"{running.url}/api/v1/elders", json=ELDER) as r:
            err = await r.json()
            assert r.status == 403 and "X-CSRF-Token" in err["error"]["message"]
        async with http.post(f"{running.url}/api/v1/elders", json=ELDER, headers={"X-CSRF-Token": "0" * 64}) as r:
            assert r.status == 403
        async with http.post(
            f"{running.url}/api/v1/elders", json=ELDER, headers={"X-CSRF-Token": body["csrf_token"]}
        ) as r:
            assert r.status == 201, await r.text()

        # The feed takes the cookie too, from our own origin only.
        async with http.ws_connect(f"{running.url}/api/v1/ws", headers={"Origin": running.url}) as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello" and hello["user"] == "op"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{running.url}/api/v1/ws", headers={"Origin": "http://evil.example"})
        assert refused.value.status == 403

        async with http.post(f"{running.url}/api/v1/auth/logout", headers={"X-CSRF-Token": body["csrf_token"]}) as r:
            assert r.status == 200 and (await r.json())["signed_out"] is True
        async with http.get(f"{running.url}/api/v1/auth/me") as r:
            assert r.status == 401
    async with sm() as session:
        assert (await session.scalars(select(WebSession))).all() == []  # the session is gone, not just the cookie


async def test_wrong_passwords_are_refused_alike_and_limited(running: Running, http: aiohttp.ClientSession) -> None:
    await add_user(running.settings, "op", "operator", password=PASSWORD)
    token = await add_user(running.settings, "machine", "operator")  # token only: no password
    wrong = await _login(http, running.url, "op", "wrong password")
    unknown = await _login(http, running.url, "nobody", "wrong password")
    no_password = await _login(http, running.url, "machine", "anything at all")
    # The same answer whether the name exists or not: it does not tell which names exist.
    assert wrong == unknown == no_password == (401, wrong[1])
    assert wrong[1]["error"]["message"] == "wrong user name or password"
    # Bad input gets a clear error naming the field.
    async with http.post(f"{running.url}/api/v1/auth/login", json={"username": "op"}) as r:
        assert r.status == 400 and (await r.json())["error"]["field"] == "password"
    async with http.post(f"{running.url}/api/v1/auth/login", data="not json") as r:
        assert r.status == 400

    for _ in range(4):  # five failures in all for "op"
        assert (await _login(http, running.url, "op", "still wrong"))[0] == 401
    async with http.post(f"{running.url}/api/v1/auth/login", json={"username": "op", "password": PASSWORD}) as r:
        assert r.status == 429, await r.text()
        assert 0 < int(r.headers["Retry-After"]) <= 900
    # Bearer tokens are not affected by the browser limit.
    async with http.get(f"{running.url}/api/v1/elders", headers=auth(token)) as r:
        assert r.status == 200


async def test_each_role_is_sent_to_its_own_view(running: Running, http: aiohttp.ClientSession) -> None:
    s = running.settings
    op = await add_user(s, "op", "operator", password=PASSWORD)
    async with http.post(f"{running.url}/api/v1/elders", json=ELDER, headers=auth(op)) as r:
        elder = await r.json()
    await add_user(s, "sup", "supervisor", password=PASSWORD)
    await add_user(s, "son", "family", elder_id=elder["id"], password=PASSWORD)
    homes = {name: (await _login(http, running.url, name, PASSWORD))[1]["home"] for name in ("op", "sup", "son")}
    assert homes == {"op": "/console/", "sup": "/console/wallboard", "son": "/console/family"}
    # The console is one page for every path under /console/, and its assets are cached for good.
    async with http.get(f"{running.url}/console/wallboard") as r:
        page = await r.text()
        assert r.status == 200 and '<div id="app">' in page and r.headers["Cache-Control"] == "no-cache"
    asset = page.split('src="')[1].split('"')[0]
    async with http.get(f"{running.url}{asset}") as r:
        assert r.status == 200 and "immutable" in r.headers["Cache-Control"]
    # A path that climbs out of the assets gets the page, never a file from elsewhere.
    async with http.get(yarl.URL(f"{running.url}/console/assets/..%2F..%2Fapp.py", encoded=True)) as r:
        assert "build_app" not in await r.text()
    async with http.get(f"{running.url}/", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "/console/"


def test_the_cli_sets_passwords_from_stdin_and_refuses_short_ones(env: dict[str, str]) -> None:
    import os

    run_env = {**os.environ, **env}

    def hotline(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hotline", *args],
            check=False,
            env=run_env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert hotline("db", "upgrade").returncode == 0
    made = hotline("user", "add", "op", "--role", "operator", "--password-stdin", stdin=PASSWORD + "\n")
    assert made.returncode == 0 and made.stdout.strip().startswith("hl_"), made.stderr
    short = hotline("user", "add", "op2", "--role", "operator", "--password", "short")
    assert short.returncode != 0 and "at least 8 characters" in short.stderr
    empty = hotline("user", "add", "op3", "--role", "operator", "--password-stdin", stdin="\n")
    assert empty.returncode != 0 and "no password" in empty.stderr
    changed = hotline("user", "password", "op", "--password-stdin", stdin="a new long password\n")
    assert changed.returncode == 0 and "sessions are ended" in changed.stdout
    missing = hotline("user", "password", "ghost", "--password", "long enough pw")
    assert missing.returncode != 0 and "does not exist" in missing.stderr


async def test_the_limit_counts_per_address_too_and_without_redis() -> None:
    from hotline.signin import LoginThrottle

    throttle = LoginThrottle(None, limit=2, address_limit=3, window_s=60)
    await throttle.failed("a", "10.0.0.1")
    await throttle.failed("b", "10.0.0.1")
    assert await throttle.retry_after("c", "10.0.0.1") == 0
    await throttle.failed("a", "10.0.0.1")
    assert await throttle.retry_after("a", "10.0.0.2") > 0  # the name, from anywhere
    assert await throttle.retry_after("c", "10.0.0.1") > 0  # the address, for any name
    assert await throttle.retry_after("c", "10.0.0.2") == 0
    await throttle.succeeded("a")
    assert await throttle.retry_after("a", "10.0.0.2") == 0
