"""Dead letters under /api/v1/dead-letters: what the device gateway refused or parked.

Supervisors and admins only: a payload may carry an elder's location.
"""

from __future__ import annotations

from aiohttp import web

from devices import deadletters
from devices.gateway import DeviceGateway
from hotline.api.common import listing, running
from hotline.api.keys import SERVICES
from hotline.api.models import DeadLetterQuery, ReplayResult
from hotline.api.registry import Api
from hotline.core import wire
from hotline.errors import NotFoundError, ValidationError
from hotline.storage.models import DeadLetter

api = Api()


def _gateway(request: web.Request) -> DeviceGateway:
    return running(request.app[SERVICES].gateway, NotFoundError("the device gateway does not run on this instance"))


def _letter_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 12:
        raise NotFoundError(f"dead letter {raw} not found")
    return int(raw)


@api.get("/api/v1/dead-letters", response=wire.Page[wire.DeadLetter], permission="deadletters.read", tag="dead letters")
async def list_dead_letters(request: web.Request, query: DeadLetterQuery) -> wire.Page[wire.DeadLetter]:
    """Refused and parked device messages, newest first."""
    f = deadletters.LetterFilter(
        device_id=query.device_id or None,
        reason=query.reason or None,
        disposition=query.disposition,
        since=query.since,
        until=query.until,
    )
    return await listing(request, deadletters.query(f), query, wire.DeadLetter.of)


@api.get("/api/v1/dead-letters/{id}", response=wire.DeadLetterDetail, permission="deadletters.read", tag="dead letters")
async def get_dead_letter(request: web.Request) -> wire.DeadLetterDetail:
    """One dead letter with its payload and error."""
    letter_id = _letter_id(request)
    async with request.app[SERVICES].sm() as session:
        letter = await session.get(DeadLetter, letter_id)
    if letter is None:
        raise NotFoundError(f"dead letter {letter_id} not found")
    return wire.DeadLetterDetail.of(letter)


@api.post(
    "/api/v1/dead-letters/{id}/replay",
    response=ReplayResult,
    permission="deadletters.replay",
    tag="dead letters",
)
async def replay_dead_letter(request: web.Request) -> ReplayResult:
    """Hand a parked message to the gateway again; the result says what became of it."""
    letter_id = _letter_id(request)
    try:
        result = await _gateway(request).replay(letter_id)
    except deadletters.UnknownDeadLetterError as exc:
        raise NotFoundError(str(exc)) from exc
    except deadletters.NotReplayableError as exc:
        raise ValidationError(str(exc), field="id") from exc
    return ReplayResult(id=letter_id, result=result)
