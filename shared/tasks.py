"""The contract between the web (which publishes) and the worker (which runs).

One task per phone number, named TASK_NAME (end contact) or RESUME_TASK_NAME (resume
it), on queue QUEUE, with positional arguments task_args(...): plain strings, so the
message is JSON and readable by any Celery worker that knows the name. It returns
True if it changed the number's state (an event, shared.events), False if the number
already was so. Changing any of this needs both sides deployed together; a worker still
takes the three arguments (company, campaign, number) of an end-contact task published
before events existed, and records its event with an empty key and request id.

Task ids and results: a web process names its tasks `<listener>-<n>` (task_id), its
listener id being 32 hex digits. A worker stores every result where Celery's Redis
backend does (`celery-task-meta-<task id>`), and announces the results of one batch
to each listener in one message on batch_channel(listener): a JSON object of task id
to Celery state ("SUCCESS", "FAILURE"). Tasks with other ids get Celery's own
announcement, one message per task on the channel named as their result key. A result
a batch stores is kept KEPT_PAST_EXPIRY seconds past its task's expiry (one stored on
Celery's own path, for result_expires: worker.celery_seam.backend).
"""

from __future__ import annotations

import functools
import re

from shared.apikeys import Scope
from shared.events import E164, ENDED, RESUMED, Change, Context, parse_reason

TASK_NAME = "endcontact.end_contact"
RESUME_TASK_NAME = "endcontact.resume_contact"
TASK_NAMES = {ENDED: TASK_NAME, RESUMED: RESUME_TASK_NAME}
KINDS = {name: kind for kind, name in TASK_NAMES.items()}
# Our own queue, not Celery's default "celery": another app sharing the Redis
# cannot steal our tasks or feed us theirs.
QUEUE = "endcontact"


NO_CONTEXT = Context("", "")


def task_args(scope: Scope, phone: str, context: Context = NO_CONTEXT) -> list[str]:
    """company, campaign, number, key id, request id, stored reason (JSON or '')."""
    return [
        scope.company,
        scope.campaign,
        phone,
        context.key_id,
        context.request_id,
        context.stored_reason(),
    ]


def change_of(name: object, args: object, deadline_ms: int = 0) -> Change | None:
    """The change a task's name and arguments ask for, if they are ours (whatever a
    message holds: None for anything else, never an error), with its request's
    deadline (Change.deadline_ms)."""
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None or not isinstance(args, list | tuple) or len(args) not in (3, 6):
        return None
    if not all(isinstance(arg, str) for arg in args) or not E164.fullmatch(args[2]):
        return None
    if len(args) == 3 and kind == ENDED:
        company, campaign, phone = args
        return Change(Scope(company, campaign), phone, kind, NO_CONTEXT, deadline_ms)
    if len(args) != 6:
        return None
    company, campaign, phone, key_id, request_id, reason = args
    context = _context(key_id, request_id, reason)
    if context is None:
        return None
    return Change(Scope(company, campaign), phone, kind, context, deadline_ms)


# A request's tasks share their context: read once for all of them, not once a number
# (a worker's batch holds up to two requests' worth).
@functools.lru_cache(maxsize=256)
def _context(key_id: str, request_id: str, reason: str) -> Context | None:
    # Stored on history lines between spaces (shared.events): the web sends no other.
    if not (_PLAIN.fullmatch(key_id) and _PLAIN.fullmatch(request_id)):
        return None
    try:
        return Context(key_id, request_id, parse_reason(reason))
    except ValueError:
        return None


RESULT_KEY_PREFIX = "celery-task-meta-"
# A result is kept this many seconds past its task's expiry, its request's deadline: the
# web process waiting for it has read it by then (at the latest in its last look at the
# deadline, api.fanout), and nobody else reads it.
KEPT_PAST_EXPIRY = 10
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


# Printable ASCII without the space (33 to 126).
_PLAIN = re.compile("[!-~]*")
