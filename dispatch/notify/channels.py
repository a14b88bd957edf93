"""Outbox senders besides webhooks: an SMS gateway over plain HTTP, voice calls through
telephony, and the operator console.

Each raises :class:`~dispatch.errors.DeliveryError` on failure, ``permanent`` when a retry
cannot help; the outbox does the retrying and records the delivery state.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp

from dispatch.errors import DeliveryError
from dispatch.notify.outbox import post
from hotline.storage.models import Notification

TYPE_TEXT = {
    "incident.created": "【12349】{elder}发生{type}警情，地址：{address}。",
    "incident.reminder": "【12349】{elder}的{type}警情仍在处理中。{message}",
}
TYPE_NAMES = {"sos": "紧急呼救", "fall": "跌倒", "emergency": "紧急", "health": "健康"}


def sms_text(n: Notification) -> str:
    """The SMS body: short, Chinese, with the confirm link when there is one."""
    data: dict[str, Any] = n.payload.get("data", {})
    elder = data.get("elder", {})
    template = TYPE_TEXT.get(n.event_type, "【12349】{elder}：{message}")
    text = template.format(
        elder=elder.get("name", ""),
        type=TYPE_NAMES.get(data.get("incident_type", ""), data.get("incident_type", "")),
        address=elder.get("address", ""),
        message=data.get("message") or "",
    )
    if url := data.get("confirm_url"):
        text += f"您如正在赶往，请点击确认：{url}"
    return text


class SmsGatewaySender:
    """POSTs ``{"id", "to", "text"}`` as JSON to a configurable gateway URL, with an optional
    bearer token. Most Chinese SMS platforms sit behind such a relay; the message ``id`` lets
    the gateway drop the duplicates that at-least-once delivery implies."""

    def __init__(
        self, http: aiohttp.ClientSession, url: str, *, token: str | None = None, timeout_s: float = 10
    ) -> None:
        self._http = http
        self._url = url
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __call__(self, n: Notification) -> None:
        body = json.dumps({"id": n.id, "to": n.target, "text": sms_text(n)}, ensure_ascii=False).encode()
        hdrs = {"content-type": "application/json", "idempotency-key": n.id}
        if self._token:
            hdrs["authorization"] = f"Bearer {self._token}"
        await post(self._http, self._url, body, hdrs, self._timeout, who="SMS gateway")


class CallPlacer(Protocol):
    async def call_out(
        self,
        *,
        number: str,
        purpose: str,
        requested_by: str,
        idempotency_key: str | None = None,
        elder_id: str | None = None,
        incident_id: str | None = None,
        wait_s: float = 10.0,
        dialplan: str | None = None,
    ) -> dict[str, Any]: ...

    async def call_by_key(self, idempotency_key: str) -> dict[str, Any] | None: ...


#: A call in one of these states got through to the PBX (and maybe further).
PLACED_STATES = frozenset({"dialing", "queued", "ringing", "answered"})


class VoiceSender:
    """Places the call through telephony. The answered call joins the 12349 queue, so an
    operator talks to whoever picks up (a relative, or 120)."""

    def __init__(self, telephony: CallPlacer) -> None:
        self._telephony = telephony

    async def __call__(self, n: Notification) -> None:
        # One call per delivery attempt, keyed by it: a delivery re-run after a crash dials
        # once, and a later attempt may dial again when the earlier one did not get through.
        if n.attempts:
            previous = await self._telephony.call_by_key(_attempt_key(n, n.attempts - 1))
            if previous is not None and _got_through(previous):
                return  # the PBX took it after all (late events, or the resync found it)
            if previous is not None and previous.get("state") == "originating":
                # The Originate went out but its answer did not come back in time: the PBX
                # may be dialling. Dialling again would ring 120 twice; the events, or the
                # resync after a reconnect, settle it before the next attempt.
                self._check_deadline(n)
                raise DeliveryError("the previous attempt's outcome is not known yet; not dialling again")
        deadline = self._check_deadline(n)
        now = datetime.now(UTC)
        wait_s = 10.0 if deadline is None else max(1.0, min(10.0, (deadline - now).total_seconds()))
        record = await self._telephony.call_out(
            number=n.target,
            purpose=str(n.payload.get("purpose", "notification")),
            requested_by="outbox",
            idempotency_key=_attempt_key(n, n.attempts),
            elder_id=n.elder_id,
            incident_id=n.incident_id,
            wait_s=wait_s,
        )
        if record.get("state") == "originating":
            raise DeliveryError("the PBX did not confirm the call; the next attempt checks it")
        if record.get("state") == "ended" and record.get("outcome") != "answered":
            raise DeliveryError(f"call {record.get('outcome') or 'failed'}: {record.get('detail') or 'not placed'}")

    @staticmethod
    def _check_deadline(n: Notification) -> datetime | None:
        deadline = _deadline(n)
        if deadline is not None and datetime.now(UTC) >= deadline:
            raise DeliveryError("the call was not placed before its deadline", permanent=True)
        return deadline


def _attempt_key(n: Notification, attempt: int) -> str:
    return f"outbox:{n.id}" if attempt == 0 else f"outbox:{n.id}:{attempt}"


def _got_through(record: dict[str, Any]) -> bool:
    return record.get("state") in PLACED_STATES or (
        record.get("state") == "ended" and record.get("outcome") == "answered"
    )


def _deadline(n: Notification) -> datetime | None:
    raw = n.payload.get("deadline")
    return datetime.fromisoformat(str(raw).replace("Z", "+00:00")) if raw else None


class ConsoleSender:
    """Publishes to the console feed: ``role:<role>`` to that role, ``user:<id>`` to one user."""

    def __init__(self, publish: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self._publish = publish

    async def __call__(self, n: Notification) -> None:
        message = {**n.payload, "notification_id": n.id}
        kind, _, who = n.target.partition(":")
        if kind == "role":
            message["audience"] = [who]
        elif kind == "user":
            message["to_user"] = who
        else:
            raise DeliveryError(f"console target must be role:<role> or user:<id>, got {n.target!r}", permanent=True)
        await self._publish(message)
