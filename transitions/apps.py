from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _defaults(sender, **kwargs) -> None:
    """The default discharge checklist and reconciliation policy, after every migrate
    (and test flush); idempotent, never overwrites an administrator's edits."""
    from careteam.reference import ensure_reference_data

    from .services import ensure_defaults

    ensure_reference_data()
    ensure_defaults()


class TransitionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "transitions"
    verbose_name = "Care transitions and medications"

    def ready(self) -> None:
        post_migrate.connect(_defaults, sender=self)
        # the reminder sweep's rule for a discharge's debrief
        from careteam import reminders

        from . import reminder_rules

        for rule in reminder_rules.RULES:
            reminders.register_rule(rule)
