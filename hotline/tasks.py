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
