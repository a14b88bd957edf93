from pathlib import Path

import pytest

from hotline.config import load_settings
from hotline.errors import ConfigError


def test_defaults_match_the_documented_values() -> None:
    s = load_settings({})
    assert s.database_url == "sqlite+aiosqlite:///hotline.db"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert (s.mqtt.host, s.mqtt.port) == ("127.0.0.1", 1883)
    assert s.mqtt_prefix == "hotline/v1"
    assert s.ami is None
    assert (s.ami_queue, s.ami_dial, s.ami_operator_channel) == ("12349", "PJSIP/{number}@pstn", "PJSIP/{extension}")
    assert s.ami_alarm_callback and s.phone_area_code == "0574"
    assert (s.http_host, s.http_port) == ("127.0.0.1", 8080)


def test_environment_values_are_parsed() -> None:
    s = load_settings(
        {
            "HOTLINE_DATABASE_URL": "postgresql://hotline:pw@db:5432/hotline",
            "HOTLINE_MQTT_URL": "mqtt://backend:s%40cret@broker:1884",
            "HOTLINE_AMI_URL": "ami://hotline:secret@127.0.0.1:5038",
            "HOTLINE_HTTP_PORT": "9000",
            "HOTLINE_MQTT_PREFIX": "city/v1",
        }
    )
    assert s.database_url == "postgresql+asyncpg://hotline:pw@db:5432/hotline"
    assert (s.mqtt.host, s.mqtt.port, s.mqtt.username, s.mqtt.password) == ("broker", 1884, "backend", "s@cret")
    assert s.ami is not None and (s.ami.username, s.ami.secret, s.ami.port) == ("hotline", "secret", 5038)
    assert s.http_port == 9000
    assert s.mqtt_prefix == "city/v1"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("HOTLINE_DATABASE_URL", "mysql://x"),
        ("HOTLINE_REDIS_URL", "http://localhost"),
        ("HOTLINE_MQTT_URL", "tcp://localhost:1883"),
        ("HOTLINE_MQTT_URL", "mqtt://localhost:notaport"),
        ("HOTLINE_MQTT_PREFIX", "hotline/#"),
        ("HOTLINE_MQTT_PREFIX", "/hotline"),
        ("HOTLINE_AMI_URL", "ami://127.0.0.1:5038"),
        ("HOTLINE_AMI_DIAL", "PJSIP/pstn"),
        ("HOTLINE_AMI_OPERATOR_CHANNEL", "PJSIP/{number}"),
        ("HOTLINE_AMI_ALARM_CALLBACK", "maybe"),
        ("HOTLINE_PHONE_AREA_CODE", "574"),
        ("HOTLINE_AMI_QUEUE", "12 349"),
        ("HOTLINE_HTTP_PORT", "eighty"),
        ("HOTLINE_HTTP_PORT", "70000"),
        ("HOTLINE_WEBHOOK_SECRET", "plain-secret"),
        ("HOTLINE_LOG_LEVEL", "LOUD"),
        ("HOTLINE_MERGE_WINDOW", "-1"),
        ("HOTLINE_EMERGENCY_NUMBER", "ambulance"),
        ("HOTLINE_EMERGENCY_WEBHOOK_URL", "ftp://x"),
        ("HOTLINE_SMS_GATEWAY_URL", "localhost:9000"),
        ("HOTLINE_PUBLIC_URL", "hotline.local"),
        ("HOTLINE_LINK_SECRET", "short"),
        ("HOTLINE_TIMER_SWEEP", "0"),
        ("HOTLINE_REACH_MINUTES", "0"),
        ("HOTLINE_MIN_PROVIDER_RATING", "6"),
    ],
)
def test_a_bad_value_names_its_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        load_settings({var: value})


def test_toml_file_sits_under_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "hotline.toml"
    cfg.write_text('[hotline]\nhttp_port = 9100\nmqtt_prefix = "file/v1"\n')
    s = load_settings({"HOTLINE_MQTT_PREFIX": "env/v1"}, cfg)
    assert s.http_port == 9100
    assert s.mqtt_prefix == "env/v1"


def test_toml_unknown_key_and_missing_file_are_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "hotline.toml"
    cfg.write_text("htp_port = 1\n")
    with pytest.raises(ConfigError, match="unknown key 'htp_port'"):
        load_settings({}, cfg)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({}, tmp_path / "missing.toml")


def test_cli_reports_a_bad_variable_and_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hotline.cli import main

    monkeypatch.setenv("HOTLINE_HTTP_PORT", "x")
    assert main(["db", "upgrade"]) == 2
    assert "HOTLINE_HTTP_PORT" in capsys.readouterr().err


def test_device_event_pacing_is_configurable_and_checked() -> None:
    s = load_settings({"HOTLINE_DEVICE_EVENT_RATE": "2.5", "HOTLINE_DEVICE_EVENT_BURST": "40"})
    assert (s.device_event_rate, s.device_event_burst) == (2.5, 40)
    for var, value in (("HOTLINE_DEVICE_EVENT_RATE", "fast"), ("HOTLINE_DEVICE_EVENT_BURST", "0")):
        with pytest.raises(ConfigError, match=var):
            load_settings({var: value})
