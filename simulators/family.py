"""Family-receiver simulator: an HTTP endpoint that checks Standard Webhooks signatures.

It plays a family's phone app backend: it verifies every alert with the shared secret,
drops duplicates by ``webhook-id`` (at-least-once delivery makes them normal), and can
fail its first N attempts to exercise the sender's retries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from dispatch.errors import SignatureError
from dispatch.notify import webhooks

log = logging.getLogger(__name__)


@dataclass
class Alert:
    webhook_id: str
    received_at: float
    body: dict[str, Any]


@dataclass
class FamilyReceiver:
    secrets: Sequence[str]
    fail_first: int = 0
    now: Callable[[], float] = time.time
    alerts: list[Alert] = field(default_factory=list)
    attempts: int = 0
    bad_signatures: int = 0
    duplicates: int = 0
    _seen: set[str] = field(default_factory=set)
    _runner: web.AppRunner | None = None
    received: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/webhook", self._webhook)
        app.router.add_get("/alerts", self._list)
        return app

    async def _webhook(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.read()
        try:
            msg_id = webhooks.verify(self.secrets, request.headers, body, now=self.now())
        except SignatureError as exc:
            self.bad_signatures += 1
            log.warning("rejected alert: %s", exc)
            return web.json_response({"error": str(exc)}, status=401)
        if self.attempts <= self.fail_first:
            return web.json_response({"error": "simulated outage"}, status=503)
        if msg_id in self._seen:
            self.duplicates += 1
            return web.json_response({"status": "duplicate"})
        self._seen.add(msg_id)
        self.alerts.append(Alert(msg_id, self.now(), json.loads(body)))
        self.received.set()
        return web.json_response({"status": "ok"})

    async def _list(self, _request: web.Request) -> web.Response:
        return web.json_response(
            [{"webhook_id": a.webhook_id, "received_at": a.received_at, "body": a.body} for a in self.alerts]
        )

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = int(self._runner.addresses[0][1])
        return f"http://{host}:{bound}/webhook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description="family alert receiver (Standard Webhooks)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--secret", action="append", required=True, help="whsec_... (repeat for rotation)")
    p.add_argument("--fail-first", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level="INFO")

    async def run() -> None:
        rx = FamilyReceiver(args.secret, fail_first=args.fail_first)
        print("listening on", await rx.start(args.host, args.port), flush=True)
        while True:
            await rx.received.wait()
            rx.received.clear()
            a = rx.alerts[-1]
            print(json.dumps({"webhook_id": a.webhook_id, **a.body}, ensure_ascii=False), flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    main()
