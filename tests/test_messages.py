"""The console feed's messages are models: the bus checks what it publishes against them,
and the OpenAPI document carries the same union."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis.asyncio as aioredis

from hotline.bus import EventBus
from hotline.core.messages import BUS_MESSAGE, CONSOLE_MESSAGE
from hotline.errors import HotlineError
from tests.conftest import REDIS_URL

PRESENCE = {"type": "device.offline", "device_id": "YJT1", "elder_id": "eld_1"}


async def test_a_message_that_drifts_from_its_model_is_caught(caplog: pytest.LogCaptureFixture) -> None:
    redis = aioredis.from_url(REDIS_URL)
    try:
        strict = EventBus(redis, prefix="test-messages", strict=True)
        strict.check(PRESENCE)  # as the monitor publishes it
        with pytest.raises(HotlineError, match=r"device\.offline"):
            strict.check({**PRESENCE, "devise_id": "typo"})  # an unknown field is a drift too
        with pytest.raises(HotlineError, match="does not match"):
            strict.check({"type": "incident.exploded"})
        lenient = EventBus(redis, prefix="test-messages")
        seen: list[dict[str, Any]] = []
        lenient.add_listener(seen.append)
        with caplog.at_level(logging.ERROR, logger="hotline.bus"):
            await lenient.publish({"type": "device.offline"})  # no device_id
        # Logged, counted, and still sent on: a console with an odd message beats a silent one.
        assert lenient.invalid == 1 and any("does not match its model" in r.getMessage() for r in caplog.records)
        assert [m["type"] for m in seen] == ["device.offline"]
    finally:
        await redis.aclose()


def test_every_feed_type_is_told_apart_by_its_type() -> None:
    hello = CONSOLE_MESSAGE.validate_python({"type": "hello", "user": "op", "role": "operator"})
    assert type(hello).__name__ == "Hello"
    assert type(BUS_MESSAGE.validate_python(PRESENCE)).__name__ == "DevicePresence"
    schema = CONSOLE_MESSAGE.json_schema()
    types = {
        t
        for d in schema["$defs"].values()
        for t in (
            d.get("properties", {}).get("type", {}).get("enum")
            or [d.get("properties", {}).get("type", {}).get("const")]
        )
        if t
    }
    assert {"incident.created", "offer.created", "call.ringing", "wallboard.call", "resync", "pong"} <= types
