"""The vendor conformance kit (``hotline devices check DEVICE_ID``).

It watches one device's topics on the real broker for a while (as an extra subscriber: the
backend is not disturbed) and judges what it saw against the contract. The judging is a
pure function over the observed messages, so it is tested without a broker.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from devices import contract
from devices.errors import ContractError
from devices.mqtt_link import MqttLink
from hotline.core.targets import MqttTarget

Verdict = Literal["PASS", "WARN", "FAIL"]
MAX_SKEW_S = 300


@dataclass(frozen=True, slots=True)
class Observation:
    at: float  # receive time, epoch seconds
    channel: str  # events, ack, telemetry, status, commands, commands/result
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True)
class Finding:
    verdict: Verdict
    check: str
    detail: str


def _channel(prefix: str, device_id: str, topic: str) -> str | None:
    head = f"{prefix}/devices/{device_id}/"
    return topic[len(head) :] if topic.startswith(head) else None


def analyse(
    obs: list[Observation],
    *,
    window_s: float,
    expected_interval_s: float | None = None,
    probe_command_id: str | None = None,
) -> list[Finding]:
    out: list[Finding] = []
    by = {c: [o for o in obs if o.channel == c] for c in ("events", "ack", "telemetry", "status", "commands/result")}

    # Presence: a retained status, valid, and a Last Will is expected to be the same topic.
    statuses = by["status"]
    if not statuses:
        out.append(
            Finding(
                "FAIL",
                "status",
                'no status message: publish a retained {"state": "online"} after '
                'connecting and set the Last Will to {"state": "offline"}',
            )
        )
    for o in statuses:
        if not o.payload:
            continue
        try:
            contract.parse_status(o.payload)
        except ContractError as exc:
            out.append(Finding("FAIL", "status", f"invalid status payload: {exc.reason}"))
    if statuses and not any(o.retain for o in statuses):
        out.append(Finding("WARN", "status", "status seen but never retained: new subscribers will not see presence"))
    elif statuses:
        out.append(Finding("PASS", "status", "retained presence status"))

    # Heartbeats.
    tele = [o for o in by["telemetry"] if not o.retain]
    if any(o.retain for o in by["telemetry"]):
        out.append(Finding("FAIL", "telemetry", "telemetry is retained: it must not be"))
    bad = 0
    for o in tele:
        try:
            t = contract.parse_telemetry(o.payload)
            if abs(t.ts.timestamp() - o.at) > MAX_SKEW_S:
                out.append(
                    Finding("FAIL", "clock", f"telemetry ts is {t.ts.timestamp() - o.at:+.0f} s off: sync the clock")
                )
                break
        except ContractError as exc:
            bad += 1
            if bad == 1:
                out.append(Finding("FAIL", "telemetry", f"invalid telemetry: {exc.reason}"))
    if not tele:
        expected = f" (registered interval {expected_interval_s:.0f} s)" if expected_interval_s else ""
        out.append(Finding("FAIL", "heartbeat", f"no telemetry in {window_s:.0f} s{expected}"))
    else:
        gaps = [b.at - a.at for a, b in itertools.pairwise(tele)]
        median = statistics.median(gaps) if gaps else None
        detail = f"{len(tele)} samples" + (f", median interval {median:.1f} s" if median is not None else "")
        if expected_interval_s and median is not None and median > expected_interval_s * 1.5:
            out.append(
                Finding("WARN", "heartbeat", f"{detail}; slower than the registered {expected_interval_s:.0f} s")
            )
        elif bad == 0:
            out.append(Finding("PASS", "heartbeat", detail))

    # Events and their acks.
    acks: dict[str, str] = {}
    ack_at: dict[str, float] = {}
    retry_until: dict[str, float] = {}  # a "retry" ack: not to be sent again before this
    for o in by["ack"]:
        try:
            a = contract.parse_ack(o.payload)
        except ContractError:
            continue
        acks[a["event_id"]] = a["status"] if a["status"] != "rejected" else f"rejected: {a['reason']}"
        if a["status"] == "retry":
            retry_until[a["event_id"]] = o.at + a.get("retry_after_s", 1)
        else:
            ack_at.setdefault(a["event_id"], o.at)
    seen_ids: dict[str, int] = {}
    for o in by["events"]:
        if o.retain:
            out.append(Finding("FAIL", "events", "an event was retained: alarms must never be retained"))
        if o.qos != 1:
            out.append(Finding("FAIL", "events", f"an event was published at QoS {o.qos}: events need QoS 1"))
        try:
            e = contract.parse_event(o.payload)
        except ContractError as exc:
            out.append(Finding("FAIL", "events", f"invalid event: {exc.reason}"))
            continue
        seen_ids[e.event_id] = seen_ids.get(e.event_id, 0) + 1
        if e.event_id in ack_at and o.at > ack_at[e.event_id] + 1.0:
            out.append(Finding("WARN", "retransmission", f"{e.event_id} was sent again after its ack"))
        elif e.event_id in retry_until and o.at < retry_until[e.event_id] - 1.0 and e.event_id not in ack_at:
            out.append(Finding("WARN", "retry", f"{e.event_id} was sent again before its retry_after_s"))
        if abs(e.ts.timestamp() - o.at) > MAX_SKEW_S:
            out.append(Finding("FAIL", "clock", f"event {e.event_id} ts is {e.ts.timestamp() - o.at:+.0f} s off"))
    for event_id, n in seen_ids.items():
        status = acks.get(event_id)
        if status is None:
            out.append(Finding("FAIL", "ack", f"event {event_id} got no ack from the backend"))
        elif status.startswith("rejected"):
            out.append(Finding("FAIL", "ack", f"event {event_id} was {status}"))
        elif status == "retry":
            out.append(Finding("WARN", "ack", f"event {event_id} was last told to retry and not sent again in time"))
        else:
            note = f" after {n} transmissions" if n > 1 else ""
            out.append(Finding("PASS", "ack", f"event {event_id} {status}{note}"))
    if not seen_ids:
        out.append(Finding("WARN", "events", "no event seen: press the test button during the check"))

    # Commands.
    if probe_command_id is not None:
        results = []
        for o in by["commands/result"]:
            try:
                results.append(contract.parse_command_result(o.payload))
            except ContractError as exc:
                out.append(Finding("FAIL", "commands", f"invalid command result: {exc.reason}"))
        mine = [r for r in results if r.command_id == probe_command_id]
        if not mine:
            out.append(Finding("FAIL", "commands", "no result for the locate probe command"))
        elif mine[0].status == "unsupported":
            out.append(Finding("WARN", "commands", "locate is unsupported"))
        else:
            out.append(Finding("PASS", "commands", f"locate probe answered {mine[0].status}"))
    return out


async def observe(
    target: MqttTarget, prefix: str, device_id: str, *, seconds: float, probe: bool
) -> tuple[list[Observation], str | None]:
    link = MqttLink(
        target,
        client_id=f"hotline-check-{uuid.uuid4().hex[:8]}",
        subscriptions=[(f"{prefix}/devices/{device_id}/#", 1)],
        session_expiry_s=0,
    )
    await link.start()
    observations: list[Observation] = []
    probe_id: str | None = None
    try:
        await link.wait_connected(10)
        if probe:
            probe_id = f"check-{secrets.token_hex(4)}"
            payload = contract.build_command(probe_id, "locate", {}, datetime.now(UTC) + timedelta(seconds=seconds))
            link.publish(contract.topics(prefix, device_id)["commands"], payload, qos=1)
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                item = await asyncio.wait_for(link.get(), left)
            except TimeoutError:
                break
            link.ack(item)
            channel = _channel(prefix, device_id, item.topic)
            if channel is not None:
                observations.append(Observation(time.time(), channel, item.payload, item.qos, item.retain))
    finally:
        await link.close()
    return observations, probe_id


async def run_check(
    target: MqttTarget,
    prefix: str,
    database_url: str,
    device_id: str,
    *,
    seconds: float,
    probe: bool,
    as_json: bool,
) -> int:
    from devices.directory import DeviceDirectory  # noqa: PLC0415
    from hotline.storage.db import make_engine, make_sessionmaker  # noqa: PLC0415 - CLI-only path

    engine = make_engine(database_url)
    try:
        info = await DeviceDirectory(make_sessionmaker(engine)).get(device_id)
    except Exception:  # no database reachable: judge the traffic alone
        info = None
    finally:
        await engine.dispose()
    print(
        f"watching {device_id} for {seconds:.0f} s on {target.host}:{target.port} ...",
        file=sys.stderr,
        flush=True,
    )
    obs, probe_id = await observe(target, prefix, device_id, seconds=seconds, probe=probe)
    findings = analyse(
        obs,
        window_s=seconds,
        expected_interval_s=info.heartbeat_interval_s if info else None,
        probe_command_id=probe_id,
    )
    if info is None:
        findings.insert(0, Finding("WARN", "registration", f"{device_id} is not registered (or no database)"))
    if as_json:
        print(json.dumps([asdict(f) for f in findings], ensure_ascii=False, indent=2))
    else:
        for f in findings:
            print(f"{f.verdict:4}  {f.check:14} {f.detail}")
        fails = sum(f.verdict == "FAIL" for f in findings)
        print(f"\n{len(obs)} messages seen; {fails} failures, {sum(f.verdict == 'WARN' for f in findings)} warnings")
    return 1 if any(f.verdict == "FAIL" for f in findings) else 0
