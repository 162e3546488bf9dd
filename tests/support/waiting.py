"""Waiting on a condition the test cannot be pushed about, with a bound that only fails.

Prefer waiting on the event itself (a push, a close, a reply). Where the state is only
visible by asking (a row in the database, a line in a log, a counter), poll it here:
the bound is a failure limit, never a timing assertion, and the poll ends as soon as the
condition holds.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Awaitable, Callable

#: how long a state the server reaches on its own may take before the test fails
WITHIN = 20.0
#: how often to ask
POLL = 0.02


async def until(condition: Callable[[], bool | Awaitable[bool]], what: str, *, within: float = WITHIN,
                poll: float = POLL) -> None:
    """Return as soon as ``condition()`` (a function or a coroutine function) is true;
    fail the test naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(poll)
