"""Stopping background tasks for certain.

One `task.cancel()` is not enough: a cancellation that arrives in the same loop
iteration as the result it was waiting for can be lost (Python 3.11's
`asyncio.wait_for` returns the result and drops the cancellation), and a `while
True` task then runs on — and `serve` never exits on SIGTERM. So a stopping task
is cancelled again until it is done.
"""
from __future__ import annotations

import asyncio

AGAIN_AFTER = 0.1  # seconds between cancellations of a task that goes on


async def cancel_and_wait(*tasks: asyncio.Future | None) -> None:
    """Cancel the tasks and return when all are done (their exceptions are dropped)."""
    pending: set[asyncio.Future] = {t for t in tasks if t is not None}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=AGAIN_AFTER)
    for each in tasks:
        if each is not None and not each.cancelled():
            each.exception()  # retrieved: no "exception was never retrieved" at exit
