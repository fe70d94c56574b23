"""CareTeam: the project package (settings, urls, Celery app) and the care-team app."""

from .celery import app as celery_app

__all__ = ("celery_app",)
