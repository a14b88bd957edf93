"""``hotline demo`` end to end: alarms become incidents and verified family alerts within 30 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hotline.localsvc import free_port

pytestmark = pytest.mark.e2e


def test_demo_turns_alarms_into_incidents_and_signed_family_alerts(tmp_path: Path) -> None:
    # Point at ports where nothing listens, so the demo must start its own Redis and Mosquitto.
    env = {
        **os.environ,
        "HOTLINE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "HOTLINE_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}",
        "HOTLINE_HTTP_PORT": str(free_port()),
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hotline",
            "demo",
            "--duration",
            "12",
            "--elders",
            "40",
            "--providers",
            "8",
            "--devices",
            "8",
            "--sos-every",
            "1.5",
            "--workdir",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        timeout=90,
        check=False,
    )
    stdout = out.stdout.decode()
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["event"] == "demo.summary"
    assert summary["alarms_sent"] >= 2
    assert summary["acks_accepted"] >= 2
    # The simulated provider apps may already have finished some: opened means open or resolved.
    assert summary["incidents_open"] + summary["incidents_resolved"] >= 2
    assert summary["family_alerts_verified"] >= 2 and summary["bad_signatures"] == 0
    # The service loop flows beside the alarms: requests taken, and the campaign's calls answered or not.
    assert summary["work_orders_requested"] >= 2
    assert set(summary["campaign_outcomes"]) <= {
        "answered_ok",
        "answered_need",
        "no_answer",
        "failed",
        "pending",
        "calling",
        "retry",
    }
    assert sum(summary["campaign_outcomes"].values()) >= 1
    assert "console http://" in stdout and "devices online 8/8" in stdout
    # The children were ours and are gone: no process still runs from the demo's work dir.
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(tmp_path) not in procs
