"""The Celery application. Broker and result backend come from REDIS_URL via settings."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careteam.settings")

app = Celery("careteam")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
