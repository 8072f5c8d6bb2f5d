"""The end-contact and resume-contact tasks: what one task does, the change its name and
arguments ask for (shared.tasks) applied to the store, and nothing else.

Our worker gives them a strategy of its own (worker.celery_seam.Batches) that runs the
waiting messages as one batch and never calls these bodies; a stock Celery worker (its
default strategy, any pool) runs each message through them, as the contract test does
(tests/test_celery_contract.py with tests/stock_app.py). One definition for both.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared.store import Store
from shared.tasks import RESUME_TASK_NAME, TASK_NAME, change_of


def register(app: Celery, store: Store, **options: Any) -> None:
    """Our two tasks on `app`, writing to `store`; `options` are Celery's task options
    (our worker's Strategy)."""

    def end_contact(*args: str) -> bool:
        return apply_change(store, TASK_NAME, args)

    def resume_contact(*args: str) -> bool:
        return apply_change(store, RESUME_TASK_NAME, args)

    app.task(name=TASK_NAME, **options)(end_contact)
    app.task(name=RESUME_TASK_NAME, **options)(resume_contact)


def apply_change(store: Store, name: str, args: tuple[str, ...]) -> bool:
    """True if the task changed the number's state, False if it already was so; raises
    (the task fails) for arguments that are not a change, or a change the store refused."""
    wanted = change_of(name, args)
    if wanted is None:
        raise ValueError("arguments are not those of a change (shared.tasks)")
    (changed,) = store.apply_changes([wanted])
    if changed is None:
        raise RuntimeError("refused by the store")
    return changed
