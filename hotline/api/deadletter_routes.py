"""Dead letters under /api/v1/dead-letters: what the device gateway refused or parked.

Supervisors and admins only: a payload may carry an elder's location.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from devices import deadletters
from devices.gateway import DeviceGateway
from hotline.api import validation as v
from hotline.api.jsonutil import json_response
from hotline.api.keys import PRINCIPAL, SERVICES
from hotline.api.routes import listing
from hotline.auth import require
from hotline.errors import NotFoundError, ValidationError
from hotline.storage.models import DeadLetter
from hotline.views import dead_letter_view

routes = web.RouteTableDef()
DISPOSITIONS = ("rejected", "accepted_with_warning", "parked")


def _gateway(request: web.Request) -> DeviceGateway:
    gateway = request.app[SERVICES].gateway
    if gateway is None:
        raise NotFoundError("the device gateway does not run on this instance")
    return gateway


def _letter_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 12:
        raise NotFoundError(f"dead letter {raw} not found")
    return int(raw)


@routes.get("/api/v1/dead-letters")
async def list_dead_letters(request: web.Request) -> web.Response:
    require(request[PRINCIPAL], "deadletters.read")
    q = request.query
    if (disposition := q.get("disposition")) is not None and disposition not in DISPOSITIONS:
        raise ValidationError(f"disposition must be one of {', '.join(DISPOSITIONS)}", field="disposition")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    f = deadletters.LetterFilter(
        device_id=q.get("device_id") or None,
        reason=q.get("reason") or None,
        disposition=disposition,
        since=v.when(q, "since", epoch) if "since" in q else None,
        until=v.when(q, "until", epoch) if "until" in q else None,
    )
    return await listing(request, deadletters.query(f), dead_letter_view)


@routes.get("/api/v1/dead-letters/{id}")
async def get_dead_letter(request: web.Request) -> web.Response:
    require(request[PRINCIPAL], "deadletters.read")
    letter_id = _letter_id(request)
    async with request.app[SERVICES].sm() as session:
        letter = await session.get(DeadLetter, letter_id)
    if letter is None:
        raise NotFoundError(f"dead letter {letter_id} not found")
    out: dict[str, Any] = dead_letter_view(letter, detail=True)
    return json_response(out)


@routes.post("/api/v1/dead-letters/{id}/replay")
async def replay_dead_letter(request: web.Request) -> web.Response:
    require(request[PRINCIPAL], "deadletters.replay")
    letter_id = _letter_id(request)
    try:
        result = await _gateway(request).replay(letter_id)
    except deadletters.UnknownDeadLetterError as exc:
        raise NotFoundError(str(exc)) from exc
    except deadletters.NotReplayableError as exc:
        raise ValidationError(str(exc), field="id") from exc
    return json_response({"id": letter_id, "result": result})
