"""The dispatch lifecycles: the incident, the offer and the escalation timer.

Every status change of an ``Incident``, an ``Offer`` or an ``EscalationTimer`` goes through one
of these tables (see :mod:`hotline.core.lifecycle`). Reading a table top to bottom is reading
the life of the thing:

- an incident opens, is acknowledged (idempotent, and possible at any open stage: an automatic
  offer may dispatch it before an operator picks it up), is dispatched by its first offer, is
  accepted by a provider who then goes en route and arrives, and is resolved; it can be
  cancelled at any open stage;
- an offer is accepted, declined, expires or is withdrawn; an accepted job goes en route, on
  scene and done, or is withdrawn when its incident is cancelled;
- a timer is pending until its track is done or the incident's state makes it moot.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hotline.core.lifecycle import Lifecycle, table
from hotline.core.vocab import IncidentStatus as I
from hotline.core.vocab import OfferStatus as O
from hotline.core.vocab import TimerState as T

_OPEN = (I.OPEN, I.ACKNOWLEDGED, I.DISPATCHED, I.ACCEPTED, I.EN_ROUTE, I.ON_SCENE)
_UNTAKEN = (I.OPEN, I.ACKNOWLEDGED, I.DISPATCHED)
_TAKEN = (I.ACCEPTED, I.EN_ROUTE, I.ON_SCENE)

INCIDENT = Lifecycle(
    name="incident",
    initial=I.OPEN,
    table=table(
        [
            (I.OPEN, "acknowledge", I.ACKNOWLEDGED),
            # Acknowledging later stages records who picked it up; the status stays.
            *((s, "acknowledge", s) for s in _OPEN if s != I.OPEN),
            (_UNTAKEN, "offer", I.DISPATCHED),
            (_UNTAKEN, "accept", I.ACCEPTED),
            (I.ACCEPTED, "en_route", I.EN_ROUTE),
            ((I.ACCEPTED, I.EN_ROUTE), "on_scene", I.ON_SCENE),
            (_OPEN, "resolve", I.RESOLVED),
            (_OPEN, "cancel", I.CANCELLED),
        ]
    ),
)


def _not_expired(offer: Any, now: datetime | None) -> str | None:
    if now is not None and offer.expires_at <= now:
        return f"it expired at {offer.expires_at.isoformat()}"
    return None


OFFER = Lifecycle(
    name="offer",
    initial=O.OFFERED,
    table=table(
        [
            (O.OFFERED, "accept", O.ACCEPTED),
            (O.OFFERED, "decline", O.DECLINED),
            (O.OFFERED, "expire", O.EXPIRED),
            ((O.OFFERED, O.ACCEPTED, O.EN_ROUTE, O.ON_SCENE), "withdraw", O.WITHDRAWN),
            (O.ACCEPTED, "en_route", O.EN_ROUTE),
            ((O.ACCEPTED, O.EN_ROUTE), "on_scene", O.ON_SCENE),
            ((O.ACCEPTED, O.EN_ROUTE, O.ON_SCENE), "done", O.DONE),
        ]
    ),
    guards={"accept": _not_expired, "decline": _not_expired},
)

TIMER = Lifecycle(
    name="escalation timer",
    initial=T.PENDING,
    attr="state",
    table=table([(T.PENDING, "finish", T.DONE), (T.PENDING, "cancel", T.CANCELLED)]),
)

#: Offers a provider is still working on, or may still take.
LIVE_OFFER_STATUSES = tuple(str(s) for s in OFFER.from_states("withdraw"))
