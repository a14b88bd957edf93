"""SIGTERM ends ``hotline serve`` within HOTLINE_SHUTDOWN_TIMEOUT in every state: calls in
progress, the PBX away, the broker down, Redis down, the database stalled; consoles get a close
frame. (Under full load: tests/test_crash_load.py.) Each test starts its own backend process and
ends it by PID."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from hotline.localsvc import free_port
from simulators.asterisk import AsteriskSim
from tests.conftest import TEST_DB, auth
from tests.helpers import BackendProcess
from tests.test_e2e import ELDER

pytestmark = pytest.mark.e2e
BOUND_S = 10.0  # HOTLINE_SHUTDOWN_TIMEOUT's default
SLACK_S = 1.5  # the interpreter's own exit


def _dead_port() -> int:
    return free_port()  # nothing listens there


async def _operator(backend: BackendProcess) -> str:
    backend.cli("db", "upgrade")
    return backend.cli("user", "add", "op", "--role", "operator", "--extension", "op1001")


async def test_a_stop_with_calls_in_progress_closes_the_consoles_and_exits_cleanly(
    backend: BackendProcess, http: aiohttp.ClientSession
) -> None:
    sim = AsteriskSim(speed=5.0)
    await sim.start()
    try:
        backend.env["HOTLINE_AMI_URL"] = f"ami://hotline:hotline@127.0.0.1:{sim.port}"
        token = await _operator(backend)
        await backend.start()
        ws = await http.ws_connect(f"{backend.url}/api/v1/ws?token={token}")
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        gate = asyncio.Event()
        call = sim.spawn(sim.inbound_call("13800000001", "", rings=[["op1001"]], answer_gate=gate))
        assert (await ws.receive_json(timeout=10))["type"] == "call.ringing"
        code, took = backend.terminate(within_s=BOUND_S + SLACK_S)
        assert code == 0, backend.log_path.read_text()[-2000:]
        closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == aiohttp.WSCloseCode.GOING_AWAY  # a close frame, not a dropped socket
        assert "stopped" in backend.log_path.read_text()
        gate.set()
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
        print(f"stopped in {took:.2f} s")
    finally:
        await sim.stop()


@pytest.mark.parametrize("absent", ["ami", "broker", "redis"])
async def test_a_stop_while_a_dependency_is_away_is_bounded(backend: BackendProcess, absent: str) -> None:
    port = _dead_port()
    if absent == "ami":
        backend.env["HOTLINE_AMI_URL"] = f"ami://hotline:hotline@127.0.0.1:{port}"  # reconnecting
    elif absent == "broker":
        backend.env["HOTLINE_MQTT_URL"] = f"mqtt://127.0.0.1:{port}"
    else:
        backend.env["HOTLINE_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    await _operator(backend)
    await backend.start(wait_mqtt=False)  # ready enough: the database answers
    await asyncio.sleep(1.5)  # into the reconnect loops
    code, took = backend.terminate(within_s=BOUND_S + SLACK_S)
    assert code == 0, f"exit {code} after {took:.1f} s:\n{backend.log_path.read_text()[-2000:]}"


@pytest.fixture
async def admin_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(db_url)
    yield engine
    await engine.dispose()


async def test_a_stop_while_the_database_is_stalled_exits_at_the_bound(
    backend: BackendProcess, http: aiohttp.ClientSession, admin_engine: AsyncEngine
) -> None:
    """A request waits on a lock the test holds; the stop must not wait for it past the bound."""
    backend.env["HOTLINE_SHUTDOWN_TIMEOUT"] = "3"
    token = await _operator(backend)
    await backend.start()
    async with admin_engine.connect() as conn:
        if TEST_DB == "postgres":
            await conn.execute(text("BEGIN"))
            await conn.execute(text("LOCK TABLE elders IN ACCESS EXCLUSIVE MODE"))
        else:
            await conn.execute(text("BEGIN EXCLUSIVE"))
        stuck = asyncio.ensure_future(http.post(f"{backend.url}/api/v1/elders", json=ELDER, headers=auth(token)))
        await asyncio.sleep(0.5)
        assert not stuck.done()  # the write is waiting on the lock
        code, took = backend.terminate(within_s=3 + SLACK_S)
        await conn.execute(text("ROLLBACK"))
    with contextlib.suppress(aiohttp.ClientError):
        response: Any = await stuck
        response.release()
    assert took <= 3 + SLACK_S
    log = backend.log_path.read_text()
    # Either the stalled request was cut at half the bound and the rest closed in time, or the
    # bound was reached and the process said what was still running.
    assert (code == 0 and "stopped" in log) or (code == 1 and "shutdown bound reached" in log), log[-2000:]


def test_the_shutdown_timeout_and_the_stale_call_age_are_validated() -> None:
    from hotline.config import load_settings
    from hotline.errors import ConfigError

    assert load_settings({}).shutdown_timeout_s == 10.0
    assert load_settings({"HOTLINE_SHUTDOWN_TIMEOUT": "2.5"}).shutdown_timeout_s == 2.5
    for bad in ("0", "soon", "-1"):
        with pytest.raises(ConfigError, match="HOTLINE_SHUTDOWN_TIMEOUT"):
            load_settings({"HOTLINE_SHUTDOWN_TIMEOUT": bad})
    assert load_settings({}).ami_stale_s == 600.0
    assert load_settings({"HOTLINE_AMI_STALE_S": "90"}).ami_stale_s == 90.0
    with pytest.raises(ConfigError, match="HOTLINE_AMI_STALE_S"):
        load_settings({"HOTLINE_AMI_STALE_S": "0.1"})


def test_a_child_started_for_the_demo_dies_with_its_parent(tmp_path: Any) -> None:
    """PR_SET_PDEATHSIG: a SIGKILLed parent (a demo, a benchmark) takes its Mosquitto with it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import asyncio, pathlib, sys\n"
        "from hotline.localsvc import start_mosquitto\n"
        "async def main():\n"
        f"    port, child = await start_mosquitto(pathlib.Path({str(tmp_path)!r}))\n"
        "    print(child.proc.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        os.kill(child_pid, 0)  # running
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(child_pid, 0)
            except ProcessLookupError:
                break
            # A dead child stays a zombie until init reaps it; a zombie counts as gone.
            with open(f"/proc/{child_pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    break
            time.sleep(0.05)
        else:
            os.kill(child_pid, signal.SIGKILL)
            raise AssertionError("the broker outlived the process that started it")
    finally:
        if parent.poll() is None:
            parent.kill()
