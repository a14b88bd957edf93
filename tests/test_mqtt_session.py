"""Two backends with one MQTT client id take over each other's session (issue 10, item 6)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from hotline.config import load_settings
from tests.conftest import Running
from tests.helpers import eventually


def test_the_default_client_id_is_per_host_and_stable() -> None:
    first = load_settings({}).mqtt_client_id
    assert first == load_settings({}).mqtt_client_id
    host = socket.gethostname()
    if host.replace("-", "").replace(".", "").isalnum() and len(host) <= 40:
        assert first == f"hotline-{host}"
    assert first.startswith("hotline-")
    assert load_settings({"HOTLINE_MQTT_CLIENT_ID": "edge-7"}).mqtt_client_id == "edge-7"


async def test_a_session_takeover_is_logged_naming_the_variable_and_readyz_reports_it(
    start_backend: Callable[..., Awaitable[Running]],
    http: aiohttp.ClientSession,
    ns: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="devices.mqtt_link")
    one = await start_backend(mqtt_client_id=f"same-{ns}")
    two = await start_backend(mqtt_client_id=f"same-{ns}")

    async def conflict_reported() -> bool:
        for backend in (one, two):
            async with http.get(f"{backend.url}/readyz") as r:
                body = await r.json()
                if r.status == 503 and "session taken over" in body["checks"]["mqtt"]:
                    return True
        return False

    await eventually(conflict_reported, timeout=30, every=0.2)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("HOTLINE_MQTT_CLIENT_ID" in m and f"same-{ns}" in m for m in errors), errors
