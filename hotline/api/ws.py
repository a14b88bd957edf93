"""The console WebSocket hub: pushes bus events to connected operators and families.

Each connection gets a bounded queue and its own writer task (owned by the handler and
cancelled when it returns), so one slow browser cannot stall the feed for the others;
a client that falls 1,000 messages behind is disconnected and reconnects to fresh state.

Every bus message carries a ``seq``. A console that reconnects with ``?since=SEQ`` is sent
what it missed, in order, before live messages; when the log no longer reaches back that
far it gets ``{"type": "resync"}`` and should reload. A message seen twice (a local
delivery racing a resubscribe) is sent once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import BaseModel

from hotline.auth import Principal
from hotline.bus import seq_key
from hotline.core.messages import FeedError, Hello, Pong, Resync

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
RECENT_SEQS = 10_000
Replay = Callable[[str], Awaitable[tuple[list[dict[str, Any]], bool]]]


@dataclass(eq=False)
class _Client:
    principal: Principal
    ws: web.WebSocketResponse
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False
    replayed_to: tuple[int, int] | None = None  # live messages up to here were sent by the replay


def visible(principal: Principal, message: dict[str, Any]) -> bool:
    """Who may see a bus message: ``to_user`` addresses one user (a screen pop goes only to
    the operator whose phone rings), ``to_provider`` one provider's accounts (and staff),
    ``audience`` a set of roles (the supervisors' wallboard);
    anything else goes to console staff, and to the family of the elder it concerns."""
    if (to_user := message.get("to_user")) is not None:
        return bool(to_user == principal.user_id)
    if (to_provider := message.get("to_provider")) is not None:
        # Offers go to the provider's own app, and to staff watching dispatch.
        return principal.is_console or (principal.role == "provider" and to_provider == principal.provider_id)
    if (audience := message.get("audience")) is not None:
        return principal.role in audience
    if principal.is_console:
        return True
    elder = message.get("elder") or {}
    incident = message.get("incident") or {}
    elder_id = message.get("elder_id") or elder.get("id") or incident.get("elder_id")
    return principal.role == "family" and elder_id is not None and elder_id == principal.elder_id


async def _send(ws: web.WebSocketResponse, message: BaseModel) -> None:
    await ws.send_str(message.model_dump_json())


class ConsoleHub:
    def __init__(self) -> None:
        self._clients: set[_Client] = set()
        self._recent: OrderedDict[str, None] = OrderedDict()
        self.sent = 0
        self.repeats = 0

    @property
    def size(self) -> int:
        return len(self._clients)

    def broadcast(self, message: dict[str, Any]) -> None:
        seq = message.get("seq")
        if isinstance(seq, str):
            if seq in self._recent:
                self.repeats += 1
                return
            self._recent[seq] = None
            if len(self._recent) > RECENT_SEQS:
                self._recent.popitem(last=False)
        for client in list(self._clients):
            if not visible(client.principal, message):
                continue
            try:
                client.queue.put_nowait(message)
            except asyncio.QueueFull:
                client.overflowed = True

    async def handle(
        self, request: web.Request, principal: Principal, *, replay: Replay | None = None
    ) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        client = _Client(principal, ws)
        self._clients.add(client)  # live messages queue up while the replay is sent
        writer: asyncio.Task[None] | None = None
        log.info("console connected user_id=%s role=%s", principal.user_id, principal.role)
        try:
            await _send(ws, Hello(type="hello", user=principal.name, role=principal.role))
            since = request.query.get("since")
            if since and replay is not None:
                await self._replay(client, since, replay)
            writer = asyncio.create_task(self._writer(client), name=f"ws.writer[{principal.user_id}]")
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_text(client, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._clients.discard(client)
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            log.info("console disconnected user_id=%s", principal.user_id)
        return ws

    async def _replay(self, client: _Client, since: str, replay: Replay) -> None:
        try:
            missed, complete = await replay(since)
        except Exception as exc:  # Redis down: the console must reload instead
            log.warning("console replay failed: %s", type(exc).__name__)
            missed, complete = [], False
        for message in missed:
            if visible(client.principal, message):
                await client.ws.send_json(message)
                self.sent += 1
        if missed:
            client.replayed_to = seq_key(missed[-1]["seq"])
        if not complete:
            await _send(client.ws, Resync(type="resync", reason="missed messages are no longer kept; reload"))

    async def _on_text(self, client: _Client, data: str) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            await _send(client.ws, FeedError(type="error", error="messages must be JSON"))
            return
        if isinstance(msg, dict) and msg.get("type") == "ping":
            await _send(client.ws, Pong(type="pong"))
        else:
            await _send(client.ws, FeedError(type="error", error="unknown message type"))

    async def _writer(self, client: _Client) -> None:
        while True:
            message = await client.queue.get()
            seq = message.get("seq")
            if client.replayed_to is not None and isinstance(seq, str) and seq_key(seq) <= client.replayed_to:
                continue  # already sent by the replay
            if client.overflowed:
                await client.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow")
                return
            await client.ws.send_json(message)
            self.sent += 1

    async def close_all(self, *, within_s: float = 3.0) -> None:
        """A close frame to every console at once; a browser that never answers it (a laptop
        lid shut) does not hold the shutdown past ``within_s``."""
        closing = [
            asyncio.ensure_future(c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown"))
            for c in list(self._clients)
        ]
        if closing:
            _, late = await asyncio.wait(closing, timeout=within_s)
            for task in late:
                task.cancel()
