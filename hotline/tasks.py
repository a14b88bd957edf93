"""Helpers for long-lived loops that must stay cancellable."""

import asyncio


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library swallowed.

    Some clients (redis-py among them) turn a ``CancelledError`` that hits them mid-command
    into their own connection error. A loop that catches those errors to retry would then
    run forever, and its owner's shutdown would hang. Call this in such ``except`` blocks.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait for ``event`` at most ``timeout_s``; True if it was set.

    Not ``asyncio.wait_for``: on Python 3.11 it can swallow a cancellation that arrives as the
    event is set, and a loop woken often (the escalation engine, the outbox) then never stops.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True
