from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _load_shipped_content(sender, **kwargs) -> None:
    """The shipped screening instruments and plan templates, after every migrate (and
    after a test flush): idempotent, never replaces an imported version."""
    from careteam.reference import ensure_reference_data

    from .plan_templates import ensure_shipped_templates
    from .screening import ensure_shipped_questionnaires

    ensure_reference_data()
    ensure_shipped_questionnaires()
    ensure_shipped_templates()


class CareplansConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "careplans"

    def ready(self) -> None:
        post_migrate.connect(_load_shipped_content, sender=self)
        # the reminder sweep's rules for overdue activities and plan reviews
        from careteam import reminders

        from . import reminder_rules

        for rule in reminder_rules.RULES:
            reminders.register_rule(rule)
