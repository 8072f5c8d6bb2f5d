"""A stock Celery app for the contract test (tests/test_celery_contract.py): Celery's
own worker, strategy, kombu Redis transport and Redis result backend, none of ours,
running our tasks as worker/tasks.py defines them. If the web's messages or the way it
reads results drift from Celery's, the web stops seeing this worker's results.

    REDIS_URL=... ENDCONTACT_BROKER_URL=... celery -A tests.stock_app worker -P prefork -c 1
"""

from __future__ import annotations

from celery import Celery

from shared.settings import Settings
from shared.store import Store
from shared.tasks import QUEUE
from worker import tasks

settings = Settings.from_env()
broker = settings.broker().require_redis_url()
app = Celery("stock", broker=broker, backend=broker, set_as_current=False)
app.conf.update(task_default_queue=QUEUE)
# Our tasks, as our worker defines them, without its strategy (worker.tasks).
tasks.register(app, Store.connect(settings))
