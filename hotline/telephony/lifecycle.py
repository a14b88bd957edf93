"""The call's lifecycle, inbound and outbound, ``originating`` included.

- An outbound call's row is written ``originating`` before the Originate goes out (so a crash
  cannot place a call we have no record of). Asterisk accepting the action makes it
  ``dialing``; refusing it ends it. A link that dropped mid-action leaves it ``originating``
  until events or the resync say more.
- An inbound call enters ``queued`` at QueueCallerJoin, rings one or several members, may go
  back to ``queued`` when every ring stops, and is ``answered`` by one of them.
- A call-back through the queue is answered by the elder (or device), then enters the queue
  (``queue``: back to ``queued``) and is answered again by an operator.
- Every call ends, from any live state.

The tracker (:mod:`hotline.telephony.tracker`) fires these events on its ``Call`` values and
the service persists the state with :meth:`Lifecycle.load`.
"""

from __future__ import annotations

from hotline.core.lifecycle import Lifecycle, table
from hotline.core.vocab import CallState as C

_LIVE = (C.ORIGINATING, C.DIALING, C.QUEUED, C.RINGING, C.ANSWERED)

CALL = Lifecycle(
    name="call",
    initial=C.ORIGINATING,
    attr="state",
    table=table(
        [
            (C.ORIGINATING, "sent", C.DIALING),
            ((C.QUEUED, C.RINGING), "ring", C.RINGING),
            (C.RINGING, "ring_stop", C.QUEUED),
            ((C.ORIGINATING, C.DIALING, C.QUEUED, C.RINGING), "answer", C.ANSWERED),
            # an answered call-back joins the queue and waits for an operator
            ((C.DIALING, C.ANSWERED), "queue", C.QUEUED),
            (_LIVE, "end", C.ENDED),
        ]
    ),
)
