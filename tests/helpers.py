"""Test helpers: a real backend process, a plain MQTT client, and waiting without sleeping blindly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from hotline.localsvc import die_with_parent


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 10, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


class DeviceClient:
    """A plain paho MQTT client standing in for one device; acks land in an asyncio queue."""

    def __init__(self, port: int, prefix: str, device_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.base = f"{prefix}/devices/{device_id}"
        self.acks: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.commands: asyncio.Queue[bytes] = asyncio.Queue()
        self._loop = loop
        self._ready = asyncio.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{device_id}-{time.monotonic_ns()}")
        self.client.on_connect = lambda c, *_: c.subscribe([(f"{self.base}/ack", 1), (f"{self.base}/commands", 1)])
        self.client.on_subscribe = lambda *_: loop.call_soon_threadsafe(self._ready.set)
        self.client.on_message = lambda _c, _u, m: loop.call_soon_threadsafe(self._route, m.topic, bytes(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _route(self, topic: str, payload: bytes) -> None:
        if topic.endswith("/commands"):
            self.commands.put_nowait(payload)
        else:
            self.acks.put_nowait((time.monotonic(), json.loads(payload)))

    async def ready(self) -> DeviceClient:
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    def publish(
        self, payload: bytes | str | dict[str, Any], *, channel: str = "events", qos: int = 1, retain: bool = False
    ) -> None:
        data = json.dumps(payload) if isinstance(payload, dict) else payload
        self.client.publish(f"{self.base}/{channel}", data, qos=qos, retain=retain).wait_for_publish(5)

    async def next_ack(self, timeout: float = 5) -> dict[str, Any]:
        _, ack = await asyncio.wait_for(self.acks.get(), timeout)
        return ack

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Feed:
    """A console WebSocket that keeps every message, so a test can wait for a kind."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def wait_for(self, type_: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for m in self.seen:
                if m["type"] == type_ and all(m.get(k) == v for k, v in match.items()):
                    self.seen.remove(m)
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {type_} {match} within {timeout}s; saw {[m['type'] for m in self.seen]}")
            try:
                self.seen.append(await self.ws.receive_json(timeout=left))
            except TimeoutError:
                continue

    def count(self, type_: str, **match: Any) -> int:
        return sum(1 for m in self.seen if m["type"] == type_ and all(m.get(k) == v for k, v in match.items()))

    async def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                self.seen.append(await self.ws.receive_json(timeout=left))
            except TimeoutError:
                return


_RUNNING: set[BackendProcess] = set()


def stop_leftover_backends() -> int:
    """Stop every backend a test started and did not stop (it failed or timed out first); the
    number stopped. conftest calls it after each test, so no ``hotline serve`` outlives its test."""
    left = list(_RUNNING)
    for backend in left:
        backend.stop()
    return len(left)


class BackendProcess:
    """``hotline serve`` as a real child process; the test owns it and ends it by PID. It also
    dies with the test process (PR_SET_PDEATHSIG), so a killed pytest leaves none behind."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{env['HOTLINE_HTTP_PORT']}"

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "hotline", *args], env=self.env, capture_output=True, timeout=60, check=False
        )
        if out.returncode != 0:
            raise AssertionError(f"hotline {' '.join(args)} failed: {out.stderr.decode()}")
        return out.stdout.decode().strip()

    async def start(self, *, wait_mqtt: bool = True) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hotline", "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl runs between fork and exec
        )
        _RUNNING.add(self)

        async def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"backend exited early:\n{self.log_path.read_text()}")
            try:
                async with aiohttp.ClientSession() as s, s.get(f"{self.url}/readyz") as r:
                    body = await r.json()
                    return r.status == 200 or (not wait_mqtt and body["checks"]["database"] == "ok")
            except aiohttp.ClientError:
                return False

        await eventually(ready, timeout=30, every=0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no DISCONNECT; what a power cut looks like."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        _RUNNING.discard(self)

    def terminate(self, *, within_s: float) -> tuple[int, float]:
        """SIGTERM, as systemd, Docker and Kubernetes stop a service; the exit code and the
        seconds it took. Fails (after a SIGKILL, so nothing is left behind) past ``within_s``."""
        assert self.proc is not None
        sent = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(within_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(
                f"SIGTERM did not end the backend within {within_s} s:\n{self.log_path.read_text()[-3000:]}"
            ) from None
        _RUNNING.discard(self)
        return code, time.monotonic() - sent

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        _RUNNING.discard(self)


async def metric_families(http: aiohttp.ClientSession, url: str) -> dict[str, dict[str, float]]:
    """A /metrics page as {sample name: {"label=value,...": value}}; it must parse."""
    async with http.get(f"{url}/metrics") as r:
        assert r.status == 200 and r.content_type == "text/plain"
        text = await r.text()
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):  # it parses: valid exposition format
        for sample in family.samples:
            key = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
            if "le" in sample.labels:
                key = ",".join(filter(None, [key, f"le={sample.labels['le']}"]))
            out.setdefault(sample.name, {})[key] = sample.value
    return out
