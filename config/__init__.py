"""The project configuration: settings, the root URLs, the Celery app, WSGI/ASGI and
gunicorn's logger. It knows every app; no app imports it (pyproject.toml's contracts)."""

from .celery import app as celery_app

__all__ = ("celery_app",)
