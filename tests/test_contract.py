import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devices import contract
from devices.errors import ContractError, UnknownTopicError

ROOT = Path(__file__).resolve().parents[1]


def ev(**over: object) -> bytes:
    body = {"event_id": "e-1", "type": "sos", "ts": "2026-11-22T08:00:00+08:00"}
    body.update(over)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def test_a_full_event_parses_into_a_frozen_value() -> None:
    e = contract.parse_event(
        ev(
            location={"lat": 30.03, "lon": 121.15, "accuracy_m": 8, "source": "gps"},
            battery_pct=77,
            vitals={"heart_rate": 130, "spo2": 91},
            extra={"fw": "1.2"},
        )
    )
    assert e.event_id == "e-1" and e.type == "sos" and e.is_emergency
    assert e.ts == datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
    assert e.location == contract.Location(30.03, 121.15, 8, "gps")
    assert (e.battery_pct, e.heart_rate, e.spo2, e.extra) == (77, 130, 91, {"fw": "1.2"})
    with pytest.raises(AttributeError):
        e.type = "fall"  # type: ignore[misc]


def test_epoch_millisecond_timestamps_are_accepted() -> None:
    assert contract.parse_event(ev(ts=1_795_000_000_000)).ts == datetime.fromtimestamp(1_795_000_000, UTC)


@pytest.mark.parametrize(
    ("payload", "reason", "event_id"),
    [
        (b"\xff\xfe", "not UTF-8", None),
        (b"{not json", "not JSON", None),
        (b"[1, 2]", "JSON object", None),
        (ev(type="explode"), "type", "e-1"),
        (ev(event_id=""), "event_id", None),
        (ev(event_id="x" * 65), "event_id", None),
        (ev(ts="the day before yesterday"), "RFC 3339", "e-1"),
        (ev(ts="2026-11-22T08:00:00"), "offset", "e-1"),
        (ev(ts=True), "ts", "e-1"),
        (ev(battery_pct=101), "battery_pct", "e-1"),
        (ev(battery_pct="50"), "battery_pct", "e-1"),
        (ev(location={"lat": 95, "lon": 0}), "location/lat", "e-1"),
        (ev(surprise=1), "Additional properties", "e-1"),
        (ev(extra={"pad": "x" * 9000}), "exceeds", "e-1"),
        (b"x" * 300_000, "exceeds", None),
    ],
)
def test_invalid_events_raise_with_a_reason_and_the_event_id_when_readable(
    payload: bytes, reason: str, event_id: str | None
) -> None:
    with pytest.raises(ContractError) as info:
        contract.parse_event(payload)
    assert reason in info.value.reason
    assert info.value.event_id == event_id


def test_topics_round_trip_and_foreign_topics_are_refused() -> None:
    t = contract.topics("hotline/v1", "YJT0001")
    assert t["events"] == "hotline/v1/devices/YJT0001/events"
    assert contract.parse_topic("hotline/v1", t["events"]) == contract.Topic("YJT0001", "events")
    for bad in (
        "other/v1/devices/A/events",
        "hotline/v1/devices/A/ack",
        "hotline/v1/devices/a b/events",
        "hotline/v1/devices//events",
    ):
        with pytest.raises(UnknownTopicError):
            contract.parse_topic("hotline/v1", bad)


def test_acks_round_trip_and_match_their_schema() -> None:
    raw = contract.build_ack("e-1", "accepted", incident_id="inc_1")
    assert contract.parse_ack(raw) == {"event_id": "e-1", "status": "accepted", "incident_id": "inc_1", "reason": None}
    with pytest.raises(ContractError):
        contract.parse_ack(b'{"event_id": "e-1", "status": "maybe"}')


def test_simulator_payloads_pass_the_backend_parser() -> None:
    raw = contract.build_event(
        event_id="s-1",
        type="fall",
        ts=datetime.now(UTC),
        location=contract.Location(30.0, 121.0, source="gps"),
        battery_pct=50,
    )
    assert contract.parse_event(raw).type == "fall"


def test_published_schemas_are_the_ones_the_code_validates_with() -> None:
    for name in ("event", "ack"):
        published = json.loads((ROOT / "docs" / "schemas" / f"{name}.json").read_text())
        assert published == contract.schema(name)


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("telemetry", {"ts": 1}),
        ("telemetry", {"ts": "2026-11-22T08:00:00Z", "location": {"lat": 30, "lon": 121, "source": "wifi"}}),
        ("telemetry", {"ts": 1, "battery_pct": 101}),
        ("telemetry", {"ts": 1, "vitals": {"heart_rate": -1}}),
        ("telemetry", {"ts": 1, "steps": 1.5}),
        ("telemetry", {"ts": 1, "unknown": True}),
        ("telemetry", {"battery_pct": 5}),
        ("status", {"state": "online", "ts": 1}),
        ("status", {"state": "away"}),
        ("command", {"command_id": "c", "type": "call_back", "params": {"number": "12349"}, "expires_at": "x" * 20}),
        ("command", {"command_id": "c", "type": "call_back", "params": {}, "expires_at": "x" * 20}),
        ("command", {"command_id": "c", "type": "locate", "params": {"x": 1}, "expires_at": "x" * 20}),
        (
            "command",
            {"command_id": "c", "type": "set_heartbeat_interval", "params": {"seconds": 10}, "expires_at": "x" * 20},
        ),
        ("command_result", {"command_id": "c", "status": "done", "detail": None}),
        ("command_result", {"command_id": "c", "status": "maybe"}),
        ("event", {"event_id": "e", "type": "sos", "ts": 1, "vitals": {"spo2": 120}}),
        ("event", {"event_id": "e\u0001", "type": "sos", "ts": 1}),
    ],
)
def test_the_compiled_validator_agrees_with_the_reference_one(name: str, payload: dict[str, object]) -> None:
    reference_ok = not list(contract._validator(name).iter_errors(payload))
    try:
        contract._fast(name)(payload)
        fast_ok = True
    except Exception:
        fast_ok = False
    assert fast_ok == reference_ok
