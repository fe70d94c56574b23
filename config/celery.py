"""The Celery application. Broker and result backend come from REDIS_URL via settings."""

import os

from celery import Celery
from celery.signals import setup_logging

from careteam import requestid  # noqa: F401 - carries the request id into tasks (its signals)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("careteam")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def use_django_logging(loglevel=None, **kwargs) -> None:
    """Workers and beat log through settings.LOGGING (JSON lines with the request id, as
    the web does) instead of Celery's own handler, at the level given with `-l`."""
    import logging
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)
