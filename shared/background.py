"""Background asyncio tasks (the web's result listener, metrics flusher, clock reader):
stopping one within a deadline.

Cancelling once is not always enough. On Python 3.11, asyncio.wait_for drops a
cancellation that comes just as what it waits for finishes, and returns that result
instead (CPython gh-86296, gone in 3.12); redis-py puts every command it sends in one
(its socket timeout). A loop cancelled there goes on, and a shutdown that waited for
it waited forever (issue 20). So a task is cancelled again while it runs, up to a
deadline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)

STOP_TIMEOUT = 2.0
# A cancelled task still running this long after is cancelled again: a task's own
# clean-up after a cancellation (closing a connection) takes far less.
CANCEL_AGAIN_AFTER = 0.05


async def stop(task: asyncio.Task[Any], timeout: float = STOP_TIMEOUT) -> bool:
    """Cancel `task` until it has ended, for `timeout` s at most; True if it has.

    A task that died of an exception raises it here, as awaiting it would. A cancellation
    of the caller (its own deadline) is the caller's: asyncio.wait never takes the task's
    CancelledError for it, where `suppress(CancelledError): await task` swallowed both.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        left = deadline - loop.time()
        if left <= 0:
            log.error("a background task did not stop", extra={"task": task.get_name()})
            return False
        task.cancel()
        await asyncio.wait([task], timeout=min(CANCEL_AGAIN_AFTER, left))
    if not task.cancelled():
        task.result()
    return True
