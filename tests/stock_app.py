"""A stock Celery app for the contract test (tests/test_celery_contract.py): Celery's
own worker, strategy, kombu Redis transport and Redis result backend, none of ours,
running our tasks' names with the domain's code. If the web's messages or the way it
reads results drift from Celery's, the web stops seeing this worker's results.

    REDIS_URL=... ENDCONTACT_BROKER_URL=... celery -A tests.stock_app worker -P prefork -c 1
"""

from __future__ import annotations

from celery import Celery

from shared.settings import Settings
from shared.store import Store
from shared.tasks import QUEUE, RESUME_TASK_NAME, TASK_NAME, change_of

settings = Settings.from_env()
broker = settings.broker().require_redis_url()
app = Celery("stock", broker=broker, backend=broker, set_as_current=False)
app.conf.update(task_default_queue=QUEUE)
store = Store.connect(settings)


def _change(name: str, args: tuple[str, ...]) -> bool:
    wanted = change_of(name, args)
    if wanted is None:
        raise ValueError("arguments are not those of a change (shared.tasks)")
    (changed,) = store.apply_changes([wanted])
    if changed is None:
        raise RuntimeError("refused by the store")
    return changed


@app.task(name=TASK_NAME)  # type: ignore[untyped-decorator]
def end_contact(*args: str) -> bool:
    return _change(TASK_NAME, args)


@app.task(name=RESUME_TASK_NAME)  # type: ignore[untyped-decorator]
def resume_contact(*args: str) -> bool:
    return _change(RESUME_TASK_NAME, args)
