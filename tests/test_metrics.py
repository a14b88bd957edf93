"""/metrics through prometheus-client: today's names, plus latency histograms (issue 11, item 7)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import aiohttp

from tests.conftest import Running
from tests.helpers import eventually, metric_families
from tests.test_poison import HOME, _ack, event, make_site


async def test_an_alarm_is_counted_and_timed_from_arrival_to_ack_and_to_first_offer(
    start_backend: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession
) -> None:
    backend = await start_backend()
    site = await make_site(backend.url, backend.settings, http)
    before = await metric_families(http, backend.url)
    assert before["hotline_alarm_ack_seconds_count"][""] == 0
    assert "hotline_websocket_clients" in before and "hotline_mqtt_connected" in before
    status, provider = await site.api(
        "POST",
        "/api/v1/providers",
        {
            "name": "梨洲街道服务站",
            "kind": "service_station",
            "services": ["emergency_rescue"],
            "lat": HOME[0] + 0.002,
            "lon": HOME[1],
            "address": "余姚市梨洲街道",
        },
        token=site.admin,
    )
    assert status == 201, provider
    device = await site.device("WCH800001", backend.settings.mqtt_prefix)
    sent = time.monotonic()
    device.publish(event("metrics-sos"))
    assert (await _ack(device, "metrics-sos", 5))[1]["status"] == "accepted"
    waited = time.monotonic() - sent

    async def counted() -> dict[str, dict[str, float]] | None:
        f = await metric_families(http, backend.url)
        return f if f["hotline_alarm_ack_seconds_count"][""] == 1 else None

    after = await eventually(counted, timeout=5)
    assert 0 < after["hotline_alarm_ack_seconds_sum"][""] <= waited  # measured inside the round trip
    assert after["hotline_gateway_messages_total"]["outcome=events_accepted"] == 1
    # The emergency policy offers at once, in the alarm's own transaction.
    assert after["hotline_alarm_first_offer_seconds_count"][""] == 1
    assert after["hotline_alarm_first_offer_seconds_bucket"]["le=1.0"] == 1
    device.close()
