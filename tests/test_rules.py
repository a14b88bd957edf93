"""The condition rules and flap damping: pure, synchronous."""

from datetime import UTC, datetime

from devices import contract, rules
from devices.presence import Damping, DampingPolicy

ELDER = rules.ElderProfile(
    "eld_1", 30.0, 121.0, home_radius_m=300, hr_low=50, hr_high=110, lives_alone=True, inactivity_hours=12
)
WATCH = rules.DeviceInfo("W1", "watch", ELDER, 300)
PHONE = rules.DeviceInfo("P1", "one_touch_phone", ELDER, 300)
NOW = datetime(2026, 11, 22, tzinfo=UTC)


def tele(**kw: object) -> contract.Telemetry:
    fields: dict[str, object] = {
        "ts": NOW,
        "location": None,
        "battery_pct": None,
        "charging": None,
        "power": None,
        "heart_rate": None,
        "spo2": None,
        "signal_dbm": None,
        "steps": None,
        "worn": None,
    }
    fields.update(kw)
    return contract.Telemetry(**fields)  # type: ignore[arg-type]


def changes(t: contract.Telemetry, info: rules.DeviceInfo = WATCH, moved: bool = False) -> set[tuple[str, bool]]:
    return {(c.condition, c.open) for c in rules.from_telemetry(t, info, moved=moved)}


def test_battery_has_hysteresis_and_charging_clears() -> None:
    assert changes(tele(battery_pct=15)) == {("low_battery", True)}
    assert changes(tele(battery_pct=22)) == set()  # in the band: no opinion
    assert changes(tele(battery_pct=30)) == {("low_battery", False)}
    assert changes(tele(battery_pct=10, charging=True)) == {("low_battery", False)}


def test_power_loss_is_a_one_touch_phone_matter() -> None:
    assert changes(tele(power="battery"), PHONE) == {("power_loss", True)}
    assert changes(tele(power="mains"), PHONE) == {("power_loss", False)}


def test_geofence_respects_the_fix_accuracy() -> None:
    far = contract.Location(30.0 + 0.01, 121.0, accuracy_m=20)
    vague = contract.Location(30.0 + 0.004, 121.0, accuracy_m=400)  # ~445 m ± 400 m
    home = contract.Location(30.0 + 0.001, 121.0, accuracy_m=50)  # ~111 m ± 50 m
    assert changes(tele(location=far)) == {("geofence", True)}
    assert changes(tele(location=vague)) == set()
    assert changes(tele(location=home)) == {("geofence", False)}
    assert changes(tele(location=far), PHONE) == set()  # a fixed phone does not wander


def test_heart_rate_uses_elder_thresholds_and_ignores_an_unworn_watch() -> None:
    assert changes(tele(heart_rate=115)) == {("heart_rate", True)}
    assert changes(tele(heart_rate=45)) == {("heart_rate", True)}
    assert changes(tele(heart_rate=80)) == {("heart_rate", False)}
    assert changes(tele(heart_rate=0, worn=False)) == set()


def test_movement_and_presses_end_inactivity() -> None:
    assert changes(tele(steps=10), moved=True) == {("inactivity", False)}
    sos = contract.parse_event(b'{"event_id": "e", "type": "sos", "ts": 0}')
    assert [(c.condition, c.open) for c in rules.from_event(sos, WATCH)] == [("inactivity", False)]


def test_device_events_map_to_conditions() -> None:
    def ev(t: str) -> list[tuple[str, bool]]:
        e = contract.parse_event(f'{{"event_id": "e", "type": "{t}", "ts": 0}}'.encode())
        return [(c.condition, c.open) for c in rules.from_event(e, WATCH)]

    assert ev("low_battery") == [("low_battery", True)]
    assert ev("power_loss") == [("power_loss", True)]
    assert ev("geofence_exit") == [("geofence", True)]
    assert ev("geofence_enter") == [("geofence", False)]
    assert ev("heart_rate_abnormal") == [("heart_rate", True)]
    assert ev("inactivity") == [("inactivity", True)]
    assert ev("removed") == []


def test_haversine_distance() -> None:
    assert abs(rules.distance_m(30.0, 121.0, 30.01, 121.0) - 1112) < 2


def test_flapping_is_suppressed_then_released_as_the_penalty_decays() -> None:
    policy = DampingPolicy(penalty=1000, suppress=2500, reuse=750, half_life_s=60)
    d = Damping()
    d, started = d.on_offline(0, policy)
    assert not started and not d.suppressed
    d, started = d.on_offline(10, policy)
    assert not started
    d, started = d.on_offline(20, policy)
    assert started and d.suppressed  # third drop within a minute
    d, started = d.on_offline(30, policy)
    assert not started and d.suppressed  # announced once, not again
    assert d.check(60, policy).suppressed
    assert not d.check(300, policy).suppressed  # four half-lives later
    back = Damping.decode(d.encode())
    assert abs(back.penalty - d.penalty) < 0.1 and back.suppressed == d.suppressed
