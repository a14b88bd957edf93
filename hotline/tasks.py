"""Helpers for long-lived loops that must stay cancellable."""

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)


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


async def cancel_and_wait(task: asyncio.Task[Any], *, grace_s: float = 10.0) -> bool:
    """Cancel an owned task and wait for it, but never forever: shutdown must finish even if
    a task is stuck in a foreign library's cancellation path (it is logged as a straggler).
    Returns whether the task ended within ``grace_s``."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=grace_s)
    if not done:
        stuck = [t for t in asyncio.all_tasks() if t.get_name().startswith(task.get_name()) and not t.done()]
        log.error(
            "task %s did not stop within %.0f s of cancellation; abandoning it; still running: %s",
            task.get_name(),
            grace_s,
            "; ".join(f"{t.get_name()} at {t.get_stack(limit=3)}" for t in stuck),
        )
        return False
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return True
