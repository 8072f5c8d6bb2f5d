"""Celery's signals are global: the worker's handlers are connected once, whatever the
number of apps made, or each app made would add a heartbeat and a deliveries process."""

from __future__ import annotations

from celery import signals

from shared.settings import Settings
from worker.app import create_celery

# Those worker/app.py connects.
SIGNALS = (
    signals.setup_logging,
    signals.task_postrun,
    signals.task_prerun,
    signals.task_revoked,
    signals.worker_ready,
    signals.worker_shutdown,
)


def test_making_the_app_again_connects_no_more_handlers() -> None:
    # No server is asked: making the app connects to nothing.
    settings = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:9"})
    create_celery(settings)
    connected = {signal.name: len(signal.receivers) for signal in SIGNALS}
    create_celery(settings)
    assert {signal.name: len(signal.receivers) for signal in SIGNALS} == connected
