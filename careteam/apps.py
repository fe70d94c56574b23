from django.apps import AppConfig


class CareTeamConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "careteam"
    verbose_name = "Care team"

    def ready(self) -> None:
        from . import signals  # noqa: F401
