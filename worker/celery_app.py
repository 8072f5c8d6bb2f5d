"""The Celery app built from the environment, for Celery's own tools:

    celery -A worker.celery_app inspect ping|active|stats
    celery -A worker.celery_app purge
    celery -A worker.celery_app flower

Importing it connects to no server of REDIS_URL (Celery connects when a command needs
to). A bad setting is one line on stderr and exit status 2, as from `endcontact`. With
REDIS_URL unset it takes the embedded server a running `endcontact run` started in
ENDCONTACT_DATA_DIR (and its broker), with the password beside each, after asking each
local server whether it is the one; one that refuses the password is an error.
"""

from __future__ import annotations

from dataclasses import replace

from shared.embedded import BROKER_DIR, EmbeddedServerError, running_url
from shared.settings import Settings, SettingsError, exit_on_bad_settings
from worker.app import create_celery


def _embedded(settings: Settings) -> Settings:
    """The embedded store, and the embedded broker beside it unless one is set."""
    try:
        broker = settings.broker_url or running_url(settings.data_dir / BROKER_DIR)
        return replace(settings, redis_url=running_url(settings.data_dir), broker_url=broker)
    except EmbeddedServerError as exc:
        raise SettingsError(str(exc)) from None


with exit_on_bad_settings():
    settings = Settings.from_env()
    if settings.redis_url is None:
        settings = _embedded(settings)
    app = create_celery(settings)
