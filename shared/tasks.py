"""The contract between the web (which publishes) and the worker (which runs).

One task per phone number, named TASK_NAME, on queue QUEUE, with positional
arguments task_args(...): plain strings, so the message is JSON and readable by
any Celery worker that knows the name. It returns True if the number was ended
for the first time, False if it already was. Changing any of this needs both
sides deployed together.
"""

from __future__ import annotations

from shared.apikeys import Scope

TASK_NAME = "endcontact.end_contact"
# Our own queue, not Celery's default "celery": another app sharing the Redis
# cannot steal our tasks or feed us theirs.
QUEUE = "endcontact"


def task_args(scope: Scope, phone: str) -> list[str]:
    return [scope.company, scope.campaign, phone]
