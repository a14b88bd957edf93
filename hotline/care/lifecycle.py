"""The service loop's state machines (see :mod:`hotline.core.lifecycle`).

A work order::

    requested -> (assessed, when the service needs an assessment) -> dispatched -> accepted
      -> scheduled -> started (check-in) -> completed (check-out)

and ends otherwise cancelled or referred. A no-show sends a scheduled order back to
dispatched, to the next provider.
"""

from __future__ import annotations

from typing import Any

from hotline.core.lifecycle import Lifecycle, table
from hotline.core.vocab import ComplaintStatus as C
from hotline.core.vocab import FollowUpStatus as F
from hotline.core.vocab import ReferralStatus as R
from hotline.core.vocab import ServiceRequestStatus as S
from hotline.core.vocab import TargetState as T
from hotline.core.vocab import TimerState

_UNTAKEN = (S.REQUESTED, S.ASSESSED, S.DISPATCHED)
_OPEN = (*_UNTAKEN, S.ACCEPTED, S.SCHEDULED, S.STARTED)


def _assessed_first(order: Any, needs_assessment: Any) -> str | None:
    if needs_assessment and order.status == S.REQUESTED:
        return "the service needs an assessment first"
    return None


SERVICE_REQUEST = Lifecycle(
    name="service request",
    initial=S.REQUESTED,
    table=table(
        [
            (S.REQUESTED, "assess", S.ASSESSED),
            (_UNTAKEN, "offer", S.DISPATCHED),
            (S.DISPATCHED, "accept", S.ACCEPTED),
            ((S.ACCEPTED, S.SCHEDULED), "schedule", S.SCHEDULED),
            ((S.ACCEPTED, S.SCHEDULED), "no_show", S.DISPATCHED),
            ((S.ACCEPTED, S.SCHEDULED), "check_in", S.STARTED),
            (S.STARTED, "check_out", S.COMPLETED),
            (_OPEN, "cancel", S.CANCELLED),
            (_UNTAKEN, "refer", S.REFERRED),
        ]
    ),
    guards={"offer": _assessed_first},
)
OPEN_ORDER_STATUSES = tuple(str(s) for s in _OPEN)

FOLLOW_UP = Lifecycle(
    name="follow-up",
    initial=F.DUE,
    table=table([(F.DUE, "overdue", F.OVERDUE), ((F.DUE, F.OVERDUE), "record", F.DONE)]),
)

COMPLAINT = Lifecycle(
    name="complaint",
    initial=C.RECEIVED,
    table=table(
        [
            (C.RECEIVED, "investigating", C.INVESTIGATING),
            ((C.RECEIVED, C.INVESTIGATING), "upheld", C.UPHELD),
            ((C.RECEIVED, C.INVESTIGATING), "rejected", C.REJECTED),
            ((C.UPHELD, C.REJECTED), "closed", C.CLOSED),
        ]
    ),
)

REFERRAL = Lifecycle(
    name="referral",
    initial=R.OPEN,
    table=table(
        [
            (R.OPEN, "accepted", R.ACCEPTED),
            (R.OPEN, "declined", R.DECLINED),
            ((R.OPEN, R.ACCEPTED, R.DECLINED), "closed", R.CLOSED),
        ]
    ),
)

CAMPAIGN_TARGET = Lifecycle(
    name="campaign target",
    initial=T.PENDING,
    attr="state",
    table=table(
        [
            ((T.PENDING, T.RETRY), "call", T.CALLING),
            (T.CALLING, "retry", T.RETRY),
            ((T.PENDING, T.RETRY, T.CALLING), "finish", T.DONE),
        ]
    ),
)

CAMPAIGN_RUN = Lifecycle(name="campaign run", initial="running", table=table([("running", "finish", "done")]))

CARE_TIMER = Lifecycle(
    name="care timer",
    initial=TimerState.PENDING,
    attr="state",
    table=table(
        [
            (TimerState.PENDING, "fire", TimerState.DONE),
            (TimerState.PENDING, "cancel", TimerState.CANCELLED),
            ((TimerState.PENDING, TimerState.DONE, TimerState.CANCELLED), "schedule", TimerState.PENDING),
        ]
    ),
)
