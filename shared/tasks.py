"""The contract between the web (which publishes) and the worker (which runs).

One task per phone number, named TASK_NAME, on queue QUEUE, with positional
arguments task_args(...): plain strings, so the message is JSON and readable by
any Celery worker that knows the name. It returns True if the number was ended
for the first time, False if it already was. Changing any of this needs both
sides deployed together.

Task ids and results: a web process names its tasks `<listener>-<n>` (task_id), its
listener id being 32 hex digits. A worker stores every result where Celery's Redis
backend does (`celery-task-meta-<task id>`), and announces the results of one batch
to each listener in one message on batch_channel(listener): a JSON object of task id
to Celery state ("SUCCESS", "FAILURE"). Tasks with other ids get Celery's own
announcement, one message per task on the channel named as their result key.
"""

from __future__ import annotations

import re

from shared.apikeys import Scope

TASK_NAME = "endcontact.end_contact"
# Our own queue, not Celery's default "celery": another app sharing the Redis
# cannot steal our tasks or feed us theirs.
QUEUE = "endcontact"


def task_args(scope: Scope, phone: str) -> list[str]:
    return [scope.company, scope.campaign, phone]


RESULT_KEY_PREFIX = "celery-task-meta-"
_OUR_TASK_ID = re.compile(r"([0-9a-f]{32})-[0-9]+")


def task_id(listener: str, n: int) -> str:
    return f"{listener}-{n}"


def listener_of(task: str) -> str | None:
    """The listener a task id names, if it is one of ours (task_id)."""
    match = _OUR_TASK_ID.fullmatch(task)
    return match.group(1) if match else None


def batch_channel(listener: str) -> str:
    # Inside the pattern the listener subscribes to for Celery's own announcements
    # (`celery-task-meta-<listener>-*`), and no task id of ours ends in "batch".
    return f"{RESULT_KEY_PREFIX}{listener}-batch"
