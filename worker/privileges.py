"""Celery's warning about a worker running as root, given once for a group of workers.

Celery checks in every worker process it starts (celery.platforms.check_privileges):
`endcontact worker` starts several, each a Celery worker of its own, so the operator
would read the same warning once per process. The process that starts them checks
once, with Celery's own check, and tells them so; they leave the warning out. Only the
warning: a check that refuses to run (a worker accepting pickle as root) still does.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

# In the environment of workers whose starter has checked for them.
CHECKED = "ENDCONTACT_PRIVILEGES_CHECKED"
# What our workers accept (worker/app.py): never pickle, which would make root an error.
ACCEPT_CONTENT = ("json",)


def check_for_group() -> dict[str, str]:
    """Celery's check, here (a warning logged when root); the environment to start the
    group's workers with."""
    from celery.platforms import check_privileges

    check_privileges(ACCEPT_CONTENT)
    return {CHECKED: "1"}


@contextlib.contextmanager
def checked_by_starter() -> Iterator[None]:
    """Around a worker's own check: without its warning when its starter gave it."""
    if not os.environ.get(CHECKED):
        yield
        return
    from celery.exceptions import SecurityWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SecurityWarning)
        yield
